//! The action a tool call becomes. The gate writes it from its configuration: the agent chooses
//! the tool and its arguments, never how the call is labelled — its type, resource, environment
//! and classification tags. What the upstream says about its own tools (MCP annotations such as
//! `readOnlyHint`) travels in `context.mcp.annotations` as a hint from an untrusted server, for
//! the policy to weigh, never as the decision.

use countersign_core::canonical::StrictObject;
use countersign_core::{ActionRequest, ActionType, Diff, Tag, ValidationError};
use serde_json::{Map, Value, json};

use crate::config::Upstream;
use crate::template::{Piece, pieces};

/// Why a call cannot be turned into an action.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    /// The configured resource template needs an argument the call does not have (or has as a
    /// list or object).
    #[error(
        "the resource of {tool} is made from the argument `{argument}`, which the call does not give as text or a number"
    )]
    MissingArgument {
        /// The tool.
        tool: String,
        /// The argument.
        argument: String,
    },
    /// The action breaks a rule of the service (size budgets, control characters, …).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// One call of one upstream tool, as the agent made it.
#[derive(Clone, Debug)]
pub struct ToolCall<'a> {
    /// The upstream.
    pub upstream: &'a Upstream,
    /// The upstream's own name for the tool.
    pub tool: &'a str,
    /// The call's arguments.
    pub arguments: &'a Map<String, Value>,
    /// The tool's annotations as the upstream listed them (untrusted hints).
    pub annotations: Option<Value>,
    /// Why the agent makes the call, when it said (shown to approvers as the justification).
    pub justification: Option<&'a str>,
    /// The change the call would make, as the gate computed it (see [`crate::preview`]).
    pub diff: Option<Diff>,
}

/// Checks a resource template: `{name}` placeholders with a name, braces balanced.
pub fn check_template(template: &str) -> Result<(), String> {
    pieces(template).map(drop)
}

fn render(template: &str, call: &ToolCall<'_>) -> Result<String, ActionError> {
    // Templates are checked when the configuration is read; one that fails here renders as
    // missing its first argument, which refuses the call.
    let parts = pieces(template).map_err(|_| ActionError::MissingArgument {
        tool: call.tool.to_owned(),
        argument: template.to_owned(),
    })?;
    let mut out = String::with_capacity(template.len() + 32);
    for part in parts {
        match part {
            Piece::Text(text) => out.push_str(text),
            Piece::Argument(name) => match call.arguments.get(name) {
                Some(Value::String(s)) => out.push_str(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                _ => {
                    return Err(ActionError::MissingArgument {
                        tool: call.tool.to_owned(),
                        argument: name.to_owned(),
                    });
                }
            },
        }
    }
    Ok(out)
}

/// `mcp.<upstream>.<tool>`, the tool's name lowercased with anything but `a-z0-9_-` as `-`.
fn default_type(call: &ToolCall<'_>) -> Result<ActionType, ValidationError> {
    let tool: String = call
        .tool
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tool = tool.trim_start_matches(['-', '_']);
    ActionType::new(format!("mcp.{}.{}", call.upstream.name, tool))
}

/// The action `call` becomes: type, resource, environment and tags from the configuration,
/// the arguments as parameters, the tool and the upstream's hints as context.
pub fn action_for(call: &ToolCall<'_>) -> Result<ActionRequest, ActionError> {
    let rule = call.upstream.tools.get(call.tool);
    let action_type = match rule.and_then(|r| r.action_type.clone()) {
        Some(t) => t,
        None => default_type(call)?,
    };
    let resource = match rule.and_then(|r| r.resource.as_deref()) {
        Some(template) => render(template, call)?,
        None => format!("mcp://{}/{}", call.upstream.name, call.tool),
    };
    let environment = rule
        .and_then(|r| r.environment.clone())
        .unwrap_or_else(|| call.upstream.environment.clone());
    let mut tags: Vec<Tag> = call.upstream.tags.clone();
    for t in rule.map(|r| r.tags.as_slice()).unwrap_or_default() {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    let mut mcp = Map::new();
    mcp.insert("upstream".into(), json!(call.upstream.name));
    mcp.insert("tool".into(), json!(call.tool));
    if let Some(hints) = &call.annotations {
        mcp.insert("annotations".into(), hints.clone());
    }
    let mut context = Map::new();
    context.insert("mcp".into(), Value::Object(mcp));
    let justification = match call.justification.map(str::trim) {
        Some(j) if !j.is_empty() => j.to_owned(),
        _ => format!(
            "The agent called {}.{} through the gate (it gave no reason).",
            call.upstream.name, call.tool
        ),
    };
    let request = ActionRequest {
        action_type,
        resource,
        environment,
        parameters: StrictObject(call.arguments.clone()),
        justification,
        context: StrictObject(context),
        diff: call.diff.clone(),
        tags,
        on_behalf_of: None,
        break_glass: false,
    };
    request.validate()?;
    Ok(request)
}

/// The action reading resource `uri` of `upstream` becomes, when its reads need approval:
/// type `mcp.<upstream>.resource-read`, the URI as resource, the upstream's environment and tags.
pub fn action_for_resource(upstream: &Upstream, uri: &str) -> Result<ActionRequest, ActionError> {
    let mut parameters = Map::new();
    parameters.insert("uri".into(), json!(uri));
    let mut mcp = Map::new();
    mcp.insert("upstream".into(), json!(upstream.name));
    mcp.insert("resource".into(), json!(uri));
    let mut context = Map::new();
    context.insert("mcp".into(), Value::Object(mcp));
    let request = ActionRequest {
        action_type: ActionType::new(format!("mcp.{}.resource-read", upstream.name))?,
        resource: uri.to_owned(),
        environment: upstream.environment.clone(),
        parameters: StrictObject(parameters),
        justification: format!(
            "The agent reads {uri} from {} through the gate.",
            upstream.name
        ),
        context: StrictObject(context),
        diff: None,
        tags: upstream.tags.clone(),
        on_behalf_of: None,
        break_glass: false,
    };
    request.validate()?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GateConfig;

    fn config() -> GateConfig {
        GateConfig::parse(
            r#"
service = "https://countersign.example"
[[upstream]]
name = "fs"
command = "mcp-server-filesystem"
environment = "prod"
tags = ["files"]
[upstream.tools.write_file]
resource = "file://{path}"
tags = ["source-code", "files"]
[upstream.tools.move_file]
type = "fs.move"
resource = "file://{source} -> file://{destination}"
environment = "staging"
"#,
            std::path::Path::new("."),
        )
        .expect("config")
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn the_gate_writes_the_action_from_its_configuration() {
        let config = config();
        let fs = config.upstream("fs").expect("fs");
        let arguments = args(json!({"path": "/srv/data/app.yaml", "content": "replicas: 3\n"}));
        let call = ToolCall {
            upstream: fs,
            tool: "write_file",
            arguments: &arguments,
            annotations: Some(json!({"readOnlyHint": true})),
            justification: Some("scale the app"),
            diff: None,
        };
        let action = action_for(&call).expect("action");
        assert_eq!(action.action_type.as_str(), "mcp.fs.write_file");
        assert_eq!(action.resource, "file:///srv/data/app.yaml");
        assert_eq!(action.environment, "prod");
        assert_eq!(
            action.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            ["files", "source-code"]
        );
        assert_eq!(action.parameters.0, arguments);
        // The upstream's claim that the tool only reads is a hint, recorded as such.
        assert_eq!(action.context.0["mcp"]["annotations"]["readOnlyHint"], true);
        assert_eq!(action.justification, "scale the app");

        let moved = args(json!({"source": "/a", "destination": "/b"}));
        let call = ToolCall {
            tool: "move_file",
            arguments: &moved,
            annotations: None,
            justification: None,
            ..call
        };
        let action = action_for(&call).expect("action");
        assert_eq!(action.action_type.as_str(), "fs.move");
        assert_eq!(action.resource, "file:///a -> file:///b");
        assert_eq!(action.environment, "staging");
        assert!(action.justification.contains("gave no reason"));
    }

    #[test]
    fn tools_without_a_rule_get_a_type_and_resource_of_their_own() {
        let config = config();
        let fs = config.upstream("fs").expect("fs");
        let arguments = Map::new();
        let call = ToolCall {
            upstream: fs,
            tool: "List Allowed.Directories",
            arguments: &arguments,
            annotations: None,
            justification: None,
            diff: None,
        };
        let action = action_for(&call).expect("action");
        assert_eq!(
            action.action_type.as_str(),
            "mcp.fs.list-allowed-directories"
        );
        assert_eq!(action.resource, "mcp://fs/List Allowed.Directories");
    }

    #[test]
    fn a_call_without_the_templates_argument_or_with_hostile_data_is_refused() {
        let config = config();
        let fs = config.upstream("fs").expect("fs");
        let arguments = args(json!({"content": "x"}));
        let call = ToolCall {
            upstream: fs,
            tool: "write_file",
            arguments: &arguments,
            annotations: None,
            justification: None,
            diff: None,
        };
        assert!(matches!(
            action_for(&call),
            Err(ActionError::MissingArgument { argument, .. }) if argument == "path"
        ));
        // A path that would reverse itself on screen never becomes a resource.
        let arguments = args(json!({"path": "/srv/report\u{202E}fdp.exe"}));
        let call = ToolCall {
            arguments: &arguments,
            ..call
        };
        assert!(matches!(action_for(&call), Err(ActionError::Invalid(e)) if e.field == "resource"));
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("file://{path}").is_ok());
        assert!(check_template("plain").is_ok());
        assert!(check_template("file://{path").is_err());
        assert!(check_template("file://path}").is_err());
        assert!(check_template("file://{}").is_err());
    }
}
