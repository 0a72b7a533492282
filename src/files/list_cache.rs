//! The lists of the two-level manifests this peer is responsible for, cached on disk, so that
//! refreshing their blocks' leases every repair round does not fetch every list block from the
//! ring every round.
//!
//! One file per list block under `<store_dir>/lists/`, named by the list block's digest and
//! holding its content (a list block is content-addressed, so an entry never goes stale and
//! two versions of a file that share a list share its entry). An entry is checked against its
//! digest when read (a damaged one is dropped and fetched again), written atomically
//! (temporary file, rename), rebuilt from the ring when missing, and dropped once no live
//! manifest this peer is responsible for lists it. It is a cache: losing it costs one fetch of
//! each list block, never a lease.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::blocks::check_digest;
use super::lists::{Shape, decode, encode};
use super::ops::{Files, FilesError};

/// The directory of cached lists in `store_dir`.
pub fn cache_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("lists")
}

/// The cached list `digest` of `count` digests, if its entry is there and intact (a damaged
/// entry is removed).
pub fn read(dir: &Path, digest: &str, count: u64) -> Option<Vec<String>> {
    check_digest(digest).ok()?;
    let path = dir.join(digest);
    let data = std::fs::read(&path).ok()?;
    if super::sha256_hex(&data) == digest
        && let Ok(digests) = decode(&data, count)
    {
        return Some(digests);
    }
    tracing::warn!(path = %path.display(), "a cached block list is damaged; fetching it again");
    let _ = std::fs::remove_file(&path);
    None
}

/// Caches the list `digest` (best effort: a full disk only costs a fetch next round).
pub fn write(dir: &Path, digest: &str, digests: &[String]) {
    if check_digest(digest).is_err() {
        return;
    }
    let Ok(data) = encode(digests) else { return };
    let tmp = dir.join(format!(".{digest}.tmp"));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, &data))
        .and_then(|()| std::fs::rename(&tmp, dir.join(digest)));
    if let Err(e) = written {
        tracing::debug!(error = %e, "a block list could not be cached");
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Drops the entries (and leftover temporary files) of lists not in `keep`; how many.
pub fn retain(dir: &Path, keep: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut dropped = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| keep.contains(n)) {
            let _ = std::fs::remove_file(entry.path());
            dropped += 1;
        }
    }
    dropped
}

impl Files {
    fn list_cache_dir(&self) -> PathBuf {
        cache_dir(&self.ring.config().files.store_dir)
    }

    /// List `k` (`digest`) of a manifest of `shape`: from the cache, else fetched from its
    /// holders, verified, and cached.
    pub(super) async fn cached_list(
        &self,
        digest: &str,
        shape: Shape,
        k: u64,
    ) -> Result<Vec<String>, FilesError> {
        let dir = self.list_cache_dir();
        let count = shape.count(k);
        let (d, at) = (digest.to_string(), dir.clone());
        let cached = tokio::task::spawn_blocking(move || read(&at, &d, count))
            .await
            .map_err(|e| FilesError::Internal(e.to_string()))?;
        if let Some(digests) = cached {
            return Ok(digests);
        }
        let digests = self.fetch_list(digest, shape, k).await?;
        let (d, list) = (digest.to_string(), digests.clone());
        let _ = tokio::task::spawn_blocking(move || write(&dir, &d, &list)).await;
        Ok(digests)
    }

    /// Drops the cached lists no manifest in `keep` lists.
    pub(super) async fn prune_list_cache(&self, keep: HashSet<String>) {
        let dir = self.list_cache_dir();
        let _ = tokio::task::spawn_blocking(move || retain(&dir, &keep)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_when_read_and_dropped_when_unlisted() {
        let dir = std::env::temp_dir().join(format!("chordnet-list-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let digests: Vec<String> = (0..3u8).map(|k| super::super::sha256_hex(&[k])).collect();
        let data = encode(&digests).unwrap();
        let digest = super::super::sha256_hex(&data);
        assert_eq!(read(&dir, &digest, 3), None);
        write(&dir, &digest, &digests);
        assert_eq!(read(&dir, &digest, 3), Some(digests.clone()));
        assert_eq!(
            read(&dir, &digest, 2),
            None,
            "a count the manifest does not say"
        );
        // Damaged on disk: dropped, and read as missing.
        write(&dir, &digest, &digests);
        let mut bad = data.to_vec();
        bad[20] ^= 1;
        std::fs::write(dir.join(&digest), &bad).unwrap();
        assert_eq!(read(&dir, &digest, 3), None);
        assert!(!dir.join(&digest).exists());
        write(&dir, &digest, &digests);
        assert_eq!(retain(&dir, &HashSet::from([digest.clone()])), 0);
        assert_eq!(retain(&dir, &HashSet::new()), 1);
        assert_eq!(read(&dir, &digest, 3), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
