//! Reading a ring's events back from its stream (`chordnet events`): an ordered consumer (an
//! ephemeral consumer the client library restarts past the last message it saw), from the
//! start, a stream sequence, or a moment; until the stream's end, or for ever.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::StreamExt;

use super::event::{Event, all_subjects};
use crate::config::NatsConfig;
use crate::transport::nats::connect_now;

/// Where reading starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// The oldest event the stream holds.
    Start,
    /// Stream sequence number.
    Seq(u64),
    /// This long ago.
    Ago(Duration),
}

impl std::str::FromStr for Since {
    type Err = String;

    /// A number is a stream sequence; else a duration (`5m`, `2h 30m`).
    fn from_str(s: &str) -> Result<Since, String> {
        let s = s.trim();
        if let Ok(seq) = s.parse::<u64>() {
            return Ok(Since::Seq(seq));
        }
        humantime::parse_duration(s).map(Since::Ago).map_err(|e| {
            format!("{s:?} is neither a stream sequence (42) nor a duration (5m, 1h): {e}")
        })
    }
}

/// Why the events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot reach the NATS broker at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "the events stream {stream:?} does not exist on {url} (no peer with events.enabled has published to it yet)"
    )]
    NoStream { stream: String, url: String },
    #[error("reading the events stream {stream:?}: {detail}")]
    Stream { stream: String, detail: String },
}

/// One message read from the stream.
#[derive(Debug)]
pub struct Read {
    /// The stream's sequence number of the message.
    pub seq: u64,
    /// The event's kind according to the subject's last token.
    pub subject_kind: String,
    /// The payload as stored.
    pub payload: bytes::Bytes,
    /// The payload decoded (an error says why it is not an event).
    pub event: Result<Event, String>,
}

/// What to read.
pub struct ReadOptions {
    pub nats: NatsConfig,
    pub stream: String,
    pub since: Since,
    /// Keep reading new events until `stop` completes (else stop at the stream's end).
    pub follow: bool,
}

/// Reads the events `options` say, handing each to `each`; returns how many were read.
/// Without `follow` it stops at the last event the stream held when reading began.
pub async fn read(
    options: ReadOptions,
    mut each: impl FnMut(Read),
    stop: impl Future<Output = ()>,
) -> Result<u64, ReadError> {
    let url = options.nats.url.clone();
    let stream_name = options.stream.clone();
    let fail = |detail: String| ReadError::Stream {
        stream: stream_name.clone(),
        detail,
    };
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        connect_now(&options.nats, "events-reader"),
    )
    .await
    .map_err(|_| ReadError::Unreachable {
        url: url.clone(),
        detail: "no answer in 10s".into(),
    })?
    .map_err(|e| ReadError::Unreachable {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    let js = jetstream::new(client);
    let mut stream = match js.get_stream(&options.stream).await {
        Ok(s) => s,
        Err(e) => {
            use async_nats::jetstream::context::GetStreamErrorKind;
            return Err(match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    ReadError::NoStream {
                        stream: options.stream.clone(),
                        url,
                    }
                }
                _ => fail(e.to_string()),
            });
        }
    };
    let info = stream.info().await.map_err(|e| fail(e.to_string()))?;
    let last = info.state.last_sequence;
    let ring_subjects = info.config.subjects.first().cloned().unwrap_or_default();
    let deliver_policy = match options.since {
        Since::Start => DeliverPolicy::All,
        Since::Seq(n) => DeliverPolicy::ByStartSequence {
            start_sequence: n.max(1),
        },
        Since::Ago(d) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc() - d,
        },
    };
    if !options.follow && (last == 0 || matches!(options.since, Since::Seq(n) if n > last)) {
        return Ok(0);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: if ring_subjects.is_empty() {
                all_subjects("*")
            } else {
                ring_subjects
            },
            deliver_policy,
            ..OrderedConfig::default()
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut pending_at_start = consumer.cached_info().num_pending;
    if !options.follow && pending_at_start == 0 {
        return Ok(0);
    }
    let mut messages = consumer.messages().await.map_err(|e| fail(e.to_string()))?;
    let mut count = 0;
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            () = &mut stop => break,
            next = messages.next() => next,
        };
        let Some(message) = next else { break };
        let message = message.map_err(|e| fail(e.to_string()))?;
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let subject_kind = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_owned();
        let payload = message.payload.clone();
        let event = serde_json::from_slice::<Event>(&payload).map_err(|e| e.to_string());
        each(Read {
            seq,
            subject_kind,
            payload,
            event,
        });
        count += 1;
        pending_at_start = pending_at_start.saturating_sub(1);
        if !options.follow && (seq >= last || pending_at_start == 0) {
            break;
        }
    }
    Ok(count)
}
