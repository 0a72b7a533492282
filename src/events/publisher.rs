//! The one task that publishes a peer's events to the ring's JetStream stream: it binds the
//! stream (creating it if need be, idempotent), then publishes queued events in order, each
//! with its `Nats-Msg-Id` (a re-send after a lost acknowledgement is stored once). While the
//! broker is away it retries the same event with back-off and says so in the log; the queue in
//! front of it fills and drops (counted), the peer never waits.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context, publish::PublishAck, stream};
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::event::{Event, all_subjects};
use super::sink::{Events, Pending};
use crate::config::{Config, EventsConfig};
use crate::metrics::Metrics;
use crate::ring::Peer;
use crate::transport::nats::{ConnectError, backoff, connect};

/// The header JetStream removes duplicates by.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// Why publishing one event failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event not encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("not published: {0}")]
    Publish(String),
    #[error("not acknowledged by the stream: {0}")]
    Ack(String),
}

/// The stream of ring `ring_name`: every event subject, file storage, bounded by age and
/// size (the oldest leave first), duplicates removed within the window.
pub fn stream_config(events: &EventsConfig, ring_name: &str) -> stream::Config {
    stream::Config {
        name: events.stream_name(ring_name),
        description: Some(format!("chordnet ring {ring_name:?}: ring and file events")),
        subjects: vec![all_subjects(ring_name)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: events.max_age,
        max_bytes: i64::try_from(events.max_bytes).unwrap_or(i64::MAX),
        duplicate_window: events.duplicate_window,
        ..stream::Config::default()
    }
}

/// Binds the stream, creating it when it does not exist (an existing one is used as it is).
pub async fn ensure_stream(js: &Context, config: stream::Config) -> Result<(), String> {
    js.get_or_create_stream(config)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes `event` on its subject with its `Nats-Msg-Id`; the stream's acknowledgement
/// (`duplicate`: it was stored before).
pub async fn publish(
    js: &Context,
    ring_name: &str,
    event: &Event,
) -> Result<PublishAck, PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, event.msg_id().as_str());
    let payload = serde_json::to_vec(event)?;
    js.publish_with_headers(event.subject(ring_name), headers, payload.into())
        .await
        .map_err(|e| PublishError::Publish(e.to_string()))?
        .await
        .map_err(|e| PublishError::Ack(e.to_string()))
}

/// Starts publishing this peer's events when `events.enabled` (else a disabled handle). The
/// broker connection is made in the background: a broker that is down delays events, never
/// the peer. Fails only on a configuration that cannot work (a bad URL, an unreadable
/// credentials or token file).
pub async fn start(config: &Config, me: &Peer, metrics: &Metrics) -> Result<Events, ConnectError> {
    if !config.events.enabled {
        return Ok(Events::disabled());
    }
    let client = connect(&config.nats, "events").await?;
    let incarnation = crate::runtime::new_incarnation();
    let (events, queue, pending) = Events::channel(
        me,
        incarnation,
        config.events.queue,
        metrics.events_dropped.clone(),
    );
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(5));
    let publisher = Publisher {
        js,
        ring_name: config.nats.ring_name.clone(),
        stream: stream_config(&config.events, &config.nats.ring_name),
        published: metrics.events_published.clone(),
    };
    info!(stream = %publisher.stream.name, broker = %config.nats.url, "publishing ring events");
    tokio::spawn(publisher.run(queue, pending));
    Ok(events)
}

/// Failures of one event in a row before the log says events are not getting out. One is
/// routine when a ring starts: peers bind the stream while one of them is still creating it,
/// and the broker may answer a publish with "no stream found" for a moment after saying the
/// stream exists; the retry 100 ms later gets through.
const WARN_AFTER_FAILURES: usize = 2;

struct Publisher {
    js: Context,
    ring_name: String,
    stream: stream::Config,
    published: IntCounterVec,
}

impl Publisher {
    async fn run(self, mut queue: mpsc::Receiver<Event>, pending: Arc<Pending>) {
        let mut bound = false;
        while let Some(event) = queue.recv().await {
            let mut attempt = 0;
            loop {
                match self.try_once(&mut bound, &event).await {
                    Ok(()) => {
                        if attempt >= WARN_AFTER_FAILURES {
                            info!(kind = %event.kind, "ring events reach the broker again");
                        }
                        self.published
                            .with_label_values(&[event.kind.as_str()])
                            .inc();
                        break;
                    }
                    Err(PublishError::Encode(e)) => {
                        warn!(kind = %event.kind, error = %e, "event dropped: cannot encode it");
                        break;
                    }
                    Err(e) => {
                        if attempt + 1 == WARN_AFTER_FAILURES {
                            warn!(kind = %event.kind, error = %e, "ring events are not reaching the broker; retrying with back-off (the peer goes on)");
                        } else if attempt + 1 < WARN_AFTER_FAILURES {
                            debug!(kind = %event.kind, error = %e, "event not published yet; retrying");
                        }
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                }
            }
            pending.done();
        }
    }

    /// One attempt: bind the stream if not yet (or after a failure), then publish.
    async fn try_once(&self, bound: &mut bool, event: &Event) -> Result<(), PublishError> {
        if !*bound {
            ensure_stream(&self.js, self.stream.clone())
                .await
                .map_err(|e| PublishError::Publish(format!("stream {}: {e}", self.stream.name)))?;
            *bound = true;
        }
        let result = publish(&self.js, &self.ring_name, event).await;
        if result.is_err() {
            // Bind again before the next try: the stream may have been deleted meanwhile.
            *bound = false;
        }
        result.map(|_| ())
    }
}
