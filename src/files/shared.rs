//! The shared directory: the files this peer offers to the ring as a provider.
//!
//! Scanned at start and periodically; a file is hashed again only when its size or
//! modification time changed (or the block size did). Hashing streams the file once and keeps
//! its whole-file SHA-256 and, for a file of more than one block, the SHA-256 of each block of
//! `files.block_size`: the file's block manifest, which a downloader fetches (see
//! [`super::providers`]) to verify a provider's bytes block by block and to spread the blocks
//! over every provider of the same content. Only regular files directly in the directory whose
//! names are valid file names are shared (no recursion, no symlinks out of the directory).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::Digest;

use super::blocks::block_id;
use super::spool::hex;
use super::validate_name;
use crate::id::Id;

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The block size `blocks` were cut with.
    pub block_size: u64,
    /// The SHA-256 of each block, in order (empty for a file of at most one block).
    pub blocks: Vec<String>,
    modified: Option<SystemTime>,
}

/// Where one block of a shared file lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedBlock {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    pub digest: String,
}

/// The index of a shared directory.
#[derive(Clone, Default)]
pub struct SharedIndex {
    files: BTreeMap<String, SharedFile>,
    /// The blocks of every shared file by ring position (a block two files share: either).
    blocks: HashMap<Id, SharedBlock>,
}

/// Streams the file at `path` once: its size, whole-file SHA-256, and the SHA-256 of each
/// block of `block_size` when it has more than one (memory: one block).
pub fn hash_blocks(path: &Path, block_size: u64) -> std::io::Result<(u64, String, Vec<String>)> {
    let mut f = std::fs::File::open(path)?;
    let mut whole = sha2::Sha256::new();
    let mut blocks = Vec::new();
    let mut buf = vec![0u8; usize::try_from(block_size.max(1)).unwrap_or(1 << 20)];
    let mut size = 0u64;
    loop {
        // Fill one block (a read may return less).
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        size += filled as u64;
        whole.update(&buf[..filled]);
        blocks.push(hex(&sha2::Sha256::digest(&buf[..filled])));
        if filled < buf.len() {
            break;
        }
    }
    if blocks.len() < 2 {
        blocks.clear();
    }
    Ok((size, hex(&whole.finalize()), blocks))
}

impl SharedIndex {
    /// Re-reads `dir` (a missing directory shares nothing), hashing new or changed files up to
    /// `max_size` bytes in blocks of `block_size`. Returns whether anything changed.
    pub fn rescan(&mut self, dir: &Path, max_size: u64, block_size: u64) -> bool {
        let changed = self.rescan_files(dir, max_size, block_size);
        if changed {
            self.blocks = self
                .files
                .values()
                .flat_map(|f| {
                    f.blocks.iter().enumerate().filter_map(|(i, d)| {
                        let offset = i as u64 * f.block_size;
                        let block = SharedBlock {
                            name: f.name.clone(),
                            offset,
                            len: (f.size - offset).min(f.block_size),
                            digest: d.clone(),
                        };
                        Some((block_id(d).ok()?, block))
                    })
                })
                .collect();
        }
        changed
    }

    fn rescan_files(&mut self, dir: &Path, max_size: u64, block_size: u64) -> bool {
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
                && known.block_size == block_size
                && modified.is_some()
            {
                next.insert(name, known.clone());
                continue;
            }
            match hash_blocks(&entry.path(), block_size) {
                Ok((size, sha256, blocks)) => {
                    let file = SharedFile {
                        name: name.clone(),
                        size,
                        sha256,
                        block_size,
                        blocks,
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

    /// The shared block at ring position `id`, if a shared file has it.
    pub fn block(&self, id: Id) -> Option<&SharedBlock> {
        self.blocks.get(&id)
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
    use crate::files::sha256_hex;

    #[test]
    fn scans_regular_files_with_valid_names_only() {
        let d = std::env::temp_dir().join(format!("chordnet-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut index = SharedIndex::default();
        assert!(
            !index.rescan(&d, 100, 64 << 10),
            "a missing directory shares nothing"
        );
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.txt"), b"abc").unwrap();
        std::fs::write(d.join("big.bin"), vec![0u8; 200]).unwrap();
        std::fs::write(d.join("sub").join("nested"), b"x").unwrap();
        assert!(index.rescan(&d, 100, 64 << 10));
        let files = index.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "a.txt");
        assert_eq!(files[0].sha256, sha256_hex(b"abc"));
        assert!(!index.rescan(&d, 100, 64 << 10), "nothing changed");
        std::fs::remove_file(d.join("a.txt")).unwrap();
        assert!(index.rescan(&d, 100, 64 << 10));
        assert!(index.files().is_empty());
        assert_eq!(path_of(&d, "../x"), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn files_of_several_blocks_keep_a_digest_per_block_and_find_them_by_position() {
        let d = std::env::temp_dir().join(format!("chordnet-shared-b-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..10u8).collect();
        std::fs::write(d.join("ten"), &data).unwrap();
        std::fs::write(d.join("four"), &data[..4]).unwrap();
        let mut index = SharedIndex::default();
        assert!(index.rescan(&d, 100, 4));
        let ten = index.get("ten").unwrap().clone();
        assert_eq!(
            (ten.size, ten.sha256.as_str()),
            (10, sha256_hex(&data).as_str())
        );
        let expected: Vec<String> = data.chunks(4).map(sha256_hex).collect();
        assert_eq!(ten.blocks, expected);
        assert!(
            index.get("four").unwrap().blocks.is_empty(),
            "one block: none listed"
        );
        let last = index.block(block_id(&expected[2]).unwrap()).unwrap();
        assert_eq!((last.name.as_str(), last.offset, last.len), ("ten", 8, 2));
        assert!(!index.rescan(&d, 100, 4), "nothing changed");
        assert!(index.rescan(&d, 100, 5), "another block size hashes again");
        assert!(index.block(block_id(&expected[2]).unwrap()).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
