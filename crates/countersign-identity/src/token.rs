//! Verifying a JWT from a trusted issuer: an approver's ID token, or an agent's workload
//! identity token. Only asymmetric algorithms are accepted (never `none`, never an HMAC whose
//! "secret" would be a public key), the key comes from the issuer's published set, and every
//! claim check an ID token needs is made: issuer exactly, audience, expiry and not-before (with
//! a small leeway), issued-at not in the future, the authorised party when there are several
//! audiences, the nonce of the sign-in that asked for it, and the age of the sign-in.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::jwks::{KeyError, KeySet};

/// Longest token accepted (the parser's and the verifier's work grow with it).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. The message is safe to show the presenter: it says which check
/// failed, never the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, or longer than [`MAX_TOKEN_BYTES`].
    #[error("not a usable token: {0}")]
    Malformed(String),
    /// Signed with an algorithm this verifier does not accept.
    #[error("signed with {0}, which is not accepted")]
    Algorithm(String),
    /// No key of the issuer verifies it.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The signature does not verify, or a registered claim is wrong (issuer, audience, expiry).
    #[error("refused: {0}")]
    Invalid(String),
    /// It is for another sign-in (nonce), another client (authorised party), or too old.
    #[error("refused: {0}")]
    Context(String),
}

/// One trusted issuer.
#[derive(Clone)]
pub struct Verifier {
    issuer: String,
    keys: Arc<KeySet>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
}

/// What a token must be for.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The audience it must name (the client id for an ID token).
    pub audience: String,
    /// For an ID token: the authorised party must be the audience when present or when there
    /// are several audiences.
    pub check_authorized_party: bool,
    /// The nonce the sign-in sent, which the ID token must carry back.
    pub nonce: Option<String>,
    /// Accept a token that carries no nonce at all (the device authorization grant has none);
    /// one that carries another nonce is refused all the same. [`Verified::nonce_matched`] says
    /// which it was, for the caller's own freshness rule.
    pub nonce_may_be_absent: bool,
    /// Longest ago the person may have signed in (`auth_time`, then required).
    pub max_auth_age: Option<Duration>,
}

/// A verified token's claims.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// `sub`.
    pub subject: String,
    /// `iat`, seconds since the epoch (0 when absent).
    pub issued_at: i64,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `auth_time`, when present.
    pub auth_time: Option<i64>,
    /// Whether the token carried the expected nonce (false when it carried none and that was
    /// allowed).
    pub nonce_matched: bool,
    /// Every claim.
    pub claims: Map<String, Value>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Verifier {
    /// A verifier of `issuer`'s tokens signed with its `keys`, RS256 and ES256 by default.
    pub fn new(issuer: impl Into<String>, keys: Arc<KeySet>) -> Self {
        Self {
            issuer: issuer.into(),
            keys,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: Duration::from_secs(30),
        }
    }

    /// Accepts these algorithms instead; symmetric ones are dropped.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms
            .iter()
            .copied()
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` for `expect`.
    pub async fn verify(&self, token: &str, expect: &Expectations) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "{} bytes, at most {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.keys.key(header.kid.as_deref()).await?;
        // A key published for one algorithm verifies nothing else.
        if let Some(published) = key.jwk.common.key_algorithm
            && format!("{published:?}") != format!("{:?}", header.alg)
        {
            return Err(TokenError::Algorithm(format!(
                "{:?} with a key published for {published:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&expect.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let data = decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(0);
        let now = now();
        let issued_at = number("iat").unwrap_or(0);
        if issued_at > now + leeway {
            return Err(TokenError::Invalid("issued in the future".into()));
        }
        if expect.check_authorized_party {
            let audiences = match claims.get("aud") {
                Some(Value::Array(list)) => list.len(),
                _ => 1,
            };
            match claims.get("azp").and_then(Value::as_str) {
                Some(azp) if azp != expect.audience => {
                    return Err(TokenError::Context(format!(
                        "issued to another client ({azp})"
                    )));
                }
                None if audiences > 1 => {
                    return Err(TokenError::Context(
                        "several audiences and no authorised party".into(),
                    ));
                }
                _ => {}
            }
        }
        let nonce_matched = match (&expect.nonce, claims.get("nonce")) {
            (None, _) => false,
            (Some(expected), Some(Value::String(got))) if got == expected => true,
            (Some(_), None) if expect.nonce_may_be_absent => false,
            (Some(_), _) => {
                return Err(TokenError::Context(
                    "it was not issued for this sign-in (nonce)".into(),
                ));
            }
        };
        let auth_time = number("auth_time");
        if let Some(max_age) = expect.max_auth_age {
            let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            match auth_time {
                Some(at) if now - at <= max_age + leeway => {}
                Some(_) => {
                    return Err(TokenError::Context(
                        "the sign-in behind it is too old".into(),
                    ));
                }
                None => {
                    return Err(TokenError::Context(
                        "it does not say when the person signed in (auth_time)".into(),
                    ));
                }
            }
        }
        Ok(Verified {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            issued_at,
            expires_at: number("exp").unwrap_or(0),
            auth_time,
            nonce_matched,
            claims,
        })
    }
}
