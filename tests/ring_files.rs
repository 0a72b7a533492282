//! Ring, API and file behaviour on the in-process harness (peers on the memory transport, real
//! REST APIs on 127.0.0.1): formation, lookups, files across crashes and leaves, write and read
//! quorums, clock skew, stale stores, full restarts.

use crate::support::harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chordnet::id::Id;
use chordnet::sim::Rng;
use chordnet::wire::Address;
use harness::{Harness, address, content, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_peer_ring_forms_and_lookups_node_fingers_and_metrics_agree_with_the_ids() {
    let c = Harness::start("ring8", 8, |_, _| {}).await;
    c.converged().await;

    // Node info is consistent with the walk.
    let (status, node) = c.status_json(&c.url(3, "/v1/node")).await.expect("node");
    assert_eq!(status, 200);
    assert_eq!(node["state"], "ready");
    assert_eq!(node["address"], address(3));
    assert_eq!(node["id"], c.id(3).to_string());
    assert_eq!(node["successors"].as_array().map(Vec::len), Some(4));
    // Every peer is in the same ring.
    let mut ring_ids = Vec::new();
    for i in 0..8 {
        let (_, n) = c.status_json(&c.url(i, "/v1/node")).await.expect("node");
        ring_ids.push(n["ring_id"].clone());
    }
    assert!(ring_ids[0].is_string(), "{ring_ids:?}");
    assert!(ring_ids.iter().all(|r| *r == ring_ids[0]), "{ring_ids:?}");

    // 500 lookups from random peers agree with the successor computed from the ids.
    let mut rng = Rng::new(42);
    for k in 0..500 {
        let from = rng.index(8);
        let key = format!("file-{k}.txt");
        let answer = lookup_agrees(&c, from, &key).await;
        assert_eq!(answer["id"], Id::hash(key.as_bytes()).to_string());
        assert_eq!(answer["key"], key);
        let hops = answer["hops"].as_u64().expect("hops");
        assert_eq!(
            answer["path"].as_array().map(|p| p.len() as u64),
            Some(hops)
        );
        assert!(hops <= 4, "{hops} hops in an 8-peer ring");
    }

    // Raw identifiers work too, and bad ones get a problem document.
    let id = Id::hash("x");
    let (status, answer) = c
        .status_json(&c.url(0, &format!("/v1/lookup?id={id}")))
        .await
        .expect("lookup by id");
    assert_eq!(status, 200);
    assert_eq!(answer["node"]["id"], c.true_successor(id).to_string());
    let resp = c
        .http
        .get(c.url(0, "/v1/lookup?id=nothex"))
        .send()
        .await
        .expect("bad id");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Finger table: 160 entries, each pointing at the true successor of its start.
    let (_, f) = c
        .status_json(&c.url(0, "/v1/node/fingers"))
        .await
        .expect("fingers");
    let fingers = f["fingers"].as_array().expect("fingers array");
    assert_eq!(fingers.len(), 160);
    wait_until("fingers right", Duration::from_secs(20), || async {
        let Some((_, f)) = c.status_json(&c.url(0, "/v1/node/fingers")).await else {
            return false;
        };
        f["fingers"].as_array().into_iter().flatten().all(|e| {
            let start: Id = e["start"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            e["node"]["id"] == c.true_successor(start).to_string()
        })
    })
    .await;

    // Metrics are there, in the text format.
    let text = c
        .http
        .get(c.url(0, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for family in [
        "chordnet_lookup_hops_bucket",
        "chordnet_peer_rpcs_total{method=\"get_neighbors\",outcome=\"ok\"}",
        "chordnet_ring_info{",
        "chordnet_ready 1",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_problem_documents() {
    let c = Harness::start("errors", 1, |_, _| {}).await;
    c.converged().await;
    let cases = [
        (reqwest::Method::GET, "/v1/nothing", None, 404),
        (reqwest::Method::DELETE, "/v1/node", None, 405),
        (
            reqwest::Method::POST,
            "/v1/ring/join",
            Some(serde_json::json!({"bootstrap": address(0)})),
            400,
        ),
        (
            reqwest::Method::POST,
            "/v1/ring/join",
            Some(serde_json::json!({"bootstrap": "no-port"})),
            400,
        ),
        (
            reqwest::Method::POST,
            "/v1/ring/join",
            Some(serde_json::json!({})),
            400,
        ),
    ];
    for (method, path, body, status) in cases {
        let mut req = c.http.request(method.clone(), c.url(0, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let problem: serde_json::Value = resp.json().await.expect("problem body");
        assert_eq!(problem["status"], status);
        assert!(problem["detail"].is_string());
    }
    // A lone peer owns everything.
    let (_, answer) = c
        .status_json(&c.url(0, "/v1/lookup/anything"))
        .await
        .expect("lookup");
    assert_eq!(answer["node"]["id"], c.id(0).to_string());
    assert_eq!(answer["hops"], 0);
    let (status, health) = c.status_json(&c.url(0, "/healthz")).await.expect("healthz");
    assert_eq!(
        (status, &health["alive"]),
        (200, &serde_json::Value::Bool(true))
    );
}

/// Uploads `n` files through different peers; returns name -> content.
async fn upload_many(h: &Harness, tag: &str, n: usize) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    let vias = h.running();
    for k in 0..n {
        let name = format!("{tag}-{k}.bin");
        let data = content(k, 0, 1000 + k * 37);
        let r = h.put(vias[k % vias.len()], &name, data.clone()).await;
        assert_eq!(r.status(), 201, "{name}: {:?}", r.text().await);
        files.insert(name, data);
    }
    files
}

async fn all_readable(h: &Harness, files: &HashMap<String, Vec<u8>>) {
    let vias = h.running();
    for (k, (name, data)) in files.iter().enumerate() {
        let (status, got) = h.get(vias[k % vias.len()], name).await;
        assert_eq!(status, 200, "{name}");
        assert!(got == *data, "{name}: wrong content");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_two_crashes_a_leave_and_three_neighbours_leaving_at_once() {
    let mut h = Harness::start("survive", 8, |_, _| {}).await;
    h.converged().await;
    let files = upload_many(&h, "f", 24).await;
    all_readable(&h, &files).await;

    // Two peers crash at once (not the founder: the harness talks to it).
    h.crash(3).await;
    h.crash(6).await;
    h.converged().await;
    all_readable(&h, &files).await;

    // One graceful leave.
    h.leave(1).await;
    h.converged().await;
    all_readable(&h, &files).await;

    // Three ring neighbours leave at the same moment (of 5 left, keep peer 0 out of it).
    let mut order: Vec<usize> = h.running();
    order.sort_by_key(|i| h.id(*i));
    let start = order.iter().position(|i| *i == 0).unwrap_or(0);
    let trio: Vec<usize> = (1..=3).map(|d| order[(start + d) % order.len()]).collect();
    let leaving: Vec<_> = trio
        .iter()
        .map(|i| h.peers[*i].take().expect("running"))
        .collect();
    futures_util::future::join_all(leaving.into_iter().map(|p| p.shutdown())).await;
    h.converged().await;
    all_readable(&h, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_clock_is_10_minutes_behind_still_overwrites() {
    let h = Harness::start("slowclock", 4, |_, _| {}).await;
    h.converged().await;
    let name = "clocked.txt";
    // Of 4 peers, 3 hold the name: the fourth is the predecessor of the responsible one.
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by_key(|i| h.id(*i));
    let responsible = h.true_successor(Id::hash(name.as_bytes()));
    let at = order
        .iter()
        .position(|i| h.id(*i) == responsible)
        .expect("responsible peer");
    let slow = order[(at + 3) % 4];
    let writer = order[at];
    assert_eq!(
        h.put(writer, name, b"first, by a good clock".to_vec())
            .await
            .status(),
        201
    );
    assert!(!h.holders(writer, name).await.contains(&slow));
    // The peer that never saw the first version writes next, its clock 10 minutes behind.
    h.peer(slow).files.shift_clock(-600_000);
    let r = h.put(slow, name, b"second, by a slow clock".to_vec()).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    for via in 0..4 {
        let (status, got) = h.get(via, name).await;
        assert_eq!(
            (status, got.as_slice()),
            (200, &b"second, by a slow clock"[..])
        );
    }
    // And a delete from the slow peer sticks too.
    assert_eq!(h.delete(slow, name).await, 204);
    for via in 0..4 {
        assert_eq!(h.get(via, name).await.0, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_one_of_three_holders_reachable_is_503_and_not_acknowledged() {
    let h = Harness::start("quorum", 5, |_, _| {}).await;
    h.converged().await;
    let name = "quorum.bin";
    // Find the key's three holders, then cut the data plane of two of them.
    let r = h.put(0, name, b"v1".to_vec()).await;
    assert_eq!(r.status(), 201);
    let holders = h.holders(0, name).await;
    assert_eq!(holders.len(), 3, "{holders:?}");
    let via = (0..5).find(|i| !holders.contains(i)).expect("a non-holder");
    for i in &holders[1..] {
        h.network.cut_data_plane(&Address::new(address(*i)), true);
    }
    let r = h.put(via, name, b"v2: not acknowledged".to_vec()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.headers()["content-type"].to_str().ok(),
        Some("application/problem+json")
    );
    let body: serde_json::Value = r.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1 of 3 copies stored, 2 needed")),
        "{body}"
    );
    assert!(body.get("sha256").is_none());
    // A delete cannot be acknowledged either.
    assert_eq!(h.delete(via, name).await, 503);
    let metrics = h
        .http
        .get(h.url(via, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("chordnet_write_quorum_failures_total{op=\"upload\"} 1"),
        "{metrics}"
    );
    // The acknowledged version stays readable once the cut heals.
    for i in &holders[1..] {
        h.network.cut_data_plane(&Address::new(address(*i)), false);
    }
    let (status, _) = h.get(via, name).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_back_with_an_old_store_never_serves_deleted_or_old_content() {
    let mut h = Harness::start("stale", 6, |_, _| {}).await;
    h.converged().await;
    let files = upload_many(&h, "s", 18).await;
    // The peer holding the most of them as primary goes down with its store.
    let mut primary_of: HashMap<usize, Vec<String>> = HashMap::new();
    for name in files.keys() {
        let holders = h.holders(0, name).await;
        if let Some(p) = holders.first() {
            primary_of.entry(*p).or_default().push(name.clone());
        }
    }
    let (&victim, _) = primary_of
        .iter()
        .filter(|(p, _)| **p != 0)
        .max_by_key(|(_, v)| v.len())
        .expect("a primary");
    h.crash(victim).await;
    h.converged().await;
    // While it is down: delete half, overwrite the other half.
    let mut want: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    for (k, name) in files.keys().enumerate() {
        if k % 2 == 0 {
            assert_eq!(h.delete(0, name).await, 204, "{name}");
            want.insert(name.clone(), None);
        } else {
            let data = content(k, 1, 500);
            assert_eq!(h.put(0, name, data.clone()).await.status(), 200, "{name}");
            want.insert(name.clone(), Some(data));
        }
    }
    // Back with its old store: poll every file from the restart on.
    h.boot(victim).await;
    let until = Instant::now() + Duration::from_secs(6);
    let mut reads = 0;
    let mut settled = false;
    while Instant::now() < until || !settled {
        for (k, (name, expected)) in want.iter().enumerate() {
            let via = h.running()[k % h.running().len()];
            let (status, got) = h.get(via, name).await;
            reads += 1;
            match expected {
                None => assert!(
                    status == 404 || status == 503,
                    "{name}: deleted, got {status}"
                ),
                Some(data) => assert!(
                    status == 503 || (status == 200 && got == *data),
                    "{name}: old or wrong content (status {status})"
                ),
            }
        }
        settled = settled || h.settled().await;
        assert!(
            Instant::now() < until + Duration::from_secs(60),
            "never settled"
        );
    }
    eprintln!("{reads} reads after the restart, none stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_without_the_founder_forms_one_ring_with_the_same_id() {
    let seeds: Vec<String> = (0..3).map(address).collect();
    let mut h = Harness::start("refound", 8, |i, c| {
        c.ring.bootstrap = None;
        c.ring.seeds = seeds.clone();
        let _ = i;
    })
    .await;
    h.converged().await;
    let ring_id = h.get_json(&h.url(0, "/v1/node")).await.expect("node")["ring_id"]
        .as_str()
        .expect("ring id")
        .to_owned();
    let files = upload_many(&h, "r", 16).await;
    for i in 0..8 {
        h.crash(i).await;
    }
    for i in 1..8 {
        h.boot(i).await;
    }
    h.converged().await;
    for i in h.running() {
        let v = h.get_json(&h.url(i, "/v1/node")).await.expect("node");
        assert_eq!(v["ring_id"].as_str(), Some(ring_id.as_str()), "peer {i}");
    }
    wait_until("every file readable", Duration::from_secs(20), || async {
        for (k, (name, data)) in files.iter().enumerate() {
            let via = 1 + k % 7;
            let (status, got) = h.get(via, name).await;
            if status != 200 || got != *data {
                return false;
            }
        }
        true
    })
    .await;
}

/// A lookup of `key` from peer `from`, which must answer 200 and name the true successor.
async fn lookup_agrees(c: &Harness, from: usize, key: &str) -> serde_json::Value {
    let (status, answer) = c
        .status_json(&c.url(from, &format!("/v1/lookup/{key}")))
        .await
        .expect("lookup");
    assert_eq!(status, 200, "{answer}");
    let id = Id::hash(key.as_bytes());
    assert_eq!(
        answer["node"]["id"],
        c.true_successor(id).to_string(),
        "lookup of {key} from peer {from}"
    );
    answer
}

/// Lookups of `keys` from peer `from`; each must name the true successor.
async fn lookups_agree(c: &Harness, from: usize, keys: impl Iterator<Item = String>) {
    for key in keys {
        lookup_agrees(c, from, &key).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lookups_reuse_what_the_owner_said_this_period_and_a_crash_ends_it() {
    const REUSED: &str = "chordnet_lookup_answers_reused_total";
    let mut c = Harness::start("reuse", 8, |_, _| {}).await;
    c.converged().await;
    lookups_agree(&c, 0, (0..300).map(|k| format!("r{k}"))).await;
    let reused = c.metric(0, REUSED).await;
    assert!(reused >= 30.0, "{reused} of 300 lookups reused");

    // The same key twice in a row: the second is reused (0 hops), unless the client asks for
    // a fresh answer with `Cache-Control: no-cache`.
    // A key neither peer 0 nor its successor owns (peer 0 answers those without a hop).
    let next = c.true_successor(c.id(0).wrapping_add(Id::from_parts(0, 1)));
    let key = (0..)
        .map(|k| format!("f{k}"))
        .find(|k| ![c.id(0), next].contains(&c.true_successor(Id::hash(k.as_bytes()))))
        .expect("a key of another peer");
    let url = c.url(0, &format!("/v1/lookup/{key}"));
    let ask = |fresh: bool| {
        let req = c.http.get(&url);
        let req = if fresh {
            req.header("cache-control", "no-cache")
        } else {
            req
        };
        async move {
            let answer: serde_json::Value = req
                .send()
                .await
                .expect("lookup")
                .json()
                .await
                .expect("json");
            (
                answer["hops"].as_u64().expect("hops"),
                answer["node"]["id"].clone(),
            )
        }
    };
    let owner = serde_json::Value::from(c.true_successor(Id::hash(key.as_bytes())).to_string());
    // (A stabilization tick between the two ends the period: then try again, a few times.)
    let mut reused_second = false;
    for _ in 0..20 {
        assert_eq!(ask(false).await.1, owner);
        let (hops, second) = ask(false).await;
        assert_eq!(second, owner);
        if hops == 0 {
            reused_second = true;
            break;
        }
    }
    assert!(
        reused_second,
        "the second of two lookups in a row is reused"
    );
    let (fresh_hops, fresh) = ask(true).await;
    assert_eq!(fresh, owner);
    assert!(fresh_hops >= 1, "a fresh lookup asks the owner");

    // A crash: within at most a period (100 ms here) and the failure that ends every reuse,
    // lookups of the dead peer's keys name the live peer after it again.
    let victim = 5;
    let key = (0..)
        .map(|k| format!("v{k}"))
        .find(|k| c.true_successor(Id::hash(k.as_bytes())) == c.id(victim))
        .expect("a key of the victim");
    lookups_agree(&c, 0, std::iter::once(key.clone())).await;
    c.crash(victim).await;
    let id = Id::hash(key.as_bytes());
    wait_until(
        "lookups name a live peer",
        Duration::from_secs(5),
        || async {
            let Some((200, answer)) = c.status_json(&c.url(0, &format!("/v1/lookup/{key}"))).await
            else {
                return false;
            };
            answer["node"]["id"] == c.true_successor(id).to_string()
        },
    )
    .await;

    // Turned off, nothing is reused and every answer is still right.
    let strict = Harness::start("reuse-off", 4, |_, config| {
        config.ring.reuse_lookup_answers = false;
    })
    .await;
    strict.converged().await;
    lookups_agree(&strict, 0, (0..100).map(|k| format!("s{k}"))).await;
    assert_eq!(strict.metric(0, REUSED).await, 0.0);
}
