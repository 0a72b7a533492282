//! An in-process N-peer ring on the memory transport: every peer is a real `peer::start_with`
//! (ring runtime, files, REST API on 127.0.0.1), and the peers talk through one
//! [`MemoryNetwork`] instead of sockets. Crashes, restarts with the same store directory,
//! graceful leaves and data-plane cuts are method calls; waits are bounded.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chordnet::config::{Config, TransportKind};
use chordnet::id::Id;
use chordnet::peer::{self, RunningPeer};
use chordnet::transport::memory::{MemoryNetwork, MemoryTransport};
use serde_json::Value;

pub struct Harness {
    pub network: MemoryNetwork,
    pub peers: Vec<Option<RunningPeer>>,
    pub configs: Vec<Config>,
    pub root: PathBuf,
    pub http: reqwest::Client,
}

impl Drop for Harness {
    /// Stops the peers still running, then deletes the directory: a peer left running (until
    /// the test's runtime ends) could still write to its store and leave it behind.
    fn drop(&mut self) {
        let running: Vec<RunningPeer> = self.peers.iter_mut().filter_map(Option::take).collect();
        if !running.is_empty()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
            && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            let stopped =
                futures_util::future::join_all(running.into_iter().map(RunningPeer::stop_now));
            tokio::task::block_in_place(|| handle.block_on(stopped));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The advertised (in-memory) address of peer `i`.
pub fn address(i: usize) -> String {
    format!("peer-{i}:7000")
}

/// Fast timers so that a ring settles in a second or two.
pub fn fast(config: &mut Config) {
    let ms = Duration::from_millis;
    config.ring.stabilize_interval = ms(100);
    config.ring.fix_fingers_interval = ms(100);
    config.ring.check_predecessor_interval = ms(100);
    config.ring.rpc_timeout = ms(300);
    config.ring.join_retry_interval = ms(200);
    config.ring.create_after = Duration::from_secs(2);
    config.ring.leave_timeout = Duration::from_secs(10);
    config.files.repair_interval = ms(500);
    config.files.republish_interval = Duration::from_secs(2);
}

impl Harness {
    /// `n` peers; peer 0 founds, the others join through it. `tweak` adjusts each config.
    pub async fn start(name: &str, n: usize, tweak: impl Fn(usize, &mut Config)) -> Harness {
        let root = std::env::temp_dir().join(format!("chordnet-h-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut h = Harness {
            network: MemoryNetwork::new(),
            peers: Vec::new(),
            configs: Vec::new(),
            root,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        };
        for i in 0..n {
            let mut c = Config::default();
            c.transport.kind = TransportKind::Memory;
            c.node.advertise = address(i);
            c.api.listen = "127.0.0.1:0".parse().expect("socket address");
            c.ring.bootstrap = (i > 0).then(|| address(0));
            let dir = h.root.join(format!("peer-{i}"));
            c.files.shared_dir = dir.join("shared");
            c.files.store_dir = dir.join("data");
            std::fs::create_dir_all(&c.files.shared_dir).expect("shared dir");
            fast(&mut c);
            tweak(i, &mut c);
            h.configs.push(c);
            h.peers.push(None);
            h.boot(i).await;
        }
        h
    }

    /// Starts peer `i` with its config (and whatever its store directory holds).
    pub async fn boot(&mut self, i: usize) {
        let factory = Arc::new(MemoryTransport::new(self.network.clone()));
        let p = peer::start_with(self.configs[i].clone(), factory)
            .await
            .expect("peer starts");
        self.peers[i] = Some(p);
    }

    pub fn peer(&self, i: usize) -> &RunningPeer {
        self.peers[i].as_ref().expect("peer is running")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|i| self.peers[*i].is_some())
            .collect()
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.peer(i).api_addr)
    }

    pub fn id(&self, i: usize) -> Id {
        Id::hash(address(i).as_bytes())
    }

    /// Peer `i` stops at once, without leaving: a crash to everyone else.
    pub async fn crash(&mut self, i: usize) {
        if let Some(p) = self.peers[i].take() {
            p.stop_now().await;
        }
    }

    /// Peer `i` leaves gracefully, then stops.
    pub async fn leave(&mut self, i: usize) {
        if let Some(p) = self.peers[i].take() {
            p.shutdown().await;
        }
    }

    /// `(status, JSON body)` of a GET (the body is null when it is not JSON).
    pub async fn status_json(&self, url: &str) -> Option<(u16, Value)> {
        let r = self.http.get(url).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The value of one series (`name{labels}` as exposed) on peer `i`'s `/metrics`; 0 when
    /// absent.
    pub async fn metric(&self, i: usize, series: &str) -> f64 {
        let Ok(r) = self.http.get(self.url(i, "/metrics")).send().await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn get_json(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Every running peer is ready and its ring walk is complete with exactly the running
    /// peers.
    pub async fn settled(&self) -> bool {
        let running = self.running();
        for i in &running {
            if !self.peer(*i).service.readiness().is_empty() {
                return false;
            }
            let Some(walk) = self.get_json(&self.url(*i, "/v1/ring")).await else {
                return false;
            };
            let complete = walk["complete"].as_bool() == Some(true);
            let size = walk["nodes"].as_array().map_or(0, Vec::len);
            if !complete || size != running.len() || !self.successors_full(*i).await {
                return false;
            }
        }
        true
    }

    /// Whether peer `i`'s successor list starts with the true next peers, as many as it keeps
    /// (replica placement reads it: a list still filling places copies on the wrong peers).
    async fn successors_full(&self, i: usize) -> bool {
        let Some(node) = self.get_json(&self.url(i, "/v1/node")).await else {
            return false;
        };
        let mut ids: Vec<Id> = self.running().iter().map(|j| self.id(*j)).collect();
        ids.sort();
        let me = self.id(i);
        let at = ids.iter().position(|id| *id == me).unwrap_or(0);
        let want = self.configs[i].ring.successors.min(ids.len() - 1);
        let truth: Vec<String> = (1..=want)
            .map(|k| ids[(at + k) % ids.len()].to_string())
            .collect();
        let seen: Vec<String> = node["successors"]
            .as_array()
            .into_iter()
            .flatten()
            .take(want)
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect();
        seen == truth
    }

    /// Blocks stored over the running peers, as `GET /v1/node/files` reports them.
    pub async fn blocks_stored(&self) -> u64 {
        let mut sum = 0;
        for i in self.running() {
            let v = self.get_json(&self.url(i, "/v1/node/files")).await;
            sum += v.and_then(|v| v["blocks"].as_u64()).unwrap_or(0);
        }
        sum
    }

    pub async fn converged(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.settled().await {
            assert!(Instant::now() < deadline, "the ring did not settle in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The true successor of `key` among the running peers.
    pub fn true_successor(&self, key: Id) -> Id {
        let mut ids: Vec<Id> = self.running().iter().map(|i| self.id(*i)).collect();
        ids.sort();
        ids.iter().copied().find(|id| *id >= key).unwrap_or(ids[0])
    }

    pub async fn put(&self, via: usize, name: &str, data: Vec<u8>) -> reqwest::Response {
        self.http
            .put(self.url(via, &format!("/v1/files/{name}")))
            .body(data)
            .send()
            .await
            .expect("upload answered")
    }

    /// `(status, body)` of a download.
    pub async fn get(&self, via: usize, name: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(self.url(via, &format!("/v1/files/{name}")))
            .send()
            .await
            .expect("download answered");
        let status = r.status().as_u16();
        (
            status,
            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        )
    }

    pub async fn delete(&self, via: usize, name: &str) -> u16 {
        self.http
            .delete(self.url(via, &format!("/v1/files/{name}")))
            .send()
            .await
            .expect("delete answered")
            .status()
            .as_u16()
    }

    /// The peers (indices) holding `name` as `GET /v1/files/{name}/locations` reports them.
    pub async fn holders(&self, via: usize, name: &str) -> Vec<usize> {
        let Some(v) = self
            .get_json(&self.url(via, &format!("/v1/files/{name}/locations")))
            .await
        else {
            return Vec::new();
        };
        let mut ids: Vec<String> = vec![v["node"]["id"].as_str().unwrap_or("").to_owned()];
        for r in v["replicas"].as_array().into_iter().flatten() {
            ids.push(r["id"].as_str().unwrap_or("").to_owned());
        }
        (0..self.peers.len())
            .filter(|i| ids.contains(&self.id(*i).to_string()))
            .collect()
    }
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deterministic content for file `k`, version `v`.
pub fn content(k: usize, v: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + k * 7 + v * 13) % 251) as u8)
        .collect()
}
