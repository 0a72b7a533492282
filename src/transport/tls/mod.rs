//! Mutual TLS on the peer port (`security.tls`), shared by the transports over TCP (HTTP and
//! gRPC): one acceptor ([`accept`]), one connector ([`connect`]), one identity check
//! ([`identity`]).
//!
//! - **Mutual**: both sides present a certificate that chains to `security.tls.ca_file`; a
//!   server requires the client's (rustls, `ring` provider, TLS 1.2 and 1.3). Expired
//!   certificates, other CAs and clients without a certificate fail the handshake.
//! - **Identity**: a client checks that the server's certificate names the host it dialled;
//!   a server accepts a ring message claiming `from = id@host:port` only if the client's
//!   certificate names `host` (DNS or IP SAN) and `id` is the SHA-1 of `host:port`. So a peer
//!   holding a valid certificate still cannot speak for an id that is not its own.
//! - **Reload**: the three files are checked at most once per `security.tls.reload_interval`
//!   (on a new connection, in or out); when one changed, they are loaded again and new
//!   connections use them; files that do not load keep the old ones
//!   (`chordnet_tls_reloads_total{result}`).

pub mod accept;
pub mod connect;
pub mod identity;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tracing::{info, warn};

use crate::config::TlsFiles;
use crate::metrics::Metrics;

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS set-up: {0}")]
    Rustls(String),
    #[error(
        "the certificate in {path} does not name {host:?} (node.advertise's host) in a DNS or \
         IP SAN: other peers would refuse it"
    )]
    NotMine { path: String, host: String },
}

/// The ring provider: the one crypto backend of the build. rustls marks it deprecated because
/// ring has no post-quantum key exchange (X25519MLKEM768); the provider that has one,
/// aws-lc-rs, needs cmake and a C toolchain to build, which this project avoids. Classical
/// key exchange (X25519, P-256) between peers of one ring is the accepted trade-off.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One peer's TLS set-up: its current server and client configurations, re-read when the files
/// change.
pub struct PeerTls {
    files: TlsFiles,
    /// The host of `node.advertise`, which this peer's certificate must name.
    host: String,
    every: Duration,
    metrics: Option<Metrics>,
    state: Mutex<State>,
}

struct State {
    stamps: Stamps,
    checked: Instant,
    configs: Configs,
}

#[derive(Clone)]
struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// What tells a file changed: its modification time and length.
type Stamps = [Option<(SystemTime, u64)>; 3];

impl PeerTls {
    /// Loads the files; a set that cannot be used (or a certificate that does not name `host`)
    /// stops the peer with a clear error.
    pub fn load(
        files: TlsFiles,
        host: &str,
        every: Duration,
        metrics: Option<Metrics>,
    ) -> Result<Arc<PeerTls>, TlsError> {
        let stamps = stamps(&files);
        let configs = build(&files, host)?;
        Ok(Arc::new(PeerTls {
            files,
            host: host.to_owned(),
            every,
            metrics,
            state: Mutex::new(State {
                stamps,
                checked: Instant::now(),
                configs,
            }),
        }))
    }

    /// The server configuration new connections use.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.current().server
    }

    /// The client configuration new connections use.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.current().client
    }

    pub(crate) fn handshake_failed(&self) {
        if let Some(m) = &self.metrics {
            m.tls_handshake_failures.inc();
        }
    }

    /// The current configurations, after re-reading the files if the interval passed and
    /// one of them changed.
    fn current(&self) -> Configs {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= self.every {
            state.checked = Instant::now();
            let now = stamps(&self.files);
            if now != state.stamps {
                state.stamps = now;
                match build(&self.files, &self.host) {
                    Ok(configs) => {
                        info!("TLS files changed: new connections use the new certificates");
                        state.configs = configs;
                        self.count("ok");
                    }
                    Err(e) => {
                        warn!(error = %e, "TLS files changed but cannot be used: keeping the previous certificates");
                        self.count("error");
                    }
                }
            }
        }
        state.configs.clone()
    }

    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.tls_reloads.with_label_values(&[result]).inc();
        }
    }
}

fn stamps(files: &TlsFiles) -> Stamps {
    [&files.ca, &files.cert, &files.key].map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            message: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// Both configurations from the files.
fn build(files: &TlsFiles, host: &str) -> Result<Configs, TlsError> {
    let rustls_err = |e: &dyn std::fmt::Display| TlsError::Rustls(e.to_string());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.ca)? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            path: files.ca.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| TlsError::Pem {
        path: files.key.display().to_string(),
        message: e.to_string(),
    })?;
    names(&chain[0], host).map_err(|_| TlsError::NotMine {
        path: files.cert.display().to_string(),
        host: host.to_owned(),
    })?;
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider.clone())
            .build()
            .map_err(|e| rustls_err(&e))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| rustls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| rustls_err(&e))?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| rustls_err(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| rustls_err(&e))?;
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// Whether `cert` names `host` in a DNS SAN (a name) or an IP SAN (an address).
pub fn names(cert: &CertificateDer<'_>, host: &str) -> Result<(), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host).map_err(|e| format!("{host:?}: {e}"))?;
    let parsed = ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|e| e.to_string())
}
