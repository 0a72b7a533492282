//! The JSON shapes the REST API answers with, built from the lower layers' domain values.
//! (The ring's own views, `NodeView`, `PeerView` and `RingWalk`, are still in `runtime`.)

use serde::Serialize;

use crate::files::outcome::{Locations, NodeFiles, SharedFile, StoredFile, Uploaded};
use crate::id::Id;
use crate::ring::LookupResult;
use crate::runtime::PeerView;

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
        }
    }
}

/// `GET /v1/node/files`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeFilesView {
    pub shared: Vec<SharedFileView>,
    pub stored: Vec<StoredFileView>,
}

impl From<NodeFiles> for NodeFilesView {
    fn from(f: NodeFiles) -> NodeFilesView {
        NodeFilesView {
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
    use crate::ring::{Address, Peer};

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
        };
        assert_eq!(
            json(LocationsView::from(loc)),
            format!(
                r#"{{"name":"f","id":"{id}","node":{pa},"replicas":[{pa}],"providers":[],"hops":1}}"#
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
        };
        assert_eq!(
            json(NodeFilesView::from(files)),
            format!(
                r#"{{"shared":[],"stored":[{{"name":"f","id":"{id}","size":3,"sha256":"s"}}]}}"#
            )
        );
        let shared = SharedFileView {
            name: "g".into(),
            size: 1,
            sha256: "t".into(),
        };
        assert_eq!(json(shared), r#"{"name":"g","size":1,"sha256":"t"}"#);
    }
}
