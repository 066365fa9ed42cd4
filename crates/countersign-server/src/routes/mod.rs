//! The HTTP interface, one module per area. Routes are registered from their `utoipa::path`
//! annotations, so the OpenAPI document is generated from the same code and cannot drift.

pub mod admin;
pub mod audit;
pub mod decisions;
pub mod grants;
pub mod identity;
pub mod open;
pub mod requests;
pub mod stream;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The API document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(title = "Countersign approval service", version = "1", description = "Per-action human approval for agents and automation. Errors are {\"error\": {\"code\", \"message\"}}."),
    modifiers(&BearerSchemes),
    components(schemas(countersign_core::api::ClientMessage, countersign_core::AuditEvent)),
    tags(
        (name = "agents", description = "Submitting requests, waiting, redeeming grants, reporting outcomes"),
        (name = "approvers", description = "Enrolment, sessions, the inbox, signed decisions, the stream"),
        (name = "admin", description = "Administration with an admin token: agent tokens, approvers, enrolment codes, key revocation, policy"),
        (name = "audit", description = "The Merkle audit log, checkpoints and proofs"),
        (name = "operations", description = "Liveness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme("agent_token", bearer("Agent API token (csa_…)"));
        components.add_security_scheme(
            "admin_token",
            bearer("Administrator token (csadm_…) issued with `countersign admin admin-token`"),
        );
        components.add_security_scheme(
            "approver_session",
            bearer("Approver session token (css_…) from a signed challenge"),
        );
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Every route of v1, plus liveness, with the API document they make.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(requests::router())
        .merge(admin::router())
        .merge(decisions::router())
        .merge(grants::router())
        .merge(audit::router())
        .merge(identity::router())
        .merge(stream::router())
        .merge(open::router())
        .routes(routes!(healthz))
}

/// Adds the error responses every route can give whatever its annotation says, so the document
/// lists what the service really answers: 400 (an unparsable path or query value), 413 and 415
/// (any route with a body), 401 (any route that needs a token), 503 (storage). Each is
/// `ErrorBody` JSON ([`crate::error::json_errors`] makes sure of it).
pub fn complete_errors(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in api.paths.paths.iter_mut() {
        let uses_storage = path.starts_with("/v1/");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description).into());
            };
            let takes_parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if takes_parameters {
                add("400", "A path or query value that does not parse");
            }
            if op.request_body.is_some() {
                add("400", "Invalid field or malformed JSON");
                add("413", "Body over the size limit (10 MiB)");
                add("415", "Not Content-Type: application/json");
            }
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add("401", "Missing, unknown, expired or revoked credentials");
            }
            if uses_storage {
                add(
                    "503",
                    "Storage unavailable; the message says whether anything was changed",
                );
            }
        }
    }
}
