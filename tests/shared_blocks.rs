//! Shared directories as blocks (issue 15): a provider hashes each shared file once, block by
//! block, and a download of a file several peers share comes block by block from all of them,
//! each block verified before it is passed on. In-process 6-peer ring, 64 KiB blocks.

use crate::support::harness;

use std::time::Duration;

use harness::{Harness, content, wait_until};

const BLOCK: usize = 64 << 10;
const NAME: &str = "movie.bin";
/// Peers 1, 2 and 3 share the file; peer 3's copy is damaged after it was indexed.
const PROVIDERS: [usize; 3] = [1, 2, 3];
const CORRUPT: usize = 3;

fn data() -> Vec<u8> {
    content(9, 0, 40 * BLOCK + 1000)
}

/// Providers of `NAME` as `locations` (through `via`) lists them.
async fn providers(h: &Harness, via: usize) -> usize {
    h.get_json(&h.url(via, &format!("/v1/files/{NAME}/locations")))
        .await
        .and_then(|v| v["providers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Flips a byte of every block of peer `CORRUPT`'s copy and puts its modification time back,
/// so that its rescans do not notice.
fn damage(h: &Harness) {
    let path = h.configs[CORRUPT].files.shared_dir.join(NAME);
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut bad = data();
    for b in 0..bad.len().div_ceil(BLOCK) {
        bad[b * BLOCK + 7] ^= 0x55;
    }
    std::fs::write(&path, &bad).expect("corrupt it");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(modified))
        .expect("mtime back");
}

/// `peers` peers with `BLOCK`-sized blocks, the ones in `PROVIDERS` sharing the file.
async fn ring_of_providers(name: &str, peers: usize) -> Harness {
    Harness::start(name, peers, |i, c| {
        c.files.block_size = BLOCK as u64;
        if PROVIDERS.contains(&i) {
            std::fs::write(c.files.shared_dir.join(NAME), data()).expect("shared file");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_three_peers_share_comes_from_several_and_a_corrupt_one_is_skipped() {
    let h = ring_of_providers("shared-blocks", 6).await;
    h.converged().await;
    wait_until(
        "three providers published",
        Duration::from_secs(30),
        || async { providers(&h, 0).await == 3 },
    )
    .await;
    // Peer 3's disk changes under it once it indexed the file: a byte of every block flips,
    // and the modification time is put back so that its rescans do not notice.
    damage(&h);

    let (status, got) = h.get(0, NAME).await;
    assert_eq!(status, 200);
    assert!(got == data(), "the download differs from the shared file");
    // The damaged provider was noticed (it was asked for some block: blocks are spread over
    // all three), and the others sent every block between them.
    let corrupt = h.metric(0, "chordnet_shared_blocks_corrupt_total").await;
    assert!(corrupt >= 1.0, "the corrupt provider went unnoticed");
    let mut served = Vec::new();
    for p in PROVIDERS {
        served.push(h.metric(p, "chordnet_shared_blocks_served_total").await);
    }
    println!("blocks served per provider {served:?}, corrupt blocks seen {corrupt}");
    let honest: Vec<f64> = served[..2].to_vec();
    assert!(
        honest.iter().all(|n| *n > 0.0),
        "both good providers sent blocks: {served:?}"
    );
    assert!(honest.iter().sum::<f64>() + served[2] - corrupt >= 41.0);

    // A range across a block boundary comes from the good providers only (peer 3 is skipped
    // per download, so a new download may ask it again and skip it again).
    let r = h
        .http
        .get(h.url(4, &format!("/v1/files/{NAME}")))
        .header("range", format!("bytes={}-{}", BLOCK - 5, 3 * BLOCK + 4))
        .send()
        .await
        .expect("range answered");
    assert_eq!(r.status().as_u16(), 206);
    let body = r.bytes().await.expect("body");
    assert!(
        body[..] == data()[BLOCK - 5..=3 * BLOCK + 4],
        "range bytes differ"
    );
}

/// Past the list threshold (lowered here to 8 blocks, 16 digests a list: the 41 blocks are 3
/// list blocks) a provider's manifest lists list blocks, which the providers serve from their
/// index like blocks: the manifest stays small whatever the file's size (one level, a file of
/// more than 65,536 blocks was refused and came whole from one provider, unverified block by
/// block), and the download is still verified block by block and spread over the providers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_past_the_list_threshold_comes_through_its_list_blocks() {
    use chordnet::files::handler::FilesHandler;
    use chordnet::transport::BlobHandler;
    use chordnet::wire::files::{BlobAnswer, BlobQuery, Layout};

    let h = ring_of_providers("shared-lists", 5).await;
    for i in h.running() {
        h.peer(i).files.set_list_shape(8, 16);
    }
    h.converged().await;
    // Each provider lists the file in list blocks at its next scan.
    let listed = |p: usize| {
        h.peer(p)
            .files
            .node_files()
            .shared
            .iter()
            .any(|f| f.name == NAME && f.lists.len() == 3)
    };
    wait_until(
        "three providers listed the file in list blocks and published it",
        Duration::from_secs(30),
        || async { PROVIDERS.iter().all(|p| listed(*p)) && providers(&h, 0).await == 3 },
    )
    .await;

    // What a downloader gets from `shared_manifest` on the data plane: 3 list blocks of 16
    // digests, checked like any manifest, and a few hundred bytes instead of 41 digests.
    let query = BlobQuery::SharedManifest { name: NAME.into() };
    let answer = FilesHandler(std::sync::Arc::clone(&h.peer(1).files))
        .query(query)
        .await
        .expect("answered");
    let BlobAnswer::Shared { meta: Some(meta) } = &answer else {
        panic!("peer 1 shares {NAME}: {answer:?}")
    };
    let Layout::Lists {
        block_size,
        per_list,
        lists,
    } = &meta.layout
    else {
        panic!(
            "past the threshold a provider lists list blocks: {:?}",
            meta.layout
        )
    };
    assert_eq!((*block_size, *per_list, lists.len()), (BLOCK as u64, 16, 3));
    chordnet::files::manifest::check_manifest(meta).expect("a valid manifest");
    let bytes = serde_json::to_vec(&answer).expect("json").len();
    println!("shared_manifest answer for 41 blocks in 3 list blocks: {bytes} bytes");
    assert!(bytes < 1000, "{bytes} bytes");

    // Peer 3's copy is damaged once indexed (its lists, made from its index, stay right).
    damage(&h);

    let (status, got) = h.get(0, NAME).await;
    assert_eq!(status, 200);
    assert!(got == data(), "the download differs from the shared file");
    let corrupt = h.metric(0, "chordnet_shared_blocks_corrupt_total").await;
    let (mut served, mut lists_served) = (Vec::new(), 0.0);
    for p in PROVIDERS {
        served.push(h.metric(p, "chordnet_shared_blocks_served_total").await);
        lists_served += h
            .metric(p, "chordnet_shared_list_blocks_served_total")
            .await;
    }
    println!(
        "blocks served per provider {served:?}, list blocks served {lists_served}, corrupt \
         blocks seen {corrupt}"
    );
    assert!(corrupt >= 1.0, "the damaged provider went unnoticed");
    assert!(
        lists_served >= 3.0,
        "the 3 list blocks came from the providers"
    );
    assert!(
        served[..2].iter().all(|n| *n > 0.0),
        "both good providers sent blocks: {served:?}"
    );
    // Every block of peer 3 is damaged: the good ones sent all 41 between them.
    assert!(served[0] + served[1] >= 41.0, "{served:?}");
}
