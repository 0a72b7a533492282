//! TLS to the NATS broker (`nats.tls_ca_file`, `nats.tls_cert_file`, `nats.tls_key_file`, or a
//! `tls://` URL), against a real `nats-server` started here with a TLS configuration and
//! certificates made here with rcgen: two peers of the NATS transport talk through a broker
//! that requires client certificates (ring calls, an object there and back); a broker whose
//! certificate is of another CA is refused at once with an error that names the settings; a
//! broker that requires a client certificate refuses a client without one; a CA file makes a
//! `nats://` URL TLS-only, so a plain broker is refused rather than used in clear; the keys
//! load from the environment and a certificate without its key stops the configuration.

use crate::support::conformance;
use crate::support::conformance_kit;
use crate::support::nats_server;
use crate::support::test_ca;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chordnet::config::{Config, NatsConfig, Overrides};
use chordnet::transport::TransportFactory;
use chordnet::transport::nats::{ConnectError, NatsTransport, connect, connect_now};
use nats_server::{BrokerTls, NatsServer};
use test_ca::Ca;

/// A CA, the broker's certificate (127.0.0.1) and a client certificate, as files in `dir`.
struct Pki {
    ca: Ca,
    broker: (String, String),
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("chordnet-nats-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = Ca::new(&format!("{name} ca"));
        let broker = ca.issue(&["127.0.0.1", "localhost"], 2, false);
        Pki { ca, broker, dir }
    }

    fn broker(&self, name: &str, verify: bool) -> NatsServer {
        NatsServer::start_tls(
            name,
            BrokerTls {
                cert: &self.broker.0,
                key: &self.broker.1,
                ca: &self.ca.pem(),
                verify,
            },
        )
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// The broker settings of a client: `url`, trusting `ca`, with a client certificate of
    /// this CA when `client_cert`.
    fn nats(&self, url: String, ca: &Ca, client_cert: bool) -> NatsConfig {
        let mut n = NatsConfig {
            url,
            ring_name: "tls".into(),
            ..NatsConfig::default()
        };
        n.tls_ca_file = Some(self.write(&ca_file_name(ca), &ca.pem()));
        if client_cert {
            let (cert, key) = self.ca.issue(&["peer.chordnet.test"], 7, false);
            n.tls_cert_file = Some(self.write("client.crt", &cert));
            n.tls_key_file = Some(self.write("client.key", &key));
        }
        n
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A file name per CA (a hash of its PEM), so that two CAs never share a file.
fn ca_file_name(ca: &Ca) -> String {
    let h = ca
        .pem()
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    format!("ca-{h:x}.crt")
}

/// The NATS transport with `nats` as its broker settings.
struct Under(NatsConfig);

impl conformance_kit::Under for Under {
    fn factory(&self) -> Arc<dyn TransportFactory> {
        let mut config = conformance_kit::config();
        config.nats = self.0.clone();
        Arc::new(NatsTransport::new(&config))
    }
    fn endpoint(&self, i: usize) -> (SocketAddr, String) {
        (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            format!("chordnet.tls.peer.p{i}"),
        )
    }
    fn nobody(&self) -> String {
        "chordnet.tls.peer.nobody".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_talk_through_a_broker_that_requires_client_certificates() {
    let pki = Pki::new("pair");
    let broker = pki.broker("tls-pair", true);
    let under = Under(pki.nats(broker.url(), &pki.ca, true));
    // Ring calls (a ping, a lookup), through the TLS broker.
    conformance::request_response(&under).await;
    // An object there and back (a small one: the conformance suite's 4 MB manifest against
    // its 300 ms time-out is about the machine's load, not about TLS).
    let b = conformance_kit::bench(&under, 1, None).await;
    conformance::small_object_there_and_back(&b, "over tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_of_another_ca_is_refused_at_once_with_a_clear_error() {
    let pki = Pki::new("other-ca");
    let broker = pki.broker("tls-other-ca", false);
    let other = Ca::new("another ca");
    let settings = pki.nats(broker.url(), &other, false);
    for (what, result) in [
        (
            "connect (a peer)",
            tokio::time::timeout(Duration::from_secs(20), connect(&settings, "test")).await,
        ),
        (
            "connect_now (a command)",
            tokio::time::timeout(Duration::from_secs(20), connect_now(&settings, "test")).await,
        ),
    ] {
        let result =
            result.unwrap_or_else(|_| panic!("{what}: no answer in 20 s (retrying for ever?)"));
        let e = result
            .err()
            .unwrap_or_else(|| panic!("{what}: connected to a broker of another CA"));
        assert!(matches!(e, ConnectError::Tls(_)), "{what}: {e:?}");
        let text = e.to_string();
        assert!(text.contains("nats.tls_ca_file"), "{what}: {text}");
        assert!(
            text.to_lowercase().contains("certificate"),
            "{what}: {text}"
        );
    }
    // The same broker with the right CA: connected.
    let good = pki.nats(broker.url(), &pki.ca, false);
    let nc = connect_now(&good, "test")
        .await
        .expect("the right CA connects");
    nc.flush().await.expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_verifies_clients_refuses_one_without_a_certificate() {
    let pki = Pki::new("verify");
    let broker = pki.broker("tls-verify", true);
    let without = pki.nats(broker.url(), &pki.ca, false);
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        match connect_now(&without, "test").await {
            Err(e) => Some(e.to_string()),
            // TLS 1.3: the client's handshake can finish before the broker checks the
            // certificate; the broker then closes the connection, so nothing goes through.
            Ok(nc) => match nc.flush().await {
                Err(e) => Some(e.to_string()),
                Ok(()) => None,
            },
        }
    })
    .await
    .expect("an answer in 20 s");
    assert!(
        refused.is_some(),
        "a client without a certificate got through"
    );
    let with = pki.nats(broker.url(), &pki.ca, true);
    let nc = connect_now(&with, "test")
        .await
        .expect("with a certificate");
    nc.flush().await.expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_makes_the_connection_tls_only() {
    let pki = Pki::new("only");
    // A nats:// URL with a CA file speaks TLS to a TLS broker...
    let broker = pki.broker("tls-only", false);
    let plain_url = broker.url().replace("tls://", "nats://");
    let nc = connect_now(&pki.nats(plain_url, &pki.ca, false), "test")
        .await
        .expect("nats:// with a CA file reaches the TLS broker");
    nc.flush().await.expect("flush");
    // ...and refuses a broker that offers no TLS instead of talking in clear.
    let plain = NatsServer::start("plain-with-ca");
    let e = connect_now(&pki.nats(plain.url(), &pki.ca, false), "test")
        .await
        .expect_err("a plain broker with a CA file");
    assert!(!e.to_string().is_empty());
}

// figment's Jail closures return figment::Error, which clippy finds large.
#[allow(clippy::result_large_err)]
#[test]
fn the_keys_load_from_the_environment_and_pair_up() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CHORDNET_NATS__URL", "tls://broker:4222");
        jail.set_env("CHORDNET_NATS__TLS_CA_FILE", "/run/nats/ca.crt");
        jail.set_env("CHORDNET_NATS__TLS_CERT_FILE", "/run/nats/tls.crt");
        jail.set_env("CHORDNET_NATS__TLS_KEY_FILE", "/run/nats/tls.key");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.nats.tls_ca_file, Some(PathBuf::from("/run/nats/ca.crt")));
        assert_eq!(
            c.nats.tls_cert_file,
            Some(PathBuf::from("/run/nats/tls.crt"))
        );
        assert_eq!(
            c.nats.tls_key_file,
            Some(PathBuf::from("/run/nats/tls.key"))
        );
        assert!(c.nats.tls());
        jail.clear_env();
        jail.set_env("CHORDNET_NATS__TLS_CERT_FILE", "/run/nats/tls.crt");
        let e =
            Config::load(None, &Overrides::default()).expect_err("a certificate without its key");
        assert!(e.to_string().contains("nats.tls_key_file"), "{e}");
        jail.clear_env();
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert!(!c.nats.tls(), "no TLS by default");
        Ok(())
    });
}
