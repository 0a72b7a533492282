//! The `[nats]` section: the broker of `transport.kind = "nats"` (and of the ring events).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the NATS broker is and how to log in to it. Used by `transport.kind = "nats"` (every
/// peer-to-peer message goes through the broker; the peer port is not opened) and by the ring
/// events stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The broker's URL (`nats://host:4222`; several, comma-separated, for a cluster).
    pub url: String,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an authentication token (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The ring's name: the second token of every subject (`chordnet.<ring_name>.peer.<node>`),
    /// so that several rings can share one broker.
    pub ring_name: String,
    /// TLS to the broker: the CA (PEM) its certificate must chain to. Set (or a `tls://` URL):
    /// the connection must be TLS. Unset with a `tls://` URL: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a broker that verifies clients (`verify: true`); with
    /// `tls_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM); with `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

impl NatsConfig {
    /// Whether the broker connection must be TLS (a `tls://` URL or any TLS file).
    pub fn tls(&self) -> bool {
        self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.url.split(',').any(|u| u.trim().starts_with("tls://"))
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            token_file: None,
            ring_name: "default".into(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl super::Config {
    /// Whatever the transport (the events use the broker too): a client certificate comes
    /// with its key.
    pub(super) fn validate_nats_tls(&self) -> Result<(), super::ConfigError> {
        if self.nats.tls_cert_file.is_some() != self.nats.tls_key_file.is_some() {
            return Err(super::ConfigError::Rule {
                key: "nats.tls_cert_file",
                message: "nats.tls_cert_file and nats.tls_key_file go together (both or neither)"
                    .into(),
            });
        }
        Ok(())
    }

    /// With `transport.kind = "nats"`: every address is a subject of this ring.
    pub(super) fn validate_nats(&self) -> Result<(), super::ConfigError> {
        let ring = &self.nats.ring_name;
        if !super::subject::valid_token(ring) {
            return Err(super::ConfigError::Rule {
                key: "nats.ring_name",
                message: format!("{ring:?} is not a NATS subject token (no dots, spaces, * or >)"),
            });
        }
        let check = |key: &'static str, text: &str| {
            super::subject::check_peer_subject(ring, text)
                .map_err(|message| super::ConfigError::Rule { key, message })
        };
        check("node.advertise", &self.node.advertise)?;
        if let Some(b) = &self.ring.bootstrap {
            check("ring.bootstrap", b)?;
        }
        for s in &self.ring.seeds {
            check("ring.seeds", s)?;
        }
        if self.nats.url.trim().is_empty() {
            return Err(super::ConfigError::Rule {
                key: "nats.url",
                message: "must name the broker (nats://host:4222)".into(),
            });
        }
        Ok(())
    }
}
