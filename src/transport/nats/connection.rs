//! The broker connection: URL(s), credentials and TLS (`nats.tls_*`: rustls with the build's one
//! provider) from the configuration, reconnection with back-off for ever (subscriptions come
//! back by themselves), and log lines when it drops.

use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};
use tracing::{info, warn};

use crate::config::NatsConfig;

/// Why the broker connection could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("nats.url: {0}")]
    Url(String),
    #[error("nats.credentials_file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("nats.token_file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("nats.tls_*: {0}")]
    TlsFiles(String),
    #[error(
        "the NATS broker refused TLS or its certificate is not trusted (nats.tls_ca_file, \
         nats.tls_cert_file, nats.tls_key_file): {0}"
    )]
    Tls(String),
    #[error("cannot connect to the NATS broker: {0}")]
    Connect(String),
}

/// An async-nats connection error as ours: a failed TLS handshake says which settings to check.
fn connect_error(e: async_nats::ConnectError) -> ConnectError {
    if tls_failure(&e) {
        ConnectError::Tls(e.to_string())
    } else {
        ConnectError::Connect(e.to_string())
    }
}

/// Whether the connection failed in TLS (set-up or handshake: async-nats reports a refused
/// certificate as an I/O error whose inner error is rustls's), not because the broker is away.
fn tls_failure(e: &async_nats::ConnectError) -> bool {
    if e.kind() == async_nats::ConnectErrorKind::Tls {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The pause before reconnection attempt `n`: 100 ms, doubling, at most 2 s.
pub fn backoff(attempt: usize) -> Duration {
    let exp = attempt.min(5) as u32;
    Duration::from_millis((100u64 << exp).min(2000))
}

/// A client of the broker `config` names. Returns at once: the connection is made (and
/// remade) in the background, so a peer starts while the broker is down and reports it.
///
/// With TLS, one attempt is made first: a broker that answers but whose TLS fails (a
/// certificate of another CA, a client certificate it refuses) is a setting to fix, reported
/// at once instead of retried for ever; a broker that does not answer is retried.
pub async fn connect(config: &NatsConfig, role: &str) -> Result<async_nats::Client, ConnectError> {
    if config.tls() {
        let (options, servers) = options(config, role).await?;
        match options.connect(servers).await {
            Ok(client) => return Ok(client),
            Err(e) if tls_failure(&e) => return Err(connect_error(e)),
            Err(e) => {
                warn!(error = %e, "NATS broker not reachable yet; retrying in the background")
            }
        }
    }
    let (options, servers) = options(config, role).await?;
    options
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(connect_error)
}

/// A client of the broker `config` names, connected now: fails at once when the broker
/// cannot be reached (a command line tool says so instead of waiting). Reconnects after.
pub async fn connect_now(
    config: &NatsConfig,
    role: &str,
) -> Result<async_nats::Client, ConnectError> {
    let (options, servers) = options(config, role).await?;
    options.connect(servers).await.map_err(connect_error)
}

/// The connection options (credentials, back-off, log lines) and the broker URLs.
async fn options(
    config: &NatsConfig,
    role: &str,
) -> Result<(ConnectOptions, Vec<ServerAddr>), ConnectError> {
    let servers = config
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|e| ConnectError::Url(format!("{u:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(ConnectError::Url("no broker URL".into()));
    }
    let url = config.url.clone();
    let mut options = ConnectOptions::new()
        .name(format!("chordnet-{role}"))
        .max_reconnects(None)
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            let url = url.clone();
            async move {
                match event {
                    Event::Connected => info!(broker = %url, "connected to the NATS broker"),
                    Event::Disconnected => {
                        warn!(broker = %url, "lost the NATS broker connection; reconnecting")
                    }
                    other => info!(broker = %url, event = %other, "NATS connection event"),
                }
            }
        });
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?;
    }
    if let Some(path) = &config.token_file {
        let token = read_token(path)?;
        options = options.token(token);
    }
    if config.tls() {
        options = options.require_tls(true);
        options = match &config.tls_ca_file {
            // Our own client configuration: the one crypto backend of the build (ring), and
            // the files read now, so a bad one stops the peer with its name.
            Some(ca) => options.tls_client_config(tls_client(
                ca,
                config.tls_cert_file.as_deref(),
                config.tls_key_file.as_deref(),
            )?),
            // The system's roots (async-nats loads them), and a client certificate if set.
            None => match (&config.tls_cert_file, &config.tls_key_file) {
                (Some(cert), Some(key)) => {
                    options.add_client_certificate(cert.clone(), key.clone())
                }
                _ => options,
            },
        };
    }
    Ok((options, servers))
}

/// A rustls client configuration trusting the CA file, with the client certificate if given.
fn tls_client(
    ca: &std::path::Path,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, ConnectError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let fail = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectError::TlsFiles(format!("{}: {e}", path.display()))
    };
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| fail(path, &e));
    let certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, ConnectError> {
        let certs = CertificateDer::pem_slice_iter(&read(path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(path, &e))?;
        if certs.is_empty() {
            return Err(fail(path, &"no certificate in it"));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| fail(ca, &e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::TlsFiles(e.to_string()))?
        .with_root_certificates(roots);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| fail(key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(cert, &e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The first line of the token file.
fn read_token(path: &std::path::Path) -> Result<String, ConnectError> {
    let fail = |reason: String| ConnectError::Token {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let delays: Vec<u64> = (0..8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn tokens_come_from_the_first_line_of_their_file() {
        let dir = std::env::temp_dir().join(format!("chordnet-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\nignored\n").expect("write");
        assert_eq!(read_token(&file).expect("token"), "s3cret");
        std::fs::write(&file, "\n").expect("write");
        assert!(read_token(&file).is_err());
        assert!(read_token(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
