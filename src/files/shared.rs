//! The shared directory: the files this peer offers to the ring as a provider.
//!
//! Scanned at start and periodically; a file is hashed again only when its size or
//! modification time changed (or the block size did). Hashing streams the file once and keeps
//! its whole-file SHA-256 and, for a file of more than one block, the SHA-256 of each block of
//! `files.block_size`: the file's block manifest, which a downloader fetches (see
//! [`super::providers`]) to verify a provider's bytes block by block and to spread the blocks
//! over every provider of the same content. A file of more than `lists::LIST_THRESHOLD` blocks
//! also gets list blocks (the format uploads use, see [`super::lists`]), computed from its
//! digests when it is indexed: its manifest lists those, and the provider serves them by digest
//! from the index like blocks, so a manifest stays small whatever the file's size. Only regular
//! files directly in the directory whose names are valid file names are shared (no recursion,
//! no symlinks out of the directory).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::Digest;

use super::lists::{Cut, encode_raw};
use super::spool::hex;
use super::{FileMeta, Layout, Version, validate_name};
use crate::id::Id;

/// A block digest as bytes (an index of a big file keeps 32 bytes a block, not 64 of hex).
pub type Raw = [u8; 32];

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The block size `blocks` were cut with.
    pub block_size: u64,
    /// The SHA-256 of each block, in order (empty for a file of at most one block); shared
    /// with the index's copies, never copied.
    pub blocks: Arc<[Raw]>,
    /// For a file of more blocks than the cut's threshold: the SHA-256 (hex) of each of its
    /// list blocks (`per_list` block digests each but the last, in the list block format of
    /// [`super::lists`]), which its manifest lists instead of the block digests; else empty.
    pub lists: Vec<String>,
    /// Block digests per list block (0 without lists).
    pub per_list: u64,
    cut: Cut,
    modified: Option<SystemTime>,
}

impl SharedFile {
    /// The hex digest of block `i`.
    pub fn digest(&self, i: usize) -> Option<String> {
        self.blocks.get(i).map(|d| hex(d))
    }

    /// The block digests list block `k` holds.
    pub fn list(&self, k: usize) -> Option<&[Raw]> {
        let per_list = usize::try_from(self.per_list).ok().filter(|n| *n > 0)?;
        let from = k.checked_mul(per_list).filter(|f| *f < self.blocks.len())?;
        Some(&self.blocks[from..(from + per_list).min(self.blocks.len())])
    }

    /// The file's manifest as a provider sends it (`shared_manifest`), a version of its own
    /// from `origin`: its block digests, or, past the list threshold, its list blocks (which
    /// the provider serves from its index), so the answer lists at most
    /// `max(LIST_THRESHOLD, MAX_LISTS)` digests whatever the file's size; inline for a file
    /// of at most one block.
    pub fn manifest(&self, origin: Id) -> FileMeta {
        let layout = if self.blocks.is_empty() {
            Layout::Inline
        } else if !self.lists.is_empty() {
            Layout::Lists {
                block_size: self.block_size,
                per_list: self.per_list,
                lists: self.lists.clone(),
            }
        } else {
            Layout::Blocks {
                block_size: self.block_size,
                digests: self.blocks.iter().map(|d| hex(d)).collect(),
            }
        };
        FileMeta {
            id: Id::hash(self.name.as_bytes()),
            name: self.name.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            version: Version {
                millis: 0,
                logical: 0,
                origin,
            },
            deleted: false,
            layout,
        }
    }

    /// Computes the list blocks of this file's digests as `cut` says (none for a file that
    /// stays one level).
    fn list_with(&mut self, cut: Cut) {
        self.cut = cut;
        self.per_list = cut.per_list_for(self.blocks.len() as u64).unwrap_or(0);
        self.lists = (0..)
            .map_while(|k| self.list(k))
            .filter_map(|digests| encode_raw(digests).ok())
            .map(|content| hex(&sha2::Sha256::digest(&content)))
            .collect();
    }
}

/// Where one block of a shared file lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedBlock {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    pub digest: String,
}

/// A block a provider serves from its shared directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// Bytes of a shared file, read from the file when asked.
    Data(SharedBlock),
    /// A list block of a shared file's manifest: made from the index (`encode_raw` of
    /// `digests[range]`), nothing read from disk.
    List {
        digest: String,
        digests: Arc<[Raw]>,
        range: std::ops::Range<usize>,
    },
}

/// What a ring position of the index is.
#[derive(Clone, Debug)]
enum At {
    /// Block `i` of the file.
    Data(Arc<str>, usize),
    /// List block `k` of the file.
    List(Arc<str>, usize),
}

/// The index of a shared directory.
#[derive(Clone, Default)]
pub struct SharedIndex {
    files: BTreeMap<String, SharedFile>,
    /// The blocks and list blocks of every shared file by ring position (a block two files
    /// share: either). Shared by the index's copies (each scan works on a copy): rebuilt only
    /// when a file changed.
    blocks: Arc<HashMap<Id, At>>,
}

/// The ring position of a block with digest `d` (its first 160 bits).
fn raw_id(d: &Raw) -> Id {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(&d[..20]);
    Id::from_bytes(bytes)
}

/// Streams the file at `path` once: its size, whole-file SHA-256, and the SHA-256 of each
/// block of `block_size` when it has more than one (memory: one block, and 32 bytes a block).
pub fn hash_blocks(path: &Path, block_size: u64) -> std::io::Result<(u64, String, Vec<Raw>)> {
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
        blocks.push(sha2::Sha256::digest(&buf[..filled]).into());
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
    /// `max_size` bytes in blocks of `block_size`, and listing the digests of those of more
    /// than `cut.threshold` blocks in list blocks. Returns whether anything changed.
    pub fn rescan(&mut self, dir: &Path, max_size: u64, block_size: u64, cut: Cut) -> bool {
        let changed = self.rescan_files(dir, max_size, block_size, cut);
        if changed {
            let mut blocks = HashMap::new();
            for f in self.files.values() {
                let name: Arc<str> = Arc::from(f.name.as_str());
                for (i, d) in f.blocks.iter().enumerate() {
                    blocks.insert(raw_id(d), At::Data(Arc::clone(&name), i));
                }
                for (k, d) in f.lists.iter().enumerate() {
                    if let Ok(id) = super::blocks::block_id(d) {
                        blocks.insert(id, At::List(Arc::clone(&name), k));
                    }
                }
            }
            self.blocks = Arc::new(blocks);
        }
        changed
    }

    fn rescan_files(&mut self, dir: &Path, max_size: u64, block_size: u64, cut: Cut) -> bool {
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
                let mut file = known.clone();
                if file.cut != cut {
                    file.list_with(cut);
                }
                next.insert(name, file);
                continue;
            }
            match hash_blocks(&entry.path(), block_size) {
                Ok((size, sha256, blocks)) => {
                    let mut file = SharedFile {
                        name: name.clone(),
                        size,
                        sha256,
                        block_size,
                        blocks: blocks.into(),
                        lists: Vec::new(),
                        per_list: 0,
                        cut,
                        modified,
                    };
                    file.list_with(cut);
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

    /// The shared block or list block at ring position `id`, if a shared file has it.
    pub fn block(&self, id: Id) -> Option<Served> {
        match self.blocks.get(&id)? {
            At::Data(name, i) => {
                let f = self.files.get(&**name)?;
                let offset = (*i as u64).checked_mul(f.block_size)?;
                Some(Served::Data(SharedBlock {
                    name: f.name.clone(),
                    offset,
                    len: f.size.saturating_sub(offset).min(f.block_size),
                    digest: f.digest(*i)?,
                }))
            }
            At::List(name, k) => {
                let f = self.files.get(&**name)?;
                let per_list = usize::try_from(f.per_list).ok()?;
                let from = k.checked_mul(per_list)?;
                let to = (from + f.list(*k)?.len()).min(f.blocks.len());
                Some(Served::List {
                    digest: f.lists.get(*k)?.clone(),
                    digests: Arc::clone(&f.blocks),
                    range: from..to,
                })
            }
        }
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
    use crate::files::blocks::block_id;
    use crate::files::lists::{LIST_THRESHOLD, decode, encode};
    use crate::files::sha256_hex;

    /// An empty directory of its own for one test.
    fn fresh_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("chordnet-shared-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn scans_regular_files_with_valid_names_only() {
        let d = std::env::temp_dir().join(format!("chordnet-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut index = SharedIndex::default();
        assert!(
            !index.rescan(&d, 100, 64 << 10, Cut::default()),
            "a missing directory shares nothing"
        );
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.txt"), b"abc").unwrap();
        std::fs::write(d.join("big.bin"), vec![0u8; 200]).unwrap();
        std::fs::write(d.join("sub").join("nested"), b"x").unwrap();
        assert!(index.rescan(&d, 100, 64 << 10, Cut::default()));
        let files = index.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "a.txt");
        assert_eq!(files[0].sha256, sha256_hex(b"abc"));
        assert!(
            !index.rescan(&d, 100, 64 << 10, Cut::default()),
            "nothing changed"
        );
        std::fs::remove_file(d.join("a.txt")).unwrap();
        assert!(index.rescan(&d, 100, 64 << 10, Cut::default()));
        assert!(index.files().is_empty());
        assert_eq!(path_of(&d, "../x"), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn files_of_several_blocks_keep_a_digest_per_block_and_find_them_by_position() {
        let d = fresh_dir("b");
        let data: Vec<u8> = (0..10u8).collect();
        std::fs::write(d.join("ten"), &data).unwrap();
        std::fs::write(d.join("four"), &data[..4]).unwrap();
        let mut index = SharedIndex::default();
        assert!(index.rescan(&d, 100, 4, Cut::default()));
        let ten = index.get("ten").unwrap().clone();
        assert_eq!(
            (ten.size, ten.sha256.as_str()),
            (10, sha256_hex(&data).as_str())
        );
        let expected: Vec<String> = data.chunks(4).map(sha256_hex).collect();
        let digests: Vec<String> = (0..3).filter_map(|i| ten.digest(i)).collect();
        assert_eq!(digests, expected);
        assert!(ten.lists.is_empty(), "3 blocks stay one level");
        assert!(
            index.get("four").unwrap().blocks.is_empty(),
            "one block: none listed"
        );
        let Some(Served::Data(last)) = index.block(block_id(&expected[2]).unwrap()) else {
            panic!("block 2 is a data block of ten")
        };
        assert_eq!((last.name.as_str(), last.offset, last.len), ("ten", 8, 2));
        assert!(!index.rescan(&d, 100, 4, Cut::default()), "nothing changed");
        assert!(
            index.rescan(&d, 100, 5, Cut::default()),
            "another block size hashes again"
        );
        assert!(index.block(block_id(&expected[2]).unwrap()).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn files_past_the_threshold_list_their_digests_in_list_blocks_served_from_the_index() {
        let d = fresh_dir("l");
        let data: Vec<u8> = (0..10u8).collect();
        std::fs::write(d.join("ten"), &data).unwrap();
        let expected: Vec<String> = data.chunks(2).map(sha256_hex).collect();
        let mut index = SharedIndex::default();
        let cut = Cut {
            threshold: 4,
            per_list: 2,
        };
        assert!(index.rescan(&d, 100, 2, cut));
        let ten = index.get("ten").unwrap().clone();
        // 5 blocks past a threshold of 4: lists of 2, 2 and 1 digests.
        let lists: Vec<String> = expected
            .chunks(2)
            .map(|c| sha256_hex(&encode(c).unwrap()))
            .collect();
        assert_eq!((ten.per_list, &ten.lists), (2, &lists));
        for (k, list) in lists.iter().enumerate() {
            let Some(Served::List {
                digest,
                digests,
                range,
            }) = index.block(block_id(list).unwrap())
            else {
                panic!("list {k} is served from the index")
            };
            let content = encode_raw(&digests[range]).unwrap();
            assert_eq!(
                (digest.as_str(), sha256_hex(&content)),
                (list.as_str(), list.clone())
            );
            let count = expected.chunks(2).nth(k).unwrap().len() as u64;
            assert_eq!(
                decode(&content, count).unwrap(),
                expected.chunks(2).nth(k).unwrap()
            );
        }
        assert!(matches!(
            index.block(block_id(&expected[4]).unwrap()),
            Some(Served::Data(SharedBlock {
                offset: 8,
                len: 2,
                ..
            }))
        ));
        // Another cut lists again without hashing the file; back to one level, no lists.
        assert!(!index.rescan(&d, 100, 2, cut), "nothing changed");
        assert!(index.rescan(&d, 100, 2, Cut::default()));
        assert!(index.get("ten").unwrap().lists.is_empty());
        assert!(index.block(block_id(&lists[0]).unwrap()).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_cut_that_would_need_too_many_lists_lists_more_digests_in_each() {
        let cut = Cut {
            threshold: 4,
            per_list: 2,
        };
        assert_eq!(cut.per_list_for(4), None);
        assert_eq!(cut.per_list_for(5), Some(2));
        let many = crate::config::MAX_LISTS * 2 + 1;
        assert_eq!(cut.per_list_for(many), Some(3));
        let most = crate::config::MAX_FILE_BLOCKS;
        assert_eq!(
            Cut::default().per_list_for(most),
            Some(crate::config::MAX_PER_LIST)
        );
    }

    /// A file of `blocks` blocks of 64 KiB, as the index holds it (digests made up).
    fn indexed(blocks: u64, cut: Cut) -> SharedFile {
        let digests: Vec<Raw> = (0..blocks)
            .map(|k| sha2::Sha256::digest(k.to_be_bytes()).into())
            .collect();
        let mut f = SharedFile {
            name: "disk.img".into(),
            size: blocks * (64 << 10),
            sha256: sha256_hex(b"the whole file"),
            block_size: 64 << 10,
            blocks: digests.into(),
            lists: Vec::new(),
            per_list: 0,
            cut,
            modified: None,
        };
        f.list_with(cut);
        f
    }

    #[test]
    fn a_manifest_past_65536_blocks_is_a_valid_one_of_a_few_list_blocks() {
        use crate::config::MAX_BLOCKS;
        use crate::files::manifest::check_manifest;
        let blocks = MAX_BLOCKS + 4_464; // 70,000 blocks: 4.3 GiB in 64 KiB blocks
        let json = |m: &FileMeta| serde_json::to_vec(m).unwrap().len();
        // One level (what a provider sent before): every digest, and refused past MAX_BLOCKS.
        let one = indexed(
            blocks,
            Cut {
                threshold: u64::MAX,
                ..Cut::default()
            },
        )
        .manifest(Id::ZERO);
        assert!(check_manifest(&one).is_err());
        // Two levels: 5 list blocks of 16,384 digests, valid, and its list blocks decode to
        // the file's digests.
        let f = indexed(blocks, Cut::default());
        let two = f.manifest(Id::ZERO);
        check_manifest(&two).unwrap();
        let Layout::Lists {
            per_list, lists, ..
        } = &two.layout
        else {
            panic!("past the threshold: lists")
        };
        assert_eq!((*per_list, lists.len()), (crate::config::MAX_PER_LIST, 5));
        let last = encode_raw(f.list(4).unwrap()).unwrap();
        assert_eq!(sha256_hex(&last), lists[4]);
        assert_eq!(
            decode(&last, blocks - 4 * per_list).unwrap().last(),
            f.digest(blocks as usize - 1).as_ref()
        );
        println!(
            "shared_manifest of {blocks} blocks: {} bytes one level (refused), {} bytes in {} \
             list blocks",
            json(&one),
            json(&two),
            lists.len()
        );
        assert!(json(&two) < 1_000);
        // At the threshold the manifest stays one level, as before.
        let at = indexed(LIST_THRESHOLD, Cut::default()).manifest(Id::ZERO);
        assert!(matches!(at.layout, Layout::Blocks { ref digests, .. } if digests.len() == 1024));
    }
}
