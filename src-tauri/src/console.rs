//! The console's state and what it does: create a key, enrol it, unlock it, keep the live
//! inbox, and sign decisions. No Tauri types here: events go out through a callback, so this
//! is the same code the window drives and the tests could drive.

use countersign_approver::signin::{browser_sign_in, enrol_with_sign_in, sign_in_with_key};
use countersign_core::api::KeySignedIn;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use countersign_approver::KeyRecord;
use countersign_approver::inbox::InboxChange;
use countersign_approver::live::{self, Live, LiveConfig, LiveEvent};
use countersign_client::Client;
use countersign_client::approver::{Choice, open_session, sign_decision, sign_review};
use countersign_core::api::{ActionView, DecisionResult, ReviewResult};
use countersign_core::{KeyKind, Verdict};
use countersign_keys::pkcs11::TokenSelector;
use countersign_keys::{KeyError, PinRequest, Signer};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;
use zeroize::Zeroizing;

pub use crate::events::{Connection, ConsoleEvent, EventSink};

use crate::error::ConsoleError;
use crate::history::{History, SyncContext};
use crate::settings::{self, Settings};

/// Where the console is in its life.
#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No enrolled key yet: first run.
    Setup,
    /// Enrolled; the key needs unlocking.
    Locked,
    /// Unlocked and live.
    Ready,
}

/// What the window shows first.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
pub struct ConsoleState {
    /// Where the console is in its life.
    pub phase: Phase,
    /// Service URL, once set.
    pub server: Option<String>,
    /// What the service URL's transport means, when it is plain HTTP to another machine.
    pub transport_warning: Option<String>,
    /// Who I am, once enrolled.
    pub approver_id: Option<String>,
    /// My key, once created.
    pub key: Option<KeyView>,
    /// The connection.
    pub connection: Connection,
    /// Where this console keeps things.
    pub places: Places,
}

/// Where the console keeps things, for the settings screen.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
pub struct Places {
    /// The settings and development keys.
    #[schema(value_type = String)]
    pub config_dir: PathBuf,
    /// The audit mirror of the current service's log.
    #[schema(value_type = String)]
    pub history: PathBuf,
    /// Where exports are written.
    #[schema(value_type = String)]
    pub exports: PathBuf,
}

/// A key, for people.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
pub struct KeyView {
    /// Backend: pkcs11, tpm, software.
    pub backend: &'static str,
    /// Kind, as the service records it.
    pub kind: KeyKind,
    /// "PKCS#11 token", "TPM 2.0", "software — not hardware-backed".
    pub kind_label: &'static str,
    /// Whether it is hardware-backed.
    pub hardware: bool,
    /// Label.
    pub label: String,
    /// Key id (SHA-256 of the public key), hex.
    pub fingerprint: String,
    /// The manufacturer's root that vouched for the key's device at enrolment; `None`: its
    /// hardware is only claimed.
    pub attested_by: Option<String>,
}

impl From<&KeyRecord> for KeyView {
    fn from(key: &KeyRecord) -> Self {
        Self {
            backend: key.key.backend(),
            kind: key.kind,
            kind_label: key.kind.label(),
            hardware: key.kind.is_hardware(),
            label: key.label.clone(),
            fingerprint: key.key_id().to_string(),
            attested_by: key.attested_by.clone(),
        }
    }
}

/// Where to create a new key.
#[derive(utoipa::ToSchema, Clone, Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewKey {
    /// On a PKCS#11 token.
    Pkcs11 {
        /// The module.
        #[schema(value_type = String)]
        module: PathBuf,
        /// The token.
        token_label: String,
        /// The key's label.
        label: String,
    },
    /// In the TPM.
    Tpm {
        /// Its TCTI.
        tcti: String,
        /// The key's label.
        label: String,
    },
    /// A development key file.
    Software {
        /// The key's label.
        label: String,
    },
}

/// The console.
pub struct Console {
    config_dir: PathBuf,
    events: EventSink,
    inner: Mutex<Inner>,
    history: Arc<History>,
}

#[derive(Default)]
struct Inner {
    settings: Option<Settings>,
    /// Created during setup, not yet enrolled.
    new_key: Option<(KeyRecord, Arc<dyn Signer>)>,
    signer: Option<Arc<dyn Signer>>,
    live: Option<Live>,
    /// The history sync loop runs (started with the live connection).
    syncing_history: bool,
    /// Kept current by the task that forwards the live connection's events.
    connection: Arc<std::sync::Mutex<Connection>>,
    /// Counts live connections started: a replaced connection's last events are dropped.
    generation: Arc<AtomicU64>,
    /// The whole content of requests opened from the inbox (which holds summaries), checked
    /// against their digest; a request's content never changes, only its decisions.
    full: std::collections::HashMap<Uuid, countersign_core::Action>,
    /// A REST session with the service (server URL, client), opened on first need.
    session: Option<(String, Client)>,
}

impl Console {
    /// Loads the settings from `config_dir`; nothing is connected until [`Console::unlock`].
    pub fn open(config_dir: PathBuf, events: EventSink) -> Result<Self, ConsoleError> {
        let settings = settings::load(&config_dir).map_err(ConsoleError::Settings)?;
        let history_file = settings
            .as_ref()
            .map_or_else(settings::default_history_file, |s| s.history_file.clone());
        let history = Arc::new(History::new(config_dir.join(history_file), events.clone()));
        Ok(Self {
            history,
            config_dir,
            events,
            inner: Mutex::new(Inner {
                settings,
                ..Inner::default()
            }),
        })
    }

    /// What to show.
    pub async fn state(&self) -> ConsoleState {
        let inner = self.inner.lock().await;
        self.state_of(&inner)
    }

    /// Creates a key where the person chose; it is enrolled by [`Console::enroll`].
    pub async fn create_key(
        &self,
        new: NewKey,
        pin: Option<String>,
    ) -> Result<KeyView, ConsoleError> {
        let pin = pin.map(Zeroizing::new);
        let prompt = given_pin(pin.as_ref());
        let keys_dir = self.config_dir.join("keys");
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let new = match new {
            NewKey::Pkcs11 {
                module,
                token_label,
                label,
            } => countersign_approver::NewKey::Pkcs11 {
                module,
                token: TokenSelector::Label(token_label),
                label,
                existing: false,
            },
            NewKey::Tpm { tcti, label } => countersign_approver::NewKey::Tpm {
                tcti,
                key_file: keys_dir.join(format!("tpm-{stamp}.json")),
                label,
                auth: None,
            },
            NewKey::Software { label } => countersign_approver::NewKey::Software {
                path: keys_dir.join(format!("development-{stamp}.pem")),
                label,
            },
        };
        let (saved, signer) = countersign_approver::key::create(new, &prompt)?;
        let signer: Arc<dyn Signer> = Arc::from(signer);
        let view = KeyView::from(&saved);
        self.inner.lock().await.new_key = Some((saved, signer));
        Ok(view)
    }

    /// Enrols the key made by [`Console::create_key`] with a one-time code, saves the
    /// settings and goes live.
    pub async fn enroll(
        &self,
        server: String,
        approver_id: String,
        code: String,
    ) -> Result<ConsoleState, ConsoleError> {
        let (mut saved, signer) = self.new_key().await?;
        let client = Client::new(server.trim_end_matches('/'))?;
        let label = saved.label.clone();
        let enrolled = countersign_approver::enrolment::enrol(
            &client,
            &approver_id,
            &code,
            signer.as_ref(),
            label,
        )
        .await?;
        saved.attested_by = enrolled.attested_by;
        self.adopt(&client, approver_id, saved, signer).await
    }

    /// The organisation's OpenID Provider the service at `server` signs approvers in with, if
    /// it has one (its issuer), for the first run's "Sign in with …".
    pub async fn identity_provider(&self, server: String) -> Result<Option<String>, ConsoleError> {
        let client = Client::new(server.trim().trim_end_matches('/'))?;
        match client.oidc_sign_in().await {
            Ok(sign_in) => Ok(Some(sign_in.issuer)),
            Err(e) if e.code() == Some("identity_provider_not_configured") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Enrols the new key for whoever signs in at the service's OpenID Provider, in the
    /// system browser (authorization code with PKCE, loopback redirect: RFC 8252).
    pub async fn enroll_with_sign_in(&self, server: String) -> Result<ConsoleState, ConsoleError> {
        let (mut saved, signer) = self.new_key().await?;
        let client = Client::new(server.trim().trim_end_matches('/'))?;
        let signed_in = browser_sign_in(&client, open_browser).await?;
        let label = saved.label.clone();
        let enrolled = enrol_with_sign_in(&client, signed_in, signer.as_ref(), label).await?;
        saved.attested_by = enrolled.attested_by;
        self.adopt(&client, enrolled.approver_id, saved, signer)
            .await
    }

    /// Signs in again at the service's OpenID Provider, in the system browser, vouching afresh
    /// for the enrolled key (for requests whose policy wants a recent sign-in).
    pub async fn sign_in_again(&self) -> Result<KeySignedIn, ConsoleError> {
        let (settings, signer) = {
            let inner = self.inner.lock().await;
            let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
            let signer = inner.signer.clone().ok_or(ConsoleError::Locked)?;
            (settings, signer)
        };
        let client = Client::new(&settings.server)?;
        let signed_in = browser_sign_in(&client, open_browser).await?;
        Ok(sign_in_with_key(&client, signed_in, signer.as_ref()).await?)
    }

    /// The key made by the last `create_key`, waiting to be enrolled.
    async fn new_key(&self) -> Result<(KeyRecord, Arc<dyn Signer>), ConsoleError> {
        self.inner
            .lock()
            .await
            .new_key
            .clone()
            .ok_or(ConsoleError::NoKey)
    }

    /// Moves to another address of the service (a new host name, a load balancer): the
    /// enrolled key must open a session there first, so a typo or another service changes
    /// nothing.
    pub async fn change_server(&self, server: String) -> Result<ConsoleState, ConsoleError> {
        let (settings, signer) = {
            let inner = self.inner.lock().await;
            let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
            let signer = inner.signer.clone().ok_or(ConsoleError::Locked)?;
            (settings, signer)
        };
        let client = Client::new(server.trim().trim_end_matches('/'))?;
        let sign = signer.clone();
        open_session(&client, settings.key.key_id(), move |m: &[u8]| {
            sign.sign(m).map_err(|e| e.to_string())
        })
        .await?;
        self.adopt(&client, settings.approver_id, settings.key, signer)
            .await
    }

    /// Makes the service at `client`, `approver_id` and `key` (checked to work there with
    /// `signer`) the console's: keeps the history in a new file if the service keeps another
    /// log, saves, and reconnects.
    async fn adopt(
        &self,
        client: &Client,
        approver_id: String,
        key: KeyRecord,
        signer: Arc<dyn Signer>,
    ) -> Result<ConsoleState, ConsoleError> {
        let served = client.server_key().await?;
        let history_file = if self
            .history
            .holds_log(&served.name, &served.public_key)
            .await?
        {
            self.history
                .path()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(settings::default_history_file)
        } else {
            format!("mirror-{}.db", served.public_key.key_id().short())
        };
        let settings = Settings {
            server: client.base().to_string(),
            approver_id,
            key,
            history_file,
        };
        settings::save(&self.config_dir, &settings).map_err(ConsoleError::Settings)?;
        self.history
            .use_file(self.config_dir.join(&settings.history_file))
            .await;
        let mut inner = self.inner.lock().await;
        inner.settings = Some(settings);
        inner.new_key = None;
        inner.signer = Some(signer);
        // Dropping the old connection stops it.
        inner.live = None;
        self.go_live(&mut inner);
        Ok(self.state_of(&inner))
    }

    /// Opens the enrolled key (with `pin` when the device wants one) and goes live.
    pub async fn unlock(&self, pin: Option<String>) -> Result<ConsoleState, ConsoleError> {
        let pin = pin.map(Zeroizing::new);
        let mut inner = self.inner.lock().await;
        let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
        if inner.signer.is_none() {
            let signer = settings.key.open(&given_pin(pin.as_ref()))?;
            inner.signer = Some(Arc::from(signer));
        }
        if inner.live.is_none() {
            self.go_live(&mut inner);
        }
        Ok(self.state_of(&inner))
    }

    /// The pending requests I may decide, soonest expiry first.
    pub async fn inbox(&self) -> Vec<ActionView> {
        let inner = self.inner.lock().await;
        pending(&inner)
    }

    /// One request from the inbox, whole: the inbox holds summaries (without diff, parameters
    /// and context, so no request can make every inbox message large); the content is fetched
    /// from the service the first time the request is opened, and kept only if it hashes to
    /// the digest the inbox announced.
    pub async fn request(&self, id: Uuid) -> Result<ActionView, ConsoleError> {
        let (summary, cached) = {
            let inner = self.inner.lock().await;
            let live = inner.live.as_ref().ok_or(ConsoleError::Locked)?;
            let summary = live
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
                .ok_or(ConsoleError::NotInInbox)?;
            (summary, inner.full.get(&id).cloned())
        };
        let action = match cached {
            Some(action) => action,
            None => {
                let full = self.fetch_view(id).await?;
                let hashes = full.action.digest().ok() == Some(summary.digest);
                if full.digest != summary.digest || !hashes {
                    return Err(ConsoleError::Approver(
                        countersign_client::approver::ApproverError::DigestMismatch,
                    ));
                }
                let mut inner = self.inner.lock().await;
                let pending: std::collections::HashSet<Uuid> =
                    pending(&inner).iter().map(|v| v.id).collect();
                inner.full.retain(|id, _| pending.contains(id));
                inner.full.insert(id, full.action.clone());
                full.action
            }
        };
        Ok(ActionView {
            action,
            summary: false,
            ..summary
        })
    }

    /// `GET /v1/actions/{id}/view` on a session opened with the enrolled key (kept, and opened
    /// again once if the service no longer knows it).
    async fn fetch_view(&self, id: Uuid) -> Result<ActionView, ConsoleError> {
        for attempt in 0..2 {
            let client = self.session_client(attempt > 0).await?;
            match client.view(id).await {
                Err(e) if attempt == 0 && e.code() == Some("unauthorized") => continue,
                other => return Ok(other?),
            }
        }
        Err(ConsoleError::Locked)
    }

    async fn session_client(&self, fresh: bool) -> Result<Client, ConsoleError> {
        let (settings, signer, cached) = {
            let inner = self.inner.lock().await;
            let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
            let signer = inner.signer.clone().ok_or(ConsoleError::Locked)?;
            let cached = inner
                .session
                .as_ref()
                .filter(|(server, _)| !fresh && *server == settings.server)
                .map(|(_, c)| c.clone());
            (settings, signer, cached)
        };
        if let Some(client) = cached {
            return Ok(client);
        }
        let client = open_session(
            &Client::new(&settings.server)?,
            settings.key.key_id(),
            move |m: &[u8]| signer.sign(m).map_err(|e| e.to_string()),
        )
        .await?;
        self.inner.lock().await.session = Some((settings.server.clone(), client.clone()));
        Ok(client)
    }

    /// Break-glass uses waiting for this approver's review (granted without approval; each
    /// stays until the policy's reviewers have reviewed it), as summaries.
    pub async fn pending_reviews(&self) -> Result<Vec<ActionView>, ConsoleError> {
        for attempt in 0..2 {
            let client = self.session_client(attempt > 0).await?;
            match client.pending_reviews().await {
                Err(e) if attempt == 0 && e.code() == Some("unauthorized") => continue,
                other => return Ok(other?),
            }
        }
        Err(ConsoleError::Locked)
    }

    /// A break-glass use whole, for its review: fetched and checked against its digest.
    pub async fn review_view(&self, id: Uuid) -> Result<ActionView, ConsoleError> {
        let view = self.fetch_view(id).await?;
        if view.action.digest().ok() != Some(view.digest) {
            return Err(ConsoleError::Approver(
                countersign_client::approver::ApproverError::DigestMismatch,
            ));
        }
        Ok(view)
    }

    /// Signs a review of break-glass use `id` with the enrolled key and sends it.
    pub async fn review(
        &self,
        id: Uuid,
        concern: bool,
        comment: String,
    ) -> Result<ReviewResult, ConsoleError> {
        let view = self.review_view(id).await?;
        let (settings, signer) = {
            let inner = self.inner.lock().await;
            let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
            let signer = inner.signer.clone().ok_or(ConsoleError::Locked)?;
            (settings, signer)
        };
        let signed = sign_review(
            &view,
            &settings.approver_id,
            settings.key.key_id(),
            concern,
            &comment,
            |m| signer.sign(m).map_err(|e| e.to_string()),
        )?;
        let result = Client::new(&settings.server)?.review(&signed).await?;
        self.history.wake();
        Ok(result)
    }

    /// Signs `verdict` on request `id` with the enrolled key and sends it. The digest is
    /// recomputed here from what the window shows; a mismatch is never signed.
    pub async fn decide(
        &self,
        id: Uuid,
        verdict: Verdict,
        comment: String,
        verification_code: Option<String>,
    ) -> Result<DecisionResult, ConsoleError> {
        // The whole request: a summary never hashes to its digest, so it is never signed.
        let view = self.request(id).await?;
        let (settings, signer) = {
            let inner = self.inner.lock().await;
            let settings = inner.settings.clone().ok_or(ConsoleError::NotEnrolled)?;
            let signer = inner.signer.clone().ok_or(ConsoleError::Locked)?;
            (settings, signer)
        };
        let choice = Choice {
            verdict,
            comment: &comment,
            verification_code: verification_code.as_deref(),
        };
        let signed = sign_decision(
            &view,
            &settings.approver_id,
            settings.key.key_id(),
            choice,
            |m| signer.sign(m).map_err(|e| e.to_string()),
        )?;
        let result = Client::new(&settings.server)?.decide(&signed).await?;
        // The log grew by this decision; the stream's notice of it changes no inbox (the
        // request left it just below), so it would not wake the history.
        self.history.wake();
        let inner = self.inner.lock().await;
        if let Some(live) = &inner.live {
            let changes = live
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .decided(id);
            if !changes.is_empty() {
                (self.events)(ConsoleEvent::Inbox {
                    requests: pending(&inner),
                });
            }
        }
        Ok(result)
    }

    /// The audit history.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// What syncing and signing exports need, when the key is unlocked.
    pub async fn sync_context(&self) -> Result<SyncContext, ConsoleError> {
        let inner = self.inner.lock().await;
        sync_context(&inner).ok_or(ConsoleError::Locked)
    }

    /// Starts the live connection and a task forwarding its events to the window.
    fn go_live(&self, inner: &mut Inner) {
        let Some(ctx) = sync_context(inner) else {
            return;
        };
        let signer = ctx.signer.clone();
        let config = LiveConfig::new(
            ctx.server.clone(),
            ctx.key_id,
            Arc::new(move |m: &[u8]| signer.sign(m).map_err(|e| e.to_string())),
        );
        self.history.set_context(ctx);
        if !inner.syncing_history {
            inner.syncing_history = true;
            tokio::spawn(self.history.clone().keep_synced());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = live::start(config, tx);
        let inbox = live.inbox.clone();
        inner.live = Some(live);
        let connection = inner.connection.clone();
        let events = self.events.clone();
        let report = move |now: Connection| {
            *connection.lock().unwrap_or_else(|e| e.into_inner()) = now.clone();
            events(ConsoleEvent::Connection { connection: now });
        };
        report(Connection::Connecting);
        let events = self.events.clone();
        let list = move || {
            inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending()
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        let history = self.history.clone();
        let current = inner.generation.clone();
        let generation = current.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if current.load(Ordering::SeqCst) != generation {
                    break;
                }
                // Anything on the stream means the log grew: bring the mirror up to date.
                if matches!(event, LiveEvent::Online { .. } | LiveEvent::Changes(_)) {
                    history.wake();
                }
                match event {
                    LiveEvent::Online { .. } => report(Connection::Online),
                    LiveEvent::Offline { reason, retry_in } => report(Connection::Offline {
                        reason,
                        retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    }),
                    LiveEvent::Refused { message, .. } => {
                        report(Connection::Refused { message });
                    }
                    LiveEvent::Changes(changes) => {
                        for change in &changes {
                            if let InboxChange::Added(view) = change {
                                events(ConsoleEvent::Arrived {
                                    request: view.clone(),
                                });
                            }
                        }
                        events(ConsoleEvent::Inbox { requests: list() });
                    }
                }
            }
        });
    }
}

fn sync_context(inner: &Inner) -> Option<SyncContext> {
    let (Some(settings), Some(signer)) = (&inner.settings, &inner.signer) else {
        return None;
    };
    Some(SyncContext {
        server: settings.server.clone(),
        approver_id: settings.approver_id.clone(),
        key_id: settings.key.key_id(),
        signer: signer.clone(),
    })
}

impl Console {
    fn state_of(&self, inner: &Inner) -> ConsoleState {
        let places = Places {
            config_dir: self.config_dir.clone(),
            history: self.history.path(),
            exports: crate::history::exports_dir(),
        };
        state_of(inner, places)
    }
}

fn state_of(inner: &Inner, places: Places) -> ConsoleState {
    let phase = match (&inner.settings, &inner.signer) {
        (None, _) => Phase::Setup,
        (Some(_), None) => Phase::Locked,
        (Some(_), Some(_)) => Phase::Ready,
    };
    ConsoleState {
        phase,
        server: inner.settings.as_ref().map(|s| s.server.clone()),
        transport_warning: inner
            .settings
            .as_ref()
            .and_then(|s| countersign_client::plain_http_warning(&s.server)),
        approver_id: inner.settings.as_ref().map(|s| s.approver_id.clone()),
        key: inner
            .settings
            .as_ref()
            .map(|s| KeyView::from(&s.key))
            .or_else(|| inner.new_key.as_ref().map(|(k, _)| KeyView::from(k))),
        connection: inner
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        places,
    }
}

fn pending(inner: &Inner) -> Vec<ActionView> {
    inner
        .live
        .as_ref()
        .map(|live| {
            live.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending()
                .into_iter()
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// A PIN prompt answered by what the window already asked; without one the device's
/// request for a PIN comes back as `pin_required`, and the window asks.
fn given_pin(
    pin: Option<&Zeroizing<String>>,
) -> impl Fn(&PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> + '_ {
    move |request| {
        pin.cloned()
            .ok_or_else(|| KeyError::PinCancelled(request.device.to_string()))
    }
}

/// Opens `url` in the system browser without waiting for it: the sign-in's redirect must be
/// answered while the browser runs.
fn open_browser(url: &str) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("browser".into())
        .spawn(move || {
            if let Err(e) = webbrowser::open(&url) {
                tracing::error!(error = %e, "could not open the system browser for the sign-in");
            }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}
