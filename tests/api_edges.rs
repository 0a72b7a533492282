//! The API at its edges, against a real `chordnet serve` process and raw HTTP/1.1 (what a
//! library client would never send): every error is a problem document (also the heads hyper
//! would refuse itself: `src/api/front.rs`), bodies cannot hold a peer up (issue 10, items 3
//! and 17). Every wait is bounded.

use crate::support::cluster;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster::*;

/// Sends `head` (and `body`) on a fresh connection and returns what came back until the
/// server closed it or `limit` passed.
fn exchange(api: &str, head: &str, body: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(api).expect("connect");
    stream.set_read_timeout(Some(limit)).expect("timeout");
    stream.write_all(head.as_bytes()).expect("send head");
    let _ = stream.write_all(body);
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn is_problem(response: &str) -> bool {
    response
        .lines()
        .any(|l| l.eq_ignore_ascii_case("content-type: application/problem+json"))
}

/// Item 17: errors the router's extractors and limits produce are problem documents with the
/// right status, and a refused upload is refused before its body is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_a_client_sees_is_a_problem_document() {
    let c = Cluster::start_converged("edges-problems", 1).await;
    let api = c.peers[0].api.clone();
    let limit = Duration::from_secs(10);

    // Invalid UTF-8 in a percent-encoded name.
    let r = exchange(
        &api,
        &format!("GET /v1/files/%FF%FE HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"),
        b"",
        limit,
    );
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(is_problem(&r), "{r}");

    // A join body past the JSON limit is 413, not 400.
    let body = format!(r#"{{"bootstrap": "{}"}}"#, "x".repeat(3 << 20));
    let r = exchange(
        &api,
        &format!(
            "POST /v1/ring/join HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body.as_bytes(),
        limit,
    );
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(is_problem(&r), "{r}");

    // An upload announced above files.max_file_size (1 MiB here) with Expect: 100-continue
    // gets its 413 at once, not a 100 Continue.
    let r = exchange(
        &api,
        &format!(
            "PUT /v1/files/big.bin HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            2 << 20
        ),
        b"",
        limit,
    );
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(is_problem(&r), "{r}");
    assert!(r.contains("files.max_file_size"), "{r}");
}

/// Item 17, the part hyper used to answer itself with empty bodies: heads it cannot take (bad
/// `Content-Length`, a 64 KB path, a huge head, too many fields, another HTTP version, not
/// HTTP at all) get problem documents, also after good requests on the same connection, and
/// pipelined requests with bodies (sized and chunked) still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_would_refuse_get_problem_documents_too() {
    let c = Cluster::start_converged("edges-heads", 1).await;
    let api = c.peers[0].api.clone();
    let limit = Duration::from_secs(10);
    let many_fields = "A: b\r\n".repeat(101);
    let cases: Vec<(String, u16)> = vec![
        (
            format!("PUT /v1/files/a HTTP/1.1\r\nHost: {api}\r\nContent-Length: abc\r\n\r\n"),
            400,
        ),
        (
            format!("PUT /v1/files/a HTTP/1.1\r\nHost: {api}\r\nContent-Length: -1\r\n\r\n"),
            400,
        ),
        (
            format!(
                "PUT /v1/files/a HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "GET /v1/lookup/{} HTTP/1.1\r\nHost: {api}\r\n\r\n",
                "k".repeat(64 << 10)
            ),
            414,
        ),
        (
            format!(
                "GET /v1/node HTTP/1.1\r\nHost: {api}\r\nX-Big: {}\r\n\r\n",
                "b".repeat(100 << 10)
            ),
            431,
        ),
        (
            format!("GET /v1/node HTTP/1.1\r\nHost: {api}\r\n{many_fields}\r\n"),
            431,
        ),
        (format!("GET /v1/node HTTP/9.1\r\nHost: {api}\r\n\r\n"), 400),
        ("\u{16}\u{3}\u{1} not HTTP at all\r\n\r\n".to_string(), 400),
    ];
    for (head, status) in &cases {
        let r = exchange(&api, head, b"", limit);
        assert_eq!(
            status_of(&r),
            *status,
            "{}: {r}",
            &head[..40.min(head.len())]
        );
        assert!(is_problem(&r), "{r}");
        // After a good request on the same connection: its answer, then the problem.
        let good = format!("GET /healthz HTTP/1.1\r\nHost: {api}\r\n\r\n");
        let r = exchange(&api, &format!("{good}{head}"), b"", limit);
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        let second = r
            .find("\r\n\r\n{\"alive\":true}")
            .map(|i| &r[i + 18..])
            .unwrap_or("");
        assert_eq!(status_of(second), *status, "{r}");
        assert!(is_problem(second), "{r}");
    }

    // A sized upload, a chunked upload and their downloads, pipelined on one connection.
    let pipelined = format!(
        "PUT /v1/files/sized.txt HTTP/1.1\r\nHost: {api}\r\nContent-Length: 5\r\n\r\nhello\
         PUT /v1/files/chunked.txt HTTP/1.1\r\nHost: {api}\r\nTransfer-Encoding: chunked\r\n\r\n\
         3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
         GET /v1/files/sized.txt HTTP/1.1\r\nHost: {api}\r\n\r\n\
         GET /v1/files/chunked.txt HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    );
    let r = exchange(&api, &pipelined, b"", limit);
    let statuses: Vec<u16> = r
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| status_of(&r[i..]))
        .collect();
    assert_eq!(statuses, [201, 201, 200, 200], "{r}");
    assert!(r.contains("\r\n\r\nhello"), "{r}");
    assert!(r.ends_with("\r\n\r\nabcde"), "{r}");
}

/// Item 3: a client holding an upload body open neither keeps the peer alive past SIGTERM nor
/// holds its connection for ever: bodies have a read time-out (`transport.progress_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_held_open_times_out_and_does_not_hold_shutdown_up() {
    let env = |_| {
        vec![(
            "CHORDNET_TRANSPORT__PROGRESS_TIMEOUT".to_string(),
            "1s".to_string(),
        )]
    };
    let mut c = Cluster::start_each("edges-slow-body", 1, env)
        .converged()
        .await;
    let api = c.peers[0].api.clone();
    // Declares 1000 bytes, sends 10, then nothing: answered with 408 once a second passes
    // without a byte.
    let started = Instant::now();
    let r = exchange(
        &api,
        &format!("PUT /v1/files/slow.bin HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1000\r\n\r\n"),
        b"0123456789",
        Duration::from_secs(15),
    );
    assert_eq!(status_of(&r), 408, "{r}");
    assert!(is_problem(&r), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10), "{r}");

    // Two more held open while the peer is told to stop: it exits, bounded.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&api).expect("connect");
        let head = format!(
            "PUT /v1/files/held.bin HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1000\r\n\r\n0123"
        );
        s.write_all(head.as_bytes()).expect("send");
        held.push(s);
    }
    let pid = c.peers[0].child.as_ref().expect("running").id();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let stopping = Instant::now();
    let status = c.peers[0].terminate_started();
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        stopping.elapsed()
    );
    drop(held);
}

/// Issue 17: `GET /v1/lookup/{key}` with a plain key is answered before the router (no
/// routing, no middleware); a key the router must decode, a path that is not the route and a
/// method the route does not take still go through the router, and the answers agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_fast_path_answers_as_the_router_does() {
    let c = Cluster::start_converged("edges-fast-lookup", 2).await;
    let p = &c.peers[0];
    let (status, fast) = c.get(&p.url("/v1/lookup/hello")).await.expect("fast");
    assert_eq!(status, 200, "{fast}");
    // "%6F" is "o": the router decodes it, the fast path leaves such keys to it.
    let (status, routed) = c.get(&p.url("/v1/lookup/hell%6F")).await.expect("routed");
    assert_eq!(status, 200, "{routed}");
    assert_eq!(fast["key"], "hello");
    for field in ["key", "id", "node"] {
        assert_eq!(fast[field], routed[field], "{field}: {fast} {routed}");
    }
    // A key with an encoded slash is one key; a raw slash is no route.
    let (status, slash) = c.get(&p.url("/v1/lookup/a%2Fb")).await.expect("slash");
    assert_eq!(
        (status, slash["key"].as_str()),
        (200, Some("a/b")),
        "{slash}"
    );
    let (status, none) = c.get(&p.url("/v1/lookup/a/b")).await.expect("no route");
    assert_eq!(status, 404, "{none}");
    let (status, _) = c.get(&p.url("/v1/lookup/")).await.expect("empty key");
    assert_eq!(status, 404);
    let r = c
        .http
        .post(p.url("/v1/lookup/hello"))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(r.status().as_u16(), 405);
}
