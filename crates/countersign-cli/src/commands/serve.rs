//! `countersign serve`: the approval service on a data directory.
//!
//! Settings come from flags, then the environment (`COUNTERSIGN_*`), then a TOML file given
//! with `--config`, then built-in defaults — the first that sets a value wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use countersign_server::{Config, Service};
use serde::Deserialize;

/// Options of `serve`.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment override it).
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database, service key) [default: ./countersign-data].
    #[arg(long, env = "COUNTERSIGN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL database shared by several replicas (`postgres://user:pass@host/db`)
    /// [default: SQLite in the data directory].
    #[arg(long, env = "COUNTERSIGN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8750].
    #[arg(long, env = "COUNTERSIGN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Rego policy file, reloaded when it changes [default: the built-in policy].
    #[arg(long, env = "COUNTERSIGN_POLICY")]
    pub policy: Option<PathBuf>,
    /// The log's name in checkpoints [default: countersign.local/log].
    #[arg(long, env = "COUNTERSIGN_ORIGIN")]
    pub origin: Option<String>,
    /// TLS certificate chain (PEM); with the key, serves HTTPS.
    #[arg(long, env = "COUNTERSIGN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "COUNTERSIGN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Most connections open at once from one address [default: 1024 of 4096]. Behind a load
    /// balancer every connection comes from the balancer: raise it to 4096 there.
    #[arg(long, env = "COUNTERSIGN_MAX_CONNECTIONS_PER_SOURCE")]
    pub max_connections_per_source: Option<usize>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<SocketAddr>,
    policy: Option<PathBuf>,
    origin: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plain_http: Option<bool>,
    max_connections_per_source: Option<usize>,
    /// Issuers whose workload identity tokens authenticate agents (docs/identity.md).
    #[serde(default, rename = "workload_issuer")]
    workload_issuers: Vec<countersign_server::workload::WorkloadIssuerConfig>,
    /// The OpenID Provider approvers sign in with (docs/identity.md).
    oidc: Option<countersign_server::oidc::OidcConfig>,
    /// Provisioning from the organisation's directory (docs/identity.md).
    scim: Option<countersign_server::scim::ScimConfig>,
    /// The manufacturers' roots that vouch for approvers' devices (docs/keys.md).
    attestation: Option<countersign_server::attestation::AttestationConfig>,
    /// Outbound notice channels: webhooks, Slack, Teams (docs/channels.md).
    channels: Option<countersign_server::channels::ChannelsConfig>,
}

/// Settings after precedence is applied.
#[derive(Debug, PartialEq)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL URL, when not the embedded SQLite.
    pub database_url: Option<String>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Policy file.
    pub policy: Option<PathBuf>,
    /// Log origin.
    pub origin: String,
    /// TLS files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP beyond loopback allowed.
    pub insecure_plain_http: bool,
    /// Connection limit per source address.
    pub max_connections_per_source: usize,
    /// Trusted workload-identity issuers (only in the file).
    pub workload_issuers: Vec<countersign_server::workload::WorkloadIssuerConfig>,
    /// The approvers' OpenID Provider (only in the file).
    pub oidc: Option<countersign_server::oidc::OidcConfig>,
    /// SCIM provisioning (only in the file).
    pub scim: Option<countersign_server::scim::ScimConfig>,
    /// Trusted attestation roots, their paths resolved against the file's directory (only in
    /// the file).
    pub attestation: countersign_server::attestation::AttestationConfig,
    /// Outbound notice channels (only in the file).
    pub channels: countersign_server::channels::ChannelsConfig,
}

impl ServeArgs {
    /// Applies the precedence: flag or environment, then the file, then the default.
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        // Relative paths in the file are relative to the file, not to the working directory.
        let base = self
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let from_file =
            |p: Option<PathBuf>| p.map(|p| if p.is_absolute() { p } else { base.join(p) });
        let tls_cert = self.tls_cert.or(from_file(file.tls_cert));
        let tls_key = self.tls_key.or(from_file(file.tls_key));
        let tls = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("TLS needs both a certificate (--tls-cert) and a key (--tls-key)"),
        };
        Ok(Settings {
            data_dir: self
                .data_dir
                .or(from_file(file.data_dir))
                .unwrap_or_else(|| PathBuf::from("./countersign-data")),
            database_url: self.database_url.or(file.database_url),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8750))),
            policy: self.policy.or(from_file(file.policy)),
            origin: self
                .origin
                .or(file.origin)
                .unwrap_or_else(|| "countersign.local/log".to_owned()),
            tls,
            insecure_plain_http: self.insecure_plain_http
                || file.insecure_plain_http.unwrap_or(false),
            max_connections_per_source: self
                .max_connections_per_source
                .or(file.max_connections_per_source)
                .unwrap_or(
                    countersign_server::transport::Limits::default().max_connections_per_source,
                )
                .max(1),
            workload_issuers: file.workload_issuers,
            oidc: file.oidc,
            scim: file.scim,
            attestation: file
                .attestation
                .map(|a| {
                    let resolve = |paths: Vec<PathBuf>| {
                        paths
                            .into_iter()
                            .filter_map(|p| from_file(Some(p)))
                            .collect()
                    };
                    countersign_server::attestation::AttestationConfig {
                        tpm_roots: resolve(a.tpm_roots),
                        tpm_intermediates: resolve(a.tpm_intermediates),
                        piv_roots: resolve(a.piv_roots),
                    }
                })
                .unwrap_or_default(),
            channels: file.channels.unwrap_or_default(),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
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
    let settings = args.resolve()?;
    let tls = match &settings.tls {
        Some((cert, key)) => Some(countersign_server::transport::tls_acceptor(cert, key)?),
        None => None,
    };
    check_listen(
        &settings.listen,
        tls.is_some(),
        settings.insecure_plain_http,
    )?;
    let config = Config {
        origin: settings.origin.clone(),
        workload_issuers: settings.workload_issuers.clone(),
        oidc: settings.oidc.clone(),
        scim: settings.scim.clone().unwrap_or_default(),
        attestation: settings.attestation.clone(),
        channels: settings.channels.clone(),
        ..Config::default()
    };
    let store = super::database::open(&settings.data_dir, settings.database_url.as_deref()).await?;
    let service = Service::open(
        &settings.data_dir,
        store,
        settings.policy.as_deref(),
        config,
    )
    .await
    .with_context(|| format!("opening {}", settings.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "countersign service listening");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let store_name = match &settings.database_url {
        Some(url) => super::database::redact(url),
        None => settings.data_dir.display().to_string(),
    };
    eprintln!("countersign: serving {scheme}://{addr} (data in {store_name})");
    let limits = countersign_server::transport::Limits {
        max_connections_per_source: settings.max_connections_per_source,
        ..countersign_server::transport::Limits::default()
    };
    countersign_server::serve_with(listener, service.state, tls, limits, shutdown_signal()).await?;
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

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("countersign.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\nlisten = \"127.0.0.1:9000\"\norigin = \"acme.example/log\"\n",
        )
        .expect("write");
        let from_file = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("resolves");
        assert_eq!(from_file.data_dir, dir.path().join("data"));
        assert_eq!(from_file.listen.port(), 9000);
        assert_eq!(from_file.origin, "acme.example/log");
        assert!(from_file.attestation.tpm_roots.is_empty());
        let flagged = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("resolves");
        assert_eq!(flagged.listen.port(), 9100);
        assert_eq!(flagged.origin, "acme.example/log");
        let defaults = ServeArgs::default().resolve().expect("resolves");
        assert_eq!(
            defaults.listen,
            "127.0.0.1:8750".parse::<SocketAddr>().expect("addr")
        );
    }

    #[test]
    fn attestation_roots_in_the_file_are_relative_to_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("countersign.toml");
        std::fs::write(
            &path,
            "[attestation]\ntpm_roots = [\"roots/ek-root.pem\", \"/etc/tpm/other.pem\"]\npiv_roots = [\"yubico.pem\"]\n",
        )
        .expect("write");
        let settings = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("resolves");
        assert_eq!(
            settings.attestation.tpm_roots,
            vec![
                dir.path().join("roots/ek-root.pem"),
                PathBuf::from("/etc/tpm/other.pem")
            ]
        );
        assert_eq!(
            settings.attestation.piv_roots,
            vec![dir.path().join("yubico.pem")]
        );
        assert!(settings.attestation.tpm_intermediates.is_empty());
    }

    #[test]
    fn unknown_setting_and_half_tls_are_errors() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen_on = \"0.0.0.0:1\"\n").expect("write");
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .expect_err("unknown key");
        assert!(format!("{err:#}").contains("listen_on"), "{err:#}");
        let half = ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .expect_err("half TLS");
        assert!(half.to_string().contains("both"), "{half}");
    }
}
