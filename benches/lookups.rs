//! Lookup throughput and cost of real peers on 127.0.0.1, through the REST API:
//!
//! ```text
//! cargo bench --bench lookups
//! LOOKUPS_PEERS=64 cargo bench --bench lookups
//! LOOKUPS_BASELINE=/path/to/old/chordnet LOOKUPS_TABLE_OFF=1 cargo bench --bench lookups
//! ```
//!
//! Starts one ring of `LOOKUPS_PEERS` (8) `chordnet serve` processes per build under test: this
//! build ("this"), and when asked the build at `LOOKUPS_BASELINE` ("base", e.g. main built into
//! another target dir) and this build with the membership table off ("table-off",
//! `CHORDNET_RING__MEMBERSHIP_TABLE_MAX=0`, with `LOOKUPS_TABLE_OFF=1`), and this build with
//! the variables of `LOOKUPS_EXTRA_ENV` ("env", e.g. `TOKIO_WORKER_THREADS=1`). All rings start side by
//! side; the load goes to one at a time, the rings taking turns at going first, for
//! `LOOKUPS_ROUNDS` (3) rounds of `LOOKUPS_SECS` (5) seconds per client count in
//! `LOOKUPS_CLIENTS` ("1,8,32"). While one ring is under load the others are stopped (SIGSTOP),
//! so their maintenance takes no CPU from it; a continued ring must be one ring of ready peers
//! again before its load starts (`LOOKUPS_SIDE_BY_SIDE=1`: all keep running, as before).
//!
//! The load generator is in lookups/load.rs: each client is one keep-alive HTTP/1.1 connection to one
//! peer's API (client i to peer i mod N), sending `GET /v1/lookup/<random key>` one after the
//! other, on a single-threaded runtime (one core at most). Printed per ring and client count
//! (medians over the rounds): lookups/s, p50 and p99 latency, the peers' CPU time per lookup
//! (utime + stime of every peer from /proc/<pid>/stat), the mean hops the answers report, and
//! the generator's own CPU (percent of one core), and the TCP connections opened during the
//! run (peer to peer, and to the API: the 4-tuples touching the ring's ports in
//! /proc/net/tcp{,6} that were not there before, TIME_WAIT included) and the peer-to-peer ones
//! closed during it (new in TIME_WAIT), so "no churn" is a figure;
//! then each ring's time to form, its memory per peer (RSS, of it anonymous, and Pss, which
//! shares the executable's pages among the peers that map them; idle, `LOOKUPS_IDLE_SECS` (30)
//! after the rings formed and before any load, and after the load) and in total, whether it is
//! still one ring of ready peers after the load, and the
//! ratios of this build to the others.
//!
//! `LOOKUPS_THIS=<binary>` runs that executable as "this" (to count an older build's costs with
//! `benches/lookups/counts.sh`, which divides the peers' malloc calls, system calls, context
//! switches and CPU under this bench's load by their lookups).
//!
//! `LOOKUPS_PEERS=256 LOOKUPS_CLIENTS=32 LOOKUPS_ROUNDS=1` is the large-ring check: 256 real
//! peers on one machine, the time until they form one ring (bounded: 60 s + 1 s per peer).
//!
//! Ports: picked free by the system, or consecutive from `LOOKUPS_PORT_BASE`. Everything it
//! starts is killed, and its directories removed, when it ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "lookups/load.rs"]
mod load;
#[path = "lookups/procfs.rs"]
mod procfs;
use load::{Run, load, medians};
use procfs::{Connections, Memory, connections, memory};

type Error = Box<dyn std::error::Error>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// One ring of peer processes.
struct Ring {
    label: String,
    binary: String,
    env: Vec<(String, String)>,
    apis: Vec<u16>,
    /// The peer-protocol ports.
    peers: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
    started: Instant,
}

impl Drop for Ring {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Ports {
    next: Option<u16>,
}

impl Ports {
    fn take(&mut self) -> Result<u16, Error> {
        if let Some(p) = self.next.as_mut() {
            // Skip ports in use (the base is in the system's ephemeral range).
            loop {
                let port = *p;
                *p = p.checked_add(1).ok_or("LOOKUPS_PORT_BASE: out of ports")?;
                if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return Ok(port);
                }
            }
        }
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }
}

impl Ring {
    fn start(
        label: &str,
        binary: &str,
        env: &[(&str, &str)],
        peers: usize,
        ports: &mut Ports,
    ) -> Result<Ring, Error> {
        let dir =
            std::env::temp_dir().join(format!("chordnet-lookups-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut ring = Ring {
            label: label.to_owned(),
            binary: binary.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            apis: Vec::new(),
            peers: Vec::new(),
            children: Vec::new(),
            dir,
            started: Instant::now(),
        };
        for i in 0..peers {
            let child = ring.spawn(i, ports)?;
            ring.children.push(child);
        }
        Ok(ring)
    }

    /// Starts peer `i` on two fresh ports (joining the first peer), recording them.
    fn spawn(&mut self, i: usize, ports: &mut Ports) -> Result<Child, Error> {
        let (peer, api) = (ports.take()?, ports.take()?);
        let d = self.dir.join(format!("p{i}"));
        std::fs::create_dir_all(d.join("shared"))?;
        let log = std::fs::File::create(self.dir.join(format!("p{i}.log")))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg("--advertise")
            .arg(format!("127.0.0.1:{peer}"))
            .arg("--api")
            .arg(format!("127.0.0.1:{api}"))
            .arg("--shared-dir")
            .arg(d.join("shared"))
            .arg("--store-dir")
            .arg(d.join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(first) = self.peers.first().filter(|_| i > 0) {
            cmd.arg("--bootstrap").arg(format!("127.0.0.1:{first}"));
        }
        if i < self.peers.len() {
            (self.peers[i], self.apis[i]) = (peer, api);
        } else {
            self.peers.push(peer);
            self.apis.push(api);
        }
        Ok(cmd.spawn()?)
    }

    /// Starts again, on fresh ports, every peer after the first that exited: between the
    /// bench picking a free port and the peer binding it, another process's outgoing
    /// connection may take it (both ranges are in the system's ephemeral range). Returns how
    /// many it restarted.
    fn restart_exited(&mut self, ports: &mut Ports) -> Result<usize, Error> {
        let mut restarted = 0;
        for i in 1..self.children.len() {
            if matches!(self.children[i].try_wait(), Ok(Some(_))) {
                self.children[i] = self.spawn(i, ports)?;
                restarted += 1;
            }
        }
        Ok(restarted)
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) every peer of the ring: only the ring under load
    /// runs, so the others' maintenance takes no CPU from it.
    fn pause(&self, stop: bool) {
        let mut kill = Command::new("kill");
        kill.arg(if stop { "-STOP" } else { "-CONT" });
        kill.args(self.pids().iter().map(u32::to_string));
        if !kill.status().is_ok_and(|s| s.success()) {
            eprintln!(
                "{}: kill -{} failed",
                self.label,
                if stop { "STOP" } else { "CONT" }
            );
        }
    }

    /// Continues the ring and every other one stops; waits (bounded) until it is one ring of
    /// ready peers again (a continued peer's timers fire at once, and a check in flight when it
    /// stopped may have timed out).
    fn run_alone(rings: &mut [Ring], i: usize) {
        if std::env::var("LOOKUPS_SIDE_BY_SIDE").is_ok_and(|v| v == "1") {
            return;
        }
        for (j, r) in rings.iter().enumerate() {
            if j != i {
                r.pause(true);
            }
        }
        rings[i].pause(false);
        if !rings[i].still_formed(Duration::from_secs(20)) {
            eprintln!(
                "{}: not one ring of ready peers after continuing",
                rings[i].label
            );
        }
    }

    /// The TCP connections (not listeners) with one end at a port of this ring.
    fn connections(&self) -> Connections {
        connections(&self.peers, &self.apis)
    }

    /// Whether every peer still runs and is ready, and a ring walk sees them all (each check
    /// retried within `limit`); restarts nothing.
    fn still_formed(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        if self
            .children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(Some(_))))
        {
            return false;
        }
        let ready = |api: u16| loop {
            if get(api, "/readyz").map(|(s, _)| s) == Some(200) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.apis.iter().all(|&api| ready(api))
            && loop {
                if let Some((200, body)) = get(self.apis[0], "/v1/ring") {
                    let nodes = body.matches("\"id\"").count();
                    if body.contains("\"complete\":true") && nodes == self.apis.len() {
                        break true;
                    }
                }
                if Instant::now() > until {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
    }

    /// Waits until every peer is ready and a ring walk from the first one sees all of them;
    /// says how many are ready every 15 s, and on failure why one is not (its `/readyz` and the
    /// end of its log).
    fn wait_formed(&mut self, limit: Duration, ports: &mut Ports) -> Result<(), Error> {
        let until = Instant::now() + limit;
        let mut waiting: Vec<usize> = (0..self.apis.len()).collect();
        let mut said = Instant::now();
        while !waiting.is_empty() {
            let restarted = self.restart_exited(ports)?;
            if restarted > 0 {
                eprintln!("{}: restarted {restarted} peers that exited", self.label);
            }
            waiting.retain(|&i| get(self.apis[i], "/readyz").map(|(s, _)| s) != Some(200));
            if waiting.is_empty() {
                break;
            }
            if said.elapsed() > Duration::from_secs(15) {
                said = Instant::now();
                eprintln!(
                    "{}: {} of {} peers ready after {:.0} s",
                    self.label,
                    self.apis.len() - waiting.len(),
                    self.apis.len(),
                    self.started.elapsed().as_secs_f64()
                );
            }
            if Instant::now() > until {
                let i = waiting[0];
                let why = get(self.apis[i], "/readyz").map_or(String::new(), |(_, b)| b);
                let log =
                    std::fs::read_to_string(self.dir.join(format!("p{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "{}: {} of {} peers not ready, e.g. peer {i} (API {}): {why}; its log ends: {}",
                    self.label,
                    waiting.len(),
                    self.apis.len(),
                    self.apis[i],
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            if let Some((200, body)) = get(self.apis[0], "/v1/ring") {
                let nodes = body.matches("\"id\"").count();
                if body.contains("\"complete\":true") && nodes == self.apis.len() {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                return Err(format!("{}: the ring walk never saw every peer", self.label).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A blocking GET on a fresh connection: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = StdTcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    r.read_to_string(&mut rest).ok()?;
    let body = rest
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

fn main() -> Result<(), Error> {
    let peers: usize = env_or("LOOKUPS_PEERS", 8).max(1);
    let secs: f64 = env_or("LOOKUPS_SECS", 5.0);
    let rounds: usize = env_or("LOOKUPS_ROUNDS", 3).max(1);
    let clients: Vec<usize> = std::env::var("LOOKUPS_CLIENTS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .collect();
    let mut ports = Ports {
        next: std::env::var("LOOKUPS_PORT_BASE")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    // `LOOKUPS_THIS`: another executable in the place of this build (benches/lookups/counts.sh
    // of an older build).
    let this =
        std::env::var("LOOKUPS_THIS").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chordnet").to_owned());
    let mut rings = vec![Ring::start("this", &this, &[], peers, &mut ports)?];
    if let Ok(base) = std::env::var("LOOKUPS_BASELINE") {
        rings.push(Ring::start("base", &base, &[], peers, &mut ports)?);
    }
    // Another ring of this build with extra environment, e.g. `TOKIO_WORKER_THREADS=1`.
    if let Ok(extra) = std::env::var("LOOKUPS_EXTRA_ENV") {
        let env: Vec<(&str, &str)> = extra
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        rings.push(Ring::start("env", &this, &env, peers, &mut ports)?);
    }
    if std::env::var("LOOKUPS_TABLE_OFF").is_ok_and(|v| v == "1") {
        let off = [("CHORDNET_RING__MEMBERSHIP_TABLE_MAX", "0")];
        rings.push(Ring::start("table-off", &this, &off, peers, &mut ports)?);
    }
    let limit = Duration::from_secs(60 + peers as u64);
    let mut formed = Vec::new();
    for r in &mut rings {
        r.wait_formed(limit, &mut ports)?;
        formed.push(r.started.elapsed().as_secs_f64());
    }
    // Idle memory once start-up is over: a peer gives back its start-up pages 5 s after it is
    // first ready and again 15 s later (`memory.release_code_interval`), so the rings idle
    // `LOOKUPS_IDLE_SECS` (30) after the last one formed.
    let idle_secs: f64 = env_or("LOOKUPS_IDLE_SECS", 30.0);
    std::thread::sleep(Duration::from_secs_f64(idle_secs.max(0.0)));
    let idle: Vec<Memory> = rings.iter().map(|r| memory(&r.pids())).collect();
    println!(
        "lookups: {peers} peers per ring, rings {}, {rounds} rounds of {secs} s per client count",
        rings
            .iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Warm up: every ring answers lookups for a moment (connections, tables, fingers).
    for i in 0..rings.len() {
        Ring::run_alone(&mut rings, i);
        load(&rt, &rings[i], 8, 2.0, 0);
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); rings.len()];
    for (r, secs) in rings.iter().zip(&formed) {
        println!(
            "{:<10} formed one ring of {peers} ready peers within {secs:.1} s of the first start",
            r.label
        );
    }
    println!(
        "{:<10} {:>7} {:>10} {:>8} {:>8} {:>14} {:>6} {:>10} {:>6} {:>10} {:>11} {:>9}",
        "ring",
        "clients",
        "lookups/s",
        "p50 ms",
        "p99 ms",
        "peer CPU ms/op",
        "hops",
        "gen CPU %",
        "errors",
        "peer conns",
        "peer closed",
        "API conns"
    );
    for &c in &clients {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); rings.len()];
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..rings.len()).collect();
            order.rotate_left(round % rings.len());
            for i in order {
                Ring::run_alone(&mut rings, i);
                runs[i].push(load(&rt, &rings[i], c, secs, (round * 7919 + c) as u64));
            }
        }
        for (i, r) in rings.iter().enumerate() {
            let m = medians(&runs[i]);
            println!(
                "{:<10} {:>7} {:>10.0} {:>8.3} {:>8.3} {:>14.4} {:>6.3} {:>10.1} {:>6} {:>10.0} {:>11.0} {:>9.0}",
                r.label,
                c,
                m.per_second,
                m.p50_ms,
                m.p99_ms,
                m.peer_cpu_ms_per_lookup,
                m.hops,
                m.generator_cpu_percent,
                m.errors,
                m.peer_conns,
                m.peer_closed,
                m.api_conns
            );
            results[i].push(m);
        }
    }
    println!(
        "(peer conns, API conns: TCP connections opened during one run (a ring that waited longer \
         than transport.idle_timeout for its turn starts with no open peer connection); peer \
         closed: peer-to-peer connections closed during it (new in TIME_WAIT), the churn; \
         medians)"
    );
    for r in &rings {
        r.pause(false);
    }
    for (i, r) in rings.iter_mut().enumerate() {
        println!(
            "{:<10} idle ({idle_secs:.0} s after forming): {}",
            r.label, idle[i]
        );
        println!("{:<10} after the load: {}", r.label, memory(&r.pids()));
        let still = r.still_formed(Duration::from_secs(30));
        println!(
            "{:<10} after the load: one ring of {peers} ready peers: {}; {} connections of the ring in TIME_WAIT",
            r.label,
            if still { "yes" } else { "NO" },
            r.connections().time_wait
        );
    }
    for (i, r) in rings.iter().enumerate().skip(1) {
        for (k, &c) in clients.iter().enumerate() {
            let (a, b) = (&results[0][k], &results[i][k]);
            println!(
                "this/{} at {c} clients: lookups/s {:.2}x, peer CPU per lookup {:.2}x, p50 {:.2}x, p99 {:.2}x",
                r.label,
                a.per_second / b.per_second.max(1e-9),
                a.peer_cpu_ms_per_lookup / b.peer_cpu_ms_per_lookup.max(1e-9),
                a.p50_ms / b.p50_ms.max(1e-9),
                a.p99_ms / b.p99_ms.max(1e-9),
            );
        }
    }
    Ok(())
}
