//! Spooling a body to a temporary file while hashing it: the one place content moves from a
//! stream to the disk. Memory stays bounded by one chunk, whatever the size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::store::StoreError;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::transport::{Body, BodyError};

/// A body written to a temporary file: its path, size and SHA-256. The file is removed when
/// this is dropped, unless it was moved away ([`Spooled::keep`]).
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    kept: bool,
}

impl Spooled {
    /// The file stays on disk: its new owner moved or removes it.
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if !self.kept && !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A temporary file name in `dir` no other spool uses.
pub fn temp_path(dir: &Path, tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{tag}.{}.{n}.part", std::process::id()))
}

/// Writes `body` to a new file in `dir`, hashing as it goes, then fsyncs it. At most `limit`
/// bytes are accepted. A failed spool leaves no file behind.
pub async fn spool(dir: &Path, body: Body, limit: u64) -> Result<Spooled, StoreError> {
    if body.len() > limit {
        return Err(StoreError::TooLarge { limit });
    }
    spool_stream(dir, body.into_stream(), limit).await
}

/// Refuses content of `size` bytes when the disk holding `dir` would keep less than `reserve`
/// free (what is left is for tombstones and metadata).
pub fn check_space(dir: &Path, size: u64, reserve: u64) -> Result<(), StoreError> {
    match crate::fsutil::available_bytes(dir) {
        Ok(free) if free < size.saturating_add(reserve) => Err(StoreError::Full {
            path: dir.to_path_buf(),
        }),
        // Unknown: the write itself will tell (ENOSPC is Full too).
        _ => Ok(()),
    }
}

/// [`spool`] for a stream of unknown length (a user's upload).
pub async fn spool_stream(
    dir: &Path,
    mut body: BoxStream<'static, Result<Bytes, BodyError>>,
    limit: u64,
) -> Result<Spooled, StoreError> {
    let path = temp_path(dir, "spool");
    let mut spooled = Spooled {
        path: path.clone(),
        size: 0,
        sha256: String::new(),
        kept: false,
    };
    let io = |e: std::io::Error| StoreError::from_io(&path, e);
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
        spooled.size += chunk.len() as u64;
        if spooled.size > limit {
            return Err(StoreError::TooLarge { limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    spooled.sha256 = hex(&hasher.finalize());
    Ok(spooled)
}

/// SHA-256 of a file, read in chunks (run it off the async threads).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex(&hasher.finalize())))
}

pub fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Spools bytes already in memory (small writes and tests), blocking.
pub fn spool_bytes(dir: &Path, data: &[u8]) -> Result<Spooled, StoreError> {
    let path = temp_path(dir, "spool");
    let spooled = Spooled {
        path: path.clone(),
        size: data.len() as u64,
        sha256: super::sha256_hex(data),
        kept: false,
    };
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()
    })();
    written.map_err(|e| StoreError::from_io(&path, e))?;
    Ok(spooled)
}
