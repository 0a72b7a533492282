//! What the file layer answers, as the REST API shows it.

use serde::Serialize;

use crate::id::Id;
use crate::runtime::PeerView;

pub use super::shared::SharedFile;

/// The answer to an upload.
#[derive(Clone, Debug, Serialize)]
pub struct Uploaded {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
    pub node: PeerView,
    pub replicas: usize,
    /// It replaced an existing version (the API answers 200 rather than 201).
    #[serde(skip)]
    pub replaced: bool,
}

/// `GET /v1/files/{name}/locations`.
#[derive(Clone, Debug, Serialize)]
pub struct Locations {
    pub name: String,
    pub id: Id,
    pub node: PeerView,
    pub replicas: Vec<PeerView>,
    pub providers: Vec<PeerView>,
    pub hops: u32,
}

/// `GET /v1/node/files`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeFiles {
    pub shared: Vec<SharedFile>,
    pub stored: Vec<StoredFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredFile {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
}
