//! Many and slow API clients (issue 14, "bounded everything"): 5,000 idle connections and 200
//! slowloris connections against one peer do not stop it answering `/healthz` and lookups for
//! other clients; idle connections are closed after `api.idle_timeout` and slow heads after
//! `transport.progress_timeout` (408); past `api.max_connections` a connection is answered 503
//! with `Retry-After` and closed. Real `chordnet serve` processes; every wait is bounded.

use crate::support::cluster;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Whether the server closed `stream` (EOF) within `limit`; what it sent before.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, String::from_utf8_lossy(&got).into_owned());
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Opens `idle` connections that send nothing and `slow` ones that send part of a head.
fn open(api: &str, idle: usize, slow: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let idle = (0..idle)
        .map(|_| TcpStream::connect(api).expect("connect"))
        .collect();
    let slow = (0..slow)
        .map(|_| {
            let mut s = TcpStream::connect(api).expect("connect");
            s.write_all(b"GET /v1/node HTTP/1.1\r\nHost: x\r\n")
                .expect("part of a head");
            s
        })
        .collect();
    (idle, slow)
}

/// The first peer's `/metrics` (empty when it does not answer).
async fn scrape(c: &Cluster) -> String {
    match c.http.get(c.peers[0].url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn open_connections(c: &Cluster) -> f64 {
    metric(&scrape(c).await, "chordnet_api_connections")
}

/// Capacity: with time-outs long enough not to interfere, 5,000 idle and 200 slowloris
/// connections are all taken, other clients are served meanwhile, memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_and_slow_connections_do_not_stop_the_api() {
    let limit = chordnet::fsutil::raise_open_files_limit().expect("open-files limit");
    const IDLE: usize = 5_000;
    const SLOW: usize = 200;
    assert!(
        limit >= (IDLE + SLOW + 500) as u64,
        "this test needs {} open files; the hard limit is {limit}",
        IDLE + SLOW + 500
    );
    let c = Cluster::start_each("api-load", 1, |_| {
        vec![
            ("CHORDNET_API__IDLE_TIMEOUT".into(), "10m".into()),
            ("CHORDNET_TRANSPORT__PROGRESS_TIMEOUT".into(), "10m".into()),
        ]
    })
    .converged()
    .await;
    let peer = &c.peers[0];
    let pid = peer.child.as_ref().expect("running").id();
    let before = rss_kib(pid);
    let opened = Instant::now();
    let api = peer.api.clone();
    let (idle, slow) = tokio::task::spawn_blocking(move || open(&api, IDLE, SLOW))
        .await
        .expect("opened");
    wait_for(
        "the peer counts every connection",
        Duration::from_secs(120),
        || async { open_connections(&c).await >= (IDLE + SLOW) as f64 },
    )
    .await;
    let held = rss_kib(pid);
    println!(
        "{} connections open after {:?}; RSS {} KiB -> {} KiB (+{} B per connection)",
        IDLE + SLOW,
        opened.elapsed(),
        before,
        held,
        (held.saturating_sub(before) * 1024) / (IDLE + SLOW) as u64
    );
    // Other clients are served meanwhile.
    for i in 0..20 {
        let health = c
            .http
            .get(peer.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status().as_u16(), 200);
        let lookup = c
            .http
            .get(peer.url(&format!("/v1/lookup/key-{i}")))
            .send()
            .await
            .expect("lookup");
        assert_eq!(lookup.status().as_u16(), 200);
    }
    // Bounded memory: well under 64 KiB a connection.
    assert!(
        held.saturating_sub(before) < (IDLE + SLOW) as u64 * 64,
        "RSS grew from {before} KiB to {held} KiB"
    );
    drop((idle, slow));
    wait_for(
        "the closed connections are uncounted",
        Duration::from_secs(30),
        || async { open_connections(&c).await < 10.0 },
    )
    .await;
}

/// Time-outs: idle connections are closed after api.idle_timeout, and slow heads answered 408
/// after transport.progress_timeout; every one of them, counted in the metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slow_heads_are_closed_by_their_time_outs() {
    const IDLE: usize = 200;
    const SLOW: usize = 50;
    let c = Cluster::start_each("api-timeouts", 1, |_| {
        vec![
            ("CHORDNET_API__IDLE_TIMEOUT".into(), "2s".into()),
            ("CHORDNET_TRANSPORT__PROGRESS_TIMEOUT".into(), "2s".into()),
        ]
    })
    .converged()
    .await;
    let api = c.peers[0].api.clone();
    let (mut idle, mut slow) = tokio::task::spawn_blocking(move || open(&api, IDLE, SLOW))
        .await
        .expect("opened");
    let slow_results = tokio::task::spawn_blocking(move || {
        slow.iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(20)))
            .collect::<Vec<_>>()
    });
    let idle_results = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(20)))
            .collect::<Vec<_>>()
    });
    for (closed, answer) in slow_results.await.expect("slow") {
        assert!(closed, "a slow head was not closed: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    for (closed, answer) in idle_results.await.expect("idle") {
        assert!(closed, "an idle connection was not closed");
        assert!(answer.is_empty(), "an idle connection got {answer:?}");
    }
    let metrics = scrape(&c).await;
    assert!(
        metric(&metrics, "chordnet_api_connections_timed_out_total") >= (IDLE + SLOW) as f64,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_gets_503_with_retry_after() {
    let c = Cluster::start_each("api-shed", 1, |_| {
        vec![("CHORDNET_API__MAX_CONNECTIONS".into(), "20".into())]
    })
    .converged()
    .await;
    let peer = &c.peers[0];
    let api = peer.api.clone();
    // The cluster's own client may hold a keep-alive connection or two: fill up to the limit.
    let mut held = Vec::new();
    let answer = loop {
        assert!(held.len() <= 20, "no connection was refused past the limit");
        let mut s = TcpStream::connect(&api).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut got = vec![0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let n = s.read(&mut got).expect("an answer");
        let text = String::from_utf8_lossy(&got[..n]).into_owned();
        if text.starts_with("HTTP/1.1 503") {
            break text;
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        held.push(s);
    };
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer}"
    );
    // Connections already open keep working.
    let s = held.last_mut().expect("one held");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut got = vec![0u8; 4096];
    let n = s.read(&mut got).expect("answer");
    assert!(got[..n].starts_with(b"HTTP/1.1 200"));
    // Once some close, new ones are taken again.
    held.truncate(held.len() - 5);
    wait_for(
        "a new connection is served",
        Duration::from_secs(10),
        || async {
            let mut s = TcpStream::connect(&api).expect("connect");
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut got = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = s.read_to_end(&mut got);
            got.starts_with(b"HTTP/1.1 200")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_transfers_an_upload_or_download_gets_503_at_once() {
    let c = Cluster::start_each("api-transfers", 1, |_| {
        vec![("CHORDNET_API__MAX_TRANSFERS".into(), "2".into())]
    })
    .converged()
    .await;
    let peer = &c.peers[0];
    let api = peer.api.clone();
    let transfers = || async { metric(&scrape(&c).await, "chordnet_api_transfers") };
    // Two uploads whose bodies trickle: both slots taken.
    let slow: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = TcpStream::connect(&api).expect("connect");
            let head = format!(
                "PUT /v1/files/slow-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).expect("head");
            s.write_all(&[7u8; 1000]).expect("some body");
            s
        })
        .collect();
    wait_for("both slots taken", Duration::from_secs(10), || async {
        transfers().await == 2.0
    })
    .await;
    // A third upload and a download are refused at once; other requests go on.
    let put = c
        .http
        .put(peer.url("/v1/files/third"))
        .body(vec![1u8; 1000])
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 503);
    assert_eq!(
        put.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = put.text().await.expect("problem");
    assert!(body.contains("api.max_transfers"), "{body}");
    let get = c
        .http
        .get(peer.url("/v1/files/slow-0"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status().as_u16(), 503);
    let health = c
        .http
        .get(peer.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let head = c
        .http
        .head(peer.url("/v1/files/none"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status().as_u16(), 404);
    // The slow clients go away: the slots come back.
    drop(slow);
    wait_for(
        "an upload is taken again",
        Duration::from_secs(20),
        || async {
            let r = c
                .http
                .put(peer.url("/v1/files/later"))
                .body(b"later".to_vec())
                .send()
                .await;
            matches!(r, Ok(r) if r.status().as_u16() == 201)
        },
    )
    .await;
    assert_eq!(transfers().await, 0.0);
    let text = scrape(&c).await;
    assert!(
        metric(&text, "chordnet_api_transfers_shed_total") >= 2.0,
        "{text}"
    );
}
