//! RFC 8785 JSON Canonicalization Scheme (JCS): the one byte string for a JSON value that
//! every digest and signature in Countersign is computed over.
//!
//! The encoding itself is `serde_jcs` (ECMAScript number formatting through `ryu-js`, keys
//! sorted by UTF-16 code units). Around it, this module enforces the I-JSON rules RFC 8785
//! relies on and `serde_json` would otherwise let through silently: integers must be exact
//! binary64 values inside I-JSON's range (|n| ≤ 2^53−1, RFC 7493 §2.2) and object keys must be
//! unique. Either would let two parties
//! see different values behind the same digest.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// Largest integer magnitude I-JSON allows: 2^53−1, the last one whose neighbours binary64
/// also represents exactly (RFC 7493 §2.2; independent RFC 8785 implementations refuse 2^53).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical encoding.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// An integer beyond ±(2^53−1), which JCS would silently round.
    #[error("number {0} at {1} is outside ±(2^53−1) and cannot be represented exactly")]
    UnsafeInteger(String, String),
    /// A non-finite number (NaN, ±Infinity) has no JSON form.
    #[error("non-finite number at {0}")]
    NonFinite(String),
    /// The value could not be turned into JSON at all.
    #[error("not representable as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The RFC 8785 bytes of `value`.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value)?;
    check_numbers(&value, &mut String::from("$"))?;
    Ok(serde_jcs::to_vec(&value)?)
}

/// Parses JSON text strictly (unique keys, exact integers, the intake budget of
/// [`crate::json_budget`]) and returns its RFC 8785 bytes.
pub fn canonicalize_text(text: &str) -> Result<Vec<u8>, CanonicalError> {
    crate::json_budget::check(text.as_bytes())
        .map_err(|e| CanonicalError::Json(serde::de::Error::custom(e)))?;
    let value: StrictValue = serde_json::from_str(text)?;
    to_canonical_vec(&value.0)
}

fn check_numbers(value: &Value, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => check_number(n, path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

fn check_number(n: &Number, path: &str) -> Result<(), CanonicalError> {
    let unsafe_integer = || CanonicalError::UnsafeInteger(n.to_string(), path.to_owned());
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(unsafe_integer());
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(unsafe_integer());
        }
    } else if !n.as_f64().is_some_and(f64::is_finite) {
        return Err(CanonicalError::NonFinite(path.to_owned()));
    }
    Ok(())
}

/// A JSON value parsed under I-JSON rules: duplicate object keys and integers beyond ±(2^53−1)
/// are errors instead of being silently resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// A JSON object parsed under the same rules as [`StrictValue`]; agents' free-form
/// `parameters` and `context` use it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StrictObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(StrictVisitor)? {
            Value::Object(map) => Ok(StrictObject(map)),
            other => Err(de::Error::custom(format!(
                "expected a JSON object, found {}",
                kind_of(&other)
            ))),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is outside ±(2^53−1)")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is outside ±(2^53−1)")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = access.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(item) = access.next_value()?;
            map.insert(key, item);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(text: &str) -> String {
        let bytes = canonicalize_text(text).expect("canonicalizes");
        String::from_utf8(bytes).expect("utf-8")
    }

    /// RFC 8785 §3.2.2: the sample with literals, numbers and string escapes.
    #[test]
    fn rfc8785_section_3_2_2_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = concat!(
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        assert_eq!(jcs(input), expected);
    }

    /// RFC 8785 §3.2.3: property sorting by UTF-16 code units, not code points.
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let got = jcs(input);
        let values: Vec<&str> = got
            .split("\":\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default())
            .collect();
        assert_eq!(
            values,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh",
            ]
        );
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript spellings.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in cases {
            let value = f64::from_bits(bits);
            let got = String::from_utf8(to_canonical_vec(&value).expect("finite")).expect("utf-8");
            assert_eq!(got, expected, "bits {bits:016x}");
        }
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        // serde_json turns NaN into null on the way to a Value; JCS forbids both spellings,
        // so the error must come from the check, not the output.
        assert!(serde_jcs::to_vec(&f64::NAN).is_err());
        assert!(serde_jcs::to_vec(&f64::INFINITY).is_err());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = canonicalize_text(r#"{"a":1,"b":{"c":1,"c":2}}"#).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate key \"c\""), "{err}");
    }

    #[test]
    fn integers_outside_i_json_range_are_rejected() {
        assert!(canonicalize_text("9007199254740991").is_ok());
        assert!(canonicalize_text("-9007199254740991").is_ok());
        assert!(canonicalize_text("9007199254740992").is_err());
        assert!(canonicalize_text("[-9007199254740992]").is_err());
        // Beyond 2^64 serde_json reads a float; the literal itself is refused.
        assert!(canonicalize_text("{\"n\":18446744073709551617}").is_err());
        let big = serde_json::json!({"n": 9007199254740992u64});
        let err = to_canonical_vec(&big).expect_err("unsafe");
        assert!(err.to_string().contains("$.n"), "{err}");
    }

    #[test]
    fn strict_object_rejects_non_objects() {
        let err = serde_json::from_str::<StrictObject>("[1]").expect_err("array");
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }
}
