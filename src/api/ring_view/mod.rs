//! `GET /v1/node/view` (this peer's card: what the ring page shows of one peer) and
//! `GET /v1/ring/view` (the whole ring as this peer gathers it: every peer's card in identifier
//! order, whether the peers agree on the ring, who does not answer). The gather is shared: many
//! page clients polling at once cost one gather per [`FRESH`] (see [`Cache`]).

mod agree;
mod gather;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Api, App};
use crate::id::Id;
use crate::ring::Peer;

pub use gather::api_address;

/// How long a gathered view is served before the next request gathers again.
pub const FRESH: Duration = Duration::from_millis(750);
/// Peers asked at once during a gather.
pub const FAN_OUT: usize = 16;
/// The most peers one gather takes in (a bound against a peer naming made-up peers).
pub const MAX_PEERS: usize = 4096;
/// The largest card accepted from another peer.
pub const MAX_CARD: usize = 256 * 1024;

/// One peer as the ring page shows it (`GET /v1/node/view`): the fields of `GET /v1/node` plus
/// its distinct fingers, bytes stored, stabilization age, pod name and the other ring ids it
/// has seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeCard {
    pub id: Id,
    pub address: String,
    #[serde(default)]
    pub api: String,
    #[serde(default)]
    pub transport: String,
    pub state: String,
    #[serde(default)]
    pub ring_id: Option<String>,
    #[serde(default)]
    pub predecessor: Option<Peer>,
    #[serde(default)]
    pub successors: Vec<Peer>,
    #[serde(default)]
    pub keys: u64,
    /// Bytes of content stored (whole files and blocks).
    #[serde(default)]
    pub bytes: u64,
    /// The distinct peers of the finger table, in finger order (this peer left out).
    #[serde(default)]
    pub fingers: Vec<Peer>,
    #[serde(default)]
    pub stabilization_rounds: u64,
    /// Seconds since the last completed stabilization round.
    #[serde(default)]
    pub seconds_since_stabilization: f64,
    #[serde(default)]
    pub ring_size_estimate: f64,
    /// The pod (`POD_NAME`, else the first label of a DNS host name).
    #[serde(default)]
    pub pod: Option<String>,
    /// Ring ids of peers that answered from another ring.
    #[serde(default)]
    pub foreign_ring_ids: Vec<String>,
    /// The replication factor (`ring.replicas`): copies of each key, the owner's included.
    #[serde(default)]
    pub replicas: usize,
}

impl NodeCard {
    /// This peer's card.
    fn of(app: &App) -> NodeCard {
        let node = app.node_view();
        let status = app.ring.status();
        let mut fingers: Vec<Peer> = Vec::new();
        for f in status.fingers.iter().flatten() {
            if f.id != status.me.id && !fingers.iter().any(|p| p.id == f.id) {
                fingers.push(f.clone());
            }
        }
        let metrics = app.ring.metrics();
        let transport = serde_json::to_value(node.transport)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        NodeCard {
            id: node.id,
            address: node.address.to_string(),
            api: node.api,
            transport,
            state: node.state.to_string(),
            ring_id: node.ring_id,
            predecessor: status.predecessor.clone(),
            successors: status.successors.clone(),
            keys: node.keys,
            bytes: u64::try_from(metrics.bytes_stored.get()).unwrap_or(0),
            fingers,
            stabilization_rounds: node.stabilization_rounds,
            seconds_since_stabilization: app.ring.seconds_since_stabilization(),
            ring_size_estimate: node.ring_size_estimate,
            pod: pod_name(status.me.address.as_str()),
            foreign_ring_ids: foreign_ring_ids(app),
            replicas: app.ring.config().ring.replicas,
        }
    }

    /// Cuts what another peer sent to sane sizes (nothing a remote party sends is trusted).
    fn bounded(mut self) -> NodeCard {
        self.successors.truncate(64);
        self.fingers.truncate(160);
        self.foreign_ring_ids.truncate(16);
        for s in [&mut self.state, &mut self.transport, &mut self.api] {
            cut(s, 64);
        }
        for s in self
            .foreign_ring_ids
            .iter_mut()
            .chain(self.ring_id.as_mut())
        {
            cut(s, 64);
        }
        if let Some(p) = self.pod.as_mut() {
            cut(p, 253);
        }
        self
    }
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `POD_NAME` when set (the chart sets it), else [`pod_from_host`].
fn pod_name(address: &str) -> Option<String> {
    match std::env::var("POD_NAME") {
        Ok(pod) if !pod.is_empty() => Some(pod),
        _ => pod_from_host(address),
    }
}

/// The first label of the DNS host name in `address` (a StatefulSet pod's name); none for an
/// IP address.
fn pod_from_host(address: &str) -> Option<String> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let first = host.split('.').next().unwrap_or("");
    let is_name = first.chars().any(|c| c.is_ascii_alphabetic())
        && host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('[');
    is_name.then(|| first.to_string())
}

/// The ring ids of `chordnet_foreign_ring_seen`.
fn foreign_ring_ids(app: &App) -> Vec<String> {
    use prometheus::core::Collector;
    let mut ids: Vec<String> = app
        .ring
        .metrics()
        .foreign_rings
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .flat_map(|m| m.get_label().iter())
        .filter(|l| l.name() == "ring_id")
        .map(|l| l.value().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One peer of `GET /v1/ring/view`.
#[derive(Clone, Debug, Serialize)]
pub struct RingNode {
    #[serde(flatten)]
    pub card: NodeCard,
    /// Whether the peer answered (its API, or at least the peer protocol).
    pub reachable: bool,
    /// Where its data came from: `self`, `api` (its card), `peer` (the peer protocol only:
    /// neighbours and ring id, state `unknown`) or `none` (state `unreachable`).
    pub source: &'static str,
    /// Digest of the ring its successor walk reaches (equal for all when the ring agrees).
    pub view_digest: Option<String>,
    /// Why it disagrees with the ring; null when it agrees.
    pub problem: Option<String>,
    /// How many answering peers name it as successor or predecessor.
    pub named_by: usize,
}

/// One distinct view of the ring and how many peers hold it.
#[derive(Clone, Debug, Serialize)]
pub struct ViewGroup {
    pub digest: String,
    pub peers: usize,
}

/// `GET /v1/ring/view`.
#[derive(Clone, Debug, Serialize)]
pub struct RingView {
    /// The serving peer's ring id.
    pub ring_id: Option<String>,
    /// Every answering peer's view is the same closed ring, one ring id, nobody unreachable.
    pub agree: bool,
    pub served_by: Id,
    /// In identifier order.
    pub nodes: Vec<RingNode>,
    /// Peers named as successor or predecessor that answer neither API nor peer protocol.
    pub unreachable: Vec<Peer>,
    /// Answering peers whose view differs (see each node's `problem`).
    pub disagreeing: Vec<Id>,
    /// Every ring id seen: the peers' own and those they saw answer from another ring.
    pub ring_ids: Vec<String>,
    /// The distinct views, most common first (two with one ring id: a partition).
    pub views: Vec<ViewGroup>,
    pub replicas: usize,
    /// False when the gather stopped at [`MAX_PEERS`].
    pub complete: bool,
    /// How long the gather took, in milliseconds.
    pub gather_ms: u64,
    /// When it was gathered (Unix milliseconds).
    pub gathered_at: u64,
}

/// The last gathered view, shared by every request; one gather runs at a time.
pub struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
    http: reqwest::Client,
}

impl Cache {
    pub fn new() -> Cache {
        Cache {
            last: tokio::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The view as JSON: the cached one while fresh, else a new gather (callers that arrive
    /// meanwhile wait for it and share it).
    /// `authorization` is the caller's (with API tokens, other peers' cards need the same
    /// bearer token; one Secret holds the ring's tokens).
    async fn get(&self, app: &App, authorization: Option<HeaderValue>) -> Bytes {
        let mut last = self.last.lock().await;
        if let Some((at, body)) = last.as_ref()
            && at.elapsed() < FRESH
        {
            return body.clone();
        }
        let view = gather::gather(app, &self.http, authorization).await;
        let body = Bytes::from(serde_json::to_vec(&view).unwrap_or_default());
        *last = Some((Instant::now(), body.clone()));
        body
    }
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new()
    }
}

pub(super) async fn node_card(State(app): Api) -> Response {
    Json(NodeCard::of(&app)).into_response()
}

pub(super) async fn ring_view(State(app): Api, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).cloned();
    let body = Arc::clone(&app.views).get(&app, authorization).await;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
