//! Conversions between stored columns and core types, shared by the SQL backends. A column
//! that does not parse is corruption: it is reported, never skipped or defaulted.

use crate::StoreError;
use countersign_core::{Digest, KeyId, KeyKind, Signature, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A stored value that does not parse.
pub fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// Milliseconds since the epoch as a timestamp.
pub fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).map_err(|e| corrupt("timestamp", e))
}

/// An optional timestamp column.
pub fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(ts).transpose()
}

/// A UUID column.
pub fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt("uuid", e))
}

/// A hex digest column.
pub fn digest(text: &str) -> Result<Digest, StoreError> {
    text.parse().map_err(|e| corrupt("digest", e))
}

/// A key id column.
pub fn key_id(text: &str) -> Result<KeyId, StoreError> {
    text.parse().map_err(|e| corrupt("key id", e))
}

/// A DER signature column.
pub fn signature(der: &[u8]) -> Result<Signature, StoreError> {
    Signature::from_der(der).map_err(|e| corrupt("signature", e))
}

/// A JSON column.
pub fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// Canonical JSON text of a value.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    let bytes = countersign_core::to_canonical_vec(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A serde unit-variant enum as its bare string (`"pending"` → `pending`).
pub fn enum_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Backend(
            "enum does not encode as a string".into(),
        )),
    }
}

/// A serde unit-variant enum from its bare string.
pub fn enum_from<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| corrupt(what, e))
}

/// A key kind column.
pub fn key_kind(text: &str) -> Result<KeyKind, StoreError> {
    enum_from("key kind", text)
}

/// An API token's role column.
pub fn token_role(text: &str) -> Result<crate::TokenRole, StoreError> {
    crate::TokenRole::parse(text).ok_or_else(|| corrupt("token role", text))
}
