//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2`, for the organisation's directory (Okta, Entra
//! ID, …) to provision approvers and groups with a SCIM token. Users are approvers (their
//! `userName`, folded, is the approver id, as a sign-in's identifying claim is); a group
//! counts as the Countersign group the `[scim] groups` map names for its `displayName`. What
//! each change does to keys, sessions and pending requests is [`crate::domain::directory`]'s.

mod filter;
mod patch;
pub mod resources;

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use countersign_store::{Conflict, DirectoryGroup, DirectoryUser, Expected, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::domain::{DomainError, directory};
use crate::state::AppState;
use resources::{ERROR, LIST};

/// Most resources one page lists.
pub const MAX_PAGE: usize = 200;
/// Times a change is recomputed when another replica changed the same record first.
const RETRIES: usize = 8;
/// Largest SCIM request body.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The `[scim]` configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Directory group (its `displayName`) → Countersign group; other groups grant nothing.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// The service's public URL (e.g. `https://countersign.example`), for `meta.location`;
    /// locations are relative without it.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl ScimConfig {
    /// Checks the map names Countersign groups by their one spelling.
    pub fn check(&self) -> Result<(), String> {
        for (theirs, ours) in &self.groups {
            countersign_core::identifier::check("scim.groups", ours)
                .map_err(|e| format!("[scim] groups maps {theirs:?} to {ours:?}: {e}"))?;
        }
        Ok(())
    }
}

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    /// HTTP status.
    pub status: StatusCode,
    /// The SCIM error type, when the RFC names one.
    pub scim_type: Option<&'static str>,
    /// For people.
    pub detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    /// A value breaks a rule.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }
    /// The body does not parse.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), detail)
    }
    /// A PATCH path that cannot apply.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidPath"), detail)
    }
    /// A PATCH path's filter matched nothing.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), detail)
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("{what} not found"))
    }
    fn precondition() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource changed since the version named in If-Match",
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = Value::from(t);
        }
        scim_json(self.status, &body, None)
    }
}

impl From<DomainError> for ScimError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Store(StoreError::Conflict(Conflict::Exists)) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "a resource with this userName or displayName exists already",
            ),
            DomainError::Store(StoreError::Conflict(Conflict::Stale)) => Self::precondition(),
            DomainError::Store(StoreError::NotFound(what)) | DomainError::NotFound(what) => {
                Self::not_found(what)
            }
            DomainError::Field(v) => Self::invalid_value(v.to_string()),
            DomainError::Invalid { message, .. } => Self::invalid_value(message),
            other => {
                let api = crate::error::ApiError::from(other);
                Self::new(api.status, None, api.message)
            }
        }
    }
}

fn scim_json(status: StatusCode, body: &Value, version: Option<u64>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    if let Some(v) = version
        && let Ok(tag) = HeaderValue::from_str(&resources::etag(v))
    {
        headers.insert(header::ETAG, tag);
    }
    response
}

/// The directory's SCIM client, by its token's name.
pub struct ScimAuth(String);

impl FromRequestParts<AppState> for ScimAuth {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        crate::auth::ScimClient::from_request_parts(parts, state)
            .await
            .map(|c| ScimAuth(c.0))
            .map_err(|e| ScimError::new(e.status, None, e.message))
    }
}

fn base(state: &AppState) -> String {
    let root = state
        .config
        .scim
        .public_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    format!("{root}/scim/v2")
}

/// What `If-Match` asks for: nothing, any version (`*`), or one of these.
enum IfMatch {
    Absent,
    Any,
    Versions(Vec<u64>),
}

fn versions_in(value: &str) -> Option<Vec<u64>> {
    value
        .split(',')
        .map(|tag| {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"').parse::<u64>().ok()
        })
        .collect()
}

fn if_match(headers: &HeaderMap) -> Result<IfMatch, ScimError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(IfMatch::Absent);
    };
    let value = value
        .to_str()
        .map_err(|_| ScimError::invalid_syntax("If-Match is not text"))?;
    if value.trim() == "*" {
        return Ok(IfMatch::Any);
    }
    // A tag this service never issued matches nothing.
    Ok(IfMatch::Versions(versions_in(value).unwrap_or_default()))
}

impl IfMatch {
    /// The write's expectation given the version just read.
    fn expect(&self, stored: u64) -> Result<Expected, ScimError> {
        match self {
            IfMatch::Versions(v) if !v.contains(&stored) => Err(ScimError::precondition()),
            IfMatch::Absent | IfMatch::Any | IfMatch::Versions(_) => Ok(Expected::Version(stored)),
        }
    }

    /// Whether a stale write may be recomputed on what is stored now.
    fn may_retry(&self) -> bool {
        !matches!(self, IfMatch::Versions(_))
    }
}

fn not_modified(headers: &HeaderMap, version: u64) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(versions_in)
        .is_some_and(|v| v.contains(&version))
}

/// 304: the client's copy (`If-None-Match`) is current.
fn unchanged(version: u64) -> Response {
    let mut r = scim_json(StatusCode::NOT_MODIFIED, &Value::Null, Some(version));
    *r.body_mut() = axum::body::Body::empty();
    r
}

fn parse_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

/// Every directory group each user is in, as `(id, name)`.
fn memberships(groups: &[DirectoryGroup]) -> HashMap<Uuid, Vec<(Uuid, String)>> {
    let mut of: HashMap<Uuid, Vec<(Uuid, String)>> = HashMap::new();
    for g in groups {
        for m in &g.members {
            of.entry(*m)
                .or_default()
                .push((g.id, g.display_name.clone()));
        }
    }
    of
}

async fn user_view(state: &AppState, u: &DirectoryUser) -> Result<Value, ScimError> {
    let groups = state
        .store
        .directory_groups()
        .await
        .map_err(DomainError::from)?;
    let of = memberships(&groups);
    Ok(resources::user_json(
        &base(state),
        u,
        of.get(&u.id).map(Vec::as_slice).unwrap_or_default(),
    ))
}

async fn group_view(state: &AppState, g: &DirectoryGroup) -> Result<Value, ScimError> {
    let users = state
        .store
        .directory_users()
        .await
        .map_err(DomainError::from)?;
    let names: HashMap<Uuid, String> = users
        .iter()
        .map(|u| (u.id, resources::user_name(u)))
        .collect();
    Ok(resources::group_json(&base(state), g, &|id| {
        names.get(&id).cloned()
    }))
}

/// The query of a list.
#[derive(Deserialize)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

fn number(name: &str, value: Option<&str>, default: i64) -> Result<i64, ScimError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
    }
}

/// Keeps only `attributes` (plus what is always returned) or drops `excludedAttributes`; top
/// level names, ignoring case.
fn project(resource: &mut Value, attributes: Option<&str>, excluded: Option<&str>) {
    let Value::Object(object) = resource else {
        return;
    };
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|n| {
                n.trim()
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .filter(|n| !n.is_empty())
            .collect()
    };
    let always = ["id", "schemas", "meta"];
    if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
        let keep = names(list);
        object.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            always.contains(&k.as_str()) || keep.contains(&k) || k.starts_with("urn:")
        });
    } else if let Some(list) = excluded {
        let drop = names(list);
        object.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            always.contains(&k.as_str()) || !drop.contains(&k)
        });
    }
}

fn list_response(mut all: Vec<Value>, query: &ListQuery) -> Result<Response, ScimError> {
    if let Some(text) = query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        let parsed: scim_v2::filter::Filter = text.parse().map_err(|e| {
            ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                format!("{e}"),
            )
        })?;
        all.retain(|r| filter::matches(&parsed, r));
    }
    let total = all.len();
    let start = number("startIndex", query.start_index.as_deref(), 1)?.max(1);
    let count = number("count", query.count.as_deref(), 100)?.clamp(0, MAX_PAGE as i64);
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let page: Vec<Value> = all
        .into_iter()
        .skip(skip)
        .take(usize::try_from(count).unwrap_or(0))
        .map(|mut r| {
            project(
                &mut r,
                query.attributes.as_deref(),
                query.excluded_attributes.as_deref(),
            );
            r
        })
        .collect();
    let body = json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    Ok(scim_json(StatusCode::OK, &body, None))
}

async fn list_users(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Query(query): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let users = state
        .store
        .directory_users()
        .await
        .map_err(DomainError::from)?;
    let groups = state
        .store
        .directory_groups()
        .await
        .map_err(DomainError::from)?;
    let of = memberships(&groups);
    let base = base(&state);
    let all = users
        .iter()
        .map(|u| {
            resources::user_json(
                &base,
                u,
                of.get(&u.id).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect();
    list_response(all, &query)
}

async fn list_groups(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Query(query): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let groups = state
        .store
        .directory_groups()
        .await
        .map_err(DomainError::from)?;
    let users = state
        .store
        .directory_users()
        .await
        .map_err(DomainError::from)?;
    let names: HashMap<Uuid, String> = users
        .iter()
        .map(|u| (u.id, resources::user_name(u)))
        .collect();
    let base = base(&state);
    let all = groups
        .iter()
        .map(|g| resources::group_json(&base, g, &|id| names.get(&id).cloned()))
        .collect();
    list_response(all, &query)
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| ScimError::not_found(what))
}

async fn stored_user(state: &AppState, id: Uuid) -> Result<DirectoryUser, ScimError> {
    state
        .store
        .directory_user(id)
        .await
        .map_err(DomainError::from)?
        .ok_or_else(|| ScimError::not_found("User"))
}

async fn stored_group(state: &AppState, id: Uuid) -> Result<DirectoryGroup, ScimError> {
    state
        .store
        .directory_group(id)
        .await
        .map_err(DomainError::from)?
        .ok_or_else(|| ScimError::not_found("Group"))
}

async fn get_user(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let u = stored_user(&state, parse_id(&id, "User")?).await?;
    if not_modified(&headers, u.version) {
        return Ok(unchanged(u.version));
    }
    let mut view = user_view(&state, &u).await?;
    project(
        &mut view,
        query.attributes.as_deref(),
        query.excluded_attributes.as_deref(),
    );
    Ok(scim_json(StatusCode::OK, &view, Some(u.version)))
}

async fn get_group(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let g = stored_group(&state, parse_id(&id, "Group")?).await?;
    if not_modified(&headers, g.version) {
        return Ok(unchanged(g.version));
    }
    let mut view = group_view(&state, &g).await?;
    project(
        &mut view,
        query.attributes.as_deref(),
        query.excluded_attributes.as_deref(),
    );
    Ok(scim_json(StatusCode::OK, &view, Some(g.version)))
}

fn user_record(
    input: &resources::UserInput,
    id: Uuid,
    version: u64,
    created_at: countersign_core::Timestamp,
    now: countersign_core::Timestamp,
) -> DirectoryUser {
    DirectoryUser {
        id,
        approver_id: input.approver_id.clone(),
        external_id: input.external_id.clone(),
        active: input.active,
        attributes: Value::Object(input.attributes.clone()).to_string(),
        version,
        created_at,
        updated_at: now,
    }
}

async fn create_user(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = resources::user_input(parse_body(&body)?)?;
    let _serial = state.directory_writes.lock().await;
    let now = state.now();
    let user = user_record(&input, Uuid::now_v7(), 1, now, now);
    directory::write_user(
        &state,
        &client,
        None,
        &user,
        &input.display_name,
        Expected::New,
    )
    .await?;
    let view = user_view(&state, &user).await?;
    Ok(created(&view, user.version))
}

/// 201 with the new resource, its ETag and its `Location`.
fn created(view: &Value, version: u64) -> Response {
    let mut response = scim_json(StatusCode::CREATED, view, Some(version));
    if let Some(Ok(location)) = view["meta"]["location"].as_str().map(HeaderValue::from_str) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `current` with the PATCH in `body` applied, as a body to hold to a replacement's rules.
fn patched(current: Value, body: &Bytes) -> Result<Value, ScimError> {
    let mut object = editable(current);
    patch::apply(&mut object, parse_patch(body)?)?;
    Ok(Value::Object(object))
}

/// The resource as a client would send it back: what PATCH operations apply to.
fn editable(mut view: Value) -> Map<String, Value> {
    if let Value::Object(o) = &mut view {
        for ours in ["id", "meta", "schemas", "groups"] {
            o.remove(ours);
        }
    }
    match view {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// Why one attempt at a change did not happen: a SCIM error to answer, or the store's (a
/// stale version is retried).
enum Failure {
    Scim(ScimError),
    Domain(DomainError),
}

impl From<ScimError> for Failure {
    fn from(e: ScimError) -> Self {
        Failure::Scim(e)
    }
}

impl From<DomainError> for Failure {
    fn from(e: DomainError) -> Self {
        Failure::Domain(e)
    }
}

/// Runs `attempt` (read, compute, write expecting the version read) under this replica's
/// directory lock, again when another replica's write made it stale, unless the client named
/// the version it changes (`If-Match`: then a stale write is its `412`).
async fn retrying<T, F, Fut>(
    state: &AppState,
    wanted: &IfMatch,
    mut attempt: F,
) -> Result<T, ScimError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let _serial = state.directory_writes.lock().await;
    for _ in 0..RETRIES {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(Failure::Domain(DomainError::Store(StoreError::Conflict(Conflict::Stale))))
                if wanted.may_retry() => {}
            Err(Failure::Domain(e)) => return Err(e.into()),
            Err(Failure::Scim(e)) => return Err(e),
        }
    }
    Err(busy())
}

/// Replaces or patches user `id`: `next` makes the new body from the stored user.
async fn update_user(
    state: &AppState,
    client: &str,
    id: &str,
    headers: &HeaderMap,
    next: &(dyn Fn(&DirectoryUser, Value) -> Result<Value, ScimError> + Send + Sync),
) -> Result<Response, ScimError> {
    let id = parse_id(id, "User")?;
    let wanted = if_match(headers)?;
    let user = retrying(state, &wanted, || async {
        let stored = stored_user(state, id).await?;
        let expected = wanted.expect(stored.version)?;
        let current = user_view(state, &stored).await?;
        let input = resources::user_input(next(&stored, current)?)?;
        let user = user_record(
            &input,
            id,
            stored.version + 1,
            stored.created_at,
            state.now(),
        );
        directory::write_user(
            state,
            client,
            Some(&stored),
            &user,
            &input.display_name,
            expected,
        )
        .await?;
        Ok(user)
    })
    .await?;
    let view = user_view(state, &user).await?;
    Ok(scim_json(StatusCode::OK, &view, Some(user.version)))
}

fn busy() -> ScimError {
    ScimError::new(
        StatusCode::CONFLICT,
        None,
        "the resource kept changing while this change was applied; send it again",
    )
}

async fn replace_user(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let body = parse_body(&body)?;
    update_user(&state, &client, &id, &headers, &|_, _| Ok(body.clone())).await
}

fn parse_patch(body: &Bytes) -> Result<scim_v2::models::others::PatchOp, ScimError> {
    let value = parse_body(body)?;
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        if text.contains("invalid SCIM path") {
            ScimError::invalid_path(text)
        } else {
            ScimError::invalid_syntax(format!("not a PatchOp: {text}"))
        }
    })
}

async fn patch_user(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    parse_patch(&body)?;
    update_user(&state, &client, &id, &headers, &|_, current| {
        patched(current, &body)
    })
    .await
}

async fn delete_user(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let id = parse_id(&id, "User")?;
    let wanted = if_match(&headers)?;
    retrying(&state, &wanted, || async {
        let stored = stored_user(&state, id).await?;
        let expected = wanted.expect(stored.version)?;
        directory::delete_user(&state, &client, &stored, expected).await?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Checks a group's members are directory users; returns who each is, for the log.
async fn member_names(
    state: &AppState,
    input: &resources::GroupInput,
) -> Result<HashMap<Uuid, String>, ScimError> {
    let users = state
        .store
        .directory_users()
        .await
        .map_err(DomainError::from)?;
    let names: HashMap<Uuid, String> = users.into_iter().map(|u| (u.id, u.approver_id)).collect();
    if let Some(missing) = input.members.iter().find(|m| !names.contains_key(m)) {
        return Err(ScimError::invalid_value(format!(
            "no user has the id {missing}"
        )));
    }
    Ok(names)
}

fn group_record(
    state: &AppState,
    input: resources::GroupInput,
    id: Uuid,
    version: u64,
    created_at: countersign_core::Timestamp,
) -> DirectoryGroup {
    DirectoryGroup {
        id,
        maps_to: directory::maps_to(state, &input.display_name),
        display_name: input.display_name,
        external_id: input.external_id,
        members: input.members,
        version,
        created_at,
        updated_at: state.now(),
    }
}

async fn create_group(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = resources::group_input(parse_body(&body)?)?;
    let _serial = state.directory_writes.lock().await;
    let names = member_names(&state, &input).await?;
    let now = state.now();
    let group = group_record(&state, input, Uuid::now_v7(), 1, now);
    let name = |id: &Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    directory::write_group(&state, &client, None, &group, Expected::New, &name).await?;
    let view = group_view(&state, &group).await?;
    Ok(created(&view, group.version))
}

async fn update_group(
    state: &AppState,
    client: &str,
    id: &str,
    headers: &HeaderMap,
    query: &ListQuery,
    next: &(dyn Fn(Value) -> Result<Value, ScimError> + Send + Sync),
) -> Result<Response, ScimError> {
    let id = parse_id(id, "Group")?;
    let wanted = if_match(headers)?;
    let group = retrying(state, &wanted, || async {
        let stored = stored_group(state, id).await?;
        let expected = wanted.expect(stored.version)?;
        let current = group_view(state, &stored).await?;
        let input = resources::group_input(next(current)?)?;
        let names = member_names(state, &input).await?;
        let group = group_record(state, input, id, stored.version + 1, stored.created_at);
        let name = |id: &Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
        directory::write_group(state, client, Some(&stored), &group, expected, &name).await?;
        Ok(group)
    })
    .await?;
    let mut view = group_view(state, &group).await?;
    project(
        &mut view,
        query.attributes.as_deref(),
        query.excluded_attributes.as_deref(),
    );
    Ok(scim_json(StatusCode::OK, &view, Some(group.version)))
}

async fn replace_group(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let body = parse_body(&body)?;
    update_group(
        &state,
        &client,
        &id,
        &headers,
        &query,
        &|_| Ok(body.clone()),
    )
    .await
}

async fn patch_group(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    parse_patch(&body)?;
    update_group(&state, &client, &id, &headers, &query, &|current| {
        patched(current, &body)
    })
    .await
}

async fn delete_group(
    State(state): State<AppState>,
    ScimAuth(client): ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let id = parse_id(&id, "Group")?;
    let wanted = if_match(&headers)?;
    retrying(&state, &wanted, || async {
        let stored = stored_group(&state, id).await?;
        let expected = wanted.expect(stored.version)?;
        directory::delete_group(&state, &client, &stored, expected).await?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn service_provider_config(State(state): State<AppState>, ScimAuth(_): ScimAuth) -> Response {
    scim_json(
        StatusCode::OK,
        &resources::service_provider_config(&base(&state)),
        None,
    )
}

fn listed(all: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [LIST],
        "totalResults": all.len(),
        "startIndex": 1,
        "itemsPerPage": all.len(),
        "Resources": all,
    });
    scim_json(StatusCode::OK, &body, None)
}

async fn resource_types(State(state): State<AppState>, ScimAuth(_): ScimAuth) -> Response {
    listed(resources::resource_types(&base(&state)))
}

async fn resource_type(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    resources::resource_types(&base(&state))
        .into_iter()
        .find(|t| t["id"].as_str() == Some(name.as_str()))
        .map(|t| scim_json(StatusCode::OK, &t, None))
        .ok_or_else(|| ScimError::not_found("ResourceType"))
}

async fn schemas(State(state): State<AppState>, ScimAuth(_): ScimAuth) -> Response {
    listed(resources::schemas(&base(&state)))
}

async fn schema(
    State(state): State<AppState>,
    ScimAuth(_): ScimAuth,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    resources::schemas(&base(&state))
        .into_iter()
        .find(|s| s["id"].as_str() == Some(id.as_str()))
        .map(|s| scim_json(StatusCode::OK, &s, None))
        .ok_or_else(|| ScimError::not_found("Schema"))
}

async fn unknown() -> ScimError {
    ScimError::not_found("SCIM endpoint")
}

/// The SCIM endpoints, under `/scim/v2`.
pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/Users", get(list_users).post(create_user))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .fallback(unknown)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    Router::new().nest("/scim/v2", api)
}
