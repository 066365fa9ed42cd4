//! The approver stream (`/v1/ws`): connect, answer the challenge with the enrolled key, then
//! read the snapshot and the live messages, and send decisions.

use countersign_core::api::{ActionView, ClientMessage, ServerMessage};
use countersign_core::{KeyId, SessionRequest, Signature, SignedDecision};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Connecting or talking failed.
    #[error("approver stream: {0}")]
    Transport(String),
    /// The service refused, or said something unexpected.
    #[error("approver stream refused: {code}: {message}")]
    Refused {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The key refused to sign the challenge.
    #[error("signing the challenge failed: {0}")]
    Sign(String),
}

/// An authenticated approver stream.
pub struct ApproverStream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl std::fmt::Debug for ApproverStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApproverStream")
    }
}

/// What arrived on the stream.
#[derive(Debug)]
pub enum Incoming {
    /// A message from the service.
    Message(Box<ServerMessage>),
    /// A ping or pong: the connection is alive.
    Activity,
}

/// The first state after connecting.
#[derive(Debug)]
pub struct Snapshot {
    /// Who is signed in.
    pub approver_id: String,
    /// Log position of the snapshot.
    pub seq: u64,
    /// The inbox.
    pub requests: Vec<ActionView>,
}

fn transport(e: impl std::fmt::Display) -> StreamError {
    StreamError::Transport(e.to_string())
}

impl ApproverStream {
    /// Connects to `base` (http[s]://host:port), authenticates with `key_id` via `sign`.
    pub async fn connect(
        base: &str,
        key_id: KeyId,
        sign: impl Fn(&[u8]) -> Result<Signature, String>,
    ) -> Result<(Self, Snapshot), StreamError> {
        let url = format!(
            "{}/v1/ws",
            base.trim_end_matches('/').replacen("http", "ws", 1)
        );
        // tungstenite zero-fills its read buffer on every read: keep it small (frames are).
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false)
                .await
                .map_err(transport)?;
        let mut stream = Self { ws };
        let ServerMessage::Challenge { challenge, service } = stream.expect_message().await? else {
            return Err(StreamError::Transport("expected a challenge".into()));
        };
        let payload = SessionRequest::payload(&challenge, &key_id, &service).map_err(transport)?;
        let signature = sign(&payload).map_err(StreamError::Sign)?;
        stream
            .send(&ClientMessage::Auth { key_id, signature })
            .await?;
        match stream.expect_message().await? {
            ServerMessage::Snapshot {
                approver_id,
                seq,
                requests,
            } => Ok((
                stream,
                Snapshot {
                    approver_id,
                    seq,
                    requests,
                },
            )),
            ServerMessage::Error { code, message, .. } => {
                Err(StreamError::Refused { code, message })
            }
            other => Err(StreamError::Transport(format!(
                "unexpected message {other:?}"
            ))),
        }
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), StreamError> {
        let text = serde_json::to_string(message).map_err(transport)?;
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(transport)
    }

    async fn expect_message(&mut self) -> Result<ServerMessage, StreamError> {
        self.next()
            .await?
            .ok_or_else(|| StreamError::Transport("stream closed".into()))
    }

    /// The next message; `None` when the service closed the stream.
    pub async fn next(&mut self) -> Result<Option<ServerMessage>, StreamError> {
        while let Some(frame) = self.ws.next().await {
            match frame.map_err(transport)? {
                Message::Text(text) => {
                    return serde_json::from_str(&text).map(Some).map_err(transport);
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// The next message, or `Activity` for a ping or pong (proof the connection is alive);
    /// `None` when the service closed the stream.
    pub async fn next_or_activity(&mut self) -> Result<Option<Incoming>, StreamError> {
        match self.ws.next().await {
            None => Ok(None),
            Some(frame) => match frame.map_err(transport)? {
                Message::Text(text) => serde_json::from_str(&text)
                    .map(|m| Some(Incoming::Message(Box::new(m))))
                    .map_err(transport),
                Message::Close(_) => Ok(None),
                _ => Ok(Some(Incoming::Activity)),
            },
        }
    }

    /// Sends a ping; the pong shows up as [`Incoming::Activity`].
    pub async fn ping(&mut self) -> Result<(), StreamError> {
        self.ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(transport)
    }

    /// The next text frame, undecoded (load generators that only need to see it arrive).
    pub async fn next_text(&mut self) -> Result<Option<String>, StreamError> {
        while let Some(frame) = self.ws.next().await {
            match frame.map_err(transport)? {
                Message::Text(text) => return Ok(Some(text.to_string())),
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Sends a signed decision; the reply arrives as `Decided` or `Error` among the messages.
    pub async fn decide(&mut self, decision: SignedDecision) -> Result<(), StreamError> {
        self.send(&ClientMessage::Decide { decision }).await
    }

    /// Sends raw text (tests of the service's limits).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), StreamError> {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .map_err(transport)
    }
}
