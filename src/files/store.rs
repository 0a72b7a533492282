//! The content store on disk: one directory per peer (`files.store_dir`), written atomically.
//!
//! Layout under `<store_dir>/objects/`: `<id>.json` holds a [`FileMeta`] and
//! `<id>-<sha256>.data` the bytes of that version. Every file is written to `tmp/`, fsynced and
//! renamed into place (then the directory is fsynced), data before metadata, so a crash at any
//! point leaves either the old version or the new one, never a torn file. Data files that no
//! metadata points at (a crash between the two renames) are removed when the store opens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{FileMeta, sha256_hex};
use crate::id::Id;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("content does not match its metadata ({0})")]
    Mismatch(&'static str),
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored; `replaced` is the live version it replaced, if any.
    Stored { replaced: Option<FileMeta> },
    /// Not stored: the store already has this version or a newer one.
    Stale { current: FileMeta },
}

pub struct Store {
    objects: PathBuf,
    tmp: PathBuf,
    index: Mutex<BTreeMap<Id, FileMeta>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
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
        let mut index = BTreeMap::new();
        let mut data_files = Vec::new();
        for entry in std::fs::read_dir(&objects).map_err(io(&objects))?.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let bytes = std::fs::read(&path).map_err(io(&path))?;
                    match serde_json::from_slice::<FileMeta>(&bytes) {
                        Ok(meta) => {
                            index.insert(meta.id, meta);
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
        };
        for path in data_files {
            let referenced = {
                let index = store.lock();
                index
                    .values()
                    .any(|m| !m.deleted && store.data_path(m) == path)
            };
            if !referenced {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Id, FileMeta>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data_path(&self, meta: &FileMeta) -> PathBuf {
        self.objects
            .join(format!("{}-{}.data", meta.id, meta.sha256))
    }

    fn meta_path(&self, id: Id) -> PathBuf {
        self.objects.join(format!("{id}.json"))
    }

    /// Stores `meta` (and `data`, unless it is a tombstone) if it is newer than what is here.
    pub fn put(&self, meta: FileMeta, data: Option<&[u8]>) -> Result<PutOutcome, StoreError> {
        let mut index = self.lock();
        if let Some(current) = index.get(&meta.id)
            && current.version >= meta.version
        {
            return Ok(PutOutcome::Stale {
                current: current.clone(),
            });
        }
        if !meta.deleted {
            let data = data.ok_or(StoreError::Mismatch("no content"))?;
            if data.len() as u64 != meta.size {
                return Err(StoreError::Mismatch("size"));
            }
            if sha256_hex(data) != meta.sha256 {
                return Err(StoreError::Mismatch("sha256"));
            }
            let path = self.data_path(&meta);
            if !path.exists() {
                self.write_atomically(&path, data)?;
            }
        }
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        self.write_atomically(&self.meta_path(meta.id), &json)?;
        let previous = index.insert(meta.id, meta.clone());
        if let Some(prev) = &previous
            && !prev.deleted
            && (meta.deleted || prev.sha256 != meta.sha256)
        {
            let _ = std::fs::remove_file(self.data_path(prev));
        }
        Ok(PutOutcome::Stored {
            replaced: previous.filter(|p| !p.deleted),
        })
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.tmp.join(format!("{name}.{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Ok(dir) = std::fs::File::open(&self.objects) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The metadata of `id` (live or tombstone).
    pub fn meta(&self, id: Id) -> Option<FileMeta> {
        self.lock().get(&id).cloned()
    }

    /// The live content of `id`.
    pub fn read(&self, id: Id) -> Result<Option<(FileMeta, Vec<u8>)>, StoreError> {
        let Some(meta) = self.meta(id).filter(|m| !m.deleted) else {
            return Ok(None);
        };
        let path = self.data_path(&meta);
        match std::fs::read(&path) {
            Ok(data) if sha256_hex(&data) == meta.sha256 => Ok(Some((meta, data))),
            Ok(_) => Err(StoreError::Mismatch("sha256 on disk")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every entry (live and tombstones).
    pub fn list(&self) -> Vec<FileMeta> {
        self.lock().values().cloned().collect()
    }

    /// Drops the local copy of `id` entirely (this peer no longer holds that key).
    pub fn remove(&self, id: Id) {
        let mut index = self.lock();
        if let Some(meta) = index.remove(&id) {
            if !meta.deleted {
                let _ = std::fs::remove_file(self.data_path(&meta));
            }
            let _ = std::fs::remove_file(self.meta_path(id));
        }
    }

    /// Forgets tombstones older than `before_millis`.
    pub fn expire_tombstones(&self, before_millis: u64) {
        let expired: Vec<Id> = self
            .lock()
            .values()
            .filter(|m| m.deleted && m.version.millis < before_millis)
            .map(|m| m.id)
            .collect();
        for id in expired {
            self.remove(id);
        }
    }

    /// Live keys and their total size in bytes.
    pub fn usage(&self) -> (u64, u64) {
        let index = self.lock();
        index
            .values()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(k, b), m| (k + 1, b + m.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Version;

    fn meta(name: &str, data: &[u8], millis: u64) -> FileMeta {
        FileMeta {
            name: name.into(),
            id: Id::hash(name),
            size: data.len() as u64,
            sha256: sha256_hex(data),
            version: Version {
                millis,
                origin: Id::ZERO,
            },
            deleted: false,
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chordnet-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn newest_version_wins_and_survives_reopen() {
        let d = dir("versions");
        let store = Store::open(&d).unwrap();
        let v1 = meta("a.txt", b"one", 10);
        let v2 = meta("a.txt", b"two!", 20);
        assert_eq!(
            store.put(v1.clone(), Some(b"one")).unwrap(),
            PutOutcome::Stored { replaced: None }
        );
        assert_eq!(
            store.put(v2.clone(), Some(b"two!")).unwrap(),
            PutOutcome::Stored {
                replaced: Some(v1.clone())
            }
        );
        // An older copy arriving late changes nothing.
        assert_eq!(
            store.put(v1.clone(), Some(b"one")).unwrap(),
            PutOutcome::Stale {
                current: v2.clone()
            }
        );
        assert_eq!(store.usage(), (1, 4));
        drop(store);
        let store = Store::open(&d).unwrap();
        let (m, data) = store.read(v2.id).unwrap().unwrap();
        assert_eq!((m, data.as_slice()), (v2, &b"two!"[..]));
        // Only the current version's data file is left.
        let data_files = std::fs::read_dir(d.join("objects"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "data"))
            })
            .count();
        assert_eq!(data_files, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn tombstones_hide_content_and_block_older_versions() {
        let d = dir("tombstones");
        let store = Store::open(&d).unwrap();
        let v1 = meta("b", b"bee", 10);
        store.put(v1.clone(), Some(b"bee")).unwrap();
        let tomb = FileMeta {
            deleted: true,
            size: 0,
            sha256: String::new(),
            version: Version {
                millis: 15,
                origin: Id::ZERO,
            },
            ..v1.clone()
        };
        store.put(tomb.clone(), None).unwrap();
        assert_eq!(store.read(v1.id).unwrap(), None);
        assert!(matches!(
            store.put(v1.clone(), Some(b"bee")).unwrap(),
            PutOutcome::Stale { .. }
        ));
        assert_eq!(store.usage(), (0, 0));
        store.expire_tombstones(16);
        assert_eq!(store.meta(v1.id), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_input_is_refused_and_orphans_are_cleaned() {
        let d = dir("corrupt");
        let store = Store::open(&d).unwrap();
        let m = meta("c", b"sea", 1);
        assert!(matches!(
            store.put(m.clone(), Some(b"SEA")),
            Err(StoreError::Mismatch("sha256"))
        ));
        assert!(matches!(
            store.put(m.clone(), Some(b"se")),
            Err(StoreError::Mismatch("size"))
        ));
        assert_eq!(store.meta(m.id), None);
        drop(store);
        // A data file without metadata (crash between the renames) disappears on open.
        let orphan = d
            .join("objects")
            .join(format!("{}-{}.data", m.id, m.sha256));
        std::fs::write(&orphan, b"sea").unwrap();
        std::fs::write(d.join("tmp").join("half-written"), b"x").unwrap();
        let _store = Store::open(&d).unwrap();
        assert!(!orphan.exists());
        assert!(!d.join("tmp").join("half-written").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
