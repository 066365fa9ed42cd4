//! The Countersign approval service as a library: [`router`] for in-process use and tests,
//! [`serve`] for a listener with graceful shutdown, [`Service::open`] for a data directory and
//! a store (which store is the binary's choice: the service depends on the store's trait only).

pub mod admin;
pub mod attestation;
pub mod audit_log;
pub mod auth;
pub mod challenge;
pub mod channels;
pub mod domain;
pub mod error;
pub mod fanout;
mod follow;
pub mod jobs;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod routes;
pub mod scim;
pub mod secrets;
pub mod service_key;
pub mod state;
pub mod transport;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use countersign_core::{Actor, Clock, EventKind};
use countersign_store::{NewEvent, Store};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

pub use policy::Policy;
pub use service_key::ServiceKey;
pub use state::{AppState, Config, SystemClock};

/// The HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (routes, mut api) = routes::router().split_for_parts();
    routes::complete_errors(&mut api);
    let api = std::sync::Arc::new(api);
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { axum::Json(api.as_ref().clone()) }),
        )
        .route("/metrics", axum::routing::get(metrics::render))
        .merge(scim::router())
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // A client that trickles its request is cut off instead of holding a task forever.
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(90),
        ))
        // Outermost, so the plain-text errors of every layer above get the API's shape too.
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// Serves `state` on `listener` (plain HTTP) until `shutdown` resolves, with the background
/// jobs running.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        state,
        None,
        transport::Limits::default(),
        shutdown,
    )
    .await
}

/// Serves `state` on `listener`, over TLS when an acceptor is given, with `limits`.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: transport::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let jobs = jobs::Jobs::all(&state).await;
    let result = transport::serve_connections(listener, router(state), tls, limits, shutdown).await;
    jobs.stop().await;
    result
}

/// A service opened on a data directory: the store, the key and the policy.
pub struct Service {
    /// The shared state.
    pub state: AppState,
    /// The data directory.
    pub data_dir: PathBuf,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Data directory, key file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store.
    #[error("{0}")]
    Store(#[from] countersign_store::StoreError),
    /// The policy file.
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    /// The identity configuration (workload issuers).
    #[error("{0}")]
    Identity(#[from] workload::WorkloadError),
    /// Another part of the configuration.
    #[error("{0}")]
    Config(String),
}

impl Service {
    /// Opens the service on `store` with the policy at `policy_path`, or the built-in default;
    /// `data_dir` (created if missing) holds the service key, which every replica of one
    /// service must share. Records the policy in force in the audit log when it differs from
    /// the last one.
    pub async fn open(
        data_dir: &Path,
        store: Arc<dyn Store>,
        policy_path: Option<&Path>,
        config: Config,
    ) -> Result<Self, StartError> {
        std::fs::create_dir_all(data_dir)?;
        // Checked here so a bad configuration stops the start instead of trusting nobody.
        workload::WorkloadIssuers::new(&config.workload_issuers)?;
        config.scim.check().map_err(StartError::Config)?;
        attestation::TrustAnchors::load(&config.attestation).map_err(StartError::Config)?;
        config
            .channels
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let policy = match policy_path {
            Some(p) => Policy::from_file(p)?,
            None => Policy::builtin()?,
        };
        let key = ServiceKey::load_or_create(data_dir)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = AppState::new(store, clock, Arc::new(policy), Arc::new(key), config).await;
        record_policy_in_force(&state).await?;
        domain::directory::apply_mapping(&state)
            .await
            .map_err(|e| StartError::Config(format!("applying the [scim] groups map: {e}")))?;
        Ok(Self {
            state,
            data_dir: data_dir.to_owned(),
        })
    }
}

/// Appends `policy_changed` when the policy in force is not the last one the log recorded.
pub async fn record_policy_in_force(state: &AppState) -> Result<(), countersign_store::StoreError> {
    let current = state.policy.hash();
    let last = last_policy_hash(state.store.as_ref()).await?;
    if last != Some(current) {
        let event = NewEvent::new(
            Actor::System,
            EventKind::PolicyChanged {
                previous_hash: last,
                policy_hash: current,
            },
        );
        state.store.append_events(vec![event], state.now()).await?;
    }
    Ok(())
}

async fn last_policy_hash(
    store: &dyn Store,
) -> Result<Option<countersign_core::Digest>, countersign_store::StoreError> {
    Ok(match store.latest_event_of_kind("policy_changed").await? {
        Some(countersign_core::AuditEvent {
            event: EventKind::PolicyChanged { policy_hash, .. },
            ..
        }) => Some(policy_hash),
        _ => None,
    })
}
