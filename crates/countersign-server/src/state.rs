//! What every handler shares.

use std::ops::Deref;
use std::sync::Arc;

use countersign_core::{AuditEvent, Clock, Timestamp};
use countersign_store::Store;
use tokio::sync::broadcast;

use crate::audit_log::AuditLog;
use crate::policy::Policy;
use crate::service_key::ServiceKey;

/// Tunables with safe defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// The log's origin line and the checkpoint key name, e.g. `countersign.example/log`.
    pub origin: String,
    /// How far an approver's `decided_at` may be from the service's clock.
    pub max_clock_skew_ms: i64,
    /// How long a grant stays redeemable.
    pub grant_ttl_seconds: i64,
    /// How long an approver session lasts.
    pub session_ttl_seconds: i64,
    /// Longest long-poll.
    pub max_wait_seconds: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Issuers whose workload identity tokens authenticate agents ([`crate::workload`]).
    pub workload_issuers: Vec<crate::workload::WorkloadIssuerConfig>,
    /// The OpenID Provider approvers sign in with ([`crate::oidc`]), if any.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// Provisioning from the organisation's directory ([`crate::scim`]).
    pub scim: crate::scim::ScimConfig,
    /// The manufacturers' roots that vouch for approvers' devices ([`crate::attestation`]).
    pub attestation: crate::attestation::AttestationConfig,
    /// Outbound notice channels ([`crate::channels`]).
    pub channels: crate::channels::ChannelsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            origin: "countersign.local/log".into(),
            max_clock_skew_ms: 60_000,
            grant_ttl_seconds: 300,
            session_ttl_seconds: 12 * 3600,
            max_wait_seconds: 60,
            max_body_bytes: 10 * 1024 * 1024,
            workload_issuers: Vec::new(),
            oidc: None,
            scim: crate::scim::ScimConfig::default(),
            attestation: crate::attestation::AttestationConfig::default(),
            channels: crate::channels::ChannelsConfig::default(),
        }
    }
}

/// The service's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of the state.
pub struct Inner {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// The service's signing key.
    pub key: Arc<ServiceKey>,
    /// The Merkle view of the audit log.
    pub log: AuditLog,
    /// Tunables.
    pub config: Config,
    /// Every appended audit event, for waiters and approver streams.
    pub events: broadcast::Sender<AuditEvent>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Approver-stream notices, encoded once per event (see [`crate::fanout`]).
    pub notices: broadcast::Sender<Arc<crate::fanout::Notice>>,
    /// Wakes the task that follows the log (see [`crate::follow`]) after this process commits.
    pub follow: Arc<tokio::sync::Notify>,
    /// Trusted workload-identity issuers.
    pub workload: crate::workload::WorkloadIssuers,
    /// The approvers' OpenID Provider, when configured.
    pub oidc: Option<crate::oidc::Oidc>,
    /// Taken by each SCIM change for its read-compute-write: a directory sends many changes to
    /// one group at once, which would otherwise keep invalidating each other's reads. Changes
    /// from another replica are caught by the records' versions and recomputed.
    pub directory_writes: tokio::sync::Mutex<()>,
    /// The roots `config.attestation` names, read at start.
    pub attestation: crate::attestation::TrustAnchors,
}

impl AppState {
    /// Builds the state. Its background tasks (delivery to waiters and streams, expiry, policy
    /// reload) run as [`crate::jobs::Jobs`]: [`crate::serve`] starts them all.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        key: Arc<ServiceKey>,
        config: Config,
    ) -> Self {
        let (events, _) = broadcast::channel(16_384);
        let (notices, _) = broadcast::channel(16_384);
        let follow = Arc::new(tokio::sync::Notify::new());
        // `Service::open` refuses a bad configuration; built directly (tests, benchmarks) with
        // one, no issuer is trusted rather than some.
        let workload = crate::workload::WorkloadIssuers::new(&config.workload_issuers)
            .or_else(|e| {
                tracing::error!(error = %e, "workload issuers refused; none is trusted");
                crate::workload::WorkloadIssuers::new(&[])
            })
            .unwrap_or_else(|_| crate::workload::WorkloadIssuers::none());
        let oidc = config.oidc.clone().map(crate::oidc::Oidc::new);
        // As with workload issuers: `Service::open` refuses unreadable roots; built directly
        // with them, none is trusted rather than some.
        let attestation = crate::attestation::TrustAnchors::load(&config.attestation)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "attestation roots refused; none is trusted");
                crate::attestation::TrustAnchors::default()
            });
        Self(Arc::new(Inner {
            store,
            clock,
            policy,
            key,
            log: AuditLog::default(),
            config,
            events,
            metrics: crate::metrics::Metrics::default(),
            notices,
            follow,
            workload,
            oidc,
            directory_writes: tokio::sync::Mutex::new(()),
            attestation,
        }))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Tells waiters and streams that events were just committed. They reach them only
    /// through the log follower, which reads the log in order, so every stream sees events in
    /// log order even when concurrent commits announce themselves out of order, and an event
    /// whose handler was cancelled between commit and announcement is delivered all the same.
    pub fn publish(&self, events: &[AuditEvent]) {
        if !events.is_empty() {
            self.log_grew();
        }
    }

    /// Wakes the log follower: something was appended (by a store call that does not return
    /// its events).
    pub fn log_grew(&self) {
        self.follow.notify_one();
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }
}
