//! Prometheus metrics at `/metrics`: HTTP requests, pending requests, time to decision,
//! connected approvers.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use countersign_core::ActionStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// The method as a label: the standard methods by name, anything a client made up as
/// `other`, so no client can grow the label set (and `/metrics`) without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, name)| name)
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    pending: Gauge,
    decision_seconds: Histogram,
    approvers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "pending_actions",
            "Requests waiting for approval",
            pending.clone(),
        );
        // From 1 s to about 4 h.
        let decision_seconds = Histogram::new([
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
        ]);
        registry.register(
            "decision_latency_seconds",
            "Time from request to final decision by approvers",
            decision_seconds.clone(),
        );
        let approvers = Gauge::default();
        registry.register(
            "connected_approvers",
            "Open approver streams",
            approvers.clone(),
        );
        Self {
            registry,
            http,
            pending,
            decision_seconds,
            approvers,
        }
    }
}

impl Metrics {
    /// One approver stream opened (+1) or closed (-1).
    pub fn approver_connected(&self, delta: i64) {
        self.approvers.inc_by(delta);
    }

    /// A request reached its final decision this many milliseconds after it was created.
    pub fn decided_after(&self, millis: i64) {
        self.decision_seconds.observe(millis.max(0) as f64 / 1000.0);
    }
}

/// Counts every request by its route template (never the raw path, which holds ids), its
/// method (known ones, else `other`) and status: every label comes from a bounded set.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Route templates are the router's, so the set is bounded by the code.
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.http.get_or_create(&labels).inc();
    response
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let pending = state.store.count_requests(ActionStatus::Pending).await?;
    state
        .metrics
        .pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &state.metrics.registry)
        .map_err(|e| ApiError::internal("metrics", e))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::DELETE), "DELETE");
        for i in 0..1000 {
            let made_up =
                axum::http::Method::from_bytes(format!("X{i}").as_bytes()).expect("token");
            assert_eq!(method_label(&made_up), "other");
        }
    }
}
