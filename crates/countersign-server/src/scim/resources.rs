//! SCIM Users and Groups (RFC 7643) as JSON, to and from what the directory store keeps.

use countersign_core::Timestamp;
use countersign_store::{DirectoryGroup, DirectoryUser};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ScimError;

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// List responses.
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH requests.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Error responses.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Largest stored attribute set of one user.
pub const MAX_USER_BYTES: usize = 64 * 1024;
/// Most members one group may have.
pub const MAX_MEMBERS: usize = 50_000;

/// The weak ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

fn time(t: Timestamp) -> String {
    t.to_string()
}

/// Looks up `name` in an object ignoring case, as SCIM attribute names are.
pub fn get<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Removes `name` from an object ignoring case; returns what was there.
pub fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))?
        .clone();
    object.remove(&key)
}

/// What a User body says, checked: the approver it names and what is stored of it.
pub struct UserInput {
    /// The approver id: `userName`, folded.
    pub approver_id: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `active` (true when absent).
    pub active: bool,
    /// The name to show.
    pub display_name: String,
    /// Everything else, stored and returned as sent.
    pub attributes: Map<String, Value>,
}

fn text(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match get(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
    }
}

/// Reads a User body (POST, PUT, or the result of a PATCH).
pub fn user_input(body: Value) -> Result<UserInput, ScimError> {
    let Value::Object(mut object) = body else {
        return Err(ScimError::invalid_syntax("a User must be a JSON object"));
    };
    // Read-only or ours: never taken from the client (RFC 7643 §2.2), and a password never
    // stored.
    for ignored in ["id", "meta", "groups", "schemas", "password"] {
        take(&mut object, ignored);
    }
    let user_name = text(&object, "userName")?
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    // The same folding as a sign-in's identifying claim, so both name one approver.
    let approver_id = user_name.to_ascii_lowercase();
    countersign_core::identifier::check("userName", &approver_id)
        .map_err(|e| ScimError::invalid_value(e.to_string()))?;
    let external_id = text(&object, "externalId")?;
    take(&mut object, "externalId");
    let active = match take(&mut object, "active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        // Some directories send booleans as strings.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ScimError::invalid_value("active must be a boolean")),
    };
    let formatted = get(&object, "name")
        .and_then(Value::as_object)
        .and_then(|n| {
            let given = get(n, "givenName").and_then(Value::as_str);
            let family = get(n, "familyName").and_then(Value::as_str);
            get(n, "formatted")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| match (given, family) {
                    (Some(g), Some(f)) => Some(format!("{g} {f}")),
                    (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
                    (None, None) => None,
                })
        });
    let display_name = text(&object, "displayName")?
        .or(formatted)
        .unwrap_or_else(|| user_name.clone());
    let display_name: String = display_name.trim().chars().take(256).collect();
    countersign_core::validate::text("displayName", &display_name, 256, false)
        .map_err(|e| ScimError::invalid_value(e.to_string()))?;
    let size = serde_json::to_vec(&object)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_USER_BYTES {
        return Err(ScimError::invalid_value(format!(
            "a User's attributes may take at most {MAX_USER_BYTES} bytes"
        )));
    }
    Ok(UserInput {
        approver_id,
        external_id,
        active,
        display_name,
        attributes: object,
    })
}

/// A user as SCIM shows it; `groups` are the directory groups they are in, as `(id, name)`.
pub fn user_json(base: &str, u: &DirectoryUser, groups: &[(Uuid, String)]) -> Value {
    let mut object: Map<String, Value> = serde_json::from_str(&u.attributes).unwrap_or_default();
    let mut schemas = vec![Value::from(USER)];
    for key in object.keys() {
        if key.starts_with("urn:") {
            schemas.push(Value::from(key.clone()));
        }
    }
    let location = format!("{base}/Users/{}", u.id);
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert("id".into(), Value::from(u.id.to_string()));
    if let Some(e) = &u.external_id {
        object.insert("externalId".into(), Value::from(e.clone()));
    }
    object.insert("active".into(), Value::Bool(u.active));
    if !groups.is_empty() {
        let list = groups
            .iter()
            .map(|(id, name)| {
                json!({"value": id.to_string(), "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
            })
            .collect();
        object.insert("groups".into(), Value::Array(list));
    }
    object.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": time(u.created_at),
            "lastModified": time(u.updated_at),
            "location": location,
            "version": etag(u.version),
        }),
    );
    Value::Object(object)
}

/// What a Group body says, checked.
pub struct GroupInput {
    /// `displayName`.
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// Member user ids, each once, in the order given.
    pub members: Vec<Uuid>,
}

/// Reads a Group body (POST, PUT, or the result of a PATCH).
pub fn group_input(body: Value) -> Result<GroupInput, ScimError> {
    let Value::Object(object) = body else {
        return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
    };
    let display_name = text(&object, "displayName")?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    countersign_core::validate::text("displayName", &display_name, 256, false)
        .map_err(|e| ScimError::invalid_value(e.to_string()))?;
    let external_id = text(&object, "externalId")?;
    let mut members = Vec::new();
    match get(&object, "members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > MAX_MEMBERS {
                return Err(ScimError::invalid_value(format!(
                    "a group may have at most {MAX_MEMBERS} members"
                )));
            }
            for item in items {
                let member = item.as_object().ok_or_else(|| {
                    ScimError::invalid_value("each member must be an object with a value")
                })?;
                if let Some(kind) = get(member, "type").and_then(Value::as_str)
                    && !kind.eq_ignore_ascii_case("User")
                {
                    return Err(ScimError::invalid_value(
                        "only users may be members: nested groups are not supported",
                    ));
                }
                let value = get(member, "value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ScimError::invalid_value("each member needs a value (a user's id)")
                    })?;
                let id = Uuid::parse_str(value).map_err(|_| {
                    ScimError::invalid_value(format!("no user has the id {value:?}"))
                })?;
                if !members.contains(&id) {
                    members.push(id);
                }
            }
        }
        Some(_) => return Err(ScimError::invalid_value("members must be a list")),
    }
    Ok(GroupInput {
        display_name,
        external_id,
        members,
    })
}

/// A group as SCIM shows it; `names` gives each member's userName.
pub fn group_json(base: &str, g: &DirectoryGroup, names: &dyn Fn(Uuid) -> Option<String>) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|id| {
            let mut m = json!({"value": id.to_string(), "$ref": format!("{base}/Users/{id}"), "type": "User"});
            if let Some(name) = names(*id) {
                m["display"] = Value::from(name);
            }
            m
        })
        .collect();
    let mut object = json!({
        "schemas": [GROUP],
        "id": g.id.to_string(),
        "displayName": g.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": time(g.created_at),
            "lastModified": time(g.updated_at),
            "location": format!("{base}/Groups/{}", g.id),
            "version": etag(g.version),
        },
    });
    if let Some(e) = &g.external_id {
        object["externalId"] = Value::from(e.clone());
    }
    object
}

/// The userName a stored user was provisioned with.
pub fn user_name(u: &DirectoryUser) -> String {
    serde_json::from_str::<Map<String, Value>>(&u.attributes)
        .ok()
        .and_then(|a| {
            get(&a, "userName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| u.approver_id.clone())
}

/// `/ServiceProviderConfig`: what this service supports.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/countersign/countersign/blob/main/docs/identity.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": super::MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A SCIM token from `countersign admin scim-token`",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

/// `/ResourceTypes`.
pub fn resource_types(base: &str) -> Vec<Value> {
    [("User", "/Users", USER), ("Group", "/Groups", GROUP)]
        .into_iter()
        .map(|(name, endpoint, schema)| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": name,
                "name": name,
                "endpoint": endpoint,
                "schema": schema,
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
            })
        })
        .collect()
}

fn attribute(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    case_exact: bool,
) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": case_exact, "mutability": mutability, "returned": "default",
        "uniqueness": if name == "userName" { "server" } else { "none" },
    })
}

fn complex(name: &str, multi: bool, mutability: &str, sub: Vec<Value>) -> Value {
    json!({
        "name": name, "type": "complex", "multiValued": multi, "required": false,
        "mutability": mutability, "returned": "default", "uniqueness": "none", "subAttributes": sub,
    })
}

/// `/Schemas`: the attributes this service understands (others are kept as sent).
pub fn schemas(base: &str) -> Vec<Value> {
    let reference = |multi_name: &str| {
        vec![
            attribute("value", "string", false, false, "immutable", false),
            json!({"name": "$ref", "type": "reference", "referenceTypes": [multi_name], "multiValued": false, "required": false, "caseExact": false, "mutability": "immutable", "returned": "default", "uniqueness": "none"}),
            attribute("display", "string", false, false, "readOnly", false),
            attribute("type", "string", false, false, "immutable", false),
        ]
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER, "name": "User", "description": "An approver",
        "attributes": [
            attribute("userName", "string", false, true, "readWrite", false),
            complex("name", false, "readWrite", vec![
                attribute("formatted", "string", false, false, "readWrite", false),
                attribute("familyName", "string", false, false, "readWrite", false),
                attribute("givenName", "string", false, false, "readWrite", false),
            ]),
            attribute("displayName", "string", false, false, "readWrite", false),
            attribute("active", "boolean", false, false, "readWrite", false),
            complex("emails", true, "readWrite", vec![
                attribute("value", "string", false, false, "readWrite", false),
                attribute("type", "string", false, false, "readWrite", false),
                attribute("primary", "boolean", false, false, "readWrite", false),
            ]),
            complex("groups", true, "readOnly", reference("Group")),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER}")},
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP, "name": "Group", "description": "A group; mapped ones grant Countersign groups",
        "attributes": [
            attribute("displayName", "string", false, true, "readWrite", false),
            complex("members", true, "readWrite", reference("User")),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP}")},
    });
    vec![user, group]
}
