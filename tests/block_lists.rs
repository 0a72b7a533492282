//! The second level of block lists (issue 15): a file of more than 1,024 blocks has a manifest
//! that lists list blocks instead of block digests. The metadata every `info` exchange about
//! a 4 GiB file carries, before and after (printed); files of several list blocks up and down
//! through other peers, byte ranges across list-block boundaries, overwrites between the two
//! layouts; and a file past the real threshold. In-process rings, 64 KiB blocks.

use crate::support::harness;

use std::time::Duration;

use chordnet::files::lists::{LIST_THRESHOLD, PER_LIST, list_len};
use chordnet::files::manifest::check_manifest;
use chordnet::files::sha256_hex;
use chordnet::id::Id;
use chordnet::wire::files::{BlobAnswer, FileMeta, Layout, ObjectInfo, Version};
use harness::{Harness, content};

const BLOCK: usize = 64 << 10;

/// A ring of `n` peers in 64 KiB blocks whose uploads switch to list blocks past `threshold`
/// blocks, `per_list` digests a list.
async fn ring(name: &str, n: usize, shape: Option<(u64, u64)>) -> Harness {
    let h = Harness::start(name, n, |_, c| {
        c.files.block_size = BLOCK as u64;
        c.files.tombstone_ttl = Duration::from_secs(3600);
    })
    .await;
    if let Some((threshold, per_list)) = shape {
        for i in h.running() {
            h.peer(i).files.set_list_shape(threshold, per_list);
        }
    }
    h.converged().await;
    h
}

/// The manifest of `name` as the peers that hold it stored it.
fn stored_manifest(h: &Harness, name: &str) -> FileMeta {
    let file = format!("{}.json", Id::hash(name.as_bytes()));
    (0..h.peers.len())
        .find_map(|i| {
            let p = h.configs[i].files.store_dir.join("objects").join(&file);
            serde_json::from_slice(&std::fs::read(p).ok()?).ok()
        })
        .expect("a holder stored the manifest")
}

/// The bytes of an `info` answer carrying `meta`, as peers exchange it.
fn info_bytes(meta: &FileMeta) -> usize {
    let answer = BlobAnswer::Info(ObjectInfo {
        meta: Some(meta.clone()),
        providers: Vec::new(),
    });
    serde_json::to_vec(&answer).expect("json").len()
}

fn manifest(size: u64, layout: Layout) -> FileMeta {
    FileMeta {
        name: "disk.img".into(),
        id: Id::hash("disk.img"),
        size,
        sha256: sha256_hex(b"whole file"),
        version: Version {
            millis: 1_765_000_000_000,
            logical: 0,
            origin: Id::hash("peer-0:7000"),
        },
        deleted: false,
        layout,
    }
}

/// The figure: a 4 GiB file in 64 KiB blocks (65,536 blocks). One level, every `info`,
/// `missing`-driven push and read repair about it carries 4.4 MB of digests; two levels, the
/// record lists 4 list blocks, and the lists (512 KiB each, raw digests) are fetched only by a
/// download that needs them and cached by the manifest's owner.
#[test]
fn the_metadata_of_a_4_gib_file_in_64_kib_blocks_shrinks_from_megabytes_to_bytes() {
    let blocks = (4u64 << 30) / BLOCK as u64;
    assert_eq!(blocks, 65_536);
    let digest = |k: u64| sha256_hex(&k.to_be_bytes());
    let one_level = manifest(
        4 << 30,
        Layout::Blocks {
            block_size: BLOCK as u64,
            digests: (0..blocks).map(digest).collect(),
        },
    );
    let lists = blocks.div_ceil(PER_LIST);
    let two_level = manifest(
        4 << 30,
        Layout::Lists {
            block_size: BLOCK as u64,
            per_list: PER_LIST,
            lists: (0..lists).map(|k| digest((1 << 40) | k)).collect(),
        },
    );
    check_manifest(&one_level).expect("an old one-level record still reads");
    check_manifest(&two_level).expect("the record an upload writes now");
    let (before, after) = (info_bytes(&one_level), info_bytes(&two_level));
    println!(
        "metadata per info exchange, 4 GiB file in 64 KiB blocks ({blocks} blocks): \
         one level {before} bytes, two levels {after} bytes ({lists} list blocks of \
         {PER_LIST} digests, {} bytes each, fetched only when needed): {:.0}x smaller",
        list_len(PER_LIST),
        before as f64 / after as f64
    );
    assert!(before > 4_300_000, "{before}");
    assert!(after < 1_000, "{after}");
    assert!(blocks > LIST_THRESHOLD);
}

/// Bytes `a..=b` of `name` through peer `via`: status and body.
async fn range(h: &Harness, via: usize, name: &str, a: u64, b: u64) -> (u16, Vec<u8>) {
    let r = h
        .http
        .get(h.url(via, &format!("/v1/files/{name}")))
        .header("range", format!("bytes={a}-{b}"))
        .send()
        .await
        .expect("range answered");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

/// 14 blocks in lists of 3 (past a threshold of 4): 5 list blocks. Up through one peer, down
/// through others, whole and by ranges at the list-block boundaries; `locations` counts and
/// lists the 14 data blocks; every data and list block has its 3 copies, also again after a
/// peer crashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_several_list_blocks_round_trips_and_ranges_cross_list_boundaries() {
    let mut h = ring("lists-small", 5, Some((4, 3))).await;
    let data = content(3, 1, 13 * BLOCK + 777);
    let r = h.put(0, "many", data.clone()).await;
    assert_eq!(r.status().as_u16(), 201);
    let meta = stored_manifest(&h, "many");
    let Layout::Lists {
        per_list, lists, ..
    } = &meta.layout
    else {
        panic!("a file past the threshold is listed in list blocks: {meta:?}")
    };
    assert_eq!((*per_list, lists.len()), (3, 5));
    check_manifest(&meta).expect("valid");

    for via in [1, 3, 4] {
        let (status, got) = h.get(via, "many").await;
        assert!(
            status == 200 && got == data,
            "whole file through peer {via}"
        );
    }
    let b = BLOCK as u64;
    let last = data.len() as u64 - 1;
    for (a, z) in [
        (0, 0),
        (3 * b - 10, 3 * b + 9),    // list 0 -> list 1
        (6 * b - 1, 6 * b),         // list 1 -> list 2, one byte each side
        (2 * b + 5, 10 * b + 5),    // four lists
        (12 * b, last),             // the short last list only
        (last, last),               // the last byte
        (9 * b + 100, 9 * b + 100), // inside list 3
    ] {
        let (status, got) = range(&h, 2, "many", a, z).await;
        assert_eq!(status, 206, "{a}-{z}");
        assert!(got == data[a as usize..=z as usize], "bytes {a}-{z}");
    }

    let v = h
        .get_json(&h.url(4, "/v1/files/many/locations?blocks=true"))
        .await
        .expect("locations");
    assert_eq!(v["blocks"], 14);
    let listed: Vec<String> = v["block_holders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["digest"].as_str().unwrap_or("").to_string())
        .collect();
    let want: Vec<String> = data.chunks(BLOCK).map(sha256_hex).collect();
    assert_eq!(listed, want);

    // 14 data blocks and 5 list blocks, 3 copies each (the write quorum is 2; repair makes 3).
    let copies = (14 + 5) * 3;
    harness::wait_until(
        "3 copies of every block",
        Duration::from_secs(20),
        || async { h.blocks_stored().await == copies },
    )
    .await;

    // List blocks are blocks: with a holder of some of them gone, the file still reads, and
    // repair brings every data and list block back to 3 copies on the 4 peers left.
    h.crash(3).await;
    let (status, got) = h.get(1, "many").await;
    assert!(status == 200 && got == data, "after a crash");
    harness::wait_until("3 copies again", Duration::from_secs(30), || async {
        h.blocks_stored().await == copies
    })
    .await;
    let (a, z) = (3 * b - 1, 9 * b);
    let (status, got) = range(&h, 4, "many", a, z).await;
    assert!(
        status == 206 && got == data[a as usize..=z as usize],
        "range after a crash"
    );
}

/// Overwrites switch between the layouts in one step: two levels, then one, then two again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_switch_between_one_and_two_levels() {
    let h = ring("lists-overwrite", 4, Some((4, 2))).await;
    for (v, blocks) in [(0, 9), (1, 3), (2, 6)] {
        let data = content(5, v, blocks * BLOCK + 11);
        let r = h.put(v % 4, "switch", data.clone()).await;
        assert!(r.status().is_success(), "version {v}");
        let (status, got) = h.get((v + 2) % 4, "switch").await;
        assert!(status == 200 && got == data, "version {v}");
        let two = matches!(stored_manifest(&h, "switch").layout, Layout::Lists { .. });
        assert_eq!(two, blocks + 1 > 4, "version {v}: {blocks} blocks");
    }
}

/// Past the real threshold (1,025 blocks and a bit, ~64 MiB in 64 KiB blocks): one list block
/// of real size; the record is a few hundred bytes where one level would list 1,026 digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_past_the_real_threshold_is_listed_in_a_list_block() {
    let h = ring("lists-real", 3, None).await;
    let blocks = LIST_THRESHOLD as usize + 1;
    let data = content(9, 0, blocks * BLOCK + 4321);
    let r = h.put(1, "past", data.clone()).await;
    assert_eq!(r.status().as_u16(), 201);
    let meta = stored_manifest(&h, "past");
    let Layout::Lists {
        per_list, lists, ..
    } = &meta.layout
    else {
        panic!("1,026 blocks are listed in a list block: {meta:?}")
    };
    assert_eq!((*per_list, lists.len()), (PER_LIST, 1));
    let (status, got) = h.get(2, "past").await;
    assert!(status == 200 && got == data, "whole file");
    let b = BLOCK as u64;
    let (a, z) = (1000 * b - 3, 1001 * b + 2);
    let (status, got) = range(&h, 0, "past", a, z).await;
    assert!(status == 206 && got == data[a as usize..=z as usize]);
    let one_level = FileMeta {
        layout: Layout::Blocks {
            block_size: b,
            digests: data.chunks(BLOCK).map(sha256_hex).collect(),
        },
        ..meta.clone()
    };
    println!(
        "metadata per info exchange, {} blocks of 64 KiB: one level {} bytes, two levels {} bytes",
        blocks + 1,
        info_bytes(&one_level),
        info_bytes(&meta)
    );
}
