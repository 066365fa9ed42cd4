//! `GET /v1/ws`: the approver stream. The connection authenticates by signing a fresh
//! challenge with an enrolled key, receives a snapshot of its inbox at a log position, then
//! every later change to it; decisions may be sent back on the same socket.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use countersign_core::KeyId;
use countersign_core::api::{ClientMessage, ErrorBody, ServerMessage};
use countersign_store::Approver;
use futures_util::SinkExt as _;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::decisions;
use crate::error::ApiError;
use crate::fanout::Notice;
use crate::state::AppState;

/// Most queued notices written to one socket before it is flushed.
const MAX_BATCH: usize = 64;
/// Largest message a client may send (a signed decision is well under 2 KiB).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Read buffer per stream.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Time allowed to answer the challenge.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a peer that stops answering is dropped by the transport.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// Sustained and burst rate of client messages; beyond it the connection is closed.
const RATE_PER_SECOND: f64 = 10.0;
const BURST: f64 = 40.0;
/// WebSocket close code for a policy violation (RFC 6455).
const POLICY_VIOLATION: u16 = 1008;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// The approver stream (WebSocket). Messages: `ServerMessage` from the service,
/// `ClientMessage` from the approver; see docs/service.md.
#[utoipa::path(get, path = "/v1/ws", tag = "approvers",
    responses((status = 101, description = "Switching to the WebSocket protocol", body = ServerMessage),
        (status = 400, description = "Not a WebSocket handshake (missing or wrong Upgrade, Connection, Sec-WebSocket-* headers)", body = ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = ErrorBody)))]
async fn upgrade(
    State(state): State<AppState>,
    slot: Option<axum::Extension<crate::transport::ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    // tungstenite zero-fills its read buffer on every read; its 128 KiB default made that
    // memset the largest cost of the fan-out (profiled), and frames here are small.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            // The stream holds its connection's place in the budget for as long as it is open,
            // and closes when the service stops (clients reconnect and resync).
            let slot = slot.map(|axum::Extension(s)| s);
            state.metrics.approver_connected(1);
            if let Err(reason) = run(&state, socket, slot).await {
                tracing::debug!(%reason, "approver stream ended");
            }
            state.metrics.approver_connected(-1);
        })
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * RATE_PER_SECOND)
            .min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The frame `notice` makes for this approver, if any: a fresh snapshot after a resync, the
/// change to a request it may decide or has in its inbox; `None` for everyone else's.
async fn frame_for(
    state: &AppState,
    approver: &mut Approver,
    notice: &Notice,
    after: &mut u64,
    relevant: &mut HashSet<Uuid>,
) -> Result<Option<Message>, String> {
    match notice {
        Notice::Resync => {
            let fresh = snapshot(state, approver, relevant).await?;
            if let ServerMessage::Snapshot { seq, .. } = &fresh {
                *after = *seq;
            }
            let text = serde_json::to_string(&fresh).map_err(|e| e.to_string())?;
            Ok(Some(Message::Text(text.into())))
        }
        Notice::Change {
            seq,
            record,
            new,
            text,
        } => {
            if *seq < *after {
                return Ok(None);
            }
            let id = record.action.id;
            if *new {
                // Already in the snapshot this stream sent (created between the snapshot's
                // position and its read of the inbox): shown once, not announced again.
                if relevant.contains(&id)
                    || crate::domain::rules::eligible(approver, record).is_err()
                {
                    return Ok(None);
                }
                relevant.insert(id);
            } else if !relevant.contains(&id) {
                return Ok(None);
            } else if record.status.is_final() {
                relevant.remove(&id);
            }
            Ok(Some(Message::Text(text.clone())))
        }
        Notice::KeyRevoked(_) => Ok(None),
        Notice::DirectoryChanged => {
            let now = state
                .store
                .approver(&approver.id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "approver no longer exists".to_owned())?;
            if now == *approver {
                return Ok(None);
            }
            *approver = now;
            let fresh = snapshot(state, approver, relevant).await?;
            if let ServerMessage::Snapshot { seq, .. } = &fresh {
                *after = *seq;
            }
            let text = serde_json::to_string(&fresh).map_err(|e| e.to_string())?;
            Ok(Some(Message::Text(text.into())))
        }
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

fn error_message(request_id: Option<Uuid>, e: &ApiError) -> ServerMessage {
    ServerMessage::Error {
        request_id,
        code: e.code.to_owned(),
        message: e.message.clone(),
    }
}

async fn authenticate(
    state: &AppState,
    socket: &mut WebSocket,
) -> Result<(Approver, KeyId), String> {
    // Stateless until answered: an unauthenticated connection costs no write.
    let (challenge, _) = crate::challenge::issue(
        &state.key,
        state.now().add_seconds(AUTH_TIMEOUT.as_secs() as i64 + 5),
    );
    send(
        socket,
        &ServerMessage::Challenge {
            challenge,
            service: state.config.origin.clone(),
        },
    )
    .await?;
    let reply = match tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(_) => return Err("closed before authenticating".into()),
        Err(_) => {
            close(socket, POLICY_VIOLATION, "authentication timed out").await;
            return Err("authentication timed out".into());
        }
    };
    let refuse = |code: &str, message: &str| ServerMessage::Error {
        request_id: None,
        code: code.into(),
        message: message.into(),
    };
    let Ok(ClientMessage::Auth { key_id, signature }) =
        serde_json::from_str::<ClientMessage>(&reply)
    else {
        send(socket, &refuse("unauthorized", "expected an auth message")).await?;
        close(socket, POLICY_VIOLATION, "unauthorized").await;
        return Err("first message was not auth".into());
    };
    let key =
        match crate::domain::approvers::verify_challenge(state, &challenge, &key_id, &signature)
            .await
            .map_err(ApiError::from)
        {
            Ok(key) => key,
            Err(e) => {
                send(socket, &error_message(None, &e)).await?;
                close(socket, POLICY_VIOLATION, "unauthorized").await;
                return Err(format!("authentication failed: {}", e.code));
            }
        };
    let approver = state
        .store
        .approver(&key.approver_id)
        .await
        .map_err(|e| e.to_string())?;
    let approver = approver.ok_or_else(|| "approver no longer exists".to_owned())?;
    Ok((approver, key.key_id))
}

/// Whether `key_id` is still enrolled and unrevoked.
async fn key_active(state: &AppState, key_id: &KeyId) -> Result<bool, String> {
    let key = state.store.key(key_id).await.map_err(|e| e.to_string())?;
    Ok(key.is_some_and(|k| k.revoked_at.is_none()))
}

async fn snapshot(
    state: &AppState,
    approver: &Approver,
    relevant: &mut HashSet<Uuid>,
) -> Result<ServerMessage, String> {
    let seq = state.store.audit_size().await.map_err(|e| e.to_string())?;
    let requests = crate::domain::requests::inbox(state, approver)
        .await
        .map_err(|e| e.to_string())?;
    relevant.clear();
    relevant.extend(requests.iter().map(|v| v.id));
    Ok(ServerMessage::Snapshot {
        approver_id: approver.id.clone(),
        seq,
        requests,
    })
}

/// Resolves when the service is stopping; never for a stream without a transport (tests that
/// drive the router directly).
async fn stopping(slot: &mut Option<crate::transport::ConnectionSlot>) {
    match slot {
        Some(s) => s.stopping().await,
        None => std::future::pending().await,
    }
}

/// WebSocket close code for a server going away (RFC 6455).
const GOING_AWAY: u16 = 1001;

async fn run(
    state: &AppState,
    mut socket: WebSocket,
    mut slot: Option<crate::transport::ConnectionSlot>,
) -> Result<(), String> {
    let (mut approver, key_id) = authenticate(state, &mut socket).await?;
    // Subscribe before the snapshot, so nothing committed after it can be missed.
    let mut notices = state.notices.subscribe();
    // A revocation committed before the subscription sends no notice this stream hears: check
    // once now; every later one arrives as a notice.
    if !key_active(state, &key_id).await? {
        close(&mut socket, POLICY_VIOLATION, "key revoked").await;
        return Err(format!("{} key revoked while connecting", approver.id));
    }
    let mut relevant = HashSet::new();
    let first = snapshot(state, &approver, &mut relevant).await?;
    let ServerMessage::Snapshot { seq, .. } = &first else {
        return Err("no snapshot".into());
    };
    let mut after = *seq;
    send(&mut socket, &first).await?;
    tracing::info!(approver = %approver.id, "approver stream connected");

    let mut bucket = Bucket::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(message)) => message,
                    Some(Err(e)) => return Err(e.to_string()),
                };
                // Every frame counts toward the rate (binary, ping and pong too): each costs
                // the service a read and a wake-up whatever its type.
                if !bucket.take() {
                    close(&mut socket, POLICY_VIOLATION, "too many messages").await;
                    return Err(format!("{} flooded the stream", approver.id));
                }
                let Message::Text(text) = message else { continue };
                let reply = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Decide { decision }) => {
                        let id = decision.decision.request_id;
                        match decisions::apply(state, id, decision).await {
                            Ok(result) => ServerMessage::Decided { request_id: id, result },
                            Err(e) => error_message(Some(id), &ApiError::from(e)),
                        }
                    }
                    Ok(ClientMessage::Auth { .. }) => ServerMessage::Error { request_id: None, code: "already_authenticated".into(), message: "this stream is already authenticated".into() },
                    Err(e) => ServerMessage::Error { request_id: None, code: "invalid_message".into(), message: e.to_string() },
                };
                send(&mut socket, &reply).await?;
            }
            notice = notices.recv() => {
                // Write every notice already queued, then flush once: under load a socket
                // catches up with one write instead of one per frame.
                let mut next = Some(notice);
                let mut batch = 0;
                while let Some(notice) = next.take() {
                    let notice = match notice {
                        Ok(n) => n,
                        Err(RecvError::Closed) => return Ok(()),
                        Err(RecvError::Lagged(_)) => Arc::new(Notice::Resync),
                    };
                    if let Notice::KeyRevoked(revoked) = notice.as_ref() && *revoked == key_id {
                        close(&mut socket, POLICY_VIOLATION, "key revoked").await;
                        return Err(format!("{} key revoked; stream closed", approver.id));
                    }
                    if let Some(frame) = frame_for(state, &mut approver, &notice, &mut after, &mut relevant).await? {
                        socket.feed(frame).await.map_err(|e| e.to_string())?;
                    }
                    batch += 1;
                    if batch < MAX_BATCH {
                        next = match notices.try_recv() {
                            Ok(n) => Some(Ok(n)),
                            Err(TryRecvError::Empty) => None,
                            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                            Err(TryRecvError::Lagged(k)) => Some(Err(RecvError::Lagged(k))),
                        };
                    }
                }
                socket.flush().await.map_err(|e| e.to_string())?;
            }
            () = stopping(&mut slot) => {
                close(&mut socket, GOING_AWAY, "service stopping").await;
                return Ok(());
            }
            _ = heartbeat.tick() => {
                socket.send(Message::Ping(Vec::new().into())).await.map_err(|e| e.to_string())?;
            }
        }
    }
}
