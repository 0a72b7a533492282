//! `GET /v1/ring/view` on 8 real peers: one call gives every peer in identifier order with its
//! card, and the peers agree; a peer that stops answering is shown unreachable (and the ring
//! does not agree), then gone once the ring closed over it; a new peer appears. Every wait is
//! bounded and polls a condition.

use crate::support::cluster;
use crate::support::paired;

use std::time::Duration;

use chordnet::id::Id;
use cluster::*;
use paired::*;
use serde_json::Value;

const N: usize = 8;

async fn view(c: &Cluster, via: usize) -> Value {
    match c.get(&c.peers[via].url("/v1/ring/view")).await {
        Some((200, v)) => v,
        other => panic!("GET /v1/ring/view: {other:?}"),
    }
}

fn ids(v: &Value) -> Vec<Id> {
    v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str()?.parse().ok())
        .collect()
}

fn node(v: &Value, id: Id) -> Option<&Value> {
    let id = id.to_string();
    v["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id.as_str())
}

/// Polls peer `via`'s view until `ok` holds (bounded); returns that view.
async fn view_until(
    c: &Cluster,
    via: usize,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let v = view(c, via).await;
        if ok(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The view lists exactly `want` (any order given), agrees, and every peer answered its API.
fn agrees_on(v: &Value, want: &[Id]) -> bool {
    let mut want = want.to_vec();
    want.sort();
    v["agree"] == true && ids(v) == want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_view_shows_every_peer_agreement_a_crash_and_a_join() {
    let (c, _) = start_paired("ring-view", N, 0);
    let c = c.converged().await;
    let all: Vec<Id> = c.peers.iter().map(|p| p.id()).collect();

    let v = view_until(
        &c,
        0,
        "the view of all 8 peers agrees",
        Duration::from_secs(30),
        |v| agrees_on(v, &all),
    )
    .await;
    // Identifier order, one digest, each peer's card from its own API.
    let got = ids(&v);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert_eq!(got.len(), N);
    assert_eq!(v["views"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["ring_ids"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["ring_id"], v["ring_ids"][0]);
    assert_eq!(v["served_by"], c.peers[0].id().to_string().as_str());
    let digest = &v["views"][0]["digest"];
    for p in &c.peers {
        let n = node(&v, p.id()).expect("listed");
        assert_eq!(n["address"], p.advertise.as_str(), "{n}");
        assert_eq!(n["api"], p.api.as_str(), "{n}");
        assert_eq!(n["state"], "ready", "{n}");
        assert!(matches!(n["source"].as_str(), Some("api" | "self")), "{n}");
        assert_eq!(&n["view_digest"], digest, "{n}");
        assert_eq!(n["problem"], Value::Null, "{n}");
        assert_eq!(n["successors"].as_array().map(Vec::len), Some(4), "{n}");
        assert!(n["predecessor"]["id"].is_string(), "{n}");
        assert!(
            n["replicas"] == 3 && n["keys"].is_u64() && n["bytes"].is_u64(),
            "{n}"
        );
    }
    // Any peer serves the same ring.
    let other = view(&c, 5).await;
    assert_eq!(ids(&other), got);
    // The per-peer card the gather reads.
    let (_, card) = c.get(&c.peers[3].url("/v1/node/view")).await.expect("card");
    assert_eq!(card["id"], c.peers[3].id().to_string().as_str());
    assert!(
        card["fingers"].as_array().is_some_and(|f| !f.is_empty()),
        "{card}"
    );

    // Peer 4 hangs (its connections stall, as for a crashed host): shown unreachable while
    // its neighbours still name it, and the ring does not agree.
    let gone = c.peers[4].id();
    signal(&c.peers[4], "STOP");
    let seen = view_until(
        &c,
        0,
        "the hung peer shown unreachable",
        Duration::from_secs(30),
        |v| node(v, gone).is_some_and(|n| n["state"] == "unreachable"),
    )
    .await;
    assert_eq!(seen["agree"], false, "{seen}");
    assert!(
        seen["unreachable"]
            .as_array()
            .is_some_and(|u| u.iter().any(|p| p["id"] == gone.to_string().as_str())),
        "{seen}"
    );
    assert_eq!(node(&seen, gone).expect("listed")["reachable"], false);
    // Then gone: the ring closed over it.
    let rest: Vec<Id> = all.iter().copied().filter(|&i| i != gone).collect();
    view_until(
        &c,
        0,
        "the dead peer gone, 7 agree",
        Duration::from_secs(60),
        |v| agrees_on(v, &rest),
    )
    .await;
    let mut c = c;
    c.peers[4].kill();

    // A new peer joins and appears.
    let bootstrap = c.peers[0].advertise.clone();
    // Ports picked now, not at the start: over a minute of traffic an early pick can be taken
    // (the suite once saw the newcomer never appear).
    let newcomer = spawn_paired(&c, N, port_pairs(1)[0], Some(&bootstrap));
    let mut now = rest.clone();
    now.push(newcomer.id());
    c.peers.push(newcomer);
    view_until(
        &c,
        1,
        "the new peer appears, 8 agree",
        Duration::from_secs(60),
        |v| agrees_on(v, &now),
    )
    .await;
}
