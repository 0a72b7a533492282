//! The JSON shapes the REST API answers with, built from the lower layers' domain values.

use serde::Serialize;

use crate::config::TransportKind;
use crate::files::outcome::{Locations, NodeFiles, SharedFile, StoredFile, Uploaded};
use crate::id::Id;
use crate::ring::{Address, LookupResult, Peer};
use crate::runtime::Status;

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

/// `GET /v1/node` (also the answer to join and leave).
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: Id,
    pub address: Address,
    pub api: String,
    /// What carries the peer protocol (`transport.kind`).
    pub transport: TransportKind,
    pub state: &'static str,
    pub ring_id: Option<String>,
    pub predecessor: Option<PeerView>,
    pub successors: Vec<PeerView>,
    pub keys: u64,
    pub ring_size_estimate: f64,
    pub stabilization_rounds: u64,
}

impl NodeView {
    /// The node's `status`, served at `api`, speaking `transport`, holding `keys` keys.
    pub fn new(n: &Status, api: String, transport: TransportKind, keys: u64) -> NodeView {
        NodeView {
            id: n.me.id,
            address: n.me.address.clone(),
            api,
            transport,
            state: n.state_name(),
            ring_id: n.ring_id.map(|r| r.to_string()),
            predecessor: n.predecessor.as_ref().map(PeerView::from),
            successors: n.successors.iter().map(PeerView::from).collect(),
            keys,
            ring_size_estimate: n.ring_size_estimate,
            stabilization_rounds: n.stabilize_rounds,
        }
    }
}

/// One entry of `GET /v1/node/fingers`.
#[derive(Clone, Debug, Serialize)]
pub struct FingerView {
    pub index: usize,
    pub node: Option<PeerView>,
    pub start: Id,
}

/// `GET /v1/node/fingers`: finger i points at the successor of id + 2^i. A finger not known
/// yet shows the node itself when it is alone (it is then every start's successor), else null.
pub fn fingers(n: &Status) -> Vec<FingerView> {
    let alone = n.successor().is_some_and(|s| s.id == n.me.id);
    n.fingers
        .iter()
        .enumerate()
        .map(|(index, f)| FingerView {
            index,
            node: match f {
                Some(p) => Some(PeerView::from(p)),
                None if alone => Some(PeerView::from(&n.me)),
                None => None,
            },
            start: n.me.id.add_pow2(index),
        })
        .collect()
}

/// `GET /v1/ring`.
#[derive(Clone, Debug, Serialize)]
pub struct RingWalkView {
    pub nodes: Vec<PeerView>,
    pub complete: bool,
}

impl RingWalkView {
    pub fn new(nodes: &[Peer], complete: bool) -> RingWalkView {
        RingWalkView {
            nodes: nodes.iter().map(PeerView::from).collect(),
            complete,
        }
    }
}

/// `PUT /v1/files/{name}`: 201 or 200.
#[derive(Clone, Debug, Serialize)]
pub struct UploadedView {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
    pub node: PeerView,
    pub replicas: usize,
}

impl From<Uploaded> for UploadedView {
    fn from(u: Uploaded) -> UploadedView {
        UploadedView {
            name: u.name,
            id: u.id,
            size: u.size,
            sha256: u.sha256,
            node: PeerView::from(&u.node),
            replicas: u.replicas,
        }
    }
}

/// `GET /v1/files/{name}/locations`.
#[derive(Clone, Debug, Serialize)]
pub struct LocationsView {
    pub name: String,
    pub id: Id,
    pub node: PeerView,
    pub replicas: Vec<PeerView>,
    pub providers: Vec<PeerView>,
    pub hops: u32,
    /// Blocks of the stored file (0 when it is stored whole).
    pub blocks: usize,
    /// With `?blocks=true`: each block's digest and holders, in file order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_holders: Option<Vec<BlockLocationView>>,
}

/// One block of a file and the peers that hold it.
#[derive(Clone, Debug, Serialize)]
pub struct BlockLocationView {
    pub digest: String,
    pub holders: Vec<PeerView>,
}

impl From<Locations> for LocationsView {
    fn from(l: Locations) -> LocationsView {
        LocationsView {
            name: l.name,
            id: l.id,
            node: PeerView::from(&l.node),
            replicas: l.replicas.iter().map(PeerView::from).collect(),
            providers: l.providers.iter().map(PeerView::from).collect(),
            hops: l.hops,
            blocks: l.block_count,
            block_holders: l.blocks.map(|bs| {
                bs.into_iter()
                    .map(|b| BlockLocationView {
                        digest: b.digest,
                        holders: b.holders.iter().map(PeerView::from).collect(),
                    })
                    .collect()
            }),
        }
    }
}

/// `GET /v1/node/files`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeFilesView {
    pub shared: Vec<SharedFileView>,
    pub stored: Vec<StoredFileView>,
    /// Blocks this peer holds for the ring.
    pub blocks: u64,
    /// Bytes of content this peer stores (whole files and blocks).
    pub bytes: u64,
}

impl From<NodeFiles> for NodeFilesView {
    fn from(f: NodeFiles) -> NodeFilesView {
        NodeFilesView {
            blocks: f.blocks,
            bytes: f.bytes,
            shared: f.shared.into_iter().map(SharedFileView::from).collect(),
            stored: f.stored.into_iter().map(StoredFileView::from).collect(),
        }
    }
}

/// A file this peer shares from its directory.
#[derive(Clone, Debug, Serialize)]
pub struct SharedFileView {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl From<SharedFile> for SharedFileView {
    fn from(f: SharedFile) -> SharedFileView {
        SharedFileView {
            name: f.name,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

/// Content this peer stores for the ring.
#[derive(Clone, Debug, Serialize)]
pub struct StoredFileView {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
}

impl From<StoredFile> for StoredFileView {
    fn from(f: StoredFile) -> StoredFileView {
        StoredFileView {
            name: f.name,
            id: f.id,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

/// `GET /v1/lookup/{key}` and `GET /v1/lookup?id=`.
#[derive(Clone, Debug, Serialize)]
pub struct LookupView {
    pub key: String,
    pub id: Id,
    pub node: PeerView,
    pub successors: Vec<PeerView>,
    pub hops: u32,
    pub path: Vec<PeerView>,
    pub timeouts: u32,
}

impl LookupView {
    /// The answer for `key` (a name, or the identifier as given).
    pub fn new(key: String, r: LookupResult) -> LookupView {
        LookupView {
            key,
            id: r.target,
            node: PeerView::from(&r.node),
            successors: r.successors.iter().map(PeerView::from).collect(),
            hops: r.hops,
            path: r.path.iter().map(PeerView::from).collect(),
            timeouts: r.timeouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: &str) -> Peer {
        Peer::new(Id::hash(n.as_bytes()), Address::new(n))
    }

    fn json(v: impl Serialize) -> String {
        serde_json::to_string(&v).expect("serializable")
    }

    /// The JSON the API answers with, field for field and in order (clients and scripts parse it).
    #[test]
    fn views_serialize_as_the_contract_shows_them() {
        let a = peer("a:1");
        let pa = format!(r#"{{"id":"{}","address":"a:1"}}"#, a.id);
        let id = Id::hash(b"f");
        let up = Uploaded {
            name: "f".into(),
            id,
            size: 3,
            sha256: "s".into(),
            node: a.clone(),
            replicas: 2,
            replaced: true,
        };
        assert_eq!(
            json(UploadedView::from(up)),
            format!(r#"{{"name":"f","id":"{id}","size":3,"sha256":"s","node":{pa},"replicas":2}}"#)
        );
        let loc = Locations {
            name: "f".into(),
            id,
            node: a.clone(),
            replicas: vec![a.clone()],
            providers: vec![],
            hops: 1,
            block_count: 0,
            blocks: None,
        };
        assert_eq!(
            json(LocationsView::from(loc)),
            format!(
                r#"{{"name":"f","id":"{id}","node":{pa},"replicas":[{pa}],"providers":[],"hops":1,"blocks":0}}"#
            )
        );
        let files = NodeFiles {
            shared: vec![],
            stored: vec![StoredFile {
                name: "f".into(),
                id,
                size: 3,
                sha256: "s".into(),
            }],
            blocks: 2,
            bytes: 5,
        };
        assert_eq!(
            json(NodeFilesView::from(files)),
            format!(
                r#"{{"shared":[],"stored":[{{"name":"f","id":"{id}","size":3,"sha256":"s"}}],"blocks":2,"bytes":5}}"#
            )
        );
        let n = Status {
            me: a.clone(),
            membership: crate::ring::Membership::Member,
            ring_id: Some(crate::ring::RingId(1)),
            ring_alias: None,
            predecessor: Some(a.clone()),
            successors: vec![a.clone()],
            fingers: vec![None; 2].into(),
            fingers_changed: 0,
            stabilize_rounds: 3,
            readiness: vec![],
            ring_size_estimate: 1.0,
            accepts_keys: true,
        };
        assert_eq!(
            json(NodeView::new(
                &n,
                "127.0.0.1:8080".into(),
                TransportKind::Grpc,
                4
            )),
            format!(
                r#"{{"id":"{}","address":"a:1","api":"127.0.0.1:8080","transport":"grpc","state":"ready","ring_id":"00000000-0000-0000-0000-000000000001","predecessor":{pa},"successors":[{pa}],"keys":4,"ring_size_estimate":1.0,"stabilization_rounds":3}}"#,
                a.id
            )
        );
        assert_eq!(
            json(fingers(&n)),
            format!(
                r#"[{{"index":0,"node":{pa},"start":"{}"}},{{"index":1,"node":{pa},"start":"{}"}}]"#,
                a.id.add_pow2(0),
                a.id.add_pow2(1)
            )
        );
        assert_eq!(
            json(RingWalkView::new(std::slice::from_ref(&a), true)),
            format!(r#"{{"nodes":[{pa}],"complete":true}}"#)
        );
        let shared = SharedFileView {
            name: "g".into(),
            size: 1,
            sha256: "t".into(),
        };
        assert_eq!(json(shared), r#"{"name":"g","size":1,"sha256":"t"}"#);
    }
}
