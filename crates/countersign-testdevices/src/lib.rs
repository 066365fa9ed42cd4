//! Real devices and servers for tests, each set up in its own temporary directory and torn
//! down after: a SoftHSM2 token (PKCS#11), a swtpm (TPM 2.0), a PostgreSQL server, and the
//! `countersign gate` process the MCP tests put real servers behind. No mocks:
//! the code under test talks to the same module, TPM protocol and database it would in use.

mod gate;
mod oidc;
mod postgres;
pub mod softhsm;
mod swtpm;

pub use gate::Gate;
pub use oidc::OidcProvider;
pub use postgres::Postgres;
pub use softhsm::SoftHsm;
pub use swtpm::{EkCa, Swtpm};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
