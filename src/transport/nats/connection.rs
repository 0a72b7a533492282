//! The broker connection: URL(s) and credentials from the configuration, reconnection with
//! back-off for ever (subscriptions come back by themselves), and log lines when it drops.

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
    #[error("cannot connect to the NATS broker: {0}")]
    Connect(String),
}

/// The pause before reconnection attempt `n`: 100 ms, doubling, at most 2 s.
pub fn backoff(attempt: usize) -> Duration {
    let exp = attempt.min(5) as u32;
    Duration::from_millis((100u64 << exp).min(2000))
}

/// A client of the broker `config` names. Returns at once: the connection is made (and
/// remade) in the background, so a peer starts while the broker is down and reports it.
pub async fn connect(config: &NatsConfig, role: &str) -> Result<async_nats::Client, ConnectError> {
    let (options, servers) = options(config, role).await?;
    options
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Connect(e.to_string()))
}

/// A client of the broker `config` names, connected now: fails at once when the broker
/// cannot be reached (a command line tool says so instead of waiting). Reconnects after.
pub async fn connect_now(
    config: &NatsConfig,
    role: &str,
) -> Result<async_nats::Client, ConnectError> {
    let (options, servers) = options(config, role).await?;
    options
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Connect(e.to_string()))
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
    Ok((options, servers))
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
