//! Identity from the organisation. The service trusts an OpenID Provider for approvers and
//! workload-identity issuers (a CI system's OIDC tokens, Kubernetes service-account tokens) for
//! agents: [`discovery`] reads a provider's metadata, [`jwks`] keeps its signing keys current
//! (refreshed when a token names a key it has not seen, at a bounded rate, the last good set kept
//! when the provider is down), [`token`] verifies a JWT against them with every check an ID
//! token needs, and [`mapping`] turns verified claims into a Countersign identifier and groups.
//!
//! One verifier serves ID tokens and workload tokens: both are JWTs signed by keys the issuer
//! publishes, and a workload token is not an ID token (no nonce, its own audience), so a
//! verifier built for ID tokens alone would not do.

pub mod discovery;
pub mod jwks;
pub mod mapping;
pub mod token;

pub use discovery::{Metadata, discover};
pub use jwks::KeySet;
pub use mapping::{ClaimMapping, MappedIdentity};
pub use token::{Expectations, TokenError, Verified, Verifier};
