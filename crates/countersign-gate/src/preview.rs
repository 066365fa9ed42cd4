//! Preview adapters: the change a call would make, computed by the gate — not described by the
//! agent — so an approver judges a diff, not a promise. Each reads through the upstream with the
//! gate's credentials and changes nothing.

use countersign_core::Diff;
use countersign_core::action::MAX_DIFF_BYTES;
use serde_json::{Map, Value};

use crate::config::Preview;
use crate::upstream::Connected;

/// The tool a write-file preview reads the current content with.
const READ_TOOL: &str = "read_text_file";

/// The tool a staged-diff preview reads the staged changes with.
const STAGED_TOOL: &str = "git_diff_staged";

/// The text of a tool result's text blocks.
fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn language_of(path: &str) -> Option<String> {
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    let known = [
        "json", "yaml", "yml", "toml", "sql", "sh", "py", "rs", "ts", "js", "go", "tf", "hcl",
        "md", "ini", "xml", "html", "css",
    ];
    known.contains(&ext.as_str()).then_some(ext)
}

/// The diff `preview` gives for `tool` called with `arguments`, or `None` when there is nothing
/// to show (arguments of another shape, an upstream that cannot tell, a change too large to
/// show): the approver then judges the arguments themselves.
pub async fn diff(
    preview: &Preview,
    upstream: &Connected,
    tool: &str,
    arguments: &Map<String, Value>,
) -> Option<Diff> {
    let diff = match preview {
        Preview::WriteFile => {
            let path = arguments.get("path")?.as_str()?;
            let after = arguments.get("content")?.as_str()?.to_owned();
            let mut read = Map::new();
            read.insert("path".into(), Value::String(path.to_owned()));
            // A file that does not exist yet (or cannot be read) is shown as created.
            let before = match upstream.call(READ_TOOL, read).await {
                Ok(r) if r.is_error != Some(true) => text_of(&r),
                _ => String::new(),
            };
            Diff::BeforeAfter {
                before,
                after,
                language: language_of(path),
            }
        }
        Preview::DryRunDiff => {
            let mut dry = arguments.clone();
            dry.insert("dryRun".into(), Value::Bool(true));
            let result = upstream.call(tool, dry).await.ok()?;
            if result.is_error == Some(true) {
                return None;
            }
            let text = text_of(&result);
            // The filesystem server fences its diff in ``` … ```.
            let text = text
                .trim()
                .trim_start_matches("```diff")
                .trim_start_matches("```")
                .trim_end_matches("```")
                .trim_matches('\n')
                .to_owned();
            Diff::Unified {
                text: format!("{text}\n"),
                language: None,
            }
        }
        Preview::StagedDiff => {
            let repo = arguments.get("repo_path")?.as_str()?;
            let mut read = Map::new();
            read.insert("repo_path".into(), Value::String(repo.to_owned()));
            let result = upstream.call(STAGED_TOOL, read).await.ok()?;
            if result.is_error == Some(true) {
                return None;
            }
            let text = text_of(&result);
            // The git server heads its answer with a line of its own.
            let text = text.strip_prefix("Staged changes:").unwrap_or(&text);
            let text = text.trim_matches('\n');
            // Nothing staged: nothing to show (the server refuses an empty commit anyway).
            if text.is_empty() {
                return None;
            }
            Diff::Unified {
                text: format!("{text}\n"),
                language: None,
            }
        }
    };
    (diff.byte_len() <= MAX_DIFF_BYTES).then_some(diff)
}
