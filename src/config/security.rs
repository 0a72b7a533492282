//! The `[security]` section: the ring secret that peers sign their messages with, and the
//! certificates of mutual TLS between peers (`[security.tls]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::humantime_duration;
use super::{Config, ConfigError, TransportKind};

/// Who may talk to this peer over the peer protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The ring secret: a file of keys, one per line (hex or base64, at least 32 bytes; `#`
    /// comments). Every peer message is then signed with the first key and accepted only with
    /// a valid signature of any listed key; the file is re-read when it changes (rotation
    /// without downtime). Without it, any host that reaches the peer port is a peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_secret_file: Option<PathBuf>,
    /// How far a signed message's timestamp may be from this peer's clock (replays are
    /// refused within it; older or later messages are refused outright).
    #[serde(
        default = "super::defaults::message_window",
        with = "humantime_duration",
        skip_serializing_if = "is_default_window"
    )]
    pub message_window: Duration,
    /// Mutual TLS on the peer port (HTTP and gRPC transports).
    #[serde(skip_serializing_if = "TlsConfig::is_off")]
    pub tls: TlsConfig,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            ring_secret_file: None,
            message_window: super::defaults::message_window(),
            tls: TlsConfig::default(),
        }
    }
}

/// Mutual TLS between peers: all three files or none (off, as without the section).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The CA certificates (PEM) that sign every peer's certificate; a peer accepts only
    /// certificates that chain to one of them, as server and as client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This peer's certificate chain (PEM). Its DNS or IP SAN must name the host of
    /// `node.advertise`: peers accept a node id only from a certificate that names the host
    /// whose address hashes to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// How often the three files are checked for changes (at most once per interval, on a new
    /// connection); a change that loads is used by new connections, a broken one is ignored.
    #[serde(
        default = "default_reload_interval",
        with = "humantime_duration",
        skip_serializing_if = "is_default_reload"
    )]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            reload_interval: default_reload_interval(),
        }
    }
}

/// The three files, when TLS is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    fn is_off(&self) -> bool {
        *self == TlsConfig::default()
    }

    /// The files when all three are set, `None` when none is; which are missing otherwise.
    pub fn files(&self) -> Result<Option<TlsFiles>, String> {
        match (&self.ca_file, &self.cert_file, &self.key_file) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, None) => Ok(None),
            (ca, cert, key) => {
                let missing: Vec<&str> = [("ca_file", ca), ("cert_file", cert), ("key_file", key)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k)
                    .collect();
                Err(format!(
                    "set all three of ca_file, cert_file and key_file, or none (missing: {})",
                    missing.join(", ")
                ))
            }
        }
    }
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

fn is_default_reload(d: &Duration) -> bool {
    *d == default_reload_interval()
}

fn is_default_window(d: &Duration) -> bool {
    *d == super::defaults::message_window()
}

impl Config {
    /// `security.tls`: all three files or none; a peer's id is then the SHA-1 of its advertised
    /// address (the name its certificate carries), and its transport one over TCP.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        let rule = |key, message: &str| {
            Err(ConfigError::Rule {
                key,
                message: message.to_string(),
            })
        };
        let tls = &self.security.tls;
        let files = tls.files().map_err(|message| ConfigError::Rule {
            key: "security.tls",
            message,
        })?;
        if files.is_none() {
            return Ok(());
        }
        if tls.reload_interval.is_zero() {
            return rule("security.tls.reload_interval", "must be longer than zero");
        }
        if self.node.id.is_some() {
            return rule(
                "node.id",
                "must be unset with security.tls (a peer's id is the SHA-1 of node.advertise, \
                 whose host its certificate names)",
            );
        }
        if !matches!(
            self.transport.kind,
            TransportKind::Http | TransportKind::Grpc
        ) {
            return rule(
                "security.tls",
                "applies to transport.kind = \"http\" or \"grpc\" (NATS peers talk through the \
                 broker: use the ring secret)",
            );
        }
        Ok(())
    }
}
