//! A file's manifest: its record at successor(SHA-1(name)) with [`Layout::Blocks`], listing the
//! digests of its blocks in order, or, past `lists::LIST_THRESHOLD` blocks, with
//! [`Layout::Lists`], listing the list blocks that list them (see [`super::lists`]). It is
//! written last, after every block reached its write quorum, so a reader never sees a file
//! whose blocks are missing; an overwrite replaces the record, so readers switch from the old
//! block list to the new one at once.
//!
//! Garbage collection is by reference leases: the peer responsible for a live manifest tells
//! its blocks' holders every repair round that the blocks are still referenced
//! ([`BlobQuery::Referenced`]); a holder drops a block nobody stored or referenced for
//! `files.tombstone_ttl` (see `Store::expire_blocks`); for a two-level manifest, its list
//! blocks, then its data blocks one list at a time from the owner's list cache. Storing a
//! block refreshes it too, and the peer running an upload refreshes the blocks it stored
//! every round until the manifest is written (see `upload::Uploading`), so a block of an
//! upload under way is never collected, however long the upload takes (a failed one lets them
//! go: nothing references them and they go after the TTL).

use std::collections::HashSet;
use std::ops::RangeInclusive;

use tracing::{debug, warn};

use super::blocks::{BLOCK_VERSION, check_digest};
use super::lists::{Shape, check_shape};
use super::ops::Files;
use super::outcome::BlockLocation;
use super::{FileMeta, Layout, Version};
use crate::config::{MAX_BLOCK_SIZE, MAX_BLOCKS, MIN_BLOCK_SIZE};
use crate::id::Id;
use crate::transport::{BlobQuery, TraceCarrier, missing};

/// Bytes of blocks an upload or a download keeps in flight (the window is this many bytes of
/// blocks, at least 2 and at most 16 blocks).
pub const WINDOW_BYTES: u64 = 8 << 20;

/// Blocks in flight per transfer for blocks of `block_size` bytes.
pub fn window(block_size: u64) -> usize {
    (WINDOW_BYTES / block_size.max(1)).clamp(2, 16) as usize
}

/// Why a manifest is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("block size {0} is outside 64KiB..=16MiB")]
    BlockSize(u64),
    #[error(
        "{size} bytes in blocks of {block_size} are {expected} blocks, the manifest lists {got}"
    )]
    Count {
        size: u64,
        block_size: u64,
        expected: u64,
        got: u64,
    },
    #[error("{0}")]
    Lists(String),
    #[error(transparent)]
    Digest(#[from] super::blocks::BlockError),
}

/// Checks a manifest a peer sent: block size in bounds, as many digests as the size needs
/// (more than one block: a smaller file is stored inline), each a well-formed digest; or, for
/// a two-level manifest, as many list blocks as its blocks in lists of `per_list` need.
pub fn check_manifest(meta: &FileMeta) -> Result<(), ManifestError> {
    let (block_size, listed) = match &meta.layout {
        Layout::Blocks {
            block_size,
            digests,
        } => (*block_size, digests),
        Layout::Lists {
            block_size, lists, ..
        } => (*block_size, lists),
        _ => return Ok(()),
    };
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(ManifestError::BlockSize(block_size));
    }
    let expected = meta.size.div_ceil(block_size);
    let got = listed.len() as u64;
    if let Layout::Lists { per_list, .. } = &meta.layout {
        let shape = Shape {
            blocks: expected,
            per_list: *per_list,
        };
        check_shape(shape, got).map_err(ManifestError::Lists)?;
    } else if got != expected || !(2..=MAX_BLOCKS).contains(&got) {
        return Err(ManifestError::Count {
            size: meta.size,
            block_size,
            expected,
            got,
        });
    }
    for d in listed {
        check_digest(d)?;
    }
    Ok(())
}

/// Where the blocks of a file of `size` bytes in blocks of `block_size` lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub size: u64,
    pub block_size: u64,
}

impl Geometry {
    /// The length of block `i`.
    pub fn block_len(&self, i: u64) -> u64 {
        self.size
            .saturating_sub(i * self.block_size)
            .min(self.block_size)
    }

    /// The blocks holding bytes `first..=last`.
    pub fn blocks_of(&self, first: u64, last: u64) -> RangeInclusive<u64> {
        (first / self.block_size)..=(last / self.block_size)
    }
}

impl Files {
    /// Tells the holders of the blocks of every live manifest this peer is responsible for,
    /// and of the uploads under way here, that those blocks are still referenced (one lookup
    /// per holder group, one message per holder). A two-level manifest's list blocks go with
    /// the one-level manifests' blocks; then its data blocks, one list at a time (from the
    /// list cache, rebuilt from the list blocks when missing), so a round holds at most one
    /// list's worth of ids per big file. Returns how many block references were sent.
    pub(super) async fn refresh_block_leases(&self) -> usize {
        let owned: Vec<FileMeta> = self
            .store
            .list()
            .into_iter()
            .filter(|m| !m.deleted && m.is_manifest() && self.ring.owns(m.id))
            .collect();
        let mut ids: Vec<Id> = owned
            .iter()
            .flat_map(|m| m.digests().iter().chain(m.list_digests()))
            .filter_map(|d| super::blocks::block_id(d).ok())
            .collect();
        ids.extend(self.uploading.ids());
        let mut sent = self.send_references(ids).await;
        let mut keep = HashSet::new();
        for m in &owned {
            let Layout::Lists { per_list, .. } = &m.layout else {
                continue;
            };
            let shape = Shape {
                blocks: m.block_count(),
                per_list: *per_list,
            };
            for (k, list) in m.list_digests().iter().enumerate() {
                keep.insert(list.clone());
                match self.cached_list(list, shape, k as u64).await {
                    Ok(digests) => {
                        let ids = digests
                            .iter()
                            .filter_map(|d| super::blocks::block_id(d).ok())
                            .collect();
                        sent += self.send_references(ids).await;
                    }
                    // The next round tries again, well within the TTL (a list block is
                    // replicated and repaired like any block).
                    Err(e) => warn!(name = %m.name, list = k, error = %e,
                        "a block list is unavailable: its blocks' leases wait for the next round"),
                }
            }
        }
        self.prune_list_cache(keep).await;
        sent
    }

    /// Sends `ids` as [`BlobQuery::Referenced`] to their holders; how many references went.
    async fn send_references(&self, mut ids: Vec<Id>) -> usize {
        if ids.is_empty() {
            return 0;
        }
        ids.sort();
        ids.dedup();
        let mut sent = 0;
        for (holders, group) in self.group_by_placement(ids, |id| *id).await {
            let mut sends: Vec<(crate::ring::Peer, BlobQuery, usize)> = Vec::new();
            for h in &holders {
                for batch in group.chunks(crate::transport::MAX_BATCH) {
                    let ids = batch.to_vec();
                    sends.push((h.clone(), BlobQuery::Referenced { ids }, batch.len()));
                }
            }
            for (h, query, n) in sends {
                match self
                    .blob
                    .query(&h.address, query, TraceCarrier::current())
                    .await
                {
                    Ok(_) => sent += n,
                    Err(e) => {
                        debug!(peer = %h.address, error = %e, "block references not delivered")
                    }
                }
            }
        }
        sent
    }

    /// Each of `digests` (in order) with the peers that hold it: one lookup per holder group,
    /// one question per holder.
    pub(super) async fn block_holders(&self, digests: &[String]) -> Vec<BlockLocation> {
        let ids: Vec<(usize, Id)> = digests
            .iter()
            .enumerate()
            .filter_map(|(i, d)| super::blocks::block_id(d).ok().map(|id| (i, id)))
            .collect();
        let mut out: Vec<BlockLocation> = digests
            .iter()
            .map(|d| BlockLocation {
                digest: d.clone(),
                holders: Vec::new(),
            })
            .collect();
        for (holders, group) in self.group_by_placement(ids, |(_, id)| *id).await {
            let have: Vec<(Id, Version)> =
                group.iter().map(|(_, id)| (*id, BLOCK_VERSION)).collect();
            for h in holders {
                let Ok(missing) = missing(&*self.blob, &h.address, have.clone()).await else {
                    continue;
                };
                for (i, id) in &group {
                    if !missing.contains(id)
                        && let Some(b) = out.get_mut(*i)
                    {
                        b.holders.push(h.clone());
                    }
                }
            }
        }
        out
    }

    /// Drops blocks no live manifest referenced for `files.tombstone_ttl`.
    pub(super) async fn collect_blocks(&self) {
        let ttl = self.ring.config().files.tombstone_ttl;
        let Some(before) = std::time::Instant::now().checked_sub(ttl) else {
            return;
        };
        let store = std::sync::Arc::clone(&self.store);
        let freed = tokio::task::spawn_blocking(move || store.expire_blocks(before)).await;
        if let Ok((blocks, bytes)) = freed
            && blocks > 0
        {
            self.ring.metrics().blocks_collected.inc_by(blocks);
            tracing::info!(blocks, bytes, "unreferenced blocks collected");
            self.update_usage();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(size: u64, block_size: u64, n: usize) -> FileMeta {
        FileMeta {
            name: "f".into(),
            id: Id::hash("f"),
            size,
            sha256: String::new(),
            version: Version {
                millis: 1,
                logical: 0,
                origin: Id::ZERO,
            },
            deleted: false,
            layout: Layout::Blocks {
                block_size,
                digests: vec![crate::files::sha256_hex(b"x"); n],
            },
        }
    }

    #[test]
    fn manifests_list_exactly_the_blocks_their_size_needs() {
        check_manifest(&manifest(3 << 20, 1 << 20, 3)).unwrap();
        check_manifest(&manifest((2 << 20) + 1, 1 << 20, 3)).unwrap();
        assert!(matches!(
            check_manifest(&manifest(3 << 20, 1 << 20, 2)),
            Err(ManifestError::Count { expected: 3, .. })
        ));
        // One block is stored inline, never as a manifest.
        assert!(check_manifest(&manifest(1 << 20, 1 << 20, 1)).is_err());
        assert_eq!(
            check_manifest(&manifest(3 << 20, 1024, 3 << 10)),
            Err(ManifestError::BlockSize(1024))
        );
    }

    #[test]
    fn geometry_finds_the_blocks_of_a_range() {
        let g = Geometry {
            size: 10,
            block_size: 4,
        };
        assert_eq!(
            (0..3).map(|i| g.block_len(i)).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert_eq!(g.blocks_of(0, 0), 0..=0);
        assert_eq!(g.blocks_of(3, 4), 0..=1);
        assert_eq!(g.blocks_of(9, 9), 2..=2);
        assert_eq!(window(1 << 20), 8);
        assert_eq!(window(16 << 20), 2);
        assert_eq!(window(64 << 10), 16);
    }
}
