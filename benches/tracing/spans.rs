//! Counting spans: what reached the receiver, by ring and by trace, and what the peers'
//! exporters say they sent.

use std::collections::HashMap;
use std::time::Duration;

use crate::otlp::{Receiver, SpanKind};
use crate::rings::Ring;

/// The name of the API server span of a lookup by key (the root of a lookup's trace).
const LOOKUP_SPAN: &str = "GET /v1/lookup/{key}";

/// Spans received so far, by trace, with the receiver emptied after every look (it keeps every
/// span in memory otherwise).
#[derive(Default)]
pub(crate) struct Tally {
    traces: HashMap<u128, TraceTally>,
    /// Spans received, by ring (index in the rings).
    pub(crate) spans: Vec<u64>,
    pub(crate) http_exports: usize,
    pub(crate) grpc_exports: usize,
}

#[derive(Default)]
struct TraceTally {
    ring: usize,
    spans: u32,
    /// The API server span of a lookup by key arrived: this trace is a lookup's.
    lookup: bool,
}

impl Tally {
    pub(crate) fn new(rings: usize) -> Tally {
        Tally {
            spans: vec![0; rings],
            ..Tally::default()
        }
    }

    /// Moves what the receiver holds into the tally and empties the receiver.
    pub(crate) async fn drain(&mut self, receiver: &Receiver, rings: &[Ring]) {
        // The receiver has no "take": copy, then clear. An export recorded in between would be
        // lost, so copy again unless the export count stayed the same across the copy and a
        // pause after it (an export that waited for the lock during the copy gets it then).
        // What remains is the gap between two consecutive lock holds.
        let (spans, exports) = loop {
            let before = receiver.exports();
            let spans = receiver.spans();
            tokio::time::sleep(Duration::from_millis(2)).await;
            let exports = receiver.exports();
            if exports == before {
                receiver.clear();
                break (spans, exports);
            }
        };
        self.http_exports += exports.http;
        self.grpc_exports += exports.grpc;
        for span in spans {
            let Some(ring) = rings.iter().position(|r| {
                !r.setup.service.is_empty() && span.service_name() == Some(r.setup.service)
            }) else {
                continue;
            };
            self.spans[ring] += 1;
            let Ok(trace) = u128::from_str_radix(&span.trace_id, 16) else {
                continue;
            };
            let t = self.traces.entry(trace).or_default();
            t.ring = ring;
            t.spans += 1;
            if span.name == LOOKUP_SPAN && span.kind == SpanKind::Server {
                t.lookup = true;
            }
        }
    }

    /// (lookup traces, spans in them) of ring `ring`.
    pub(crate) fn lookup_traces(&self, ring: usize) -> (usize, u64) {
        self.traces
            .values()
            .filter(|t| t.ring == ring && t.lookup)
            .fold((0, 0), |(n, s), t| (n + 1, s + u64::from(t.spans)))
    }
}

/// The value of an unlabelled metric in a peer's `/metrics` (None when absent).
async fn metric(http: &reqwest::Client, api: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of a metric over a ring's peers.
pub(crate) async fn ring_metric(http: &reqwest::Client, ring: &Ring, name: &str) -> Option<f64> {
    let mut sum = 0.0;
    for api in ring.apis.iter() {
        sum += metric(http, api, name).await?;
    }
    Some(sum)
}
