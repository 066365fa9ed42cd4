//! Real devices for tests, each set up in its own temporary directory and torn down after:
//! a SoftHSM2 token (PKCS#11) and a swtpm (TPM 2.0). No mocks: the code under test talks to
//! the same module and TPM protocol it would on an approver's machine.

pub mod softhsm;
mod swtpm;

pub use softhsm::SoftHsm;
pub use swtpm::Swtpm;
