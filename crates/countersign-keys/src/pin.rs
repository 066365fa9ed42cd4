//! Asking a person for a PIN: the console asks in its window, the CLI on the terminal. The
//! backends only call the prompt; they never store, log or retry a PIN.

use zeroize::Zeroizing;

use crate::KeyError;

/// What the prompt should tell the person.
#[derive(Clone, Debug)]
pub struct PinRequest<'a> {
    /// The token or key the PIN unlocks, for people.
    pub device: &'a str,
    /// A warning from the device, e.g. that few attempts are left.
    pub warning: Option<&'static str>,
}

/// Asks for a PIN; returns it wiped on drop, or an error when the person cancels.
pub trait PinPrompt {
    /// Asks once.
    fn ask(&self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError>;
}

impl<F> PinPrompt for F
where
    F: Fn(&PinRequest<'_>) -> Result<Zeroizing<String>, KeyError>,
{
    fn ask(&self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
        self(request)
    }
}
