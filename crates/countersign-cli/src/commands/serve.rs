//! `countersign serve`: the approval service on a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use countersign_server::{Config, Service};

/// Options of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (database, service key).
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "127.0.0.1:8750")]
    pub listen: SocketAddr,
    /// Rego policy file, reloaded when it changes (default: the built-in policy).
    #[arg(long, env = "COUNTERSIGN_POLICY")]
    pub policy: Option<PathBuf>,
    /// The log's name in checkpoints.
    #[arg(
        long,
        env = "COUNTERSIGN_ORIGIN",
        default_value = "countersign.local/log"
    )]
    pub origin: String,
    /// TLS certificate chain (PEM); with --tls-key, serves HTTPS.
    #[arg(long, env = "COUNTERSIGN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "COUNTERSIGN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    #[arg(long)]
    pub insecure_plain_http: bool,
}

/// Refuses plain HTTP beyond loopback unless forced: tokens and requests would travel in clear.
pub fn check_listen(listen: &SocketAddr, tls: bool, forced: bool) -> anyhow::Result<()> {
    if !tls && !listen.ip().is_loopback() && !forced {
        bail!(
            "refusing plain HTTP on {listen}: listen on 127.0.0.1, or pass --insecure-plain-http behind a TLS proxy"
        );
    }
    Ok(())
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(countersign_server::transport::tls_acceptor(cert, key)?),
        _ => None,
    };
    check_listen(&args.listen, tls.is_some(), args.insecure_plain_http)?;
    let config = Config {
        origin: args.origin.clone(),
        ..Config::default()
    };
    let service = Service::open(&args.data_dir, args.policy.as_deref(), config)
        .await
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "countersign service listening");
    eprintln!(
        "countersign: serving http://{addr} (data in {})",
        args.data_dir.display()
    );
    countersign_server::serve(listener, service.state, shutdown_signal()).await?;
    eprintln!("countersign: stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_loopback_only_unless_forced() {
        let public: SocketAddr = "0.0.0.0:8750".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8750".parse().expect("addr");
        assert!(check_listen(&public, false, false).is_err());
        assert!(check_listen(&public, true, false).is_ok());
        assert!(check_listen(&public, false, true).is_ok());
        assert!(check_listen(&local, false, false).is_ok());
    }
}
