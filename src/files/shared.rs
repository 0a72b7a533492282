//! The shared directory: the files this peer offers to the ring as a provider.
//!
//! Scanned at start and periodically; a file is hashed again only when its size or
//! modification time changed. Only regular files directly in the directory whose names are
//! valid file names are shared (no recursion, no symlinks out of the directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{sha256_hex, validate_name};

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    modified: Option<SystemTime>,
}

/// The index of a shared directory.
#[derive(Clone, Default)]
pub struct SharedIndex {
    files: BTreeMap<String, SharedFile>,
}

impl SharedIndex {
    /// Re-reads `dir` (a missing directory shares nothing), hashing new or changed files up to
    /// `max_size` bytes. Returns whether anything changed.
    pub fn rescan(&mut self, dir: &Path, max_size: u64) -> bool {
        let mut next = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the shared directory");
                }
                let changed = !self.files.is_empty();
                self.files.clear();
                return changed;
            }
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue;
            }
            // symlink_metadata: a link is not followed out of the directory.
            let Ok(md) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            if md.len() > max_size {
                tracing::warn!(%name, size = md.len(), max_size, "not sharing a file over the size limit");
                continue;
            }
            let modified = md.modified().ok();
            if let Some(known) = self.files.get(&name)
                && known.size == md.len()
                && known.modified == modified
                && modified.is_some()
            {
                next.insert(name, known.clone());
                continue;
            }
            match std::fs::read(entry.path()) {
                Ok(data) => {
                    let file = SharedFile {
                        name: name.clone(),
                        size: data.len() as u64,
                        sha256: sha256_hex(&data),
                        modified,
                    };
                    next.insert(name, file);
                }
                Err(e) => tracing::warn!(%name, error = %e, "cannot read a shared file"),
            }
        }
        let changed = next != self.files;
        self.files = next;
        changed
    }

    pub fn files(&self) -> Vec<SharedFile> {
        self.files.values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<&SharedFile> {
        self.files.get(name)
    }
}

/// The path of shared file `name` in `dir`, if the name is valid (never outside `dir`).
pub fn path_of(dir: &Path, name: &str) -> Option<PathBuf> {
    validate_name(name).ok()?;
    Some(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_regular_files_with_valid_names_only() {
        let d = std::env::temp_dir().join(format!("chordnet-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut index = SharedIndex::default();
        assert!(!index.rescan(&d, 100), "a missing directory shares nothing");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.txt"), b"abc").unwrap();
        std::fs::write(d.join("big.bin"), vec![0u8; 200]).unwrap();
        std::fs::write(d.join("sub").join("nested"), b"x").unwrap();
        assert!(index.rescan(&d, 100));
        let files = index.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "a.txt");
        assert_eq!(files[0].sha256, sha256_hex(b"abc"));
        assert!(!index.rescan(&d, 100), "nothing changed");
        std::fs::remove_file(d.join("a.txt")).unwrap();
        assert!(index.rescan(&d, 100));
        assert!(index.files().is_empty());
        assert_eq!(path_of(&d, "../x"), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
