//! PINs on the terminal: asked on the controlling terminal without echo, or taken from
//! `COUNTERSIGN_PIN` for unattended use (tests, CI). Never printed, never logged.

use std::io::IsTerminal as _;

use countersign_keys::{KeyError, PinRequest};
use zeroize::Zeroizing;

/// The environment variable that answers PIN prompts without a terminal.
pub const PIN_ENV: &str = "COUNTERSIGN_PIN";

/// Asks for the PIN of `request.device`.
pub fn ask(request: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
    if let Some(pin) = std::env::var_os(PIN_ENV) {
        return pin.into_string().map(Zeroizing::new).map_err(|_| {
            KeyError::PinCancelled(format!("{} ({PIN_ENV} is not UTF-8)", request.device))
        });
    }
    if !std::io::stdin().is_terminal() {
        return Err(KeyError::PinCancelled(format!(
            "{} (no terminal to ask on; set {PIN_ENV} for unattended use)",
            request.device
        )));
    }
    if let Some(warning) = request.warning {
        eprintln!("warning: {}: {warning}", request.device);
    }
    rpassword::prompt_password(format!("PIN for {}: ", request.device))
        .map(Zeroizing::new)
        .map_err(|e| KeyError::PinCancelled(format!("{}: {e}", request.device)))
}

/// Asks twice for a new authorization value and checks both match.
pub fn ask_new(device: &str) -> Result<Zeroizing<String>, KeyError> {
    let request = PinRequest {
        device,
        warning: None,
    };
    let first = ask(&request)?;
    if std::env::var_os(PIN_ENV).is_some() {
        return Ok(first);
    }
    let again = rpassword::prompt_password(format!("again, PIN for {device}: "))
        .map(Zeroizing::new)
        .map_err(|e| KeyError::PinCancelled(format!("{device}: {e}")))?;
    if *first != *again {
        return Err(KeyError::PinCancelled(format!(
            "{device}: the two entries differ"
        )));
    }
    Ok(first)
}
