//! `GET /open/{id}`: a web address for a request that sends the browser on to the console's
//! `countersign://request/<id>` link, for chat clients that open only http(s) links. It looks
//! nothing up, so it tells no one whether the request exists.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use countersign_core::api::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::channels::notice::deep_link;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(open))
}

/// Sends the browser to the approver console's link for the request (303 to
/// `countersign://request/{id}`, with a page holding the same link).
#[utoipa::path(get, path = "/open/{id}", tag = "approvers", params(("id" = Uuid, Path, description = "The request")),
    responses((status = 303, description = "On to the console's link"), (status = 400, body = ErrorBody)))]
async fn open(Path(id): Path<Uuid>) -> Response {
    let link = deep_link(id);
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Open in Countersign</title>\
         <p><a href=\"{link}\">Open request {id} in the Countersign console</a></p>\
         <p>Decisions are signed in the console, on your device.</p>"
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, link.as_str()),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}
