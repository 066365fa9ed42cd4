//! Secrets given to the command line (agent tokens, enrolment codes) without putting them in
//! its arguments, which every user of the machine can read in `ps`: from the environment
//! (clap's `env`), or from a file or standard input (`--…-file -`).

use std::io::BufRead as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// The secret from `value` (a flag or its environment variable) or else from `file` (`-` is
/// standard input); its surrounding whitespace trimmed.
pub fn resolve(value: Option<String>, file: Option<&Path>, what: &str) -> anyhow::Result<String> {
    let text = match (value, file) {
        (Some(v), _) => v,
        (None, Some(path)) if path == Path::new("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .with_context(|| format!("reading the {what} from standard input"))?;
            line
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} from {}", path.display()))?,
        (None, None) => bail!("no {what} given"),
    };
    let text = text.trim().to_owned();
    if text.is_empty() {
        bail!("the {what} is empty");
    }
    Ok(text)
}
