//! OpenAPI schemas of the types whose JSON form is a string with its own rules (hex digests,
//! base64 keys and signatures, the one accepted timestamp spelling, validated identifiers) or
//! a free-form object.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

fn string(description: &str, pattern: Option<&str>, format: Option<SchemaFormat>) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description));
    if let Some(p) = pattern {
        b = b.pattern(Some(p));
    }
    if let Some(f) = format {
        b = b.format(Some(f));
    }
    RefOr::T(Schema::Object(b.build()))
}

macro_rules! string_schema {
    ($ty:ty, $description:expr, $pattern:expr, $format:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($description, $pattern, $format)
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

string_schema!(
    crate::Digest,
    "SHA-256, 64 lowercase hex characters",
    Some("^[0-9a-f]{64}$"),
    None
);
string_schema!(
    crate::KeyId,
    "SHA-256 of the key's DER SubjectPublicKeyInfo, lowercase hex",
    Some("^[0-9a-f]{64}$"),
    None
);
string_schema!(
    crate::Nonce,
    "16 random bytes, 32 lowercase hex characters",
    Some("^[0-9a-f]{32}$"),
    None
);
string_schema!(
    crate::PublicKey,
    "P-256 public key: DER SubjectPublicKeyInfo, base64",
    None,
    None
);
string_schema!(
    crate::Signature,
    "ECDSA P-256/SHA-256 signature: DER ECDSA-Sig-Value, base64",
    None,
    None
);
string_schema!(
    crate::Timestamp,
    "UTC instant, exactly YYYY-MM-DDTHH:MM:SS.mmmZ",
    Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"),
    Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))
);
string_schema!(
    crate::ActionType,
    "Dotted lowercase action type, e.g. db.export",
    Some(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$"),
    None
);
string_schema!(
    crate::Tag,
    "Classification tag, e.g. pii",
    Some("^[a-z0-9][a-z0-9_:-]{0,63}$"),
    None
);

impl utoipa::PartialSchema for crate::canonical::StrictObject {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "Free-form JSON object: unique keys, integers within ±(2^53−1), at most 32 levels deep (the whole body counts), no control characters but tab, newline and carriage return in its strings",
                ))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for crate::canonical::StrictObject {}
