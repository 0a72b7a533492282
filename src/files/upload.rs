//! Uploads as they stream in: the body is cut into blocks of `files.block_size` as it arrives
//! and a bounded window of blocks is in flight to their holders, so an upload holds at most
//! (window + 1) blocks in memory whatever the file's size, and at most one list's worth of
//! block digests (past `lists::LIST_THRESHOLD` blocks they go into list blocks as they
//! complete). A file of at most one block is stored inline, exactly as before blocks. The manifest is written only after every block
//! reached its write quorum; any failure before leaves no visible file (the blocks already
//! stored are referenced by nothing and are collected after `files.tombstone_ttl`).
//!
//! Until its manifest is written nothing references an upload's blocks, so the uploading peer
//! holds their leases itself ([`Uploading`]): every repair round refreshes them with the live
//! manifests' blocks, and an upload that lasts longer than `files.tombstone_ttl` (a slow
//! client, a huge file) keeps its first blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt};
use sha2::Digest;
use tokio::task::JoinHandle;

use super::Layout;
use super::blocks::block_id;
use super::lists::Listed;
use super::manifest::window;
use super::ops::{Content, Files, FilesError, lock};
use super::outcome::Uploaded;
use super::spool::{hex, spool_bytes};
use super::store::StoreError;
use super::validate_name;
use crate::id::Id;
use crate::transport::BodyError;

/// The blocks stored so far by the uploads under way on this peer, per upload.
#[derive(Default)]
pub struct Uploading {
    next: AtomicU64,
    blocks: Mutex<HashMap<u64, Vec<Id>>>,
}

impl Uploading {
    /// A new upload's lease holder (the upload's blocks are let go when it is dropped).
    fn begin(self: &Arc<Self>) -> UploadLeases {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.blocks).insert(key, Vec::new());
        UploadLeases {
            uploading: Arc::clone(self),
            key,
        }
    }

    /// The ring positions of every block of every upload under way.
    pub fn ids(&self) -> Vec<Id> {
        lock(&self.blocks).values().flatten().copied().collect()
    }
}

/// One upload's hold on the blocks it stored, until its manifest is written or it fails.
#[derive(Clone)]
struct UploadLeases {
    uploading: Arc<Uploading>,
    key: u64,
}

impl UploadLeases {
    fn hold(&self, digest: &str) {
        if let Ok(id) = block_id(digest)
            && let Some(list) = lock(&self.uploading.blocks).get_mut(&self.key)
        {
            list.push(id);
        }
    }
}

/// Lets an upload's blocks go when the upload ends, however it ends (its manifest written, an
/// error, its client gone).
struct Release(UploadLeases);

impl Drop for Release {
    fn drop(&mut self) {
        lock(&self.0.uploading.blocks).remove(&self.0.key);
    }
}

/// Cuts a byte stream into blocks of `block_size` (the last one shorter), counting and hashing
/// the whole content as it passes and refusing more than `limit` bytes.
pub struct Cutter {
    stream: BoxStream<'static, Result<Bytes, BodyError>>,
    block_size: usize,
    limit: u64,
    total: u64,
    hasher: sha2::Sha256,
    rest: Bytes,
    ended: bool,
}

impl Cutter {
    pub fn new(
        stream: BoxStream<'static, Result<Bytes, BodyError>>,
        block_size: u64,
        limit: u64,
    ) -> Cutter {
        Cutter {
            stream,
            block_size: usize::try_from(block_size).unwrap_or(usize::MAX).max(1),
            limit,
            total: 0,
            hasher: sha2::Sha256::new(),
            rest: Bytes::new(),
            ended: false,
        }
    }

    /// The next block; `None` once the stream ended.
    pub async fn next_block(&mut self) -> Result<Option<Bytes>, StoreError> {
        let mut block = BytesMut::new();
        loop {
            if !self.rest.is_empty() {
                let want = self.block_size - block.len();
                let take = self.rest.split_to(want.min(self.rest.len()));
                if block.is_empty() && take.len() == self.block_size {
                    return Ok(Some(take)); // a whole block in one chunk: no copy
                }
                block.reserve(self.block_size.min(want));
                block.extend_from_slice(&take);
                if block.len() == self.block_size {
                    return Ok(Some(block.freeze()));
                }
                continue;
            }
            if self.ended {
                break;
            }
            match self.stream.next().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(StoreError::Body(e.to_string())),
                Some(Ok(chunk)) => {
                    self.total += chunk.len() as u64;
                    if self.total > self.limit {
                        return Err(StoreError::TooLarge { limit: self.limit });
                    }
                    self.hasher.update(&chunk);
                    self.rest = chunk;
                }
            }
        }
        Ok((!block.is_empty()).then(|| block.freeze()))
    }

    /// The size and lowercase hex SHA-256 of everything cut (call once the stream ended).
    pub fn finish(self) -> (u64, String) {
        (self.total, hex(&self.hasher.finalize()))
    }
}

impl Files {
    /// Uploads a stream under `name`: at most one block is stored inline (as before blocks),
    /// more as blocks and then a manifest. At most `limit` bytes are read (then
    /// [`StoreError::TooLarge`]).
    pub async fn upload_stream(
        self: &Arc<Self>,
        name: &str,
        body: BoxStream<'static, Result<Bytes, BodyError>>,
        limit: u64,
    ) -> Result<Uploaded, FilesError> {
        validate_name(name)?;
        let block_size = self.ring.config().files.block_size;
        let mut cutter = Cutter::new(body, block_size, limit);
        let first = cutter.next_block().await?;
        let second = match &first {
            Some(_) => cutter.next_block().await?,
            None => None,
        };
        let Some(second) = second else {
            let data = first.unwrap_or_default();
            let dir = self.spool_dir().to_path_buf();
            let spooled = tokio::task::spawn_blocking(move || spool_bytes(&dir, &data))
                .await
                .map_err(|e| FilesError::Internal(e.to_string()))??;
            return self.upload(name, spooled).await;
        };
        let leases = self.uploading.begin();
        let _release = Release(leases.clone());
        self.upload_blocks(name, cutter, [second, first.unwrap_or_default()], &leases)
            .await
    }

    /// Stores the blocks of `cutter` (`queued` first, last to first), then the manifest.
    async fn upload_blocks(
        self: &Arc<Self>,
        name: &str,
        mut cutter: Cutter,
        queued: [Bytes; 2],
        leases: &UploadLeases,
    ) -> Result<Uploaded, FilesError> {
        let block_size = self.ring.config().files.block_size;
        let window = window(block_size);
        let mut in_flight = InFlight::default();
        let mut listed = self.lists.writer();
        let mut lists = Vec::new();
        let mut queued = queued.to_vec();
        loop {
            let next = match queued.pop() {
                Some(b) => Some(b),
                None => cutter.next_block().await?,
            };
            let Some(block) = next else { break };
            if in_flight.0.len() >= window {
                let digest = in_flight.wait_first(name).await?;
                for list in listed.push(digest) {
                    lists.push(self.store_list(name, &list, leases).await?);
                }
            }
            let files = Arc::clone(self);
            let leases = leases.clone();
            in_flight.0.push_back(tokio::spawn(async move {
                let digest = files.put_block(block).await?;
                leases.hold(&digest);
                Ok(digest)
            }));
        }
        while !in_flight.0.is_empty() {
            let digest = in_flight.wait_first(name).await?;
            for list in listed.push(digest) {
                lists.push(self.store_list(name, &list, leases).await?);
            }
        }
        let per_list = listed.per_list;
        let layout = match listed.finish() {
            Listed::Inline(digests) => Layout::Blocks {
                block_size,
                digests,
            },
            Listed::Lists(rest) => {
                for list in rest {
                    lists.push(self.store_list(name, &list, leases).await?);
                }
                Layout::Lists {
                    block_size,
                    per_list,
                    lists,
                }
            }
        };
        let (size, sha256) = cutter.finish();
        self.write_file(name, size, sha256, layout, Content::None)
            .await
    }

    /// Stores a list block of the upload of `name` (after every block it lists reached its
    /// write quorum, before the manifest), held like the upload's data blocks; its digest.
    async fn store_list(
        &self,
        name: &str,
        digests: &[String],
        leases: &UploadLeases,
    ) -> Result<String, FilesError> {
        let digest = self.put_list(digests).await.map_err(|e| in_file(name, e))?;
        leases.hold(&digest);
        Ok(digest)
    }
}

/// The blocks being stored, oldest first; dropped (the upload failed or its client went away),
/// the stores still running are aborted.
#[derive(Default)]
struct InFlight(VecDeque<JoinHandle<Result<String, FilesError>>>);

impl InFlight {
    /// The digest of the oldest block once it reached its write quorum.
    async fn wait_first(&mut self, name: &str) -> Result<String, FilesError> {
        let Some(first) = self.0.pop_front() else {
            return Err(FilesError::Internal("no block in flight".into()));
        };
        match first.await {
            Ok(r) => r.map_err(|e| in_file(name, e)),
            Err(e) => Err(FilesError::Internal(e.to_string())),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A block's failure as the upload of `name` reports it.
fn in_file(name: &str, e: FilesError) -> FilesError {
    match e {
        FilesError::Unavailable { detail, .. } => FilesError::Unavailable {
            name: name.to_string(),
            detail: format!("a block could not be stored: {detail}"),
        },
        FilesError::InsufficientStorage { detail, .. } => FilesError::InsufficientStorage {
            name: name.to_string(),
            detail: format!("a block could not be stored: {detail}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    async fn cut(
        chunks: Vec<&'static [u8]>,
        block: u64,
        limit: u64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let s = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed();
        let mut cutter = Cutter::new(s, block, limit);
        let mut out = Vec::new();
        while let Some(b) = cutter.next_block().await? {
            out.push(b.to_vec());
        }
        let (size, sha) = cutter.finish();
        let all: Vec<u8> = out.concat();
        assert_eq!(
            (size, sha),
            (all.len() as u64, crate::files::sha256_hex(&all))
        );
        Ok(out)
    }

    #[tokio::test]
    async fn streams_are_cut_at_block_boundaries_whatever_the_chunks() {
        let blocks = cut(vec![b"ab", b"cdefg", b"", b"h", b"ijklmnopq"], 4, 100)
            .await
            .unwrap();
        assert_eq!(
            blocks,
            [
                b"abcd".to_vec(),
                b"efgh".to_vec(),
                b"ijkl".to_vec(),
                b"mnop".to_vec(),
                b"q".to_vec()
            ]
        );
        assert_eq!(
            cut(vec![b"abcd"], 4, 100).await.unwrap(),
            [b"abcd".to_vec()]
        );
        assert!(cut(vec![], 4, 100).await.unwrap().is_empty());
        assert!(matches!(
            cut(vec![b"abcd", b"efgh"], 4, 7).await,
            Err(StoreError::TooLarge { limit: 7 })
        ));
    }
}
