//! Connection handling over real sockets: a client that trickles its headers is cut off
//! without slowing anyone else, and TLS serves with a real certificate.

mod harness;

use std::time::Duration;

use countersign_server::transport::{Limits, tls_acceptor};
use harness::Harness;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn start(
    h: &Harness,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = h.state.clone();
    tokio::spawn(async move {
        let _ = countersign_server::serve_with(listener, state, tls, limits, async move {
            let _ = rx.await;
        })
        .await;
    });
    (addr, tx)
}

#[tokio::test]
async fn slow_header_client_is_cut_off_and_others_are_served() {
    let h = Harness::new().await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (addr, _stop) = start(&h, None, limits).await;

    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Meanwhile a well-behaved client is served at once.
    let client = countersign_client::Client::new(&format!("http://{addr}")).expect("client");
    client
        .server_key()
        .await
        .expect("served while the slow client trickles");
    // Keep trickling one header byte at a time; the server must close the connection.
    let mut closed = false;
    for _ in 0..100 {
        if slow.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 or similar response also ends it.
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "a client trickling headers for 10 s was not cut off"
    );
}

#[tokio::test]
async fn https_serves_with_a_real_certificate() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = |name: &str| dir.path().join(name);
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=Countersign Test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let acceptor = tls_acceptor(&cert, &key).expect("TLS config");
    let (addr, _stop) = start(&h, Some(acceptor), Limits::default()).await;
    let url = format!("https://127.0.0.1:{}", addr.port());

    let pem = std::fs::read(&ca).expect("ca");
    let trusted = countersign_client::Client::with_ca(&url, Some(&pem)).expect("client");
    let key_view = trusted
        .server_key()
        .await
        .expect("HTTPS works with the service's certificate trusted");
    assert_eq!(&key_view.public_key, h.state.key.public());

    let untrusted = countersign_client::Client::new(&url).expect("client");
    assert!(
        untrusted.server_key().await.is_err(),
        "an unknown certificate must not be accepted"
    );

    let plain = countersign_client::Client::new(&format!("http://127.0.0.1:{}", addr.port()))
        .expect("client");
    assert!(
        plain.server_key().await.is_err(),
        "plain HTTP must not be served on the TLS port"
    );
}

#[test]
fn missing_or_bad_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = tls_acceptor(&dir.path().join("nope.pem"), &dir.path().join("nope.key"))
        .err()
        .expect("error");
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
    std::fs::write(dir.path().join("empty.pem"), "").expect("write");
    let empty = tls_acceptor(&dir.path().join("empty.pem"), &dir.path().join("nope.key"))
        .err()
        .expect("error");
    assert!(empty.to_string().contains("no certificate"), "{empty}");
}

/// Reads until the server closes the connection (or answers and closes); true when it did
/// within `within`.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Connections that send nothing, part of an HTTP/2 preface, or nothing after their first
/// request are closed at the header deadline, so idle sockets cannot hold the budget.
#[tokio::test]
async fn idle_and_half_open_connections_are_closed_at_the_header_deadline() {
    let h = Harness::new().await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (addr, _stop) = start(&h, None, limits).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut preface = tokio::net::TcpStream::connect(addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM")
        .await
        .expect("write");
    let mut kept_alive = tokio::net::TcpStream::connect(addr).await.expect("connect");
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    for (name, stream) in [
        ("silent", &mut silent),
        ("half an HTTP/2 preface", &mut preface),
        ("idle after one request", &mut kept_alive),
    ] {
        assert!(
            closed_by_server(stream, Duration::from_secs(5)).await,
            "{name} connection still open 5 s after a 0.5 s deadline"
        );
    }
}

/// One source address cannot take the whole connection budget: past its share its new
/// connections are closed, while another address is still served.
#[tokio::test]
async fn one_source_cannot_take_every_connection() {
    let h = Harness::new().await;
    let limits = Limits {
        max_connections: 8,
        max_connections_per_source: 4,
        ..Limits::default()
    };
    let (addr, _stop) = start(&h, None, limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "a fifth connection from one source was served");
    // Another loopback address is another source.
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut other = other.connect(addr).await.expect("connect");
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    other.read_to_end(&mut response).await.expect("read");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    drop(held);
}

/// A WebSocket keeps its connection's place in the budget after the upgrade, for as long as
/// it is open: streams cannot be used to get around the connection limits.
#[tokio::test]
async fn open_streams_count_toward_the_connection_budget() {
    let h = Harness::new().await;
    let limits = Limits {
        max_connections: 8,
        max_connections_per_source: 3,
        ..Limits::default()
    };
    let (addr, _stop) = start(&h, None, limits).await;
    let ws = format!("ws://{addr}/v1/ws");
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (s, _) = tokio_tungstenite::connect_async(&ws)
            .await
            .expect("upgrade");
        streams.push(s);
    }
    let healthz = |addr| async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut response)).await;
        response
    };
    let refused = healthz(addr).await;
    assert!(
        refused.is_empty(),
        "served past the limit: {}",
        String::from_utf8_lossy(&refused)
    );
    drop(streams.pop());
    let mut served = Vec::new();
    for _ in 0..50 {
        served = healthz(addr).await;
        if !served.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served.starts_with(b"HTTP/1.1 200"),
        "a closed stream gave its place back"
    );
}
