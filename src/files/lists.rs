//! The second level of block lists: a file of more than [`LIST_THRESHOLD`] blocks has a
//! manifest ([`Layout::Lists`]) that lists the digests of *list blocks* instead of its block
//! digests. A list block is an ordinary content-addressed block (stored, replicated, handed
//! off, verified and collected like any other) whose content is a bounded, versioned list of
//! block digests:
//!
//! ```text
//! "CNBL"  format (1 byte, = 1)  3 zero bytes  count (u32, big-endian)  count x 32-byte SHA-256
//! ```
//!
//! Every list holds `per_list` digests (at most [`MAX_PER_LIST`]) but the last, so the length
//! of list `k` follows from the manifest alone and a list block is fetched like a data block of
//! known size. A manifest lists at most [`MAX_LISTS`] list blocks: a 4 GiB file in 64 KiB
//! blocks is 4 list blocks and a record of about 500 bytes, where one level listed 65,536
//! digests (4.4 MB of JSON) in every exchange about the file.
//!
//! The threshold is 1,024 digests: below it a one-level record is at most ~70 KB, costs no
//! extra fetch for a download and reads exactly as before; above it, the record would grow by
//! ~70 bytes a block in every `info`, `missing` and repair exchange. 16,384 digests a list
//! (512 KiB, half a default block) keep the lists few (a 64 GiB file in 1 MiB blocks is 4) and
//! an upload's pending list small.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::blocks::check_digest;
use super::ops::{Files, FilesError};
use super::spool::hex;
use super::{FileMeta, Layout};
use crate::config::{MAX_LISTS, MAX_PER_LIST};

/// Files of more blocks than this list them in list blocks.
pub const LIST_THRESHOLD: u64 = 1 << 10;
/// Block digests per list block (all lists of a manifest but the last hold exactly this many).
pub const PER_LIST: u64 = MAX_PER_LIST;

const MAGIC: &[u8; 4] = b"CNBL";
const FORMAT: u8 = 1;
/// Bytes before the digests of a list block.
pub const HEADER: u64 = 12;

/// Why a list block is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("a list block starts with \"CNBL\" and format 1")]
    Header,
    #[error("a list block of {got} bytes; {expected} expected for {count} digests")]
    Length { got: u64, expected: u64, count: u64 },
    #[error("a list block lists {got} digests; the manifest says {expected}")]
    Count { got: u64, expected: u64 },
    #[error("a list block holds 1..={MAX_PER_LIST} digests, got {0}")]
    TooMany(u64),
    #[error(transparent)]
    Digest(#[from] super::blocks::BlockError),
}

/// The length in bytes of a list block of `count` digests.
pub fn list_len(count: u64) -> u64 {
    HEADER + 32 * count
}

/// The content of a list block listing `digests` (lowercase hex SHA-256 each).
pub fn encode(digests: &[String]) -> Result<Bytes, ListError> {
    let mut raw = Vec::with_capacity(digests.len());
    for d in digests {
        check_digest(d)?;
        let mut digest = [0u8; 32];
        for (b, pair) in digest.iter_mut().zip(d.as_bytes().chunks(2)) {
            *b = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        raw.push(digest);
    }
    encode_raw(&raw)
}

/// The content of a list block listing `digests` (SHA-256 each, as bytes).
pub fn encode_raw(digests: &[[u8; 32]]) -> Result<Bytes, ListError> {
    let count = digests.len() as u64;
    if count == 0 || count > MAX_PER_LIST {
        return Err(ListError::TooMany(count));
    }
    let mut out = Vec::with_capacity(usize::try_from(list_len(count)).unwrap_or(0));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[FORMAT, 0, 0, 0]);
    out.extend_from_slice(&(count as u32).to_be_bytes());
    for d in digests {
        out.extend_from_slice(d);
    }
    Ok(Bytes::from(out))
}

/// The value of a lowercase hex digit (checked by `check_digest` before).
fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c.wrapping_sub(b'a') + 10,
    }
}

/// The block digests of a list block that must list `expected` of them.
pub fn decode(data: &[u8], expected: u64) -> Result<Vec<String>, ListError> {
    if data.len() < HEADER as usize || &data[..4] != MAGIC || data[4..8] != [FORMAT, 0, 0, 0] {
        return Err(ListError::Header);
    }
    let count = u64::from(u32::from_be_bytes([data[8], data[9], data[10], data[11]]));
    if count == 0 || count > MAX_PER_LIST {
        return Err(ListError::TooMany(count));
    }
    if count != expected {
        return Err(ListError::Count {
            got: count,
            expected,
        });
    }
    if data.len() as u64 != list_len(count) {
        return Err(ListError::Length {
            got: data.len() as u64,
            expected: list_len(count),
            count,
        });
    }
    Ok(data[HEADER as usize..].chunks(32).map(hex).collect())
}

/// The shape of a two-level manifest: `blocks` data blocks in lists of `per_list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub blocks: u64,
    pub per_list: u64,
}

impl Shape {
    /// How many list blocks the file has.
    pub fn lists(&self) -> u64 {
        self.blocks.div_ceil(self.per_list.max(1))
    }

    /// How many digests list `k` holds.
    pub fn count(&self, k: u64) -> u64 {
        self.blocks
            .saturating_sub(k.saturating_mul(self.per_list))
            .min(self.per_list)
    }

    /// The list holding block `i`.
    pub fn list_of(&self, i: u64) -> u64 {
        i / self.per_list.max(1)
    }
}

/// When an upload switches to list blocks and how many digests each holds: the defaults, or
/// smaller ones a test sets ([`Files::set_list_shape`]) to get several lists from a small file.
pub struct ListKnobs {
    threshold: AtomicU64,
    per_list: AtomicU64,
}

impl Default for ListKnobs {
    fn default() -> Self {
        ListKnobs {
            threshold: AtomicU64::new(LIST_THRESHOLD),
            per_list: AtomicU64::new(PER_LIST),
        }
    }
}

/// When a file's digests go into list blocks (more than `threshold` of them) and how many
/// each list holds: what uploads through a peer and its shared-directory index use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub threshold: u64,
    pub per_list: u64,
}

impl Default for Cut {
    fn default() -> Self {
        Cut {
            threshold: LIST_THRESHOLD,
            per_list: PER_LIST,
        }
    }
}

impl Cut {
    /// The digests per list for a file of `blocks` blocks, or `None` when it stays one level:
    /// `per_list`, raised (up to [`MAX_PER_LIST`]) when that many would need more than
    /// [`MAX_LISTS`] list blocks.
    pub fn per_list_for(&self, blocks: u64) -> Option<u64> {
        if blocks <= self.threshold || blocks < 2 {
            return None;
        }
        let per_list = self
            .per_list
            .max(blocks.div_ceil(MAX_LISTS))
            .clamp(2, MAX_PER_LIST);
        Some(per_list)
    }
}

impl ListKnobs {
    /// The cut uploads through this peer use now.
    pub(super) fn cut(&self) -> Cut {
        Cut {
            threshold: self.threshold.load(Ordering::Relaxed),
            per_list: self.per_list.load(Ordering::Relaxed).clamp(2, MAX_PER_LIST),
        }
    }

    pub(super) fn writer(&self) -> ListWriter {
        ListWriter {
            threshold: self.threshold.load(Ordering::Relaxed),
            per_list: self.per_list.load(Ordering::Relaxed).clamp(2, MAX_PER_LIST),
            pending: Vec::new(),
            lists: 0,
            seen: 0,
        }
    }
}

/// An upload's block digests as they come (in order), cut into lists once there are more than
/// the threshold: it holds at most max(threshold + 1, per_list) digests, whatever the file's
/// size.
pub struct ListWriter {
    threshold: u64,
    pub per_list: u64,
    pending: Vec<String>,
    lists: u64,
    seen: u64,
}

/// How an upload's digests end up.
pub enum Listed {
    /// In the manifest itself (one level).
    Inline(Vec<String>),
    /// In these last lists (in order), after the ones already written.
    Lists(Vec<Vec<String>>),
}

impl ListWriter {
    /// Takes the next block digest; returns the lists now complete, to be written (in order)
    /// before the next ones.
    pub fn push(&mut self, digest: String) -> Vec<Vec<String>> {
        self.pending.push(digest);
        self.seen += 1;
        let mut full = Vec::new();
        if self.lists == 0 && self.seen <= self.threshold {
            return full;
        }
        while self.pending.len() as u64 >= self.per_list {
            let rest = self.pending.split_off(self.per_list as usize);
            full.push(std::mem::replace(&mut self.pending, rest));
            self.lists += 1;
        }
        full
    }

    /// The digests not in a written list yet, once the last block's is in.
    pub fn finish(mut self) -> Listed {
        if self.lists == 0 && self.seen <= self.threshold {
            return Listed::Inline(self.pending);
        }
        let mut out = Vec::new();
        while !self.pending.is_empty() {
            let cut = self.pending.len().min(self.per_list as usize);
            let rest = self.pending.split_off(cut);
            out.push(std::mem::replace(&mut self.pending, rest));
        }
        Listed::Lists(out)
    }
}

impl Files {
    /// Sets when uploads through this peer switch to list blocks and how many digests a list
    /// holds (tests: several lists from a small file). Manifests carry their own `per_list`,
    /// so readers need no setting.
    #[doc(hidden)]
    pub fn set_list_shape(&self, threshold: u64, per_list: u64) {
        self.lists.threshold.store(threshold, Ordering::Relaxed);
        self.lists
            .per_list
            .store(per_list.clamp(2, MAX_PER_LIST), Ordering::Relaxed);
    }

    /// Stores one list block on its holders (write quorum); its digest.
    pub(super) async fn put_list(&self, digests: &[String]) -> Result<String, FilesError> {
        let data = encode(digests).map_err(|e| FilesError::Internal(e.to_string()))?;
        self.put_block(data).await
    }

    /// Every block digest of a live manifest, in order (a two-level one's from all its lists:
    /// for `?blocks=true`, which answers with every block anyway).
    pub(super) async fn all_digests(&self, meta: &FileMeta) -> Result<Vec<String>, FilesError> {
        let Layout::Lists { per_list, .. } = &meta.layout else {
            return Ok(meta.digests().to_vec());
        };
        let shape = Shape {
            blocks: meta.block_count(),
            per_list: *per_list,
        };
        let mut out = Vec::new();
        for (k, list) in meta.list_digests().iter().enumerate() {
            out.extend(self.fetch_list(list, shape, k as u64).await?);
        }
        Ok(out)
    }

    /// List `k` of a manifest of `shape` (`digest`), fetched from its holders like any block,
    /// verified against its digest, then checked and decoded.
    pub(super) async fn fetch_list(
        &self,
        digest: &str,
        shape: Shape,
        k: u64,
    ) -> Result<Vec<String>, FilesError> {
        let count = shape.count(k);
        let data = self.fetch_block(digest, list_len(count)).await?;
        decode(&data, count).map_err(|e| FilesError::Unavailable {
            name: digest.to_string(),
            detail: format!("list block {k} is not a valid list: {e}"),
        })
    }
}

/// The manifest limits for list blocks, checked by `manifest::check_manifest`.
pub fn check_shape(shape: Shape, lists: u64) -> Result<(), String> {
    if !(2..=MAX_PER_LIST).contains(&shape.per_list) {
        return Err(format!(
            "a list block lists 2..={MAX_PER_LIST} digests, the manifest says {}",
            shape.per_list
        ));
    }
    if shape.blocks < 2 || lists != shape.lists() || !(1..=MAX_LISTS).contains(&lists) {
        return Err(format!(
            "{} blocks in lists of {} are {} list blocks (at most {MAX_LISTS}), the manifest \
             lists {lists}",
            shape.blocks,
            shape.per_list,
            shape.lists()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(k: u64) -> String {
        crate::files::sha256_hex(&k.to_be_bytes())
    }

    #[test]
    fn list_blocks_round_trip_and_refuse_what_they_are_not() {
        let digests: Vec<String> = (0..5).map(digest).collect();
        let data = encode(&digests).unwrap();
        assert_eq!(data.len() as u64, list_len(5));
        assert_eq!(decode(&data, 5).unwrap(), digests);
        assert_eq!(
            decode(&data, 4),
            Err(ListError::Count {
                got: 5,
                expected: 4
            })
        );
        assert!(matches!(
            decode(&data[..data.len() - 1], 5),
            Err(ListError::Length { .. })
        ));
        let mut bad = data.to_vec();
        bad[4] = 2; // a format this peer does not know
        assert_eq!(decode(&bad, 5), Err(ListError::Header));
        let mut huge = data.to_vec();
        huge[8..12].copy_from_slice(&(MAX_PER_LIST as u32 + 1).to_be_bytes());
        assert_eq!(decode(&huge, 5), Err(ListError::TooMany(MAX_PER_LIST + 1)));
        assert!(encode(&[]).is_err());
        assert!(encode(&["AB".repeat(32)]).is_err());
    }

    #[test]
    fn shapes_find_the_list_of_a_block() {
        let s = Shape {
            blocks: 10,
            per_list: 4,
        };
        assert_eq!(s.lists(), 3);
        assert_eq!((0..3).map(|k| s.count(k)).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!((s.list_of(3), s.list_of(4), s.list_of(9)), (0, 1, 2));
        check_shape(s, 3).unwrap();
        assert!(check_shape(s, 2).is_err());
        assert!(check_shape(Shape { per_list: 1, ..s }, 10).is_err());
    }

    fn writer(threshold: u64, per_list: u64) -> ListWriter {
        let k = ListKnobs::default();
        k.threshold.store(threshold, Ordering::Relaxed);
        k.per_list.store(per_list, Ordering::Relaxed);
        k.writer()
    }

    #[test]
    fn small_files_stay_one_level_and_big_ones_are_cut_into_lists_as_they_come() {
        let mut w = writer(4, 3);
        for k in 0..4 {
            assert!(w.push(digest(k)).is_empty());
        }
        assert!(matches!(w.finish(), Listed::Inline(d) if d.len() == 4));

        let mut w = writer(4, 3);
        let mut written = Vec::new();
        for k in 0..11 {
            written.extend(w.push(digest(k)));
            // Never more than max(threshold + 1, per_list) pending.
            assert!(w.pending.len() <= 5);
        }
        // The fifth digest crossed the threshold and the first list went at once; three full
        // lists went while the digests came, the short last one at the end.
        assert_eq!(written.len(), 3);
        let Listed::Lists(rest) = w.finish() else {
            panic!("more than the threshold is listed in lists")
        };
        written.extend(rest);
        let sizes: Vec<usize> = written.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 3, 2]);
        let all: Vec<String> = written.concat();
        assert_eq!(all, (0..11).map(digest).collect::<Vec<_>>());
    }
}
