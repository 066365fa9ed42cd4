//! Evaluating SCIM filters (RFC 7644 §3.4.2.2) over a resource's JSON. Parsing is `scim_v2`'s
//! (with its depth limit); this module decides what a parsed filter selects. Attribute names
//! ignore case; string comparisons ignore case except for `id` and `externalId`, which are
//! case-exact; a multi-valued attribute matches when any of its values does.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::{Map, Value};

use super::resources::{GROUP, USER, get};

/// Whether `resource` is selected by `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::Attr(exp) => attr_matches(exp, resource),
        Filter::ValuePath(vp) => values_at(resource, &vp.attr)
            .iter()
            .any(|v| element_matches(&vp.filter, v)),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
    }
}

/// Whether one value of a multi-valued attribute is selected by a bracketed filter.
pub fn element_matches(filter: &ValFilter, element: &Value) -> bool {
    match filter {
        ValFilter::Attr(exp) => attr_matches(exp, element),
        ValFilter::Not(inner) => !element_matches(inner, element),
        ValFilter::And(a, b) => element_matches(a, element) && element_matches(b, element),
        ValFilter::Or(a, b) => element_matches(a, element) || element_matches(b, element),
    }
}

/// The object holding `path`'s attribute: the resource itself for the core schemas, or the
/// extension's object.
fn scope<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Map<String, Value>> {
    let object = resource.as_object()?;
    match path.uri.as_deref() {
        None => Some(object),
        Some(uri) if uri.eq_ignore_ascii_case(USER) || uri.eq_ignore_ascii_case(GROUP) => {
            Some(object)
        }
        Some(uri) => get(object, uri).and_then(Value::as_object),
    }
}

/// Every value `path` names in `resource` (flattening multi-valued attributes).
fn values_at<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(object) = scope(resource, path) else {
        return Vec::new();
    };
    let Some(top) = get(object, &path.name) else {
        return Vec::new();
    };
    let tops: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub_attr {
        None => tops,
        Some(sub) => tops
            .into_iter()
            .filter_map(|t| t.as_object().and_then(|o| get(o, sub)))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect(),
    }
}

fn case_exact(path: &AttrPath) -> bool {
    path.sub_attr.is_none()
        && (path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId"))
}

fn attr_matches(exp: &AttrExp, resource: &Value) -> bool {
    match exp {
        AttrExp::Present(path) => values_at(resource, path).iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        }),
        AttrExp::Comparison(path, op, value) => {
            let exact = case_exact(path);
            values_at(resource, path)
                .iter()
                .any(|v| compare(v, op, value, exact))
        }
    }
}

fn compare(actual: &Value, op: &CompareOp, wanted: &CompValue, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (actual, wanted) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = if exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            return match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            };
        }
        (Value::Bool(a), CompValue::True) => Some(a.cmp(&true)),
        (Value::Bool(a), CompValue::False) => Some(a.cmp(&false)),
        (Value::Number(a), CompValue::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::Null, CompValue::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
        (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
        (CompareOp::Ne, None) => true,
        (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
        (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        (CompareOp::Lt, Some(o)) => o == Ordering::Less,
        (CompareOp::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "userName": "Alice@Example.com",
            "externalId": "00uA1",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.com", "type": "work"}, {"value": "a@home.example", "type": "home"}],
            "meta": {"lastModified": "2026-11-29T10:00:00.000Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Security"},
        })
    }

    fn select(text: &str) -> bool {
        let filter: Filter = text.parse().expect("filter parses");
        matches(&filter, &user())
    }

    #[test]
    fn user_name_compares_ignoring_case_and_external_id_exactly() {
        assert!(select(r#"userName eq "alice@example.com""#));
        assert!(select(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#));
        assert!(select(r#"externalId eq "00uA1""#));
        assert!(!select(r#"externalId eq "00ua1""#));
    }

    #[test]
    fn multi_valued_and_bracketed_filters_look_at_each_value() {
        assert!(select(r#"emails.value ew "@home.example""#));
        assert!(select(r#"emails[type eq "work" and value sw "alice"]"#));
        assert!(!select(r#"emails[type eq "home" and value sw "alice"]"#));
    }

    #[test]
    fn logic_presence_booleans_dates_and_extensions() {
        assert!(select(
            r#"active eq true and not (name.familyName eq "Hatter")"#
        ));
        assert!(!select("active eq false"));
        assert!(select("name.givenName pr"));
        assert!(!select("title pr"));
        assert!(select(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(select(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "security""#
        ));
        assert!(select(r#"userName eq "nobody" or userName co "alice""#));
    }
}
