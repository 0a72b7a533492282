//! The file layer's records as peers exchange them: versions, file metadata (and tombstones),
//! provider records, and the answers of the data plane.

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// A version from a hybrid logical clock: the writer's physical time in milliseconds since the
/// Unix epoch, a logical counter that orders writes within one millisecond and writes after
/// one the writer has seen from a clock ahead of its own, then the writer's id to break ties.
/// Ordered field by field; newer wins. (Versions written before the counter existed read as
/// `logical = 0`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub millis: u64,
    #[serde(default)]
    pub logical: u32,
    pub origin: Id,
}

/// What the ring knows about one stored file (or its tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: String,
    pub id: Id,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content (empty for a tombstone).
    pub sha256: String,
    pub version: Version,
    /// A tombstone: the file was deleted at `version`.
    #[serde(default)]
    pub deleted: bool,
    /// How the content is held (absent on the wire = [`Layout::Inline`], as before blocks).
    #[serde(default, skip_serializing_if = "Layout::is_inline")]
    pub layout: Layout,
}

/// How a record's content is held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The content travels and is stored with the record itself (files of at most one block,
    /// and every file written before blocks existed).
    #[default]
    Inline,
    /// A file's manifest: no content of its own; its bytes are the blocks `digests` (lowercase
    /// hex SHA-256, in order), each `block_size` bytes but the last.
    Blocks {
        block_size: u64,
        digests: Vec<String>,
    },
    /// A file's manifest with two levels: its bytes are the blocks listed, in order, by the
    /// list blocks `lists` (lowercase hex SHA-256 of ordinary content-addressed blocks, each
    /// holding `per_list` block digests but the last; see `files::lists` for their format).
    /// Big files keep a small record this way.
    Lists {
        block_size: u64,
        per_list: u64,
        lists: Vec<String>,
    },
    /// A content-addressed block: `name` and `sha256` are its digest, `id` the digest's first
    /// 160 bits. Blocks are immutable, so every copy has the same version.
    Block,
}

impl Layout {
    pub fn is_inline(&self) -> bool {
        matches!(self, Layout::Inline)
    }
}

impl FileMeta {
    /// Whether a live copy of this record carries content bytes (inline files and blocks do; a
    /// manifest and a tombstone do not).
    pub fn has_content(&self) -> bool {
        !self.deleted && !self.is_manifest()
    }

    /// Whether this is a file's manifest (its bytes are blocks), at one level or two.
    pub fn is_manifest(&self) -> bool {
        matches!(self.layout, Layout::Blocks { .. } | Layout::Lists { .. })
    }

    /// How many data blocks a live manifest's file has (0 for anything else).
    pub fn block_count(&self) -> u64 {
        match &self.layout {
            _ if self.deleted => 0,
            Layout::Blocks { digests, .. } => digests.len() as u64,
            Layout::Lists { block_size, .. } => self.size.div_ceil((*block_size).max(1)),
            _ => 0,
        }
    }

    /// The list blocks of a live two-level manifest (empty for anything else).
    pub fn list_digests(&self) -> &[String] {
        match &self.layout {
            Layout::Lists { lists, .. } if !self.deleted => lists,
            _ => &[],
        }
    }

    /// Whether this is a block rather than a named file's record.
    pub fn is_block(&self) -> bool {
        matches!(self.layout, Layout::Block)
    }

    /// The block digests of a one-level manifest (empty for anything else: the blocks of a
    /// two-level one are in its list blocks).
    pub fn digests(&self) -> &[String] {
        match &self.layout {
            Layout::Blocks { digests, .. } if !self.deleted => digests,
            _ => &[],
        }
    }
}

/// "Peer P shares file F": published to the peer responsible for F, with a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
    /// The provider's peer id and peer-protocol address.
    pub peer_id: Id,
    pub peer: String,
}

/// A peer's answer to storing an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    /// The object was stored (it was newer than the peer's copy).
    pub stored: bool,
    /// It replaced a live version.
    pub replaced: bool,
    /// The peer's version after the call.
    pub current: FileMeta,
}

impl PutReply {
    /// The peer now holds exactly `meta`'s version: it stored it, or already had that version
    /// (a retried or repeated push). A newer version at the peer is *not* holding it.
    pub fn holds(&self, meta: &FileMeta) -> bool {
        self.stored || self.current.version == meta.version
    }
}

/// What a peer knows about a key: its stored version (or tombstone) and the providers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub meta: Option<FileMeta>,
    pub providers: Vec<ProviderRecord>,
}

/// The small requests of the data plane (no body), each with its own answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlobQuery {
    /// What the peer knows about `id`: [`BlobAnswer::Info`].
    Info { id: Id },
    /// Record a provider: [`BlobAnswer::Done`].
    PutProvider { record: ProviderRecord },
    /// Which of these versions the peer lacks or holds older: [`BlobAnswer::Missing`].
    Missing { have: Vec<(Id, Version)> },
    /// These blocks are listed by a live manifest: the peer keeps those it holds
    /// ([`BlobAnswer::Done`]).
    Referenced { ids: Vec<Id> },
    /// The block manifest of the file `name` in the peer's shared directory:
    /// [`BlobAnswer::Shared`].
    SharedManifest { name: String },
}

/// The answer to a [`BlobQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlobAnswer {
    Info(ObjectInfo),
    Done,
    Missing {
        ids: Vec<Id>,
    },
    /// A shared file as its provider hashed it: [`Layout::Blocks`] with the digest of every
    /// block when it has more than one, else [`Layout::Inline`]; `None` when not shared.
    Shared {
        meta: Option<FileMeta>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_time_then_counter_then_origin() {
        let v = |millis, logical, o| Version {
            millis,
            logical,
            origin: Id::from_parts(0, o),
        };
        assert!(v(5, 9, 9) < v(6, 0, 1));
        assert!(v(6, 0, 2) < v(6, 1, 1));
        assert!(v(6, 1, 1) < v(6, 1, 2));
    }

    #[test]
    fn versions_without_a_counter_read_as_zero() {
        let json = r#"{"millis":7,"origin":"0000000000000000000000000000000000000003"}"#;
        let v: Version = serde_json::from_str(json).unwrap();
        assert_eq!((v.millis, v.logical), (7, 0));
    }
}
