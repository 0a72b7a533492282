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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_three_peers_share_comes_from_several_and_a_corrupt_one_is_skipped() {
    let h = Harness::start("shared-blocks", 6, |i, c| {
        c.files.block_size = BLOCK as u64;
        if PROVIDERS.contains(&i) {
            std::fs::write(c.files.shared_dir.join(NAME), data()).expect("shared file");
        }
    })
    .await;
    h.converged().await;
    wait_until(
        "three providers published",
        Duration::from_secs(30),
        || async { providers(&h, 0).await == 3 },
    )
    .await;
    // Peer 3's disk changes under it once it indexed the file: a byte of every block flips,
    // and the modification time is put back so that its rescans do not notice.
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
