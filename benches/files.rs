//! `cargo bench --bench files`: files through the REST API of an 8-peer ring of real processes
//! (blocks of 1 MiB, 3 copies each, write quorum 2), against the physical limit measured in
//! the same run: the same file copied by `cp` on the same disk, and up and down over loopback
//! through a plain HTTP server. Prints a Markdown table: throughput and its ratio to the
//! loopback copy, time to first byte of the download, peak RSS of every peer. Then a second
//! table: the download of the same file from that ring (every block on 3 peers, each block
//! taken from whichever answers first) against a ring of 8 where only one peer holds and
//! answers for each block (`ring.replicas = 1`, quorums 1), as a ratio.
//!
//! Sizes in MiB from `CHORDNET_BENCH_FILES_MIB` (comma-separated; default `1024`; the README
//! also has `1024,4096`). Needs about 6 × the largest size of free disk under the temp dir.

#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::put;
use cluster::{Cluster, big_file_mib, memory};
use futures_util::StreamExt;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1 << 20;

fn main() {
    let sizes: Vec<u64> = std::env::var("CHORDNET_BENCH_FILES_MIB")
        .unwrap_or_else(|_| "1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| file | `cp` | loopback HTTP up / down | ring upload (× loopback) | ring download (× loopback) | first byte | peak RSS per peer (idle) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let mut replicas = Vec::new();
    for mib in sizes {
        replicas.push(rt.block_on(one(mib)));
    }
    println!();
    println!("| file | download, 3 replicas answer | download, 1 replica answers | 3 / 1 |");
    println!("|---:|---:|---:|---:|");
    for (mib, three, single) in replicas {
        println!(
            "| {mib} MiB | {three:.0} MiB/s | {single:.0} MiB/s | {:.2} |",
            three / single
        );
    }
}

/// Starts an 8-peer ring with `env` added to every peer, uploads `source` to it and downloads
/// it through another peer.
async fn through_ring(
    http: &reqwest::Client,
    name: &str,
    env: Vec<(String, String)>,
    source: &Path,
    sha: &str,
) -> Transfer {
    let size = std::fs::metadata(source).expect("source").len();
    let c = Cluster::start_each(name, 8, |_| env.clone())
        .converged()
        .await;
    let idle = c.pids().iter().map(|p| memory_mib(*p, "VmRSS")).collect();
    let t = Instant::now();
    let up = http
        .put(c.peers[0].url("/v1/files/bench.bin"))
        .header("content-length", size)
        .body(file_body(source))
        .send()
        .await
        .expect("ring upload");
    let status = up.status();
    let answer: serde_json::Value = up.json().await.unwrap_or_default();
    assert_eq!(status, 201, "{answer}");
    let ring_up = rate(size, t.elapsed());
    let (n, got, first, took) = download(http, &c.peers[4].url("/v1/files/bench.bin")).await;
    assert_eq!((n, got.as_str()), (size, sha));
    Transfer {
        up: ring_up,
        down: rate(size, took),
        first,
        idle,
        ring: c,
    }
}

/// What [`through_ring`] measured, and its ring (still running: peak RSS is read from it).
struct Transfer {
    up: f64,
    down: f64,
    first: Duration,
    /// Each peer's RSS in MiB once converged, before the transfers.
    idle: Vec<u64>,
    ring: Cluster,
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

/// Writes the source file; its SHA-256.
async fn write_source(path: &Path, mib: u64) -> String {
    let mut f = tokio::fs::File::create(path).await.expect("source file");
    let mut h = sha2::Sha256::new();
    for k in 0..mib {
        let m = big_file_mib(k);
        h.update(&m);
        f.write_all(&m).await.expect("write source");
    }
    f.sync_all().await.expect("sync source");
    chordnet::files::spool::hex(&h.finalize())
}

fn file_body(path: &Path) -> reqwest::Body {
    let len = std::fs::metadata(path).expect("source").len();
    reqwest::Body::wrap_stream(
        chordnet::transport::Body::from_file(path.to_path_buf(), len).into_stream(),
    )
}

/// Downloads `url`, hashing as it streams: (bytes, sha256, time to first byte, total time).
async fn download(http: &reqwest::Client, url: &str) -> (u64, String, Duration, Duration) {
    let t = Instant::now();
    let resp = http.get(url).send().await.expect("download");
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut first = None;
    let mut n = 0u64;
    let mut h = sha2::Sha256::new();
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        let c = c.expect("body");
        first.get_or_insert_with(|| t.elapsed());
        n += c.len() as u64;
        h.update(&c);
    }
    let total = t.elapsed();
    (
        n,
        chordnet::files::spool::hex(&h.finalize()),
        first.unwrap_or(total),
        total,
    )
}

/// A plain HTTP server over loopback: `PUT /f` writes the body to a file, `GET /f` streams it.
async fn plain_server(dir: PathBuf) -> String {
    async fn put_f(State(dir): State<PathBuf>, body: axum::body::Body) -> &'static str {
        let mut f = tokio::fs::File::create(dir.join("plain.bin"))
            .await
            .expect("plain file");
        let mut s = body.into_data_stream();
        while let Some(c) = s.next().await {
            f.write_all(&c.expect("body")).await.expect("write");
        }
        f.sync_all().await.expect("sync");
        "ok"
    }
    async fn get_f(State(dir): State<PathBuf>) -> axum::body::Body {
        let path = dir.join("plain.bin");
        let len = std::fs::metadata(&path).expect("plain file").len();
        axum::body::Body::from_stream(chordnet::transport::Body::from_file(path, len).into_stream())
    }
    let app = Router::new()
        .route("/f", put(put_f).get(get_f))
        .with_state(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/f")
}

/// `kind` (VmRSS or VmHWM) of a process, in MiB.
fn memory_mib(pid: u32, kind: &str) -> u64 {
    memory(pid, kind) >> 20
}

/// One size: prints its row of the first table; (MiB, download MiB/s with 3 replicas, with 1).
async fn one(mib: u64) -> (u64, f64, f64) {
    let size = mib * MIB;
    let dir = std::env::temp_dir().join(format!("chordnet-bench-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let source = dir.join("source.bin");
    let sha = write_source(&source, mib).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("client");

    // The physical limits, measured now on this machine.
    let t = Instant::now();
    let copied = std::process::Command::new("cp")
        .arg(&source)
        .arg(dir.join("cp.bin"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let cp = rate(size, t.elapsed());
    let _ = std::fs::remove_file(dir.join("cp.bin"));
    let plain = plain_server(dir.clone()).await;
    let t = Instant::now();
    let r = http
        .put(&plain)
        .header("content-length", size)
        .body(file_body(&source))
        .send()
        .await
        .expect("plain upload");
    assert!(r.status().is_success());
    let plain_up = rate(size, t.elapsed());
    let (n, got, _, took) = download(&http, &plain).await;
    assert_eq!((n, got.as_str()), (size, sha.as_str()));
    let plain_down = rate(size, took);
    let _ = std::fs::remove_file(dir.join("plain.bin"));

    // The ring.
    let limit = (
        "CHORDNET_FILES__MAX_FILE_SIZE".to_string(),
        format!("{}MiB", mib + 64),
    );
    let Transfer {
        up: ring_up,
        down: ring_down,
        first,
        idle,
        ring: c,
    } = through_ring(&http, "bench-files", vec![limit.clone()], &source, &sha).await;
    let pids = c.pids();
    let peaks: Vec<String> = pids
        .iter()
        .zip(&idle)
        .map(|(p, i)| format!("{} ({i})", memory_mib(*p, "VmHWM")))
        .collect();
    println!(
        "| {mib} MiB | {cp:.0} MiB/s | {plain_up:.0} / {plain_down:.0} MiB/s | {ring_up:.0} MiB/s ({:.2}) | {ring_down:.0} MiB/s ({:.2}) | {} ms | {} MiB |",
        ring_up / plain_up,
        ring_down / plain_down,
        first.as_millis(),
        peaks.join(", ")
    );
    drop(c);
    let one_copy = [
        "RING__REPLICAS",
        "FILES__WRITE_QUORUM",
        "FILES__READ_QUORUM",
    ]
    .iter()
    .map(|k| (format!("CHORDNET_{k}"), "1".to_string()))
    .chain([limit])
    .collect();
    let single = through_ring(&http, "bench-files-1", one_copy, &source, &sha)
        .await
        .down;
    let _ = std::fs::remove_dir_all(&dir);
    (mib, ring_down, single)
}
