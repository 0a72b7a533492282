//! What the file operations return: plain domain values. The REST API's JSON shapes of these
//! live with the API (`api::views`).

use crate::id::Id;
use crate::ring::Peer;

pub use super::shared::SharedFile;

/// The outcome of an upload.
#[derive(Clone, Debug)]
pub struct Uploaded {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
    /// The first holder that stored it (the responsible peer when it answered).
    pub node: Peer,
    /// Copies besides the first.
    pub replicas: usize,
    /// It replaced an existing version.
    pub replaced: bool,
}

/// Where a name lives: the responsible peer, the replicas holding the live version, the
/// providers sharing it.
#[derive(Clone, Debug)]
pub struct Locations {
    pub name: String,
    pub id: Id,
    pub node: Peer,
    pub replicas: Vec<Peer>,
    pub providers: Vec<Peer>,
    pub hops: u32,
    /// Blocks of the live version (0: stored inline, or not uploaded).
    pub block_count: usize,
    /// When asked for: each block's digest and the peers holding it, in file order.
    pub blocks: Option<Vec<BlockLocation>>,
}

/// One block of a file and the peers that hold it.
#[derive(Clone, Debug)]
pub struct BlockLocation {
    pub digest: String,
    pub holders: Vec<Peer>,
}

/// What this peer shares from its directory and stores for the ring.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    pub shared: Vec<SharedFile>,
    pub stored: Vec<StoredFile>,
    /// Blocks this peer holds for the ring.
    pub blocks: u64,
    /// Bytes of content this peer stores (inline files and blocks).
    pub bytes: u64,
}

/// One piece of content this peer stores.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
}
