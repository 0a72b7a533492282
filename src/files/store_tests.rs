//! Unit tests of the object store (src/files/store.rs).

use super::*;
use crate::files::Version;
use crate::files::sha256_hex;
use crate::files::spool::spool_bytes;
use std::time::Duration;

fn put(store: &Store, meta: FileMeta, data: Option<&[u8]>) -> Result<PutOutcome, StoreError> {
    let content = data.map(|d| spool_bytes(store.tmp_dir(), d).unwrap());
    store.put(meta, content)
}

fn read(store: &Store, id: Id) -> Option<(FileMeta, Vec<u8>)> {
    let (meta, path) = store.open_content(id).unwrap()?;
    Some((meta, std::fs::read(path).unwrap()))
}

fn meta(name: &str, data: &[u8], millis: u64) -> FileMeta {
    FileMeta {
        name: name.into(),
        id: Id::hash(name),
        size: data.len() as u64,
        sha256: sha256_hex(data),
        version: Version {
            millis,
            logical: 0,
            origin: Id::ZERO,
        },
        deleted: false,
        layout: Default::default(),
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
        put(&store, v1.clone(), Some(b"one")).unwrap(),
        PutOutcome::Stored { replaced: None }
    );
    assert_eq!(
        put(&store, v2.clone(), Some(b"two!")).unwrap(),
        PutOutcome::Stored {
            replaced: Some(v1.clone())
        }
    );
    // An older copy arriving late changes nothing.
    assert_eq!(
        put(&store, v1.clone(), Some(b"one")).unwrap(),
        PutOutcome::Stale {
            current: v2.clone()
        }
    );
    assert_eq!((store.usage().files, store.usage().bytes), (1, 4));
    drop(store);
    let store = Store::open(&d).unwrap();
    let (m, data) = read(&store, v2.id).unwrap();
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
    put(&store, v1.clone(), Some(b"bee")).unwrap();
    let tomb = FileMeta {
        deleted: true,
        size: 0,
        sha256: String::new(),
        version: Version {
            millis: 15,
            logical: 0,
            origin: Id::ZERO,
        },
        ..v1.clone()
    };
    put(&store, tomb.clone(), None).unwrap();
    assert_eq!(read(&store, v1.id), None);
    assert!(matches!(
        put(&store, v1.clone(), Some(b"bee")).unwrap(),
        PutOutcome::Stale { .. }
    ));
    assert_eq!((store.usage().files, store.usage().bytes), (0, 0));
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
        put(&store, m.clone(), Some(b"SEA")),
        Err(StoreError::Mismatch("sha256"))
    ));
    assert!(matches!(
        put(&store, m.clone(), Some(b"se")),
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

/// A block stored again (a second upload of the same content finds it here and does not
/// write it) counts as referenced from that moment: a collection that started before the
/// second store does not drop it. Garbage collection reads `touched` under the same lock as
/// this check, so there is no window between "already here" and the manifest that follows.
#[test]
fn a_block_found_again_by_a_new_upload_is_not_collected() {
    let d = dir("block-again");
    let store = Store::open(&d).unwrap();
    let data = b"the same block, uploaded twice".as_slice();
    let block = crate::files::blocks::block_meta(&sha256_hex(data), data.len() as u64).unwrap();
    assert_eq!(
        put(&store, block.clone(), Some(data)).unwrap(),
        PutOutcome::Stored { replaced: None }
    );
    // Collection cuts off everything untouched since `cutoff`: the first store is older.
    let cutoff = Instant::now();
    assert!(store.untouched_since(block.id, cutoff + Duration::from_millis(1)));
    // The second upload of the same content finds the block here.
    assert_eq!(store.current_touching(&block), Some(block.clone()));
    assert_eq!(
        store.expire_blocks(cutoff),
        (0, 0),
        "a block just found again was dropped"
    );
    assert_eq!(read(&store, block.id).map(|(_, b)| b), Some(data.to_vec()));
    // Left alone, it goes.
    assert_eq!(
        store.expire_blocks(Instant::now() + Duration::from_millis(1)),
        (1, data.len() as u64)
    );
    assert!(read(&store, block.id).is_none());
    let _ = std::fs::remove_dir_all(&d);
}
