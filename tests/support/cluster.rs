//! Real `chordnet serve` processes on 127.0.0.1 for integration tests and benches: free ports,
//! a peer process that is killed when dropped, a cluster of them, and bounded waiting.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chordnet::id::Id;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_chordnet");

/// Free TCP ports on 127.0.0.1 (bound, then released, for the peers to take).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct PeerProcess {
    pub child: Option<Child>,
    pub advertise: String,
    pub api: String,
    pub dir: PathBuf,
}

impl PeerProcess {
    pub fn id(&self) -> Id {
        Id::hash(self.advertise.as_bytes())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// A new process for this peer: the same address, API and directories (a restart with
    /// its store), joining through `bootstrap`, with `env` and its log in `log` when given.
    pub fn respawn(
        &self,
        bootstrap: Option<&String>,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> PeerProcess {
        spawn_logged(&self.advertise, &self.api, &self.dir, bootstrap, env, log)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_ref().expect("peer is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.terminate_started()
    }

    /// Waits (bounded) for the exit status of a peer that was sent SIGTERM.
    pub fn terminate_started(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("peer is running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for peer") {
                return status;
            }
            assert!(Instant::now() < deadline, "peer did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub peers: Vec<PeerProcess>,
    pub root: PathBuf,
    pub http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.peers {
            p.kill();
        }
        if std::thread::panicking() {
            self.print_log_tails();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// How much of each peer's log a failing test prints.
const LOG_TAIL_LINES: usize = 40;

impl Cluster {
    /// The last lines of every peer log in this cluster's directory (see [`spawn_logged`]), on
    /// stderr: a test that fails in CI shows what its peers said, since the directory goes.
    fn print_log_tails(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            eprintln!("---- {name}, last {} lines", lines.len() - from);
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Cluster {
    /// No peers yet: a fresh directory and 2·n free ports (peer, API) for them.
    pub fn empty(name: &str, n: usize) -> (Cluster, Vec<u16>) {
        let root = std::env::temp_dir().join(format!("chordnet-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cluster = Cluster {
            peers: Vec::new(),
            root,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        (cluster, free_ports(2 * n))
    }

    /// Starts `n` peers and waits (bounded) until all are ready and agree on one ring.
    pub async fn start_converged(name: &str, n: usize) -> Cluster {
        Cluster::start(name, n).converged().await
    }

    /// Waits (bounded) until every peer is ready and all agree on one ring.
    pub async fn converged(self) -> Cluster {
        wait_for("all peers ready", Duration::from_secs(60), || {
            self.all_ready()
        })
        .await;
        wait_for("ring walks agree", Duration::from_secs(30), || {
            self.rings_agree()
        })
        .await;
        self
    }

    /// Starts `n` peers: the first founds the ring, the others join through it.
    pub fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_each(name, n, |_| Vec::new())
    }

    /// Like [`Cluster::start`], with `env(i)` added to peer `i`'s environment. Every peer's log
    /// (stderr; `RUST_LOG=warn` unless `env` says otherwise) goes to `<root>/peer-i.log`: a
    /// test may read it, and a failing test prints its tail.
    pub fn start_each(
        name: &str,
        n: usize,
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Cluster {
        let (mut cluster, ports) = Cluster::empty(name, n);
        let bootstrap = format!("127.0.0.1:{}", ports[0]);
        for i in 0..n {
            let advertise = format!("127.0.0.1:{}", ports[2 * i]);
            let api = format!("127.0.0.1:{}", ports[2 * i + 1]);
            let dir = cluster.root.join(format!("peer-{i}"));
            let vars = env(i);
            let vars: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let log = cluster.root.join(format!("peer-{i}.log"));
            let peer = spawn_logged(
                &advertise,
                &api,
                &dir,
                (i > 0).then_some(&bootstrap),
                &vars,
                Some(&log),
            );
            cluster.peers.push(peer);
        }
        cluster
    }

    pub async fn get(&self, url: &str) -> Option<(u16, Value)> {
        let resp = self.http.get(url).send().await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    /// The value of an unlabelled metric in `p`'s `/metrics`; `None` when the peer does not
    /// answer or does not have it.
    pub async fn metric(&self, p: &PeerProcess, name: &str) -> Option<f64> {
        let r = self.http.get(p.url("/metrics")).send().await.ok()?;
        let text = r.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    pub fn running(&self) -> Vec<&PeerProcess> {
        self.peers.iter().filter(|p| p.child.is_some()).collect()
    }

    pub async fn all_ready(&self) -> bool {
        for p in self.running() {
            match self.get(&p.url("/readyz")).await {
                Some((200, _)) => {}
                _ => return false,
            }
        }
        true
    }

    /// The running peers' ids in ring order starting at `start`.
    pub fn expected_ring_from(&self, start: Id) -> Vec<Id> {
        let mut ids: Vec<Id> = self.running().iter().map(|p| p.id()).collect();
        ids.sort();
        let k = ids
            .iter()
            .position(|&i| i == start)
            .expect("start is running");
        ids.rotate_left(k);
        ids
    }

    /// Whether every running peer's ring walk lists exactly the running peers, in order.
    pub async fn rings_agree(&self) -> bool {
        let running: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].child.is_some())
            .collect();
        self.ring_of(&running).await
    }

    /// Whether the ring walk of every peer in `members` lists exactly `members`, in ring order
    /// from that peer, and comes back (one side of a partition, or all of them).
    pub async fn ring_of(&self, members: &[usize]) -> bool {
        let mut ids: Vec<Id> = members.iter().map(|&i| self.peers[i].id()).collect();
        ids.sort();
        for &i in members {
            let p = &self.peers[i];
            let Some((200, walk)) = self.get(&p.url("/v1/ring")).await else {
                return false;
            };
            let got: Vec<Id> = walk["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["id"].as_str()?.parse().ok())
                .collect();
            let mut want = ids.clone();
            let k = want.iter().position(|&x| x == p.id()).unwrap_or(0);
            want.rotate_left(k);
            if walk["complete"] != true || got != want {
                return false;
            }
        }
        true
    }

    pub fn true_successor(&self, key: Id) -> Id {
        let mut ids: Vec<Id> = self.running().iter().map(|p| p.id()).collect();
        ids.sort();
        ids.iter().copied().find(|&i| i >= key).unwrap_or(ids[0])
    }

    /// Uploads `data` as `name` through `via`: the status and the JSON answer.
    pub async fn put(&self, via: &PeerProcess, name: &str, data: &[u8]) -> (u16, Value) {
        let resp = self
            .http
            .put(via.url(&format!("/v1/files/{name}")))
            .body(data.to_vec())
            .send()
            .await
            .expect("upload");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Downloads `name` through `via`; `None` unless 200.
    pub async fn fetch(&self, via: &PeerProcess, name: &str) -> Option<Vec<u8>> {
        let resp = self
            .http
            .get(via.url(&format!("/v1/files/{name}")))
            .send()
            .await
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.bytes().await.ok().map(|b| b.to_vec())
    }

    /// Waits (bounded) until the ring closed over a change and every file downloads again.
    pub async fn repaired_and_serving(&self, after: &str, files: &[(String, Vec<u8>)]) {
        wait_for(
            &format!("ring closed after {after}"),
            Duration::from_secs(30),
            || self.rings_agree(),
        )
        .await;
        wait_for(
            &format!("every file downloads after {after}"),
            Duration::from_secs(30),
            || self.all_download(files),
        )
        .await;
    }

    /// Restarts peer `i` with its store directory (and `env`) through a running peer; waits
    /// (bounded) until every peer is ready, the ring includes it, and every file downloads
    /// through it.
    pub async fn restart_with_store(
        &mut self,
        i: usize,
        env: &[(&str, &str)],
        files: &[(String, Vec<u8>)],
    ) {
        let bootstrap = self.running()[0].advertise.clone();
        self.peers[i] = self.peers[i].respawn(Some(&bootstrap), env, None);
        wait_for("restarted peer ready", Duration::from_secs(30), || {
            self.all_ready()
        })
        .await;
        wait_for("ring includes it", Duration::from_secs(30), || {
            self.rings_agree()
        })
        .await;
        let peer = &self.peers[i];
        wait_for(
            "every file downloads through the restarted peer",
            Duration::from_secs(30),
            || async {
                for (name, data) in files {
                    if self.fetch(peer, name).await.as_deref() != Some(data.as_slice()) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Whether every file downloads byte-identical through some running peer (rotating).
    pub async fn all_download(&self, files: &[(String, Vec<u8>)]) -> bool {
        let running = self.running();
        for (k, (name, data)) in files.iter().enumerate() {
            let via = running[k % running.len()];
            if self.fetch(via, name).await.as_deref() != Some(data.as_slice()) {
                return false;
            }
        }
        true
    }
}

pub fn spawn(
    advertise: &str,
    api: &str,
    dir: &std::path::Path,
    bootstrap: Option<&String>,
) -> PeerProcess {
    spawn_with(advertise, api, dir, bootstrap, &[])
}

pub fn spawn_with(
    advertise: &str,
    api: &str,
    dir: &std::path::Path,
    bootstrap: Option<&String>,
    env: &[(&str, &str)],
) -> PeerProcess {
    spawn_logged(advertise, api, dir, bootstrap, env, None)
}

/// Like [`spawn_with`], with the peer's log (stderr) written to `log` when given (from its
/// start), else appended to `<dir>.log` beside the peer's directory (a restart adds to it), so
/// a failing test can print it. OpenTelemetry variables of the test's own environment are not
/// passed on: a test sets the ones it wants.
pub fn spawn_logged(
    advertise: &str,
    api: &str,
    dir: &std::path::Path,
    bootstrap: Option<&String>,
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> PeerProcess {
    std::fs::create_dir_all(dir).expect("peer dir");
    if let Some(parent) = log.and_then(|l| l.parent()) {
        std::fs::create_dir_all(parent).expect("log dir");
    }
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--advertise", advertise, "--api", api]);
    // A socket address is also where the peer listens; a NATS subject opens no port.
    if advertise.contains(':') {
        cmd.args(["--listen", advertise]);
    }
    cmd.arg("--shared-dir")
        .arg(dir.join("shared"))
        .arg("--store-dir")
        .arg(dir.join("data"))
        .env("CHORDNET_RING__STABILIZE_INTERVAL", "100ms")
        .env("CHORDNET_RING__FIX_FINGERS_INTERVAL", "100ms")
        .env("CHORDNET_RING__CHECK_PREDECESSOR_INTERVAL", "100ms")
        // Generous for loopback: the suite runs many peers at once on two cores.
        .env("CHORDNET_RING__RPC_TIMEOUT", "1s")
        .env("CHORDNET_RING__JOIN_RETRY_INTERVAL", "200ms")
        .env("CHORDNET_FILES__REPAIR_INTERVAL", "300ms")
        .env("CHORDNET_FILES__REPUBLISH_INTERVAL", "1s")
        .env("CHORDNET_FILES__MAX_FILE_SIZE", "1MiB")
        .env("RUST_LOG", "warn")
        .env_remove("CHORDNET_CONFIG")
        .stdout(Stdio::null())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("peer log file")),
            None => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.with_extension("log"))
                    .expect("peer log file"),
            ),
        });
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start chordnet serve");
    PeerProcess {
        child: Some(child),
        advertise: advertise.to_string(),
        api: api.to_string(),
        dir: dir.to_path_buf(),
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// The process ids of the running peers.
    pub fn pids(&self) -> Vec<u32> {
        self.running()
            .iter()
            .filter_map(|p| p.child.as_ref().map(Child::id))
            .collect()
    }
}

/// `kind` (VmRSS or VmHWM) of a process, in bytes.
pub fn memory(pid: u32, kind: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(kind))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// MiB number `k` of a large test file: a pattern salted per MiB, so that no two blocks of
/// the file are alike (a pattern alone repeats, and the ring would store its blocks once).
pub fn big_file_mib(k: u64) -> bytes::Bytes {
    let piece = 1u64 << 20;
    let mut seed = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    seed = (seed ^ (seed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    seed = (seed ^ (seed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    bytes::Bytes::from(
        (k * piece..(k + 1) * piece)
            .map(|i| ((i.wrapping_mul(2654435761) >> 13) as u8) ^ (seed >> ((i % 8) * 8)) as u8)
            .collect::<Vec<u8>>(),
    )
}
