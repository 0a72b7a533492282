//! Mutual TLS between peers (`security.tls`) over the real transports, with peer processes on
//! 127.0.0.1 and certificates made here with rcgen: a TLS ring forms and serves files over
//! HTTP and gRPC; a plain-text client, a certificate of another CA, an expired certificate and
//! a server that is not the host dialled are refused at the handshake; a valid certificate
//! cannot speak for an id whose host it does not name; replaced files are used by new
//! connections without a restart, and broken ones are ignored.

use crate::support::cluster;
use crate::support::test_ca;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chordnet::config::TlsFiles;
use chordnet::transport::tls::PeerTls;
use chordnet::transport::{
    ClientOptions, TraceCarrier, TransportFactory, grpc::GrpcTransport, http::HttpTransport,
};
use chordnet::wire::ring::{Rejection, Request, RequestEnvelope, Response};
use chordnet::wire::{Address, Peer};
use cluster::{Cluster, wait_for};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use test_ca::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a CA file and a certificate/key pair under `dir` as `<name>.{crt,key}`.
fn write_set(dir: &Path, name: &str, ca: &str, (cert, key): &(String, String)) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("dir");
    let files = TlsFiles {
        ca: dir.join(format!("{name}-ca.crt")),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.ca, ca).expect("ca");
    std::fs::write(&files.cert, cert).expect("cert");
    std::fs::write(&files.key, key).expect("key");
    files
}

fn tls_env(kind: &str, files: &TlsFiles) -> Vec<(String, String)> {
    let p = |p: &PathBuf| p.display().to_string();
    vec![
        ("CHORDNET_TRANSPORT__KIND".into(), kind.into()),
        ("CHORDNET_SECURITY__TLS__CA_FILE".into(), p(&files.ca)),
        ("CHORDNET_SECURITY__TLS__CERT_FILE".into(), p(&files.cert)),
        ("CHORDNET_SECURITY__TLS__KEY_FILE".into(), p(&files.key)),
        (
            "CHORDNET_SECURITY__TLS__RELOAD_INTERVAL".into(),
            "200ms".into(),
        ),
    ]
}

/// A rustls client configuration presenting `cert`/`key` and trusting `ca` (all PEM).
fn client_config(ca: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(|c| c.expect("cert pem"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key pem");
    let config = rustls::ClientConfig::builder_with_provider(chordnet::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client config");
    Arc::new(config)
}

/// What a client with `config` gets from the peer port at `addr` when it asks for `name`'s
/// certificate: the served certificate, or why the handshake (or the first exchange) failed.
/// In TLS 1.3 the server judges the client's certificate after the client finished, so the
/// client's refusal shows on its first read.
async fn dial(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    name: &str,
) -> Result<CertificateDer<'static>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let exchange = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let served = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
            .ok_or("no certificate served")?;
        // An HTTP/1 request: an HTTP peer answers it, a gRPC peer (HTTP/2 only) answers with
        // its own frames or closes; either way bytes come back when the server accepted us.
        tls.write_all(b"GET /peer/v1/none HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        match tls.read(&mut buf).await {
            Ok(0) => Err("closed without an answer".to_string()),
            Ok(_) => Ok(served),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// The sum of a metric family's series on peer `i` whose line starts with `series`.
async fn metric(c: &Cluster, i: usize, series: &str) -> f64 {
    let Some(text) = async {
        let r = c.http.get(c.peers[i].url("/metrics")).send().await.ok()?;
        r.text().await.ok()
    }
    .await
    else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A ring client of `kind` presenting the certificate in `files` (named `host`).
fn ring_client(kind: &str, files: TlsFiles, host: &str) -> chordnet::transport::Clients {
    let tls = PeerTls::load(files, host, Duration::from_secs(1), None).expect("client tls");
    let factory: Arc<dyn TransportFactory> = if kind == "http" {
        HttpTransport::default().with_tls(tls).expect("tls")
    } else {
        GrpcTransport::default().with_tls(tls).expect("tls")
    };
    factory
        .clients(ClientOptions::connect_within(Duration::from_secs(2)))
        .expect("clients")
}

async fn ping_from(
    clients: &chordnet::transport::Clients,
    to: &str,
    from: Peer,
) -> Result<bool, String> {
    let request = RequestEnvelope::new(None, from, Request::Ping);
    let answer = clients
        .ring
        .call(&Address::new(to), request, TraceCarrier::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(!matches!(
        answer.body,
        Response::Rejected {
            reason: Rejection::Unauthenticated
        }
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rings_serve_over_http_and_grpc_and_refuse_what_they_must() {
    for kind in ["http", "grpc"] {
        let root =
            std::env::temp_dir().join(format!("chordnet-mtls-{kind}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ca = Ca::new("ring ca");
        let sets: Vec<TlsFiles> = (0..3)
            .map(|i| {
                let pair = ca.issue(&["127.0.0.1", "localhost"], 10 + i, false);
                write_set(&root, &format!("peer-{i}"), &ca.pem(), &pair)
            })
            .collect();
        let mut c = Cluster::start_each(&format!("mtls-{kind}"), 3, |i| tls_env(kind, &sets[i]))
            .converged()
            .await;

        // Both planes over TLS: an upload through one peer, a download through another.
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(c.put(&c.peers[0], "tls.bin", &data).await.0, 201, "{kind}");
        assert_eq!(c.fetch(&c.peers[2], "tls.bin").await, Some(data), "{kind}");
        let target = c.peers[0].advertise.clone();

        // A client of the ring's CA is served the peer's certificate.
        let (good_cert, good_key) = ca.issue(&["127.0.0.1"], 20, false);
        let good = client_config(&ca.pem(), &good_cert, &good_key);
        let served = dial(Arc::clone(&good), &target, "127.0.0.1").await;
        assert!(
            served.is_ok(),
            "{kind}: a ring client is refused: {served:?}"
        );

        // Refused: plain text, another CA, an expired certificate.
        let mut plain = tokio::net::TcpStream::connect(&target).await.expect("tcp");
        plain
            .write_all(b"POST /peer/v1/rpc HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut buf)).await;
        assert!(
            !String::from_utf8_lossy(&buf).contains("HTTP/1.1"),
            "{kind}: a plain-text client got an HTTP answer: {read:?} {buf:?}"
        );
        let other = Ca::new("other ca");
        let (oc, ok) = other.issue(&["127.0.0.1"], 30, false);
        let r = dial(client_config(&other.pem(), &oc, &ok), &target, "127.0.0.1").await;
        assert!(
            r.is_err(),
            "{kind}: a certificate of another CA was accepted"
        );
        let (ec, ek) = ca.issue(&["127.0.0.1"], 31, true);
        let r = dial(client_config(&ca.pem(), &ec, &ek), &target, "127.0.0.1").await;
        assert!(r.is_err(), "{kind}: an expired certificate was accepted");
        // The client checks the server: a peer is not the host "evil.test".
        let r = dial(Arc::clone(&good), &target, "evil.test").await;
        assert!(
            r.is_err(),
            "{kind}: a server certificate for another name was accepted"
        );
        wait_for(
            "handshake failures counted",
            Duration::from_secs(10),
            || async { metric(&c, 0, "chordnet_peer_tls_handshake_failures_total").await >= 3.0 },
        )
        .await;

        // Identity: a valid certificate of "evil.test" cannot speak for peer 1 ...
        let victim = Peer::from_address(c.peers[1].advertise.clone());
        let evil = write_set(
            &root,
            "evil",
            &ca.pem(),
            &ca.issue(&["evil.test"], 40, false),
        );
        let evil = ring_client(kind, evil, "evil.test");
        let r = ping_from(&evil, &target, victim.clone()).await;
        assert_eq!(
            r,
            Ok(false),
            "{kind}: a certificate spoke for another host's id"
        );
        // ... nor can one of 127.0.0.1 claim an id that is not the SHA-1 of its address ...
        let honest = write_set(
            &root,
            "honest",
            &ca.pem(),
            &ca.issue(&["127.0.0.1"], 41, false),
        );
        let honest = ring_client(kind, honest, "127.0.0.1");
        let mut forged = victim.clone();
        forged.id = chordnet::id::Id::hash("somewhere else");
        assert_eq!(
            ping_from(&honest, &target, forged).await,
            Ok(false),
            "{kind}"
        );
        // ... while the same client speaking for an address its certificate names is answered.
        assert_eq!(
            ping_from(&honest, &target, victim).await,
            Ok(true),
            "{kind}"
        );
        assert!(
            metric(
                &c,
                0,
                "chordnet_peer_auth_rejections_total{reason=\"tls_identity\"}"
            )
            .await
                >= 2.0,
            "{kind}: identity refusals not counted"
        );

        // Rotation: a new certificate on disk is served to new connections, no restart.
        let first = served.expect("served");
        let rotated = ca.issue(&["127.0.0.1", "localhost"], 99, false);
        std::fs::write(&sets[0].key, &rotated.1).expect("key");
        std::fs::write(&sets[0].cert, &rotated.0).expect("cert");
        let want = CertificateDer::from_pem_slice(rotated.0.as_bytes()).expect("pem");
        wait_for(
            "the new certificate is served",
            Duration::from_secs(20),
            || {
                let good = Arc::clone(&good);
                let (target, want) = (target.clone(), want.clone());
                async move {
                    dial(good, &target, "127.0.0.1")
                        .await
                        .is_ok_and(|s| s == want)
                }
            },
        )
        .await;
        assert_ne!(first, want);
        assert!(metric(&c, 0, "chordnet_tls_reloads_total{result=\"ok\"}").await >= 1.0);
        // A broken file is ignored: the reload counts as an error and the peer keeps serving.
        std::fs::write(&sets[0].cert, "not a certificate").expect("cert");
        wait_for(
            "the broken file is noticed",
            Duration::from_secs(20),
            || async {
                let _ = dial(Arc::clone(&good), &target, "127.0.0.1").await;
                metric(&c, 0, "chordnet_tls_reloads_total{result=\"error\"}").await >= 1.0
            },
        )
        .await;
        assert_eq!(
            dial(Arc::clone(&good), &target, "127.0.0.1").await,
            Ok(want),
            "{kind}"
        );
        assert_eq!(
            c.fetch(&c.peers[0], "tls.bin").await.map(|d| d.len()),
            Some(5000)
        );
        for p in &mut c.peers {
            p.kill();
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A certificate that does not name the advertised host stops the peer at start, and so do
/// one or two of the three files without the others.
#[test]
fn a_certificate_for_another_host_or_a_partial_set_stops_the_peer() {
    let root = std::env::temp_dir().join(format!("chordnet-mtls-start-{}", std::process::id()));
    let ca = Ca::new("ring ca");
    let files = write_set(
        &root,
        "wrong",
        &ca.pem(),
        &ca.issue(&["evil.test"], 1, false),
    );
    let ports = cluster::free_ports(2);
    let run = |env: &[(String, String)]| {
        let mut cmd = std::process::Command::new(cluster::BIN);
        cmd.args(["serve", "--advertise", &format!("127.0.0.1:{}", ports[0])])
            .args(["--listen", &format!("127.0.0.1:{}", ports[0])])
            .args(["--api", &format!("127.0.0.1:{}", ports[1])])
            .arg("--store-dir")
            .arg(root.join("data"))
            .env_remove("CHORDNET_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run chordnet serve")
    };
    let out = run(&tls_env("http", &files));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not name \"127.0.0.1\""), "{err}");
    let partial = &tls_env("http", &files)[..2];
    let out = run(partial);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cert_file, key_file"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
