//! Integration tests: real `chordnet serve` processes on 127.0.0.1, talking HTTP to each other,
//! for what needs a process: signals, exit codes, restarts with a store directory, seeds, the
//! HTTP transport end to end. Ring, API and file behaviour is in `ring_files.rs` (in-process).
//! Every wait is bounded and polls a condition; nothing sleeps blindly.

use crate::support::cluster;

use std::process::Command;
use std::time::Duration;

use chordnet::id::Id;
use chordnet::sim::Rng;
use cluster::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_peers_are_routed_around_and_readiness_recovers() {
    let mut c = Cluster::start_converged("crash", 6).await;

    // kill -9 one peer, then a second one that is not its neighbour.
    let mut order: Vec<usize> = (0..c.peers.len()).collect();
    order.sort_by_key(|&i| c.peers[i].id());
    let victim = c.peers[order[1]].id();
    c.peers[order[1]].kill();
    // Right away, before anyone noticed: lookups of keys the dead peer was responsible for
    // name the live peer after it, not the dead one.
    let mut checked = 0;
    // Enough candidate keys that even a peer with a tiny range owns some.
    for k in 0..200_000 {
        if checked >= 20 {
            break;
        }
        let key = format!("v{k}");
        let id = Id::hash(key.as_bytes());
        let mut ids: Vec<Id> = c.peers.iter().map(|p| p.id()).collect();
        ids.sort();
        let owner = ids.iter().copied().find(|&i| i >= id).unwrap_or(ids[0]);
        if owner != victim || checked >= 20 {
            continue;
        }
        checked += 1;
        let (status, answer) = c
            .get(&c.peers[order[3]].url(&format!("/v1/lookup/{key}")))
            .await
            .expect("lookup");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["node"]["id"],
            c.true_successor(id).to_string(),
            "{answer}"
        );
    }
    assert!(checked > 0);
    wait_for(
        "ring repaired after the first crash",
        Duration::from_secs(30),
        || c.rings_agree(),
    )
    .await;
    c.peers[order[4]].kill();
    wait_for(
        "ring repaired after the second crash",
        Duration::from_secs(30),
        || c.rings_agree(),
    )
    .await;
    wait_for("survivors ready", Duration::from_secs(30), || c.all_ready()).await;
    assert_eq!(c.running().len(), 4);

    let mut rng = Rng::new(7);
    for k in 0..100 {
        let running = c.running();
        let from = running[rng.index(running.len())];
        let key = format!("k{k}");
        let (status, answer) = c
            .get(&from.url(&format!("/v1/lookup/{key}")))
            .await
            .expect("lookup");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["node"]["id"],
            c.true_successor(Id::hash(key.as_bytes())).to_string()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_gracefully_and_a_restarted_peer_rejoins() {
    let mut c = Cluster::start_converged("leave", 5).await;

    // SIGTERM two peers one after another: each exits 0 after a graceful leave, and the ring
    // closes over it.
    for victim in [2, 4] {
        let status = c.peers[victim].terminate();
        assert!(status.success(), "exit status {status:?}");
        wait_for(
            "ring closed after the leave",
            Duration::from_secs(20),
            || c.rings_agree(),
        )
        .await;
    }
    assert_eq!(c.running().len(), 3);

    // The peer restarts with the same address and store dir: same id, back in the ring.
    let bootstrap = c.peers[0].advertise.clone();
    c.peers[2] = c.peers[2].respawn(Some(&bootstrap), &[], None);
    wait_for("restarted peer ready", Duration::from_secs(30), || {
        c.all_ready()
    })
    .await;
    wait_for("ring includes it again", Duration::from_secs(30), || {
        c.rings_agree()
    })
    .await;
    let (_, node) = c.get(&c.peers[2].url("/v1/node")).await.expect("node");
    assert_eq!(node["id"], c.peers[2].id().to_string());

    // The REST leave keeps the API up in state `left`; the peer can join again.
    let leave = c
        .http
        .post(c.peers[1].url("/v1/ring/leave"))
        .send()
        .await
        .expect("leave");
    assert_eq!(leave.status(), 200);
    let body: Value = leave.json().await.expect("node view");
    assert_eq!(body["state"], "left");
    let join = c
        .http
        .post(c.peers[1].url("/v1/ring/join"))
        .json(&serde_json::json!({"bootstrap": c.peers[0].advertise}))
        .send()
        .await
        .expect("join");
    assert_eq!(join.status(), 200);
    let again = c
        .http
        .post(c.peers[1].url("/v1/ring/join"))
        .json(&serde_json::json!({"bootstrap": c.peers[0].advertise}))
        .send()
        .await
        .expect("join again");
    assert_eq!(again.status(), 409, "a member cannot join twice");
    wait_for("ring agrees after rejoin", Duration::from_secs(30), || {
        c.rings_agree()
    })
    .await;
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_key_and_source() {
    let out = Command::new(BIN)
        .arg("serve")
        .env("CHORDNET_RING__SUCCESSORS", "lots")
        .env_remove("CHORDNET_CONFIG")
        .output()
        .expect("run chordnet serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ring.successors"), "{err}");
    assert!(err.contains("CHORDNET_RING__SUCCESSORS"), "{err}");
}

impl Cluster {
    /// Starts `n` peers at once, all configured with the same seed list (like a StatefulSet
    /// with `podManagementPolicy: Parallel`); the first seed is the founder.
    fn start_seeded(name: &str, n: usize) -> Cluster {
        let (mut cluster, ports) = Cluster::empty(name, n);
        let seeds: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", ports[2 * i]))
            .collect();
        // Start the founder last, so that it finds the others up but not in a ring.
        for i in (0..n).rev() {
            let api = format!("127.0.0.1:{}", ports[2 * i + 1]);
            let dir = cluster.root.join(format!("peer-{i}"));
            let peer = cluster.spawn_seeded(&seeds, i, &api, &dir);
            cluster.peers.insert(0, peer);
        }
        cluster
    }

    fn spawn_seeded(
        &self,
        seeds: &[String],
        i: usize,
        api: &str,
        dir: &std::path::Path,
    ) -> PeerProcess {
        // The last seed names a pod that no longer exists (scaled away): its name does not
        // resolve, which must not keep the founder from refounding after a full restart.
        let list = format!("{},chordnet-gone.invalid:7000", seeds.join(","));
        spawn_with(
            &seeds[i],
            api,
            dir,
            None,
            &[
                ("CHORDNET_RING__SEEDS", &list),
                ("CHORDNET_RING__CREATE_AFTER", "2s"),
            ],
        )
    }

    async fn ring_ids(&self) -> Vec<Value> {
        let mut ids = Vec::new();
        for p in self.running() {
            if let Some((_, n)) = self.get(&p.url("/v1/node")).await {
                ids.push(n["ring_id"].clone());
            }
        }
        ids
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_peers_started_together_form_one_ring_and_survive_restarts() {
    let mut c = Cluster::start_seeded("seeds", 4);
    let seeds: Vec<String> = c.peers.iter().map(|p| p.advertise.clone()).collect();
    wait_for("all peers ready", Duration::from_secs(60), || c.all_ready()).await;
    wait_for("ring walks agree", Duration::from_secs(30), || {
        c.rings_agree()
    })
    .await;
    let ids = c.ring_ids().await;
    assert!(ids.iter().all(|r| *r == ids[0] && r.is_string()), "{ids:?}");
    let ring_id = ids[0].clone();

    // The founder crashes and restarts: it must rejoin the ring, not found a second one.
    c.peers[0].kill();
    wait_for(
        "ring closed without the founder",
        Duration::from_secs(30),
        || c.rings_agree(),
    )
    .await;
    let (api, dir) = (c.peers[0].api.clone(), c.peers[0].dir.clone());
    c.peers[0] = c.spawn_seeded(&seeds, 0, &api, &dir);
    wait_for("founder back and ready", Duration::from_secs(30), || {
        c.all_ready()
    })
    .await;
    wait_for("one ring again", Duration::from_secs(30), || {
        c.rings_agree()
    })
    .await;
    let ids = c.ring_ids().await;
    assert!(ids.iter().all(|r| *r == ring_id), "{ids:?} vs {ring_id}");

    // Everybody crashes and comes back: the founder refounds the remembered ring.
    for p in &mut c.peers {
        p.kill();
    }
    for i in (0..4).rev() {
        let (api, dir) = (c.peers[i].api.clone(), c.peers[i].dir.clone());
        c.peers[i] = c.spawn_seeded(&seeds, i, &api, &dir);
    }
    wait_for("all back and ready", Duration::from_secs(60), || {
        c.all_ready()
    })
    .await;
    wait_for(
        "one ring after a full restart",
        Duration::from_secs(30),
        || c.rings_agree(),
    )
    .await;
    let ids = c.ring_ids().await;
    assert!(ids.iter().all(|r| *r == ring_id), "{ids:?} vs {ring_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_replicated_and_survive_crashes_leaves_and_restarts() {
    let mut c = Cluster::start_converged("files", 6).await;

    // 100 files through random peers.
    let mut rng = Rng::new(99);
    let mut files = Vec::new();
    for k in 0..100 {
        let size = rng.index(20_000);
        let data: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
        let name = format!("file-{k}.bin");
        let via = &c.peers[rng.index(c.peers.len())];
        let (status, body) = c.put(via, &name, &data).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["size"], size);
        assert_eq!(body["replicas"], 2, "{body}");
        assert_eq!(
            body["node"]["id"],
            c.true_successor(Id::hash(name.as_bytes())).to_string()
        );
        files.push((name, data));
    }
    // Byte-identical through other peers; ETag is the sha256; replicas are 2 distinct peers.
    for (k, (name, data)) in files.iter().enumerate() {
        let via = &c.peers[(k + 3) % c.peers.len()];
        let resp = c
            .http
            .get(via.url(&format!("/v1/files/{name}")))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
        assert_eq!(etag, format!("\"{}\"", chordnet::files::sha256_hex(data)));
        assert_eq!(resp.bytes().await.expect("bytes").as_ref(), data.as_slice());
        // A holder that is slow to answer under load is left out of one answer: ask again.
        wait_for(
            "locations list 2 replicas",
            Duration::from_secs(10),
            || async {
                let Some((200, loc)) = c
                    .get(&via.url(&format!("/v1/files/{name}/locations")))
                    .await
                else {
                    return false;
                };
                let replicas: Vec<&Value> =
                    loc["replicas"].as_array().into_iter().flatten().collect();
                replicas.len() == 2
                    && replicas[0]["id"] != replicas[1]["id"]
                    && replicas.iter().all(|r| r["id"] != loc["node"]["id"])
            },
        )
        .await;
    }
    // Overwrite answers 200; HEAD gives the headers.
    let (status, _) = c.put(&c.peers[1], &files[0].0, &files[0].1).await;
    assert_eq!(status, 200);
    let head = c
        .http
        .head(c.peers[2].url(&format!("/v1/files/{}", files[0].0)))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        files[0].1.len().to_string()
    );

    // kill -9 one peer, then a second one that is not its neighbour.
    let mut order: Vec<usize> = (0..c.peers.len()).collect();
    order.sort_by_key(|&i| c.peers[i].id());
    c.peers[order[0]].kill();
    c.repaired_and_serving("one crash", &files).await;
    c.peers[order[3]].kill();
    c.repaired_and_serving("two crashes", &files).await;
    wait_for("survivors ready", Duration::from_secs(30), || c.all_ready()).await;

    // SIGTERM one more: exit 0, its keys reach the survivors.
    let status = c.peers[order[1]].terminate();
    assert!(status.success(), "{status:?}");
    c.repaired_and_serving("the leave", &files).await;

    // The first crashed peer restarts with its store dir: same id, back in the ring, and it
    // serves the keys of its range again.
    let i = order[0];
    c.restart_with_store(i, &[], &files).await;
    wait_for(
        "it stores the keys of its range",
        Duration::from_secs(30),
        || async {
            let Some((_, f)) = c.get(&c.peers[i].url("/v1/node/files")).await else {
                return false;
            };
            f["stored"].as_array().is_some_and(|s| !s.is_empty())
        },
    )
    .await;

    // A second SIGTERM: nothing is lost either.
    let status = c.peers[order[4]].terminate();
    assert!(status.success(), "{status:?}");
    c.repaired_and_serving("two leaves", &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_files_limits_names_and_deletes() {
    let c = Cluster::start("share", 3);
    wait_for("all peers ready", Duration::from_secs(60), || c.all_ready()).await;
    // A file in peer 2's shared directory is found through the ring from peer 0.
    let shared = c.peers[2].dir.join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    std::fs::write(shared.join("notes.txt"), b"shared by peer 2").expect("write shared");
    wait_for("provider published", Duration::from_secs(30), || async {
        c.fetch(&c.peers[0], "notes.txt").await.as_deref() == Some(&b"shared by peer 2"[..])
    })
    .await;
    let (_, loc) = c
        .get(&c.peers[1].url("/v1/files/notes.txt/locations"))
        .await
        .expect("loc");
    assert_eq!(
        loc["providers"][0]["id"],
        c.peers[2].id().to_string(),
        "{loc}"
    );
    let (_, nf) = c
        .get(&c.peers[2].url("/v1/node/files"))
        .await
        .expect("node files");
    assert_eq!(nf["shared"][0]["name"], "notes.txt");

    // Limits and names.
    let big = vec![0u8; (1 << 20) + 1];
    let (status, body) = c.put(&c.peers[0], "big.bin", &big).await;
    assert_eq!(status, 413, "{body}");
    for bad in ["a%2Fb", "a%00b", "..%2Fetc%2Fpasswd"] {
        let (status, body) = c.put(&c.peers[0], bad, b"x").await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // `.` and `..` as raw path segments (HTTP clients normalise them away, attackers do not).
    for bad in ["/v1/files/..", "/v1/files/.", "/v1/files/%2e%2e"] {
        assert_eq!(raw_put_status(&c.peers[0].api, bad), 400, "{bad}");
    }
    let long = "n".repeat(256);
    assert_eq!(c.put(&c.peers[0], &long, b"x").await.0, 400);
    let name = "ünï cødé.txt";
    let (status, _) = c
        .put(&c.peers[0], "%C3%BCn%C3%AF%20c%C3%B8d%C3%A9.txt", b"utf8")
        .await;
    assert_eq!(status, 201);
    let id = Id::hash(name.as_bytes());
    let (_, found) = c
        .get(&c.peers[1].url(&format!("/v1/lookup?id={id}")))
        .await
        .expect("lookup");
    assert_eq!(found["node"]["id"], c.true_successor(id).to_string());

    // Delete: 204, then 404 everywhere, and a second delete is 404.
    let (status, _) = c.put(&c.peers[1], "gone.txt", b"bye").await;
    assert_eq!(status, 201);
    let del = c
        .http
        .delete(c.peers[0].url("/v1/files/gone.txt"))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    for p in &c.peers {
        assert_eq!(c.fetch(p, "gone.txt").await, None);
    }
    let again = c
        .http
        .delete(c.peers[2].url("/v1/files/gone.txt"))
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), 404);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let missing = c
        .http
        .get(c.peers[2].url("/v1/files/never.txt"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
}

/// Sends `PUT path` with a one-byte body exactly as written (no URL normalisation) and returns
/// the status code.
fn raw_put_status(api: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
