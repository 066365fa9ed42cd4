//! Accepting connections: plain HTTP or TLS (rustls), with the limits that keep one client
//! from costing others — a bound on open connections and on those from one source address, a
//! deadline for the TLS handshake, and one for every request's headers that also runs while a
//! connection waits for its first byte and while it idles between requests (slowloris, idle
//! connections) — and graceful shutdown.
//!
//! Connections speak HTTP/1.1 only (WebSocket upgrades included): there is no protocol
//! detection phase, whose read of the HTTP/2 preface had no deadline of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Connection limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Most connections open at once from one source address, so one client cannot take the
    /// whole budget. Behind a load balancer every connection comes from its address: raise it
    /// to `max_connections` there and let the balancer limit per client.
    pub max_connections_per_source: usize,
    /// Time allowed for a request's headers to arrive, counted from when the connection starts
    /// waiting for them: for its first request from accept, for later ones from the end of the
    /// previous response (so it is also the idle keep-alive limit).
    pub header_read_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_source: 1024,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// A TLS acceptor from PEM certificate chain and private key files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connection's places in the connection budget (in all and for its source address), given
/// back when the last holder drops it: the connection task, or a WebSocket that outlives it;
/// and the server's stop signal, which a WebSocket watches to close when the service stops.
#[derive(Clone)]
pub struct ConnectionSlot {
    _held: Arc<(tokio::sync::OwnedSemaphorePermit, SourceSlot)>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl ConnectionSlot {
    /// Resolves when the server stops taking requests.
    pub async fn stopping(&mut self) {
        let _ = self.stop.wait_for(|stopped| *stopped).await;
    }
}

/// Open connections per source address; a [`SourceSlot`] gives its place back when dropped.
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, usize>>);

struct SourceSlot {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<SourceSlot> {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self
            .sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve_connections(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(Sources::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(source_slot) = sources.take(peer.ip(), limits.max_connections_per_source) else {
            tracing::warn!(%peer, "connection limit for this source reached; closing new connection");
            drop(tcp);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // The connection's places in the budget travel with its requests, so a WebSocket keeps
        // them after its upgrade (when hyper's side of the connection has ended) until it closes.
        let held = ConnectionSlot {
            _held: Arc::new((slot, source_slot)),
            stop: stop_rx.clone(),
        };
        let with_slot = held.clone();
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(with_slot.clone());
                request
            },
        ));
        let builder = builder.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let _held = held;
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            until_stopped(
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades(),
                                stop,
                            )
                            .await
                        }
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    until_stopped(
                        builder
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades(),
                        stop,
                    )
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Let in-flight requests finish, but not forever: every connection holds a slot until it
    // ends, so having them all back means every connection has ended.
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("shutdown: connections still open after 30 s"),
    }
    Ok(())
}

/// Serves one connection until it ends; when `stop` turns true it finishes the request in
/// flight and closes (a WebSocket, once upgraded, is its handler's to end).
async fn until_stopped<I, S, B>(
    conn: http1::UpgradeableConnection<I, S>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> hyper::Result<()>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
