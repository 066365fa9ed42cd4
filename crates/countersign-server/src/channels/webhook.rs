//! The generic webhook, signed per the Standard Webhooks specification: `webhook-id` (the same
//! on every attempt, so receivers deduplicate), `webhook-timestamp` (Unix seconds of this
//! attempt, so receivers refuse replays), and `webhook-signature`: `v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body` under the secret's bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::Notice;

/// A webhook signing secret: the bytes after `whsec_`.
pub struct Secret(ring::hmac::Key);

impl Secret {
    /// Parses `whsec_<base64>` (24 to 64 bytes, as the specification asks).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("the secret must start with whsec_")?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| "the secret after whsec_ must be base64")?;
        if !(24..=64).contains(&bytes.len()) {
            return Err("the secret must be 24 to 64 bytes");
        }
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes)))
    }

    /// The `webhook-signature` header's value for `body` sent as `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        let tag = ring::hmac::sign(&self.0, &content);
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

/// The webhook body: the specification's envelope (`type`, `timestamp`, `data`).
pub fn payload(notice: &Notice) -> Value {
    json!({
        "type": notice.kind.name(),
        "timestamp": notice.occurred_at,
        "data": notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_specifications_example() {
        // The example in the Standard Webhooks specification's README (verify.md): secret,
        // id, timestamp and body as given there, and the signature it shows.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
    }
}
