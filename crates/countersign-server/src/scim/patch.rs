//! Applying a SCIM PATCH (RFC 7644 §3.5.2) to a resource's JSON. The result is then read like
//! a PUT body, so a PATCH is held to exactly the rules of a replacement. Paths are parsed by
//! `scim_v2`; names ignore case. Directories differ in how they spell operations: `Replace`
//! with a value object whose keys are paths (Entra ID), `remove` of `members` with the values
//! to remove, booleans as strings — all are taken.

use scim_v2::filter::{AttrPath, PatchPath, ValFilter};
use scim_v2::models::others::{OperationTarget, PatchOp, PatchOperation};
use serde_json::{Map, Value};

use super::ScimError;
use super::filter::element_matches;
use super::resources::{GROUP, USER, get, take};

/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies every operation of `patch` to `resource`, in order; all or nothing.
pub fn apply(resource: &mut Map<String, Value>, patch: PatchOp) -> Result<(), ScimError> {
    if patch.operations.is_empty() {
        return Err(ScimError::invalid_value(
            "a PATCH needs at least one operation",
        ));
    }
    if patch.operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "a PATCH may carry at most {MAX_OPERATIONS} operations"
        )));
    }
    for operation in patch.operations {
        match operation {
            PatchOperation::Add(target) => apply_target(resource, Op::Add, target)?,
            PatchOperation::Replace(target) => apply_target(resource, Op::Replace, target)?,
            PatchOperation::Remove { path, value } => at_path(resource, Op::Remove, &path, value)?,
        }
    }
    Ok(())
}

fn apply_target(
    resource: &mut Map<String, Value>,
    op: Op,
    target: OperationTarget,
) -> Result<(), ScimError> {
    match target {
        OperationTarget::WithPath { path, value } => at_path(resource, op, &path, Some(value)),
        OperationTarget::WithoutPath { value } => {
            for (key, v) in value {
                // A key may itself be a path ("name.givenName", an extension's attribute).
                match key.parse::<PatchPath>() {
                    Ok(path) => at_path(resource, op, &path, Some(v))?,
                    Err(_) => set(resource, &key, op, v),
                }
            }
            Ok(())
        }
    }
}

/// The object holding `path`'s attribute, created when an add or replace needs it.
fn scope<'a>(
    resource: &'a mut Map<String, Value>,
    path: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    match path.uri.as_deref() {
        None => Some(resource),
        Some(uri) if uri.eq_ignore_ascii_case(USER) || uri.eq_ignore_ascii_case(GROUP) => {
            Some(resource)
        }
        Some(uri) => {
            let key = resource
                .keys()
                .find(|k| k.eq_ignore_ascii_case(uri))
                .cloned();
            let key = match key {
                Some(k) => k,
                None if create => {
                    resource.insert(uri.to_owned(), Value::Object(Map::new()));
                    uri.to_owned()
                }
                None => return None,
            };
            resource.get_mut(&key).and_then(Value::as_object_mut)
        }
    }
}

fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Adds or replaces `name` in `object`: an add to a list appends (each value once), an add
/// of an object merges into an object.
fn set(object: &mut Map<String, Value>, name: &str, op: Op, value: Value) {
    let key = key_of(object, name);
    match (op, object.get_mut(&key), value) {
        (Op::Add, Some(Value::Array(items)), Value::Array(more)) => {
            for v in more {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
        }
        (Op::Add, Some(Value::Array(items)), one) => {
            if !items.contains(&one) {
                items.push(one);
            }
        }
        (Op::Add, Some(Value::Object(existing)), Value::Object(more)) => {
            for (k, v) in more {
                let k = key_of(existing, &k);
                existing.insert(k, v);
            }
        }
        (_, _, value) => {
            object.insert(key, value);
        }
    }
}

fn value_of(element: &Value) -> Option<&Value> {
    element.as_object().and_then(|o| get(o, "value"))
}

fn at_path(
    resource: &mut Map<String, Value>,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
) -> Result<(), ScimError> {
    match path {
        PatchPath::Attr(attr) => {
            let Some(object) = scope(resource, attr, op != Op::Remove) else {
                return Ok(());
            };
            match (&attr.sub_attr, op) {
                (None, Op::Remove) => {
                    let wanted = value.as_ref().and_then(Value::as_array);
                    match (wanted, object.get_mut(&key_of(object, &attr.name))) {
                        // Remove these values from a list (how Entra ID removes members).
                        (Some(wanted), Some(Value::Array(items))) => {
                            let gone: Vec<&Value> = wanted.iter().filter_map(value_of).collect();
                            items.retain(|item| value_of(item).is_none_or(|v| !gone.contains(&v)));
                        }
                        _ => {
                            take(object, &attr.name);
                        }
                    }
                }
                (None, op) => set(object, &attr.name, op, value.unwrap_or(Value::Null)),
                (Some(sub), Op::Remove) => {
                    if let Some(Value::Object(inner)) = object.get_mut(&key_of(object, &attr.name))
                    {
                        take(inner, sub);
                    }
                }
                (Some(sub), op) => {
                    let key = key_of(object, &attr.name);
                    let inner = object
                        .entry(key)
                        .or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(inner) = inner else {
                        return Err(ScimError::invalid_path(format!(
                            "{} has no sub-attributes",
                            attr.name
                        )));
                    };
                    set(inner, sub, op, value.unwrap_or(Value::Null));
                }
            }
            Ok(())
        }
        PatchPath::Value(vp) => {
            let object = scope(resource, &vp.attr, op != Op::Remove)
                .ok_or_else(|| ScimError::no_target(format!("{} has no values", vp.attr)))?;
            let key = key_of(object, &vp.attr.name);
            let items = match object.get_mut(&key) {
                Some(Value::Array(items)) => items,
                _ if op == Op::Remove => return Ok(()),
                _ => return Err(ScimError::no_target(format!("{} has no values", vp.attr))),
            };
            on_matching(items, &vp.filter, vp.sub_attr.as_deref(), op, value)
        }
    }
}

fn on_matching(
    items: &mut Vec<Value>,
    filter: &ValFilter,
    sub_attr: Option<&str>,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let matched = items.iter().filter(|v| element_matches(filter, v)).count();
    match (op, sub_attr) {
        (Op::Remove, None) => items.retain(|v| !element_matches(filter, v)),
        (Op::Remove, Some(sub)) => {
            for item in items.iter_mut().filter(|v| element_matches(filter, v)) {
                if let Value::Object(o) = item {
                    take(o, sub);
                }
            }
        }
        (_, _) if matched == 0 => {
            return Err(ScimError::no_target(
                "no value matches the path's filter".to_owned(),
            ));
        }
        (op, None) => {
            let value = value.unwrap_or(Value::Null);
            for item in items.iter_mut().filter(|v| element_matches(filter, v)) {
                match (op, item, &value) {
                    (Op::Add, Value::Object(o), Value::Object(more)) => {
                        for (k, v) in more {
                            let k = key_of(o, k);
                            o.insert(k, v.clone());
                        }
                    }
                    (_, item, value) => *item = value.clone(),
                }
            }
        }
        (op, Some(sub)) => {
            let value = value.unwrap_or(Value::Null);
            for item in items.iter_mut().filter(|v| element_matches(filter, v)) {
                if let Value::Object(o) = item {
                    set(o, sub, op, value.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(resource: Value, ops: Value) -> Result<Value, ScimError> {
        let Value::Object(mut object) = resource else {
            panic!("object")
        };
        let patch: PatchOp = serde_json::from_value(
            json!({"schemas": [super::super::resources::PATCH_OP], "Operations": ops}),
        )
        .expect("patch parses");
        apply(&mut object, patch)?;
        Ok(Value::Object(object))
    }

    #[test]
    fn entra_style_replace_without_path_sets_each_named_attribute() {
        let out = patched(
            json!({"userName": "a", "active": true, "name": {"givenName": "A"}}),
            json!([{"op": "Replace", "value": {"active": false, "name.familyName": "B"}}]),
        )
        .expect("applies");
        assert_eq!(out["active"], json!(false));
        assert_eq!(out["name"], json!({"givenName": "A", "familyName": "B"}));
    }

    #[test]
    fn members_are_added_once_and_removed_by_filter_or_by_value() {
        let group = json!({"displayName": "sec", "members": [{"value": "1"}, {"value": "2"}]});
        let out = patched(
            group,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "2"}, {"value": "3"}]},
                {"op": "remove", "path": "members[value eq \"1\"]"},
            ]),
        )
        .expect("applies");
        assert_eq!(out["members"], json!([{"value": "2"}, {"value": "3"}]));
        let out = patched(
            out,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "3"}]}]),
        )
        .expect("applies");
        assert_eq!(out["members"], json!([{"value": "2"}]));
    }

    #[test]
    fn replacing_a_value_no_filter_matches_is_an_error() {
        let err = patched(
            json!({"userName": "a", "emails": [{"value": "a@x", "type": "work"}]}),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@x"}]),
        )
        .expect_err("refused");
        assert_eq!(err.scim_type, Some("noTarget"));
    }

    #[test]
    fn a_sub_attribute_of_matching_values_is_replaced() {
        let out = patched(
            json!({"userName": "a", "emails": [{"value": "a@x", "type": "work"}, {"value": "h@x", "type": "home"}]}),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@x"}]),
        )
        .expect("applies");
        assert_eq!(out["emails"][0]["value"], json!("new@x"));
        assert_eq!(out["emails"][1]["value"], json!("h@x"));
    }
}
