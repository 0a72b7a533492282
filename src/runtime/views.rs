//! The ring as the REST API shows it.

use serde::Serialize;

use crate::id::Id;
use crate::ring::{Address, Peer};

/// A peer as the REST API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PeerView {
    pub id: Id,
    pub address: Address,
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> PeerView {
        PeerView {
            id: p.id,
            address: p.address.clone(),
        }
    }
}

/// `GET /v1/node`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: Id,
    pub address: Address,
    pub api: String,
    pub state: &'static str,
    pub ring_id: Option<String>,
    pub predecessor: Option<PeerView>,
    pub successors: Vec<PeerView>,
    pub keys: u64,
    pub ring_size_estimate: f64,
    pub stabilization_rounds: u64,
}

/// `GET /v1/ring`.
#[derive(Clone, Debug, Serialize)]
pub struct RingWalk {
    pub nodes: Vec<PeerView>,
    pub complete: bool,
}
