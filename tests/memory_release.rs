//! `memory.release_code_interval`: a `chordnet serve` peer gives back the executable pages its
//! start-up left resident, and keeps working from the pages it maps again (real processes).

use std::time::{Duration, Instant};

use crate::support::cluster::{Cluster, memory, wait_for};

const RELEASED: &str = "chordnet_code_released_bytes_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_peer_gives_back_its_start_up_pages_and_runs_on() {
    // Peers 0 and 1 release 1 s after they are first ready; peer 2 never does.
    let c = Cluster::start_each("memory-release", 3, |i| {
        let every = if i == 2 { "0s" } else { "1s" };
        vec![(
            "CHORDNET_MEMORY__RELEASE_CODE_INTERVAL".to_string(),
            every.to_string(),
        )]
    })
    .converged()
    .await;
    let all_ready = Instant::now();
    for i in 0..2 {
        wait_for("the first release", Duration::from_secs(30), || async {
            c.metric(&c.peers[i], RELEASED).await.unwrap_or(0.0) > 0.0
        })
        .await;
    }
    // Right after the releases: the executable's resident pages of a released peer are what it
    // ran since, less than what the peer that kept everything holds (9.3–9.9 against 14.0–14.1
    // MiB in four runs here; the test build is not laid out for it, and other peers of the
    // same executable keep pages cached that faults then map around what they need).
    let pids = c.pids();
    let (kept, released) = (memory(pids[2], "RssFile:"), memory(pids[0], "RssFile:"));
    println!("file-backed RSS: {released} bytes after releases, {kept} without");
    assert!(
        released + (1 << 20) < kept,
        "file-backed RSS {released} bytes after releases, {kept} without"
    );
    let released = c.metric(&c.peers[0], RELEASED).await.unwrap_or(0.0);
    // Start-up leaves megabytes of code resident: configuration, TLS and transport set-up.
    assert!(released > 2.0 * 1048576.0, "released {released} bytes");
    // Peer 2 was ready when the ring converged. Were its `0s` not honoured, it would release
    // 1 s later (or, with the default interval, AFTER_START later): its counter stays at 0
    // past both.
    let past = all_ready + chordnet::memory::AFTER_START + Duration::from_secs(2);
    tokio::time::sleep_until(past.into()).await;
    assert_eq!(
        c.metric(&c.peers[2], RELEASED).await,
        Some(0.0),
        "memory.release_code_interval = 0s releases nothing"
    );

    // The released peers run on: every peer's lookups, a file stored through a released peer
    // and read through the others.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = c.put(&c.peers[0], "after-release.bin", &data).await;
    assert_eq!(status, 201, "{body}");
    for p in &c.peers {
        let got = c.fetch(p, "after-release.bin").await;
        assert_eq!(got.as_deref(), Some(&data[..]), "through {}", p.api);
        let (status, body) = c
            .get(&p.url("/v1/lookup/after-release.bin"))
            .await
            .expect("lookup answers");
        assert_eq!(status, 200, "{body}");
    }
    assert!(c.rings_agree().await);
}

/// The list build.rs hands the image's linker: symbol names only (lld would take any line as a
/// name and quietly ignore what it does not find), the idle ones first.
#[test]
fn the_hot_symbol_list_holds_symbol_names() {
    let list = include_str!("../link/hot-symbols.txt");
    let names: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(names.len() > 100, "{} names", names.len());
    for n in &names {
        assert!(
            !n.contains(char::is_whitespace) && n.is_ascii(),
            "not a symbol name: {n:?}"
        );
    }
    // The peer's own idle work is in it: its ring driver and the stabilization step.
    assert!(
        names
            .iter()
            .any(|n| n.contains("8chordnet") && n.contains("6driver"))
    );
    assert!(names.iter().any(|n| n.contains("9stabilize")));
}
