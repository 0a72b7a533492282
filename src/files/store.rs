//! The content store on disk: one directory per peer (`files.store_dir`), written atomically.
//!
//! Layout under `<store_dir>/objects/`: `<id>.json` holds a [`FileMeta`] and
//! `<id>-<sha256>.data` the bytes of that version. Content arrives spooled to `tmp/` (written,
//! hashed and fsynced by [`super::spool`]) and is renamed into place; then the metadata is
//! written the same way (temporary file, fsync, rename, directory fsync). Data before
//! metadata: a crash at any point leaves the old version or the new one, never a torn file.
//! Data files no metadata points at (a crash between the two renames) are removed at open.
//! A manifest has metadata only; a block is metadata and data like a small file, plus the time
//! it was last stored or referenced (in memory; "now" at open), which garbage collection reads.
//!
//! Concurrency: the index lock is only ever held for in-memory work, never across I/O, so
//! `meta()`, `list()` and `usage()` never wait behind a write; metadata writes are serialised
//! by a second lock so that the newest version is also the one on disk. All methods do
//! blocking I/O: call them from `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::FileMeta;
use super::spool::{Spooled, hash_file, temp_path};
use crate::id::Id;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no space left on the store's disk ({path})")]
    Full { path: PathBuf },
    #[error("content does not match its metadata ({0})")]
    Mismatch(&'static str),
    #[error("block {0} failed its digest check on disk and was dropped")]
    Corrupt(String),
    #[error("content larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the content stream failed: {0}")]
    Body(String),
}

impl StoreError {
    pub fn from_io(path: &Path, source: std::io::Error) -> StoreError {
        // ENOSPC (28) and EDQUOT (122) on Linux.
        if source.kind() == std::io::ErrorKind::StorageFull
            || matches!(source.raw_os_error(), Some(28) | Some(122))
        {
            return StoreError::Full {
                path: path.to_path_buf(),
            };
        }
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored; `replaced` is the live version it replaced, if any.
    Stored { replaced: Option<FileMeta> },
    /// Not stored: the store already has this version or a newer one.
    Stale { current: FileMeta },
}

#[derive(Default)]
struct Index {
    entries: BTreeMap<Id, FileMeta>,
    /// Live named files (inline and manifests).
    live_keys: u64,
    /// Bytes of content on disk: inline files and blocks.
    live_bytes: u64,
    blocks: u64,
    /// When each block was last stored or confirmed referenced (see [`Store::touch`]).
    touched: HashMap<Id, Instant>,
}

impl Index {
    fn insert(&mut self, meta: FileMeta) -> Option<FileMeta> {
        self.count(&meta, 1);
        if meta.is_block() {
            self.touched.insert(meta.id, Instant::now());
        }
        let previous = self.entries.insert(meta.id, meta);
        if let Some(p) = &previous {
            self.count(p, -1);
        }
        previous
    }

    fn remove(&mut self, id: Id) -> Option<FileMeta> {
        let previous = self.entries.remove(&id);
        if let Some(p) = &previous {
            self.count(p, -1);
        }
        self.touched.remove(&id);
        previous
    }

    fn count(&mut self, m: &FileMeta, sign: i64) {
        if m.deleted {
            return;
        }
        let add = |v: &mut u64, by: u64| {
            *v = if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        if m.is_block() {
            add(&mut self.blocks, 1);
        } else {
            add(&mut self.live_keys, 1);
        }
        if m.has_content() {
            add(&mut self.live_bytes, m.size);
        }
    }

    fn references(&self, id: Id, sha256: &str) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|m| m.has_content() && m.sha256 == sha256)
    }
}

/// What a store holds, kept up to date (not scanned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live named files (inline or as a manifest).
    pub files: u64,
    /// Blocks held for the ring.
    pub blocks: u64,
    /// Bytes of content on disk (inline files and blocks).
    pub bytes: u64,
}

pub struct Store {
    objects: PathBuf,
    tmp: PathBuf,
    index: Mutex<Index>,
    /// Serialises metadata writes (never held by readers).
    writer: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::from_io(path, source)
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating) the store under `dir` and loads its index.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&objects).map_err(io(&objects))?;
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // Leftovers of interrupted writes.
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let mut index = Index::default();
        let mut data_files = Vec::new();
        for entry in std::fs::read_dir(&objects).map_err(io(&objects))?.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let bytes = std::fs::read(&path).map_err(io(&path))?;
                    match serde_json::from_slice::<FileMeta>(&bytes) {
                        Ok(meta) => {
                            index.insert(meta);
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "skipping unreadable metadata");
                        }
                    }
                }
                Some("data") => data_files.push(path),
                _ => {}
            }
        }
        let store = Store {
            objects,
            tmp,
            index: Mutex::new(index),
            writer: Mutex::new(()),
        };
        for path in data_files {
            let referenced = {
                let index = lock(&store.index);
                index
                    .entries
                    .values()
                    .any(|m| m.has_content() && store.data_path(m) == path)
            };
            if !referenced {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(store)
    }

    /// Where content is spooled before it is stored (same file system as the objects).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    fn data_path(&self, meta: &FileMeta) -> PathBuf {
        self.objects
            .join(format!("{}-{}.data", meta.id, meta.sha256))
    }

    fn meta_path(&self, id: Id) -> PathBuf {
        self.objects.join(format!("{id}.json"))
    }

    /// The version here that `meta` would not replace (this one or a newer), if any.
    pub fn newer_or_same(&self, meta: &FileMeta) -> Option<FileMeta> {
        lock(&self.index)
            .entries
            .get(&meta.id)
            .filter(|c| c.version >= meta.version)
            .cloned()
    }

    /// Stores `meta` (with its spooled content, unless it is a tombstone) if it is newer than
    /// what is here.
    pub fn put(&self, meta: FileMeta, content: Option<Spooled>) -> Result<PutOutcome, StoreError> {
        if let Some(current) = self.current_touching(&meta) {
            return Ok(PutOutcome::Stale { current });
        }
        let content = if meta.has_content() {
            let content = content.ok_or(StoreError::Mismatch("no content"))?;
            if content.size != meta.size {
                return Err(StoreError::Mismatch("size"));
            }
            if content.sha256 != meta.sha256 {
                return Err(StoreError::Mismatch("sha256"));
            }
            Some(content)
        } else {
            None
        };
        // Data and metadata are placed under the writer lock, so that a block's garbage
        // collection (which removes both under it) never interleaves with its re-upload.
        let _writing = lock(&self.writer);
        // Checked again: a newer version may have been stored meanwhile.
        if let Some(current) = self.current_touching(&meta) {
            return Ok(PutOutcome::Stale { current });
        }
        let mut placed = None;
        if let Some(content) = content {
            let path = self.data_path(&meta);
            if !path.exists() {
                let from = content.keep();
                if let Err(e) = std::fs::rename(&from, &path) {
                    let _ = std::fs::remove_file(&from);
                    return Err(StoreError::from_io(&path, e));
                }
                self.sync_dir();
                placed = Some(path);
            }
        }
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        if let Err(e) = self.write_atomically(&self.meta_path(meta.id), &json) {
            drop(_writing);
            self.drop_unreferenced(placed, &meta);
            return Err(e);
        }
        let previous = lock(&self.index).insert(meta.clone());
        drop(_writing);
        if let Some(prev) = &previous
            && prev.has_content()
            && (!meta.has_content() || prev.sha256 != meta.sha256)
        {
            self.drop_unreferenced(Some(self.data_path(prev)), prev);
        }
        Ok(PutOutcome::Stored {
            replaced: previous.filter(|p| !p.deleted),
        })
    }

    /// [`Store::newer_or_same`], and a block found here is marked as referenced again in the
    /// same step (under the index lock, so garbage collection cannot drop it in between).
    pub fn current_touching(&self, meta: &FileMeta) -> Option<FileMeta> {
        let mut index = lock(&self.index);
        let current = index
            .entries
            .get(&meta.id)
            .filter(|c| c.version >= meta.version)
            .cloned()?;
        if meta.is_block()
            && let Some(t) = index.touched.get_mut(&meta.id)
        {
            *t = Instant::now();
        }
        Some(current)
    }

    /// Removes a data file of `meta`'s content unless the index points at it.
    fn drop_unreferenced(&self, path: Option<PathBuf>, meta: &FileMeta) {
        let Some(path) = path else { return };
        let index = lock(&self.index);
        if !index.references(meta.id, &meta.sha256) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn sync_dir(&self) {
        if let Ok(dir) = std::fs::File::open(&self.objects) {
            let _ = dir.sync_all();
        }
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = temp_path(&self.tmp, &name);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            drop(f);
            std::fs::rename(&tmp, path).map_err(io(path))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        self.sync_dir();
        Ok(())
    }

    /// The metadata of `id` (live or tombstone).
    pub fn meta(&self, id: Id) -> Option<FileMeta> {
        lock(&self.index).entries.get(&id).cloned()
    }

    /// The live content of `id`: its metadata and data file, checked against its SHA-256
    /// (reads the whole file once, in chunks). A manifest has no content of its own: `None`.
    /// A block whose bytes no longer match its digest is dropped (repair brings a good copy
    /// back: to the ring this peer now lacks it) and reported as [`StoreError::Corrupt`].
    pub fn open_content(&self, id: Id) -> Result<Option<(FileMeta, PathBuf)>, StoreError> {
        let Some(meta) = self.meta(id).filter(|m| m.has_content()) else {
            return Ok(None);
        };
        let path = self.data_path(&meta);
        match hash_file(&path) {
            Ok((size, sha)) if size == meta.size && sha == meta.sha256 => Ok(Some((meta, path))),
            Ok(_) if meta.is_block() => {
                self.remove_if(&meta);
                Err(StoreError::Corrupt(meta.sha256))
            }
            Ok(_) => Err(StoreError::Mismatch("sha256 on disk")),
            // Replaced or dropped since the metadata was read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every entry (live and tombstones).
    pub fn list(&self) -> Vec<FileMeta> {
        lock(&self.index).entries.values().cloned().collect()
    }

    /// Drops the local copy of `id` entirely (this peer no longer holds that key).
    pub fn remove(&self, id: Id) {
        let _writing = lock(&self.writer);
        let removed = lock(&self.index).remove(id);
        if let Some(meta) = removed {
            let _ = std::fs::remove_file(self.meta_path(id));
            if meta.has_content() {
                let _ = std::fs::remove_file(self.data_path(&meta));
            }
        }
    }

    /// Drops the copy of `id` if it still is exactly `meta`'s version.
    pub fn remove_if(&self, meta: &FileMeta) {
        let same = self
            .meta(meta.id)
            .is_some_and(|m| m.version == meta.version);
        if same {
            self.remove(meta.id);
        }
    }

    /// Forgets tombstones older than `before_millis`.
    pub fn expire_tombstones(&self, before_millis: u64) {
        let expired: Vec<Id> = lock(&self.index)
            .entries
            .values()
            .filter(|m| m.deleted && m.version.millis < before_millis)
            .map(|m| m.id)
            .collect();
        for id in expired {
            self.remove(id);
        }
    }

    /// What this store holds (kept up to date, not scanned).
    pub fn usage(&self) -> Usage {
        let index = lock(&self.index);
        Usage {
            files: index.live_keys,
            blocks: index.blocks,
            bytes: index.live_bytes,
        }
    }

    /// Marks the blocks among `ids` held here as still referenced by a live file.
    pub fn touch(&self, ids: &[Id]) {
        let now = Instant::now();
        let mut index = lock(&self.index);
        for id in ids {
            if let Some(t) = index.touched.get_mut(id) {
                *t = now;
            }
        }
    }

    /// Whether `id` is a block not stored or touched since `before`.
    pub fn untouched_since(&self, id: Id, before: Instant) -> bool {
        lock(&self.index)
            .touched
            .get(&id)
            .is_some_and(|t| *t < before)
    }

    /// Drops the blocks not stored or touched since `before` (no live manifest referenced
    /// them for that long); returns how many and their bytes.
    pub fn expire_blocks(&self, before: Instant) -> (u64, u64) {
        let candidates: Vec<Id> = lock(&self.index)
            .touched
            .iter()
            .filter(|(_, t)| **t < before)
            .map(|(id, _)| *id)
            .collect();
        let mut freed = (0, 0);
        for id in candidates {
            // Checked and removed under both locks: a concurrent store of the same block
            // either touched it first (kept) or finds it gone and stores it anew.
            let _writing = lock(&self.writer);
            let removed = {
                let mut index = lock(&self.index);
                let stale = index.touched.get(&id).is_some_and(|t| *t < before);
                if stale { index.remove(id) } else { None }
            };
            if let Some(meta) = removed {
                let _ = std::fs::remove_file(self.meta_path(id));
                let _ = std::fs::remove_file(self.data_path(&meta));
                freed = (freed.0 + 1, freed.1 + meta.size);
            }
        }
        freed
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
