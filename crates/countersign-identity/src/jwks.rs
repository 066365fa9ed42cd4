//! An issuer's signing keys (its JWKS), kept current: fetched when first needed, fetched again
//! when a token names a key not in the set (the issuer rotated) — at most once per
//! `min_refresh`, so tokens with made-up key ids cannot make the service hammer the issuer — and
//! when the set is older than `max_age` (so a key the issuer withdrew stops being trusted). When
//! the issuer cannot be reached, the last good set keeps working.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::discovery::fetch_json;

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The issuer publishes no key with that id (after a refresh, or too soon to refresh).
    #[error("the issuer publishes no signing key {0:?}")]
    Unknown(String),
    /// The token names no key and the issuer publishes several.
    #[error("the token names no signing key and the issuer publishes several")]
    Ambiguous,
    /// The keys could not be fetched and none are known yet.
    #[error("the issuer's signing keys could not be fetched: {0}")]
    Unreachable(String),
}

/// One usable key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) decoding: DecodingKey,
    pub(crate) jwk: Jwk,
}

#[derive(Default)]
struct Held {
    keys: HashMap<String, Key>,
    /// Keys without an id, in publication order.
    unnamed: Vec<Key>,
    fetched: Option<Instant>,
    /// When the last fetch was tried (success or not), to bound refreshes.
    tried: Option<Instant>,
}

/// An issuer's key set.
pub struct KeySet {
    http: reqwest::Client,
    uri: String,
    min_refresh: Duration,
    max_age: Duration,
    held: RwLock<Held>,
    fetching: Mutex<()>,
}

impl KeySet {
    /// The key set published at `uri`, refreshed at most every 30 s and after 10 min.
    pub fn new(http: reqwest::Client, uri: impl Into<String>) -> Self {
        Self::with_intervals(http, uri, Duration::from_secs(30), Duration::from_secs(600))
    }

    /// [`KeySet::new`] with other refresh intervals (tests use short ones).
    pub fn with_intervals(
        http: reqwest::Client,
        uri: impl Into<String>,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            http,
            uri: uri.into(),
            min_refresh,
            max_age,
            held: RwLock::default(),
            fetching: Mutex::new(()),
        }
    }

    /// The key `kid` names (or the only key, when it names none).
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Key, KeyError> {
        {
            let held = self.held.read().await;
            if let Some(found) = pick(&held, kid)?
                && held.fetched.is_some_and(|at| at.elapsed() < self.max_age)
            {
                return Ok(found);
            }
        }
        // Unknown, or known from a set that has grown old: ask the issuer (within the bound).
        self.refresh().await;
        let held = self.held.read().await;
        match pick(&held, kid)? {
            Some(found) => Ok(found),
            None if held.fetched.is_none() => {
                Err(KeyError::Unreachable("no successful fetch yet".to_owned()))
            }
            None => Err(KeyError::Unknown(kid.unwrap_or_default().to_owned())),
        }
    }

    /// Fetches the set again unless another caller just did, or one was tried within
    /// `min_refresh`. A failed fetch keeps the last good set.
    async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        if self
            .held
            .read()
            .await
            .tried
            .is_some_and(|at| at.elapsed() < self.min_refresh)
        {
            return;
        }
        let fetched = fetch_json::<Value>(&self.http, &self.uri).await;
        let mut held = self.held.write().await;
        held.tried = Some(Instant::now());
        match fetched {
            Ok(document) => {
                let (keys, unnamed) = parse(&document);
                held.keys = keys;
                held.unnamed = unnamed;
                held.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(uri = %self.uri, error = %e, "signing keys could not be refreshed; keeping the last good set");
            }
        }
    }
}

fn pick(held: &Held, kid: Option<&str>) -> Result<Option<Key>, KeyError> {
    Ok(match kid {
        Some(kid) => held.keys.get(kid).cloned(),
        None => {
            let all: Vec<&Key> = held.keys.values().chain(held.unnamed.iter()).collect();
            match all.as_slice() {
                [] => None,
                [only] => Some((*only).clone()),
                _ => return Err(KeyError::Ambiguous),
            }
        }
    })
}

/// The usable signing keys of a JWKS document: each key on its own, so one the library cannot
/// use (an unknown type, an encryption key) does not hide the others.
fn parse(document: &Value) -> (HashMap<String, Key>, Vec<Key>) {
    let mut keys = HashMap::new();
    let mut unnamed = Vec::new();
    for item in document
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        // A symmetric key is never a published verification key: accepting one would let
        // anyone who read the JWKS sign tokens.
        if matches!(
            jwk.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
        ) {
            continue;
        }
        let key = Key { decoding, jwk };
        match key.jwk.common.key_id.clone() {
            Some(kid) => {
                keys.insert(kid, key);
            }
            None => unnamed.push(key),
        }
    }
    (keys, unnamed)
}
