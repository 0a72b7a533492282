//! Content-addressed blocks (CFS-style): a file larger than `files.block_size` is a manifest
//! (see [`super::manifest`]) listing the SHA-256 digests of its blocks. A block's ring position
//! is the first 160 bits of its digest, so the blocks of one file spread over the ring; each is
//! stored at its responsible peer and the next `ring.replicas - 1` successors, with the write
//! quorum, like any record. Blocks are immutable: every copy has the version
//! [`BLOCK_VERSION`], so repair and hand-off move them exactly as they move files.
//!
//! Nothing a peer sends is trusted: a holder checks a block against its digest before it
//! stores it and before it serves it, and the downloader checks it again before a byte of it
//! goes to the user (a bad copy is counted and the next replica is asked).

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tracing::{debug, warn};

use super::Layout;
use super::ops::{Content, Files, FilesError};
use super::{FileMeta, Version};
use crate::config::MAX_BLOCK_SIZE;
use crate::id::Id;
use crate::ring::Peer;
use crate::transport::{Body, TraceCarrier};

/// The version of every block record (content-addressed: there is only one).
pub const BLOCK_VERSION: Version = Version {
    millis: 0,
    logical: 0,
    origin: Id::ZERO,
};

/// Why a block record is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("a block digest is 64 lowercase hex characters, got {0:?}")]
    Digest(String),
    #[error("a block record must be named by its digest, at the digest's position, version 0")]
    Record,
    #[error("a block is at most {MAX_BLOCK_SIZE} bytes, got {0}")]
    Size(u64),
}

/// Checks that `digest` is a lowercase hex SHA-256.
pub fn check_digest(digest: &str) -> Result<(), BlockError> {
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    if digest.len() == 64 && digest.bytes().all(hex) {
        Ok(())
    } else {
        Err(BlockError::Digest(digest.chars().take(80).collect()))
    }
}

/// The ring position of the block with `digest`: its first 160 bits.
pub fn block_id(digest: &str) -> Result<Id, BlockError> {
    check_digest(digest)?;
    digest[..40]
        .parse()
        .map_err(|_| BlockError::Digest(digest.to_string()))
}

/// The record of the block with `digest`, `size` bytes long.
pub fn block_meta(digest: &str, size: u64) -> Result<FileMeta, BlockError> {
    if size > MAX_BLOCK_SIZE {
        return Err(BlockError::Size(size));
    }
    Ok(FileMeta {
        name: digest.to_string(),
        id: block_id(digest)?,
        size,
        sha256: digest.to_string(),
        version: BLOCK_VERSION,
        deleted: false,
        layout: Layout::Block,
    })
}

/// Checks a block record a peer sent: it must be exactly what [`block_meta`] makes of its
/// digest and size.
pub fn check_block_meta(meta: &FileMeta) -> Result<(), BlockError> {
    let expected = block_meta(&meta.sha256, meta.size)?;
    if *meta == expected {
        Ok(())
    } else {
        Err(BlockError::Record)
    }
}

/// A body over bytes in memory, in chunks no larger than the transports' (cheap slices).
pub fn body_of(data: Bytes) -> Body {
    let len = data.len() as u64;
    let chunks: Vec<Result<Bytes, crate::transport::BodyError>> = (0..data.len())
        .step_by(crate::transport::body::CHUNK)
        .map(|at| Ok(data.slice(at..(at + crate::transport::body::CHUNK).min(data.len()))))
        .collect();
    Body::new(len, futures_util::stream::iter(chunks).boxed())
}

/// Lowercase hex SHA-256 of `data`, off the async threads.
pub async fn digest_of(data: Bytes) -> Result<String, FilesError> {
    tokio::task::spawn_blocking(move || super::sha256_hex(&data))
        .await
        .map_err(|e| FilesError::Internal(e.to_string()))
}

impl Files {
    /// Stores one block on its holders (acknowledged at the write quorum); its digest.
    pub(super) async fn put_block(&self, data: Bytes) -> Result<String, FilesError> {
        let digest = digest_of(data.clone()).await?;
        let meta = block_meta(&digest, data.len() as u64)
            .map_err(|e| FilesError::Internal(e.to_string()))?;
        let found = self.ring.lookup(meta.id).await?;
        let targets = self.placement(&found);
        self.write(&meta, Content::Bytes(data), &targets).await?;
        Ok(digest)
    }

    /// Fetches one block, verified against `digest`: from this peer when it holds it, else from
    /// its holders in ring order. A holder that fails, times out or sends bad bytes is skipped
    /// at once; one that has not delivered the whole block within `ring.rpc_timeout` gets
    /// company: the next holder is asked too, and the first good copy wins (the others are
    /// dropped).
    pub(super) async fn fetch_block(&self, digest: &str, size: u64) -> Result<Bytes, FilesError> {
        let meta = block_meta(digest, size).map_err(|e| FilesError::Internal(e.to_string()))?;
        let found = self.ring.lookup(meta.id).await?;
        let mut holders = self.placement(&found);
        holders.sort_by_key(|p| p.id != self.me().id);
        let hedge = self.ring.config().ring.rpc_timeout;
        let mut next = holders.iter();
        let mut asking = FuturesUnordered::new();
        let mut errors = Vec::new();
        loop {
            if asking.is_empty() {
                match next.next() {
                    Some(h) => asking.push(self.copy_from(h, &meta)),
                    None => break,
                }
            }
            tokio::select! {
                Some(answer) = asking.next() => match answer {
                    Ok(data) => return Ok(data),
                    Err(e) => errors.push(e),
                },
                _ = tokio::time::sleep(hedge) => {
                    if let Some(h) = next.next() {
                        asking.push(self.copy_from(h, &meta));
                    }
                }
            }
        }
        debug!(block = %digest, ?errors, "no holder could send a block");
        Err(FilesError::Unavailable {
            name: digest.to_string(),
            detail: format!(
                "no holder of block {digest} could send it ({}); try again",
                errors.join("; ")
            ),
        })
    }

    /// `holder`'s copy of the block `meta`, verified; why not, as a line for the error.
    async fn copy_from(&self, holder: &Peer, meta: &FileMeta) -> Result<Bytes, String> {
        let to = &holder.address;
        let object = match self.blob.get(to, meta.id, TraceCarrier::current()).await {
            Ok(Some(o)) if o.meta == *meta => o,
            Ok(_) => return Err(format!("{to} does not hold it")),
            Err(e) => return Err(format!("{to}: {e}")),
        };
        read_verified(object.body, &meta.sha256, meta.size)
            .await
            .map_err(|e| {
                if matches!(e, Fetch::Corrupt) {
                    self.ring.metrics().blocks_corrupt.inc();
                    warn!(block = %meta.sha256, peer = %to, "a holder sent a block that fails its digest");
                }
                format!("{to}: {e}")
            })
    }
}

/// Why a copy of a block was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fetch {
    #[error("the transfer failed: {0}")]
    Body(String),
    #[error("the bytes do not match the block's digest")]
    Corrupt,
}

/// Reads a block's body into memory (at most `size` bytes: the body checks its own length)
/// and checks it against `digest`.
pub(super) async fn read_verified(mut body: Body, digest: &str, size: u64) -> Result<Bytes, Fetch> {
    let mut buf = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Fetch::Body(e.to_string()))?;
        if (buf.len() + chunk.len()) as u64 > size {
            return Err(Fetch::Corrupt);
        }
        buf.extend_from_slice(&chunk);
    }
    let data = buf.freeze();
    let got = digest_of(data.clone())
        .await
        .map_err(|e| Fetch::Body(e.to_string()))?;
    if got == digest && data.len() as u64 == size {
        Ok(data)
    } else {
        Err(Fetch::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_sits_at_the_first_160_bits_of_its_digest() {
        let digest = crate::files::sha256_hex(b"abc");
        let meta = block_meta(&digest, 3).unwrap();
        assert_eq!(meta.id.to_string(), &digest[..40]);
        assert_eq!(meta.name, digest);
        check_block_meta(&meta).unwrap();
        let moved = FileMeta {
            id: Id::hash("elsewhere"),
            ..meta.clone()
        };
        assert_eq!(check_block_meta(&moved), Err(BlockError::Record));
        let versioned = FileMeta {
            version: Version {
                millis: 1,
                ..BLOCK_VERSION
            },
            ..meta
        };
        assert_eq!(check_block_meta(&versioned), Err(BlockError::Record));
        assert!(block_id("ABC").is_err());
        assert!(block_id(&digest.to_uppercase()).is_err());
        assert_eq!(
            block_meta(&digest, MAX_BLOCK_SIZE + 1),
            Err(BlockError::Size(MAX_BLOCK_SIZE + 1))
        );
    }

    #[tokio::test]
    async fn bodies_are_cut_in_transport_chunks_and_bad_bytes_are_refused() {
        let data = Bytes::from(vec![7u8; 600 * 1024]);
        let digest = crate::files::sha256_hex(&data);
        let mut body = body_of(data.clone());
        let mut sizes = Vec::new();
        while let Some(c) = body.next().await {
            sizes.push(c.unwrap().len());
        }
        assert_eq!(sizes, vec![256 * 1024, 256 * 1024, 88 * 1024]);
        let got = read_verified(body_of(data.clone()), &digest, data.len() as u64)
            .await
            .unwrap();
        assert_eq!(got, data);
        let mut bad = data.to_vec();
        bad[12345] ^= 1;
        let refused = read_verified(body_of(Bytes::from(bad)), &digest, data.len() as u64).await;
        assert!(matches!(refused, Err(Fetch::Corrupt)));
    }
}
