//! Ring events on JetStream against a real `nats-server`: a scripted scenario (three peers
//! join, three uploads, one delete, a `kill -9`) puts exactly the expected events on the
//! ring's stream, every one with its `Nats-Msg-Id`; `chordnet events` started afterwards, as
//! a real process, prints the same sequence from the start (and from a sequence number); a
//! re-sent event is stored once; the command fails in one line when it cannot read.
//! The peers speak HTTP to each other: events do not depend on the transport.

use crate::support::cluster;
use crate::support::nats_server;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream;
use chordnet::config::EventsConfig;
use chordnet::events::publisher::{MSG_ID, ensure_stream, publish, stream_config};
use chordnet::events::{Event, EventKind};
use cluster::{BIN, Cluster, wait_for};
use nats_server::NatsServer;
use serde_json::Value;

const RING: &str = "ev";

/// One message of the stream.
#[derive(Debug)]
struct Stored {
    seq: u64,
    subject: String,
    msg_id: Option<String>,
    payload: Vec<u8>,
    event: Event,
}

/// Every message the stream holds, in order (by sequence number, one request each).
async fn stored(url: &str, stream: &str) -> Vec<Stored> {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    let Ok(mut s) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let last = s.info().await.expect("stream info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue; // none here (never, without limits reached)
        };
        let msg_id = m.headers.get(MSG_ID).map(|v| v.as_str().to_owned());
        let event: Event = serde_json::from_slice(&m.payload).expect("an event");
        out.push(Stored {
            seq,
            subject: m.subject.to_string(),
            msg_id,
            payload: m.payload.to_vec(),
            event,
        });
    }
    out
}

/// Waits (at most 30 s) until the stream's messages satisfy `cond`.
async fn until_stored(what: &str, url: &str, stream: &str, cond: impl Fn(&[Stored]) -> bool) {
    let cond = &cond;
    wait_for(what, Duration::from_secs(30), || async move {
        cond(&stored(url, stream).await)
    })
    .await;
}

fn of(events: &[Stored], kind: EventKind) -> Vec<&Event> {
    events
        .iter()
        .map(|s| &s.event)
        .filter(|e| e.kind == kind)
        .collect()
}

/// `chordnet events ARGS` against `url`: exit code, stdout lines, stderr.
fn cli(url: &str, args: &[&str]) -> (i32, Vec<String>, String) {
    let out = Command::new(BIN)
        .arg("events")
        .args(["--nats", url])
        .args(args)
        .env_remove("CHORDNET_CONFIG")
        .env_remove("CHORDNET_NATS__URL")
        .env_remove("CHORDNET_NATS__RING_NAME")
        .output()
        .expect("run chordnet events");
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_scenario_puts_exactly_its_events_on_the_stream_and_the_cli_reads_them_back() {
    let broker = NatsServer::start("events");
    let url = broker.url();
    let stream = EventsConfig::default().stream_name(RING);
    let env = |_| {
        vec![
            ("CHORDNET_EVENTS__ENABLED".to_owned(), "true".to_owned()),
            ("CHORDNET_NATS__URL".to_owned(), url.clone()),
            ("CHORDNET_NATS__RING_NAME".to_owned(), RING.to_owned()),
        ]
    };
    let mut c = Cluster::start_each("events", 3, env).converged().await;
    let ids: Vec<String> = c.peers.iter().map(|p| p.id().to_string()).collect();

    // Three uploads and one delete, all through peer 0.
    let names = ["alpha.txt", "beta.txt", "gamma.txt"];
    for (k, name) in names.iter().enumerate() {
        let (status, body) = c.put(&c.peers[0], name, &vec![k as u8; 1000 + k]).await;
        assert!(
            status == 201 || status == 200,
            "upload {name}: {status} {body}"
        );
    }
    let deleted = c
        .http
        .delete(c.peers[0].url("/v1/files/beta.txt"))
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());

    // Events leave a peer through its own queue, after the fact (a publish racing the
    // stream's creation is retried after a back-off): wait until the stream holds every
    // peer's `joined`, the uploads and the delete before the kill, or the killed peer's
    // `joined` may die in its queue with it.
    until_stored(
        "every peer's joined, three uploads and the delete on the stream",
        &url,
        &stream,
        |events| {
            let joined = of(events, EventKind::Joined);
            ids.iter().all(|id| joined.iter().any(|e| &e.node.id == id))
                && of(events, EventKind::FileStored).len() >= names.len()
                && !of(events, EventKind::FileDeleted).is_empty()
        },
    )
    .await;

    // kill -9 of peer 2: a survivor reports it.
    c.peers[2].kill();
    let killed = ids[2].clone();
    until_stored(
        "a peer_failed naming the killed peer",
        &url,
        &stream,
        |events| {
            events.iter().any(|s| {
                s.event.kind == EventKind::PeerFailed
                    && s.event.detail.peer.as_ref().is_some_and(|p| p.id == killed)
            })
        },
    )
    .await;
    let events = stored(&url, &stream).await;
    assert!(!events.is_empty());

    // Every message: the subject's last token is its kind, and its Nats-Msg-Id.
    for s in &events {
        assert_eq!(
            s.subject,
            format!("chordnet.{RING}.events.{}", s.event.kind)
        );
        assert_eq!(s.msg_id.as_deref(), Some(s.event.msg_id().as_str()));
        assert!(ids.contains(&s.event.node.id), "{:?}", s.event.node);
    }
    // Per node: numbered 1, 2, 3, ... in stream order, none missing or repeated (the killed
    // peer's may end early).
    let mut per_node: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for s in &events {
        per_node
            .entry(&s.event.node.id)
            .or_default()
            .push(s.event.seq);
    }
    for (node, seqs) in &per_node {
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "events of {node}");
    }

    // joined: one per peer; the first founded the ring, the others joined it.
    let joined = of(&events, EventKind::Joined);
    assert_eq!(joined.len(), 3, "{joined:#?}");
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<_> = joined.iter().filter(|e| &e.node.id == id).collect();
        assert_eq!(mine.len(), 1, "joined of peer {i}");
        assert_eq!(mine[0].detail.founded, Some(i == 0), "peer {i}");
    }
    // file_stored: exactly one per upload, from the peer that took it, in upload order.
    let stored_names: Vec<_> = of(&events, EventKind::FileStored)
        .iter()
        .map(|e| {
            assert_eq!(e.node.id, ids[0]);
            e.detail.name.clone().expect("name")
        })
        .collect();
    assert_eq!(stored_names, names);
    let sizes: Vec<_> = of(&events, EventKind::FileStored)
        .iter()
        .map(|e| e.detail.bytes)
        .collect();
    assert_eq!(sizes, vec![Some(1000), Some(1001), Some(1002)]);
    // file_deleted: exactly the one delete, after beta's upload.
    let del = of(&events, EventKind::FileDeleted);
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].detail.name.as_deref(), Some("beta.txt"));
    let stored_beta = of(&events, EventKind::FileStored)[1];
    assert!(del[0].seq > stored_beta.seq);
    assert!(del[0].detail.version > stored_beta.detail.version);
    // Nobody left gracefully; every peer_failed names the killed peer, from a survivor.
    assert!(of(&events, EventKind::Left).is_empty());
    for e in of(&events, EventKind::PeerFailed) {
        assert_ne!(e.node.id, killed);
        assert_eq!(
            e.detail.peer.as_ref().map(|p| p.id.as_str()),
            Some(killed.as_str())
        );
    }

    // The metrics of the peer that took the uploads.
    let metrics = c
        .http
        .get(c.peers[0].url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("chordnet_events_published_total{kind=\"file_stored\"} 3"));
    assert!(metrics.contains("chordnet_events_published_total{kind=\"file_deleted\"} 1"));
    assert!(metrics.contains("chordnet_events_dropped_total 0"));

    // A consumer started afterwards: the same sequence from the start, byte for byte.
    let (code, lines, err) = cli(&url, &["--ring-name", RING, "--json"]);
    assert_eq!(code, 0, "{err}");
    let now = stored(&url, &stream).await;
    assert!(
        lines.len() >= events.len(),
        "{} < {}",
        lines.len(),
        events.len()
    );
    assert!(lines.len() <= now.len());
    for (line, s) in lines.iter().zip(&now) {
        assert_eq!(line.as_bytes(), s.payload.as_slice(), "event #{}", s.seq);
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        assert!(v["kind"].is_string() && v["node"]["id"].is_string() && v["time"].is_string());
    }
    // From a stream sequence number: the delete first.
    let from = events
        .iter()
        .find(|s| s.event.kind == EventKind::FileDeleted)
        .map(|s| s.seq)
        .expect("the delete");
    let (code, lines, err) = cli(
        &url,
        &["--ring-name", RING, "--json", "--since", &from.to_string()],
    );
    assert_eq!(code, 0, "{err}");
    let first: Event = serde_json::from_str(lines.first().expect("a line")).expect("event");
    assert_eq!(first.kind, EventKind::FileDeleted);
    // For people, from an hour ago: everything, one line each.
    let (code, lines, err) = cli(&url, &["--ring-name", RING, "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(lines.len() >= events.len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("file_stored") && l.contains("\"gamma.txt\""))
    );
    // No such ring's stream: one line, exit 3.
    let (code, _, err) = cli(&url, &["--ring-name", "nosuch"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_is_stored_once_and_the_stream_is_bound_idempotently() {
    let broker = NatsServer::start("events-dup");
    let client = async_nats::connect(broker.url()).await.expect("connect");
    let js = jetstream::new(client);
    let config = stream_config(&EventsConfig::default(), "dup");
    for _ in 0..2 {
        ensure_stream(&js, config.clone()).await.expect("stream");
    }
    let event: Event = serde_json::from_value(serde_json::json!({
        "kind": "left",
        "node": {"id": "aa", "address": "127.0.0.1:1"},
        "time": "2026-01-01T00:00:00.000Z",
        "seq": 1,
        "incarnation": "0000000000000001",
    }))
    .expect("event");
    let first = publish(&js, "dup", &event).await.expect("published");
    let again = publish(&js, "dup", &event).await.expect("published");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let mut next = event.clone();
    next.seq = 2;
    publish(&js, "dup", &next).await.expect("published");
    let mut s = js.get_stream(&config.name).await.expect("stream");
    assert_eq!(s.info().await.expect("info").state.messages, 2);
}

#[test]
fn an_unreachable_broker_is_one_line_and_exit_4() {
    let port = cluster::free_ports(1)[0];
    let (code, lines, err) = cli(&format!("nats://127.0.0.1:{port}"), &[]);
    assert_eq!(code, 4, "{err}");
    assert!(lines.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the NATS broker"), "{err}");
}

/// A broker that is not there delays events, never the peer: an HTTP peer with events on
/// becomes ready, and says in its log that events are not getting out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_leaves_an_http_peer_ready_and_says_so_in_the_log() {
    let port = cluster::free_ports(1)[0];
    let url = format!("nats://127.0.0.1:{port}");
    let env = |_| {
        vec![
            ("CHORDNET_EVENTS__ENABLED".to_owned(), "true".to_owned()),
            ("CHORDNET_NATS__URL".to_owned(), url.clone()),
        ]
    };
    let c = Cluster::start_each("events-nobroker", 1, env);
    wait_for("the peer ready", Duration::from_secs(30), || c.all_ready()).await;
    let log = c.root.join("peer-0.log");
    wait_for("the log line", Duration::from_secs(30), || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("ring events are not reaching the broker"))
        }
    })
    .await;
    assert!(c.all_ready().await, "still ready");
}
