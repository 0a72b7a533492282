//! Real `chordnet serve` processes whose peer traffic all goes through a real `nats-server`
//! (`transport.kind = "nats"`, set through `CHORDNET_TRANSPORT__KIND`): no peer port is even
//! named (addresses are subjects). The ring forms, lookups name the true successor, files of
//! several sizes (one over ten times the broker's `max_payload`) cross between peers, two
//! `kill -9`s are noticed through the broker's "no responders" and lose nothing, a SIGTERM
//! hands off; a broker restart in the middle of uploads loses no acknowledged upload and
//! `/readyz` goes 503 and back. Every wait is bounded and polls a condition.

use crate::support::cluster;
use crate::support::conformance_kit;
use crate::support::nats_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chordnet::id::Id;
use cluster::{Cluster, PeerProcess, wait_for};
use nats_server::NatsServer;

/// The NATS transport under the conformance kit's test handlers, on `broker`.
struct Under(String);

impl conformance_kit::Under for Under {
    fn factory(&self) -> Arc<dyn chordnet::transport::TransportFactory> {
        let mut config = conformance_kit::config();
        config.nats.url = self.0.clone();
        config.nats.ring_name = "raw".into();
        Arc::new(chordnet::transport::nats::NatsTransport::new(&config))
    }
    fn endpoint(&self, i: usize) -> (std::net::SocketAddr, String) {
        (([0, 0, 0, 0], 0).into(), format!("chordnet.raw.peer.p{i}"))
    }
    fn nobody(&self) -> String {
        "chordnet.raw.peer.nobody".into()
    }
}

/// A put sent by hand, message by message: duplicates are dropped, a gap fails the transfer
/// (the handler sees its body fail, never a short or reordered one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_messages_are_taken_in_order_duplicates_dropped_and_a_gap_fails() {
    use async_nats::HeaderMap;
    use chordnet::transport::nats::headers::{self as h, ACK, BODY, DATA, HEAD, KIND, SEQ};
    use futures_util::StreamExt;

    let broker = NatsServer::start("raw");
    let under = Under(broker.url());
    let b = conformance_kit::bench(&under, 0, None).await;
    let nc = async_nats::connect(broker.url()).await.expect("connect");
    let put = |name: &'static str, pieces: Vec<(u64, &'static [u8])>| {
        let nc = nc.clone();
        let to = b.server.address.to_string();
        async move {
            let meta = conformance_kit::meta_of(name, Id::hash(name), 6);
            let head = serde_json::to_vec(&meta).expect("json");
            let inbox = nc.new_inbox();
            let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
            // The server subscribed on its own connection: until the broker has that, it
            // answers "no responders" (a status message); try again, bounded.
            let mut tries = 0;
            let ack = loop {
                let mut first = HeaderMap::new();
                h::set(&mut first, KIND, DATA);
                h::set(&mut first, SEQ, 0);
                h::set(&mut first, HEAD, head.len());
                h::set(&mut first, BODY, 6);
                let payload = bytes::Bytes::from(head.clone());
                let subject = format!("{to}.blob.put");
                nc.publish_with_reply_and_headers(subject, inbox.clone(), first, payload)
                    .await
                    .expect("publish");
                let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                    .await
                    .expect("an ack in time")
                    .expect("a message");
                if m.status.is_none() {
                    break m;
                }
                tries += 1;
                assert!(tries < 100, "the server never subscribed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(h::get(&ack, KIND), Some(ACK));
            let session = ack.reply.clone().expect("the server's inbox");
            for (seq, data) in pieces {
                let mut m = HeaderMap::new();
                h::set(&mut m, KIND, DATA);
                h::set(&mut m, SEQ, seq);
                nc.publish_with_headers(session.clone(), m, bytes::Bytes::from_static(data))
                    .await
                    .expect("publish");
            }
            // The answer: the first message with a status.
            loop {
                let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                    .await
                    .expect("an answer in time")
                    .expect("a message");
                if let Some(status) = h::get(&m, h::STATUS) {
                    return status.to_owned();
                }
            }
        }
    };
    // 1, 1 again (dropped), 2: six bytes in order.
    let status = put("dups", vec![(1, b"abc"), (1, b"abc"), (2, b"def")]).await;
    assert_eq!(status, h::OK);
    let stored = b
        .seen
        .objects
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&Id::hash("dups"))
        .cloned();
    assert_eq!(
        stored.map(|(_, data)| data),
        Some(bytes::Bytes::from_static(b"abcdef"))
    );
    // 1, then 3: a gap.
    let status = put("gap", vec![(1, b"abc"), (3, b"def")]).await;
    assert_eq!(status, h::REFUSED);
    let puts = b
        .seen
        .puts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (got, outcome) = puts.last().cloned().expect("the handler saw the put");
    assert_eq!(got, 3);
    let failure = outcome.expect_err("a gap fails the body").to_string();
    assert!(failure.contains("gap"), "{failure}");
}

/// A small `max_payload`, so that a file of a few hundred KiB is many messages.
const MAX_PAYLOAD: usize = 64 << 10;

/// Deterministic content that is not a repeating pattern of any short period.
fn content(len: usize, salt: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn subject(ring: &str, i: usize) -> String {
    format!("chordnet.{ring}.peer.peer-{i}")
}

/// Starts peer `i` of ring `ring` on the broker `url` (no `--listen`: nothing to open).
fn spawn_nats(
    c: &Cluster,
    api_port: u16,
    ring: &str,
    i: usize,
    url: &str,
    extra: &[(&str, &str)],
) -> PeerProcess {
    let mut env = vec![
        ("CHORDNET_TRANSPORT__KIND", "nats"),
        ("CHORDNET_NATS__URL", url),
        ("CHORDNET_NATS__RING_NAME", ring),
        ("CHORDNET_FILES__MAX_FILE_SIZE", "8MiB"),
    ];
    env.extend_from_slice(extra);
    let bootstrap = subject(ring, 0);
    cluster::spawn_logged(
        &subject(ring, i),
        &format!("127.0.0.1:{api_port}"),
        &c.root.join(format!("peer-{i}")),
        (i > 0).then_some(&bootstrap),
        &env,
        Some(&c.root.join(format!("peer-{i}.log"))),
    )
}

fn start(name: &str, n: usize, url: &str) -> Cluster {
    start_with(name, n, url, &[])
}

fn start_with(name: &str, n: usize, url: &str, extra: &[(&str, &str)]) -> Cluster {
    let (mut c, ports) = Cluster::empty(name, n);
    for i in 0..n {
        let p = spawn_nats(&c, ports[2 * i + 1], name, i, url, extra);
        c.peers.push(p);
    }
    c
}

/// The sum of `metric` over the running peers' `/metrics`.
async fn metric_sum(c: &Cluster, metric: &str) -> f64 {
    let mut sum = 0.0;
    for p in c.running() {
        let Ok(resp) = c.http.get(p.url("/metrics")).send().await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_ring_forms_moves_files_and_notices_crashes_through_no_responders() {
    const PEERS: usize = 8;
    let broker = NatsServer::start_with("ring", Some(MAX_PAYLOAD));
    let mut c = start("natsring", PEERS, &broker.url()).converged().await;

    // Lookups from every peer name the true successor.
    for k in 0..64 {
        let key = format!("nats-key-{k}");
        let asked = &c.peers[k % PEERS];
        let (status, found) = c
            .get(&asked.url(&format!("/v1/lookup/{key}")))
            .await
            .expect("lookup answered");
        assert_eq!(status, 200, "{found}");
        let expected = c.true_successor(Id::hash(key.as_bytes()));
        assert_eq!(found["node"]["id"], expected.to_string(), "{key}: {found}");
    }
    let (_, node) = c.get(&c.peers[0].url("/v1/node")).await.expect("node");
    assert_eq!(node["transport"], "nats", "{node}");

    // Files of several sizes: one object of 14 × max_payload, and one of blocks (each block
    // 16 × max_payload), up through one peer and down through another.
    let mut files = Vec::new();
    for (k, len) in [1usize, 1000, 40_000, 14 * MAX_PAYLOAD, (3 << 20) + 17]
        .into_iter()
        .enumerate()
    {
        let name = format!("nats-file-{k}.bin");
        let data = content(len, k as u64);
        let (status, body) = c.put(&c.peers[k % PEERS], &name, &data).await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["size"], len, "{body}");
        let got = c.fetch(&c.peers[(k + 3) % PEERS], &name).await;
        assert!(
            got.as_ref() == Some(&data),
            "{name}: downloaded bytes differ"
        );
        files.push((name, data));
    }

    // kill -9 two peers that are not neighbours: the others notice through the broker (its
    // "no responders"), and every acknowledged file still downloads.
    let mut order: Vec<usize> = (0..PEERS).collect();
    order.sort_by_key(|&i| c.peers[i].id());
    let before = metric_sum(&c, "chordnet_peer_failures_detected_total").await;
    let killed = Instant::now();
    c.peers[order[1]].kill();
    c.peers[order[5]].kill();
    wait_for(
        "a peer noticing the crashes",
        Duration::from_secs(30),
        || async { metric_sum(&c, "chordnet_peer_failures_detected_total").await > before },
    )
    .await;
    eprintln!(
        "figure: kill -9 to the first peer noticing over nats: {} ms",
        killed.elapsed().as_millis()
    );
    c.repaired_and_serving("two crashes", &files).await;

    // SIGTERM one more: exit 0 after handing its keys over.
    let status = c.peers[order[3]].terminate();
    assert!(status.success(), "{status:?}");
    c.repaired_and_serving("the leave", &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_acknowledged_upload_and_readiness_comes_back() {
    const PEERS: usize = 4;
    let mut broker = NatsServer::start("restart");
    let c = Arc::new(start("natsrestart", PEERS, &broker.url()).converged().await);

    // Uploads and lookups run through the restart; only acknowledged uploads count.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let c = Arc::clone(&c);
        let stop = Arc::clone(&stop);
        let count = Arc::clone(&count);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut k = 0usize;
            // Bounded by the stop flag (the waits below are bounded), not by a count: while
            // the broker is away every request fails at once, and a count ran out before it
            // came back on a loaded machine.
            while !stop.load(Ordering::SeqCst) {
                let name = format!("during-{k}.bin");
                let data = content(500 + (k % 2000) * 37, 1000 + k as u64);
                // A request may also fail outright (cut by the broker's restart, or the client's
                // time-out on a loaded machine): only a 201 counts.
                let sent = c
                    .http
                    .put(c.peers[k % PEERS].url(&format!("/v1/files/{name}")))
                    .body(data.clone())
                    .send()
                    .await;
                let status = sent.map(|r| r.status().as_u16()).unwrap_or(0);
                if status == 201 {
                    acked.push((name, data));
                    count.fetch_add(1, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = c
                    .get(&c.peers[(k + 1) % PEERS].url(&format!("/v1/lookup/k{k}")))
                    .await;
                k += 1;
            }
            acked
        })
    };
    wait_for(
        "some uploads before the restart",
        Duration::from_secs(30),
        || {
            let n = count.load(Ordering::SeqCst);
            async move { n >= 5 }
        },
    )
    .await;

    // The broker goes away: every peer reports it on /readyz.
    broker.stop();
    wait_for(
        "a peer not ready for lack of its broker",
        Duration::from_secs(30),
        || async {
            match c.get(&c.peers[1].url("/readyz")).await {
                Some((503, body)) => body.to_string().contains("NATS broker"),
                _ => false,
            }
        },
    )
    .await;
    broker.restart();
    wait_for("all ready again", Duration::from_secs(60), || c.all_ready()).await;
    let after = count.load(Ordering::SeqCst);
    wait_for("uploads after the restart", Duration::from_secs(30), || {
        let n = count.load(Ordering::SeqCst);
        async move { n >= after + 5 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let acked = traffic.await.expect("traffic task");
    assert!(!acked.is_empty(), "no upload was acknowledged");
    wait_for(
        "one ring after the restart",
        Duration::from_secs(30),
        || c.rings_agree(),
    )
    .await;
    for (name, data) in &acked {
        let got = c.fetch(&c.peers[0], name).await;
        assert!(got.as_ref() == Some(data), "{name}: lost or changed");
    }
    eprintln!(
        "{} uploads acknowledged across the broker restart, all intact",
        acked.len()
    );
}

/// The ring secret over NATS (issue 14 with issue 13): a signed 3-peer ring forms and moves
/// files through the broker without a single refused message, data plane included (the NATS
/// server hands each data call's carrier, with its authenticator, to the shared layers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_nats_ring_moves_files_without_refusals() {
    let broker = NatsServer::start("signed");
    let dir = std::env::temp_dir().join(format!("chordnet-nats-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("ring-secret");
    std::fs::write(&key, format!("{}\n", "6".repeat(64))).expect("key");
    let key = key.display().to_string();
    let env = [("CHORDNET_SECURITY__RING_SECRET_FILE", key.as_str())];
    let c = start_with("natssigned", 3, &broker.url(), &env)
        .converged()
        .await;
    let data = content(200_000, 9);
    let (status, body) = c.put(&c.peers[0], "signed-over-nats.bin", &data).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        c.fetch(&c.peers[2], "signed-over-nats.bin").await,
        Some(data)
    );
    assert_eq!(
        metric_sum(&c, "chordnet_peer_auth_rejections_total").await,
        0.0
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /v1/ring/join` on a NATS ring takes a peer's subject (the only address a NATS peer
/// has); a `host:port` there is refused with a problem naming the expected form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_peer_joins_through_the_api_by_subject() {
    let broker = NatsServer::start("apijoin");
    let c = start("apijoin", 2, &broker.url()).converged().await;
    let leave = c
        .http
        .post(c.peers[1].url("/v1/ring/leave"))
        .send()
        .await
        .expect("leave");
    assert_eq!(leave.status(), 200);
    let join = |bootstrap: String| {
        c.http
            .post(c.peers[1].url("/v1/ring/join"))
            .json(&serde_json::json!({ "bootstrap": bootstrap }))
            .send()
    };
    let refused = join("127.0.0.1:7000".into()).await.expect("join");
    assert_eq!(refused.status(), 400);
    let problem: serde_json::Value = refused.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("chordnet.apijoin.peer.")),
        "{problem}"
    );
    let joined = join(c.peers[0].advertise.clone()).await.expect("join");
    assert_eq!(joined.status(), 200);
    let body: serde_json::Value = joined.json().await.expect("node view");
    // Joined (stabilizing, then member): its successor is the peer it joined through.
    assert_ne!(body["state"], "left", "{body}");
    assert_eq!(
        body["successors"][0]["address"], c.peers[0].advertise,
        "{body}"
    );
    wait_for("one ring again", Duration::from_secs(30), || {
        c.rings_agree()
    })
    .await;
}
