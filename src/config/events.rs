//! The `[events]` section: the ring's events on a JetStream stream of the `[nats]` broker
//! (independent of `transport.kind`: an HTTP ring can publish them too).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{byte_size, humantime_duration};

/// Whether and how this peer publishes ring events (docs/events.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Publish events to the stream of `nats.url`.
    pub enabled: bool,
    /// The JetStream stream's name; empty: `chordnet-<nats.ring_name>-events`.
    pub stream: String,
    /// Events older than this leave the stream.
    #[serde(with = "humantime_duration")]
    pub max_age: Duration,
    /// The stream holds at most this many bytes (the oldest events leave first).
    #[serde(with = "byte_size")]
    pub max_bytes: u64,
    /// How long the stream remembers a `Nats-Msg-Id`: a re-sent event within it is stored once.
    #[serde(with = "humantime_duration")]
    pub duplicate_window: Duration,
    /// Events waiting for the publisher; more are dropped (and counted), the peer never waits.
    pub queue: usize,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            enabled: false,
            stream: String::new(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(120),
            queue: 4096,
        }
    }
}

impl EventsConfig {
    /// The stream's name for ring `ring_name`.
    pub fn stream_name(&self, ring_name: &str) -> String {
        if self.stream.is_empty() {
            format!("chordnet-{ring_name}-events")
        } else {
            self.stream.clone()
        }
    }
}

impl super::Config {
    /// With `events.enabled`: the subjects and the stream can be named, and the stream bounded.
    pub(super) fn validate_events(&self) -> Result<(), super::ConfigError> {
        let e = &self.events;
        if !e.enabled {
            return Ok(());
        }
        let rule =
            |key: &'static str, message: String| Err(super::ConfigError::Rule { key, message });
        if !super::subject::valid_token(&self.nats.ring_name) {
            return rule(
                "nats.ring_name",
                format!(
                    "{:?} is not a NATS subject token (no dots, spaces, * or >)",
                    self.nats.ring_name
                ),
            );
        }
        let stream = e.stream_name(&self.nats.ring_name);
        if !super::subject::valid_token(&stream) || stream.contains(['/', '\\']) {
            return rule(
                "events.stream",
                format!("{stream:?} cannot name a stream (no dots, spaces, *, >, / or \\)"),
            );
        }
        if self.nats.url.trim().is_empty() {
            return rule("nats.url", "must name the broker (nats://host:4222)".into());
        }
        if e.queue == 0 {
            return rule("events.queue", "must be at least 1".into());
        }
        if e.max_bytes < 1 << 20 {
            return rule("events.max_bytes", "must be at least 1MiB".into());
        }
        if e.duplicate_window.is_zero() || e.duplicate_window > e.max_age {
            return rule(
                "events.duplicate_window",
                "must be longer than zero and at most events.max_age".into(),
            );
        }
        Ok(())
    }
}
