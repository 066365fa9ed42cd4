//! `gate.toml`: the approval service, where agents reach the gate, and the upstream tool servers
//! with their credentials and how their calls are described as actions.
//!
//! ```toml
//! service = "https://countersign.example"   # the approval service
//! listen = "127.0.0.1:8760"                  # where agents reach the gate
//!
//! [[upstream]]
//! name = "fs"                                # its tools are offered as fs.<tool>
//! command = "mcp-server-filesystem"          # a stdio server the gate starts …
//! args = ["/srv/data"]
//! env = { LOG_LEVEL = "warn" }
//! env_files = { API_KEY = "secrets/fs.key" } # … with secrets read from files
//! environment = "prod"
//! tags = ["files"]
//!
//! [upstream.tools.write_file]
//! type = "fs.write"                          # default: mcp.<upstream>.<tool>
//! resource = "file://{path}"                 # a template over the call's arguments
//! tags = ["source-code"]
//! preview = "write-file"                     # show the diff against the current file
//!
//! [[upstream]]
//! name = "tickets"
//! url = "https://mcp.tickets.example/mcp"    # a Streamable HTTP server …
//! header_files = { Authorization = "secrets/tickets.header" }
//! ```
//!
//! Secrets (environment values and headers for the upstreams) live only here or in the files
//! named here. They are never shown by `Debug`, and nothing the gate sends an agent contains them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use countersign_core::{ActionType, Tag, ValidationError, validate};
use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or missing keys.
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value breaks a rule.
    #[error("{0}")]
    Invalid(String),
}

impl From<ValidationError> for ConfigError {
    fn from(e: ValidationError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

/// A secret value: shown as `***` by `Debug`, so it never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value (read from a file the configuration names).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it to the upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The gate's configuration, checked.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// The approval service's base URL.
    pub service: String,
    /// Where agents reach the gate.
    pub listen: SocketAddr,
    /// The upstream tool servers, by name.
    pub upstreams: Vec<Upstream>,
    /// Databases and commands the gate runs itself ([`crate::connection`]).
    pub connections: Vec<crate::connection::Connection>,
    /// Where the gate keeps what it is running, to report it failed should the gate stop
    /// mid-run ([`crate::journal`]); `state_dir`, else `gate-state` beside the configuration.
    pub state_dir: PathBuf,
}

/// One upstream tool server.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Its name: tools are offered as `<name>.<tool>`, actions typed `mcp.<name>.<tool>`.
    pub name: String,
    /// How the gate reaches it.
    pub transport: UpstreamTransport,
    /// The environment its calls act in (`prod`, `staging`, …).
    pub environment: String,
    /// Classification tags of every call to it.
    pub tags: Vec<Tag>,
    /// Per-tool rules, by the upstream's tool name.
    pub tools: BTreeMap<String, ToolRule>,
    /// Longest a call to it may take once forwarded.
    pub call_timeout_seconds: u64,
    /// Whether reading one of its resources is an action the policy decides (type
    /// `mcp.<name>.resource-read`, resource the URI), instead of passing through.
    pub resources_need_approval: bool,
}

/// How the gate reaches an upstream.
#[derive(Clone, Debug)]
pub enum UpstreamTransport {
    /// A program the gate starts and speaks to over its standard input and output.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its environment (nothing of the gate's own is passed on but `PATH` and `HOME`).
        env: BTreeMap<String, Secret>,
    },
    /// A Streamable HTTP server.
    Http {
        /// Its endpoint.
        url: String,
        /// Headers sent with every request (credentials).
        headers: BTreeMap<String, Secret>,
    },
}

/// How calls to one tool are described.
#[derive(Clone, Debug, Default)]
pub struct ToolRule {
    /// The action type, instead of `mcp.<upstream>.<tool>`.
    pub action_type: Option<ActionType>,
    /// A template over the call's arguments: `{name}` is replaced by the argument's value.
    pub resource: Option<String>,
    /// The environment, instead of the upstream's.
    pub environment: Option<String>,
    /// More classification tags.
    pub tags: Vec<Tag>,
    /// How the gate computes the change the call would make, for approvers to judge.
    pub preview: Option<Preview>,
}

/// A preview adapter: how the gate shows what a call would change.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preview {
    /// A file write (`path`, `content`): the diff between the file's current content, read
    /// through the upstream's `read_text_file`, and `content`.
    WriteFile,
    /// A tool that takes `dryRun: true` and answers with a unified diff without changing
    /// anything (the filesystem server's `edit_file`): that diff.
    DryRunDiff,
    /// A commit in the repository at `repo_path` (the git server's `git_commit`): the staged
    /// diff, read through the upstream's `git_diff_staged`.
    StagedDiff,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    service: String,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    #[serde(default, rename = "connection")]
    connections: Vec<crate::connection::RawConnection>,
    state_dir: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8760))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_files: BTreeMap<String, PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_files: BTreeMap<String, PathBuf>,
    environment: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    tools: BTreeMap<String, RawToolRule>,
    #[serde(default = "default_call_timeout")]
    call_timeout_seconds: u64,
    #[serde(default)]
    resources_need_approval: bool,
}

fn default_call_timeout() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolRule {
    #[serde(rename = "type")]
    action_type: Option<String>,
    resource: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    preview: Option<Preview>,
}

impl GateConfig {
    /// Reads and checks `path`; files it names are relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks TOML text; secret files are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        if !(raw.service.starts_with("https://") || raw.service.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "service: {:?} is not an http(s) URL",
                raw.service
            )));
        }
        let mut upstreams: Vec<Upstream> = Vec::new();
        for u in raw.upstreams {
            let upstream = check_upstream(u, base)?;
            if upstreams.iter().any(|o| o.name == upstream.name) {
                return Err(ConfigError::Invalid(format!(
                    "upstream {:?} is configured twice",
                    upstream.name
                )));
            }
            upstreams.push(upstream);
        }
        let mut connections: Vec<crate::connection::Connection> = Vec::new();
        for c in raw.connections {
            let connection = crate::connection::check(c, base)?;
            let taken = upstreams.iter().any(|u| u.name == connection.name)
                || connections.iter().any(|o| o.name == connection.name);
            if taken {
                return Err(ConfigError::Invalid(format!(
                    "the name {:?} is used twice (upstreams and connections share names)",
                    connection.name
                )));
            }
            connections.push(connection);
        }
        if upstreams.is_empty() && connections.is_empty() {
            return Err(ConfigError::Invalid(
                "no [[upstream]] and no [[connection]]: the gate would have nothing to offer"
                    .into(),
            ));
        }
        Ok(Self {
            service: raw.service.trim_end_matches('/').to_owned(),
            listen: raw.listen,
            upstreams,
            connections,
            state_dir: base.join(raw.state_dir.as_deref().unwrap_or(Path::new("gate-state"))),
        })
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

pub(crate) fn read_secret(base: &Path, field: &str, path: &Path) -> Result<Secret, ConfigError> {
    let full = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    let text = std::fs::read_to_string(&full).map_err(|source| ConfigError::Read {
        path: full.clone(),
        source,
    })?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{field}: {} is empty",
            full.display()
        )));
    }
    Ok(Secret(value))
}

pub(crate) fn secrets(
    base: &Path,
    field: &str,
    plain: BTreeMap<String, String>,
    files: BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Secret>, ConfigError> {
    let mut out: BTreeMap<String, Secret> =
        plain.into_iter().map(|(k, v)| (k, Secret(v))).collect();
    for (key, path) in files {
        if out.contains_key(&key) {
            return Err(ConfigError::Invalid(format!(
                "{field}: {key} is given both inline and from a file"
            )));
        }
        let secret = read_secret(base, &format!("{field}.{key}"), &path)?;
        out.insert(key, secret);
    }
    Ok(out)
}

fn tags(field: &str, raw: Vec<String>) -> Result<Vec<Tag>, ConfigError> {
    raw.into_iter()
        .map(|t| Tag::new(t).map_err(|e| ConfigError::Invalid(format!("{field}: {e}"))))
        .collect()
}

fn check_upstream(u: RawUpstream, base: &Path) -> Result<Upstream, ConfigError> {
    let name = u.name;
    // An upstream's name is a segment of every action type of its tools.
    validate::identifier("upstream.name", &name, 32, "_-")?;
    if name.contains(crate::server::SEPARATOR) {
        return Err(ConfigError::Invalid(format!(
            "upstream.name: {name:?} contains {:?}, which separates an upstream's name from its tools'",
            crate::server::SEPARATOR
        )));
    }
    let field = |f: &str| format!("upstream {name}: {f}");
    validate::identifier(&field("environment"), &u.environment, 64, "_-")?;
    let transport = match (u.command, u.url) {
        (Some(command), None) => {
            if !u.headers.is_empty() || !u.header_files.is_empty() {
                return Err(ConfigError::Invalid(field(
                    "headers belong to url upstreams, not command ones",
                )));
            }
            UpstreamTransport::Stdio {
                command,
                args: u.args,
                env: secrets(base, &field("env"), u.env, u.env_files)?,
            }
        }
        (None, Some(url)) => {
            if !u.env.is_empty() || !u.env_files.is_empty() || !u.args.is_empty() {
                return Err(ConfigError::Invalid(field(
                    "args and env belong to command upstreams, not url ones",
                )));
            }
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid(field("url must be http(s)")));
            }
            UpstreamTransport::Http {
                url,
                headers: secrets(base, &field("headers"), u.headers, u.header_files)?,
            }
        }
        _ => {
            return Err(ConfigError::Invalid(field(
                "give exactly one of command (a stdio server) and url (a Streamable HTTP server)",
            )));
        }
    };
    let mut tools = BTreeMap::new();
    for (tool, rule) in u.tools {
        let at = |f: &str| field(&format!("tools.{tool}.{f}"));
        let action_type = rule
            .action_type
            .map(|t| {
                ActionType::new(t).map_err(|e| ConfigError::Invalid(format!("{}: {e}", at("type"))))
            })
            .transpose()?;
        if let Some(env) = &rule.environment {
            validate::identifier(&at("environment"), env, 64, "_-")?;
        }
        if let Some(template) = &rule.resource {
            crate::action::check_template(template)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", at("resource"))))?;
        }
        tools.insert(
            tool.clone(),
            ToolRule {
                action_type,
                resource: rule.resource,
                environment: rule.environment,
                tags: tags(&at("tags"), rule.tags)?,
                preview: rule.preview,
            },
        );
    }
    if u.call_timeout_seconds == 0 || u.call_timeout_seconds > 3600 {
        return Err(ConfigError::Invalid(field(
            "call_timeout_seconds must be 1 to 3600",
        )));
    }
    Ok(Upstream {
        transport,
        environment: u.environment,
        tags: tags(&field("tags"), u.tags)?,
        tools,
        call_timeout_seconds: u.call_timeout_seconds,
        resources_need_approval: u.resources_need_approval,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
service = "https://countersign.example/"

[[upstream]]
name = "fs"
command = "mcp-server-filesystem"
args = ["/srv/data"]
env = { LOG_LEVEL = "warn" }
env_files = { API_KEY = "fs.key" }
environment = "prod"
tags = ["files"]

[upstream.tools.write_file]
type = "fs.write"
resource = "file://{path}"
tags = ["source-code"]

[[upstream]]
name = "tickets"
url = "https://mcp.tickets.example/mcp"
header_files = { Authorization = "tickets.header" }
environment = "staging"
"#;

    fn dir_with_secrets() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("fs.key"), "s3cr3t-fs\n").expect("write");
        std::fs::write(dir.path().join("tickets.header"), "Bearer tk-123\n").expect("write");
        dir
    }

    #[test]
    fn a_full_configuration_loads_with_its_secrets_from_files() {
        let dir = dir_with_secrets();
        let path = dir.path().join("gate.toml");
        std::fs::write(&path, SAMPLE).expect("write");
        let config = GateConfig::load(&path).expect("loads");
        assert_eq!(config.service, "https://countersign.example");
        assert_eq!(config.listen, default_listen());
        let fs = config.upstream("fs").expect("fs");
        let UpstreamTransport::Stdio { env, .. } = &fs.transport else {
            panic!("stdio")
        };
        assert_eq!(env["API_KEY"].expose(), "s3cr3t-fs");
        let rule = &fs.tools["write_file"];
        assert_eq!(
            rule.action_type.as_ref().map(ActionType::as_str),
            Some("fs.write")
        );
        let tickets = config.upstream("tickets").expect("tickets");
        let UpstreamTransport::Http { headers, .. } = &tickets.transport else {
            panic!("http")
        };
        assert_eq!(headers["Authorization"].expose(), "Bearer tk-123");
        // Secrets never show in Debug output (logs, panics).
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("tk-123"),
            "{shown}"
        );
    }

    #[test]
    fn bad_configurations_are_refused_naming_what_is_wrong() {
        let dir = dir_with_secrets();
        let cases = [
            (
                "service = \"ftp://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenvironment = \"prod\"",
                "service",
            ),
            ("service = \"https://x\"", "no [[upstream]]"),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"Bad Name\"\ncommand = \"x\"\nenvironment = \"prod\"",
                "upstream.name",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\nenvironment = \"prod\"",
                "exactly one of command",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nurl = \"https://y\"\nenvironment = \"prod\"",
                "exactly one of command",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenvironment = \"prod\"\n[[upstream]]\nname = \"a\"\ncommand = \"y\"\nenvironment = \"prod\"",
                "twice",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenvironment = \"prod\"\nsurprise = 1",
                "unknown field",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenvironment = \"prod\"\n[upstream.tools.t]\nresource = \"file://{path\"",
                "resource",
            ),
            (
                "service = \"https://x\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\nenvironment = \"prod\"\nenv_files = { K = \"missing.key\" }",
                "missing.key",
            ),
        ];
        for (text, says) in cases {
            let err = GateConfig::parse(text, dir.path()).expect_err(text);
            assert!(err.to_string().contains(says), "{text}\n→ {err}");
        }
    }

    #[test]
    fn connections_are_read_with_their_secrets_from_files() {
        let dir = dir_with_secrets();
        std::fs::write(
            dir.path().join("db.dsn"),
            "postgres://minter:pa55@db.internal/app\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("ops.token"), "t0ken-ops\n").expect("write");
        let text = r#"
service = "https://countersign.example"
[[connection]]
name = "prod-db"
postgres_file = "db.dsn"
environment = "prod"
tags = ["database"]
[connection.classification]
"customers.email" = ["pii"]
[[connection]]
name = "restart"
command = "/usr/local/bin/restart-service"
args = ["--service", "{service}"]
env_files = { OPS_TOKEN = "ops.token" }
environment = "prod"
"#;
        let config = GateConfig::parse(text, dir.path()).expect("valid");
        assert!(config.upstreams.is_empty());
        assert_eq!(config.connections.len(), 2);
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("pa55") && !shown.contains("t0ken-ops"),
            "{shown}"
        );
        assert_eq!(
            config.connections[1].kind.argument_names(),
            vec!["service".to_owned()]
        );
        match &config.connections[0].kind {
            crate::connection::ConnectionKind::Postgres { dsn, .. } => {
                assert_eq!(dsn.expose(), "postgres://minter:pa55@db.internal/app");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_connections_are_refused_with_a_reason() {
        let dir = dir_with_secrets();
        std::fs::write(dir.path().join("db.dsn"), "mysql://x\n").expect("write");
        std::fs::write(dir.path().join("ok.dsn"), "postgres://x@y/z\n").expect("write");
        let head = "service = \"https://countersign.example\"\n[[connection]]\nname = \"db\"\nenvironment = \"prod\"\n";
        for (body, why) in [
            ("postgres_file = \"db.dsn\"\n", "postgres://"),
            (
                "postgres_file = \"ok.dsn\"\ncommand = \"/bin/true\"\n",
                "not both",
            ),
            ("", "give postgres_file"),
            (
                "postgres_file = \"ok.dsn\"\n[connection.classification]\n\"email\" = [\"pii\"]\n",
                "classification",
            ),
            (
                "command = \"/bin/echo\"\nargs = [\"{$(reboot)}\"]\n",
                "args",
            ),
            (
                "postgres_file = \"ok.dsn\"\nstatement_timeout_seconds = 0\n",
                "statement_timeout_seconds",
            ),
            (
                "postgres_url = \"postgres://inline@secret/db\"\n",
                "unknown field",
            ),
        ] {
            let err = GateConfig::parse(&format!("{head}{body}"), dir.path())
                .expect_err(body)
                .to_string();
            assert!(err.contains(why), "{body}: {err}");
        }
        let twice = format!(
            "{head}postgres_file = \"ok.dsn\"\n[[connection]]\nname = \"db\"\nenvironment = \"prod\"\ncommand = \"/bin/true\"\n"
        );
        let err = GateConfig::parse(&twice, dir.path())
            .expect_err("twice")
            .to_string();
        assert!(err.contains("used twice"), "{err}");
    }
}
