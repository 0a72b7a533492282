//! Files as content-addressed blocks (issue 15), on an in-process 8-peer ring with 64 KiB
//! blocks: sizes around the block boundary, spreading, ranges, a corrupted replica, a crash
//! during a download, deduplication and garbage collection.

use crate::support::harness;

use std::path::PathBuf;
use std::time::Duration;

use chordnet::files::sha256_hex;
use chordnet::id::Id;
use harness::{Harness, content, wait_until};

const BLOCK: usize = 64 << 10;

async fn ring(name: &str, ttl: Duration) -> Harness {
    let h = Harness::start(name, 8, |_, c| {
        c.files.block_size = BLOCK as u64;
        c.files.max_file_size = 1 << 30;
        c.files.tombstone_ttl = ttl;
    })
    .await;
    h.converged().await;
    h
}

/// Blocks each peer holds, as `GET /v1/node/files` reports them.
async fn blocks_per_peer(h: &Harness) -> Vec<u64> {
    let mut out = Vec::new();
    for i in h.running() {
        let v = h
            .get_json(&h.url(i, "/v1/node/files"))
            .await
            .expect("node files");
        out.push(v["blocks"].as_u64().expect("blocks"));
    }
    out
}

/// A counter's value summed over the running peers.
async fn metric_sum(h: &Harness, name: &str) -> f64 {
    let mut sum = 0.0;
    for i in h.running() {
        let text = h
            .http
            .get(h.url(i, "/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

/// The data files of the block `digest` on each peer's disk.
fn block_files(h: &Harness, digest: &str) -> Vec<(usize, PathBuf)> {
    let name = format!("{}-{digest}.data", &digest[..40]);
    (0..h.peers.len())
        .filter_map(|i| {
            let p = h.configs[i].files.store_dir.join("objects").join(&name);
            p.exists().then_some((i, p))
        })
        .collect()
}

async fn block_digests(h: &Harness, via: usize, name: &str) -> Vec<(String, usize)> {
    let v = h
        .get_json(&h.url(via, &format!("/v1/files/{name}/locations?blocks=true")))
        .await
        .expect("locations");
    v["block_holders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["digest"].as_str().unwrap_or("").to_string(),
                b["holders"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_size_round_trip_through_other_peers_and_big_ones_spread() {
    let h = ring("blk-sizes", Duration::from_secs(3600)).await;
    let big = 40 * BLOCK + 123;
    for (k, len) in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, big]
        .into_iter()
        .enumerate()
    {
        let name = format!("size-{len}");
        let data = content(k, 0, len);
        let up = h.put(k % 8, &name, data.clone()).await;
        assert_eq!(up.status().as_u16(), 201, "{name}");
        let (status, got) = h.get((k + 3) % 8, &name).await;
        assert_eq!(status, 200, "{name}");
        assert!(got == data, "{name}: bytes differ");
        let loc = h
            .get_json(&h.url(0, &format!("/v1/files/{name}/locations")))
            .await
            .expect("locations");
        let blocks = loc["blocks"].as_u64().expect("blocks");
        assert_eq!(
            blocks,
            if len > BLOCK {
                len.div_ceil(BLOCK) as u64
            } else {
                0
            }
        );
    }
    // 2 blocks of the block_size + 1 file and 41 of the big one, 3 copies each, spread.
    let per_peer = blocks_per_peer(&h).await;
    println!("blocks per peer: {per_peer:?}");
    assert_eq!(per_peer.iter().sum::<u64>(), (2 + 41) * 3);
    assert!(per_peer.iter().filter(|n| **n > 0).count() >= 3);
    let listed = block_digests(&h, 5, &format!("size-{big}")).await;
    assert_eq!(listed.len(), 41);
    assert!(
        listed.iter().all(|(_, holders)| *holders == 3),
        "{listed:?}"
    );
    // The ETag is the whole file's SHA-256.
    let r = h
        .http
        .head(h.url(2, &format!("/v1/files/size-{big}")))
        .send()
        .await
        .expect("head");
    let etag = format!("\"{}\"", sha256_hex(&content(5, 0, big)));
    assert_eq!(r.headers()["etag"].to_str().ok(), Some(etag.as_str()));
    assert_eq!(r.headers()["accept-ranges"], "bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_fetch_exact_bytes_and_bad_ones_are_416() {
    let h = ring("blk-ranges", Duration::from_secs(3600)).await;
    let len = 5 * BLOCK + 7;
    let data = content(1, 1, len);
    assert_eq!(h.put(0, "r", data.clone()).await.status().as_u16(), 201);
    let small = content(2, 1, 1000);
    assert_eq!(h.put(0, "s", small.clone()).await.status().as_u16(), 201);
    let get = |name: &'static str, range: String| {
        let req = h
            .http
            .get(h.url(4, &format!("/v1/files/{name}")))
            .header("range", range);
        async move {
            let r = req.send().await.expect("answer");
            let status = r.status().as_u16();
            let cr = r
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (status, cr, r.bytes().await.expect("body").to_vec())
        }
    };
    for (name, d) in [("r", &data), ("s", &small)] {
        let n = d.len();
        for (spec, a, b) in [
            ("bytes=0-0".to_string(), 0, 0),
            (format!("bytes={}-{}", n - 1, n - 1), n - 1, n - 1),
            (format!("bytes=-{}", 10), n - 10, n - 1),
            ("bytes=100-".to_string(), 100, n - 1),
            (
                format!("bytes={}-{}", BLOCK.min(n) - 3, (2 * BLOCK + 5).min(n - 1)),
                BLOCK.min(n) - 3,
                (2 * BLOCK + 5).min(n - 1),
            ),
        ] {
            let (status, cr, body) = get(name, spec.clone()).await;
            assert_eq!(status, 206, "{name} {spec}");
            assert_eq!(cr, Some(format!("bytes {a}-{b}/{n}")), "{name} {spec}");
            assert!(body == d[a..=b], "{name} {spec}: bytes differ");
        }
        let (status, cr, _) = get(name, format!("bytes={n}-")).await;
        assert_eq!((status, cr), (416, Some(format!("bytes */{n}"))));
        let (status, _, _) = get(name, "bytes=9-3".into()).await;
        assert_eq!(status, 416);
    }
    // If-Range with another ETag: the whole file; If-None-Match with this one: 304.
    let etag = format!("\"{}\"", sha256_hex(&data));
    let r = h
        .http
        .get(h.url(3, "/v1/files/r"))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), len);
    let r = h
        .http
        .get(h.url(3, "/v1/files/r"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_block_is_served_from_another_replica_counted_and_repaired() {
    let h = ring("blk-corrupt", Duration::from_secs(3600)).await;
    let data = content(3, 0, 4 * BLOCK);
    assert_eq!(h.put(1, "c", data.clone()).await.status().as_u16(), 201);
    let (digest, _) = block_digests(&h, 1, "c").await.remove(2);
    let block_id: Id = digest[..40].parse().expect("id");
    // Holders in the order a reader asks them (responsible peer first): all but the last get
    // a flipped byte, so the reader meets both bad copies before the good one.
    let mut holders = block_files(&h, &digest);
    assert_eq!(holders.len(), 3);
    holders.sort_by_key(|(i, _)| block_id.distance_to(h.id(*i)));
    for (_, path) in &holders[..2] {
        let mut bytes = std::fs::read(path).expect("block file");
        bytes[100] ^= 0xff;
        std::fs::write(path, bytes).expect("corrupt it");
    }
    let via = (0..8)
        .find(|i| holders.iter().all(|(j, _)| j != i))
        .expect("a peer that holds no copy");
    let (status, got) = h.get(via, "c").await;
    assert_eq!(status, 200);
    assert!(got == data, "bytes differ");
    assert_eq!(metric_sum(&h, "chordnet_blocks_corrupt_total").await, 2.0);
    // Repair puts good copies back where the bad ones were.
    wait_until(
        "the bad copies repaired",
        Duration::from_secs(20),
        || async {
            holders
                .iter()
                .all(|(_, p)| std::fs::read(p).is_ok_and(|b| sha256_hex(&b) == digest))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_survives_a_holder_crashing_in_the_middle() {
    let mut h = ring("blk-crash", Duration::from_secs(3600)).await;
    let data = content(4, 0, 96 * BLOCK);
    assert_eq!(h.put(0, "k", data.clone()).await.status().as_u16(), 201);
    let mut r = h
        .http
        .get(h.url(0, "/v1/files/k"))
        .send()
        .await
        .expect("download starts");
    assert_eq!(r.status().as_u16(), 200);
    let mut got = Vec::new();
    let mut crashed = false;
    while let Some(chunk) = r.chunk().await.expect("the download goes on") {
        let chunk: bytes::Bytes = chunk;
        got.extend_from_slice(chunk.as_ref());
        if !crashed && got.len() > data.len() / 3 {
            h.crash(5).await; // holds about 3/8 of the blocks
            crashed = true;
        }
    }
    assert!(crashed);
    assert!(got == data, "bytes differ after the crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_blocks_are_stored_once_and_unreferenced_ones_are_collected() {
    let h = ring("blk-gc", Duration::from_secs(2)).await;
    // B shares its first 4 blocks with A and has 4 of its own.
    let a = content(5, 0, 8 * BLOCK);
    let mut b = a[..4 * BLOCK].to_vec();
    b.extend(content(6, 0, 4 * BLOCK));
    assert_eq!(h.put(0, "a", a.clone()).await.status().as_u16(), 201);
    assert_eq!(h.put(1, "b", b.clone()).await.status().as_u16(), 201);
    // 8 + 4 distinct blocks, 3 copies each. A copy that landed beside its holders (a write
    // racing a successor-list update) is dropped by repair once the holders confirm theirs.
    wait_until(
        "8 + 4 distinct blocks, 3 copies each",
        Duration::from_secs(30),
        || async { blocks_per_peer(&h).await.iter().sum::<u64>() == 12 * 3 },
    )
    .await;
    assert_eq!(h.delete(2, "a").await, 204);
    // A's own 4 blocks go (after the 2 s lease); the 4 shared ones stay for B.
    wait_until(
        "A's unshared blocks collected",
        Duration::from_secs(30),
        || async { blocks_per_peer(&h).await.iter().sum::<u64>() == 8 * 3 },
    )
    .await;
    assert!(metric_sum(&h, "chordnet_blocks_collected_total").await >= 12.0);
    let (status, got) = h.get(3, "b").await;
    assert_eq!(status, 200);
    assert!(got == b, "B changed");
    assert_eq!(h.get(3, "a").await.0, 404);
    // An overwrite frees the old version's blocks too.
    let b2 = content(7, 0, 3 * BLOCK);
    assert_eq!(h.put(4, "b", b2.clone()).await.status().as_u16(), 200);
    wait_until(
        "B's old blocks collected",
        Duration::from_secs(30),
        || async { blocks_per_peer(&h).await.iter().sum::<u64>() == 3 * 3 },
    )
    .await;
    assert!(h.get(5, "b").await.1 == b2);
}

/// A holder whose data plane hangs (its disk stopped): the reader's call to it times out
/// (`ring.rpc_timeout` before an answer starts) and another holder serves the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stops_answering_is_passed_over_after_the_rpc_timeout() {
    let h = ring("blk-stall", Duration::from_secs(3600)).await;
    let data = content(8, 0, 24 * BLOCK);
    assert_eq!(h.put(0, "st", data.clone()).await.status().as_u16(), 201);
    // The peer responsible for the first block: the one a reader asks first for it.
    let (first, _) = block_digests(&h, 0, "st").await.remove(0);
    let first_id: Id = first[..40].parse().expect("id");
    let stalled = (0..8)
        .find(|i| h.id(*i) == h.true_successor(first_id))
        .expect("a responsible peer");
    let via = (stalled + 1) % 8;
    h.network.stall_data_plane(
        &chordnet::wire::Address::new(harness::address(stalled)),
        true,
    );
    let (status, got) = h.get(via, "st").await;
    assert_eq!(status, 200);
    assert!(got == data, "bytes differ with a stalled holder");
    h.network.stall_data_plane(
        &chordnet::wire::Address::new(harness::address(stalled)),
        false,
    );
}
