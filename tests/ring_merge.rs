//! An operator's merge of two rings on real processes (`POST /v1/ring/merge`, DESIGN.md §11):
//! two rings of 4 `chordnet serve` peers each, founded apart (two ring ids), files in both;
//! one request to a peer of ring A naming a peer of ring B makes ring B take A's id over and zip
//! in: one ring of 8 that every peer walks the same way, one ring id, every file at its newest
//! version through every peer. Bad requests get problem documents. Every wait is bounded.

use crate::support::cluster;

use std::time::{Duration, Instant};

use cluster::*;
use serde_json::{Value, json};

impl Cluster {
    async fn ring_id_of_each(&self) -> Vec<Option<String>> {
        let mut ids = Vec::new();
        for p in &self.peers {
            let id = self
                .get(&p.url("/v1/node"))
                .await
                .and_then(|(_, v)| v["ring_id"].as_str().map(str::to_owned));
            ids.push(id);
        }
        ids
    }

    async fn merge(&self, via: usize, peer: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.peers[via].url("/v1/ring/merge"))
            .json(&json!({ "peer": peer }))
            .send()
            .await
            .expect("merge request");
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = resp.json().await.expect("JSON answer");
        if status >= 400 {
            assert_eq!(kind, "application/problem+json", "{status} {body}");
        }
        (status, body)
    }

    async fn every_peer_downloads(&self, files: &[(&str, &[u8])]) -> bool {
        for p in &self.peers {
            for (name, want) in files {
                if self.fetch(p, name).await.as_deref() != Some(*want) {
                    return false;
                }
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_merges_two_rings_with_different_ids_into_one() {
    let (a, b) = tokio::join!(
        Cluster::start_converged("rmerge-a", 4),
        Cluster::start_converged("rmerge-b", 4)
    );
    let id_a = a.ring_id_of_each().await[0]
        .clone()
        .expect("ring a has an id");
    let id_b = b.ring_id_of_each().await[0]
        .clone()
        .expect("ring b has an id");
    assert_ne!(id_a, id_b, "two rings founded apart");

    // Files on both sides; the same name on both, written last on side a (the newer wins).
    let files: [(&str, &[u8]); 4] = [
        ("a.txt", b"only in ring a"),
        ("b.txt", b"only in ring b"),
        ("both.txt", b"newer, from ring a"),
        ("big.bin", &[7u8; 300_000]),
    ];
    assert!(matches!(
        b.put(&b.peers[1], "b.txt", files[1].1).await.0,
        200 | 201
    ));
    assert!(matches!(
        b.put(&b.peers[2], "both.txt", b"older, from ring b")
            .await
            .0,
        200 | 201
    ));
    assert!(matches!(
        b.put(&b.peers[3], "big.bin", files[3].1).await.0,
        200 | 201
    ));
    assert!(matches!(
        a.put(&a.peers[1], "a.txt", files[0].1).await.0,
        200 | 201
    ));
    assert!(matches!(
        a.put(&a.peers[2], "both.txt", files[2].1).await.0,
        200 | 201
    ));

    // Bad requests first: nothing changes.
    let (status, body) = a.merge(0, "not an address").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = a.merge(0, &a.peers[0].advertise).await;
    assert_eq!(status, 400, "{body}");
    let nobody = format!("127.0.0.1:{}", free_ports(1)[0]);
    let (status, body) = a.merge(0, &nobody).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{body}"
    );

    // The merge: ring b takes ring a's id over and zips in.
    let asked = Instant::now();
    let (status, body) = a.merge(0, &b.peers[2].advertise).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "rename_started", "{body}");
    assert_eq!(body["ring_id"], id_a.as_str(), "{body}");
    assert_eq!(body["peer_ring_id"], id_b.as_str(), "{body}");

    // `b` keeps its directory; `all` takes its peers. `all` goes first (declared after `b`,
    // and dropped first at the end): every peer is dead before `b` deletes the directory,
    // where a running peer would write `ring.json` again and leave it behind.
    let mut b = b;
    let mut all = a;
    all.peers.append(&mut b.peers);
    wait_for(
        "one ring of 8 that every peer walks the same way",
        Duration::from_secs(60),
        || all.rings_agree(),
    )
    .await;
    let one_ring = asked.elapsed();
    let ids = all.ring_id_of_each().await;
    assert!(
        ids.iter().all(|id| id.as_deref() == Some(id_a.as_str())),
        "{ids:?}"
    );
    wait_for(
        "every file through every peer",
        Duration::from_secs(60),
        || all.every_peer_downloads(&files),
    )
    .await;
    println!(
        "4 + 4 peers with two ring ids: one ring {:.1} s after the merge request, every file right {:.1} s after it",
        one_ring.as_secs_f64(),
        asked.elapsed().as_secs_f64()
    );

    // Asking again: already one ring.
    let (status, body) = all.merge(5, &all.peers[1].advertise).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "already_one_ring", "{body}");

    // The renamed peers say so in their metrics.
    let (_, text) = all
        .http
        .get(all.peers[6].url("/metrics"))
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("metrics");
    let text = text.text().await.expect("metrics text");
    assert!(
        text.lines()
            .any(|l| l.starts_with("chordnet_ring_merges_started_total{trigger=\"explicit\"}")),
        "no explicit merge counted"
    );
    drop(all);
    drop(b);
}
