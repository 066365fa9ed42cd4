//! The HTTP interface, one module per area. Routes are registered from their `utoipa::path`
//! annotations, so the OpenAPI document is generated from the same code and cannot drift.

pub mod actions;
pub mod admin;
pub mod audit;
pub mod decisions;
pub mod grants;
pub mod identity;
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
        .merge(actions::router())
        .merge(admin::router())
        .merge(decisions::router())
        .merge(grants::router())
        .merge(audit::router())
        .merge(identity::router())
        .merge(stream::router())
        .routes(routes!(healthz))
}
