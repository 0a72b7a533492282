//! `cargo bench --bench tracing`: lookup throughput of real `chordnet serve` rings with
//! OpenTelemetry trace export on (sampling 100 % and 1 %) versus off, measured in the same run,
//! reported as ratios.
//!
//! One ring of peers per configuration, all running at once on 127.0.0.1:
//! - `off`: no `OTEL_*` variable (no exporter, no spans);
//! - `100 % http`: OTLP/HTTP protobuf, sampler `parentbased_always_on`;
//! - `1 % http`: OTLP/HTTP protobuf, sampler `parentbased_traceidratio` with argument 0.01;
//! - `100 % grpc` (unless `TRACING_BENCH_GRPC=0`): OTLP/gRPC, `parentbased_always_on`.
//!
//! The exporting rings send to one in-process OTLP receiver (`tests/support/otlp/`, on its own
//! runtime thread so its decoding does not stall the load generator). A round issues the same
//! number of `GET /v1/lookup/{key}` requests (distinct keys) to every ring in turn, from
//! concurrent client tasks over one pooled HTTP client, spread round-robin over the ring's
//! peers; the order of the rings rotates every round to cancel drift. The rings' peers are given
//! the same node ids, so every ring has the same shape and a key takes the same path (same hops)
//! in each. Reported per ring: the median lookups/s over the rounds and its ratio to `off`,
//! latency mean/p50/p99, the CPU its peers, the other rings, the receiver and the load generator
//! used per lookup (from /proc: more stable than throughput on a shared machine), the spans that
//! reached the receiver per lookup, and the exporter's own counters from the peers' `/metrics`.
//!
//! Sizes (environment): `TRACING_BENCH_LOOKUPS` per ring and round (10000), `TRACING_BENCH_ROUNDS`
//! (7), `TRACING_BENCH_CONCURRENCY` (16), `TRACING_BENCH_PEERS` (5), `TRACING_BENCH_GRPC` (1),
//! `TRACING_BENCH_BSP_DELAY_MS` (unset: the SDK's `OTEL_BSP_SCHEDULE_DELAY` default, 5000 ms).

#[path = "../tests/support/cluster.rs"]
mod cluster;
#[path = "../tests/support/otlp/mod.rs"]
mod otlp;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chordnet::id::Id;
use cluster::{Cluster, free_ports, spawn_logged, wait_for};
use otlp::{Receiver, SpanKind};
use tokio::task::JoinSet;

/// The name of the API server span of a lookup by key (the root of a lookup's trace).
const LOOKUP_SPAN: &str = "GET /v1/lookup/{key}";
/// Linux reports process CPU time in ticks of 1/100 s to user space.
const TICKS_PER_SECOND: f64 = 100.0;
/// The name of the receiver runtime's threads (their CPU time is read from /proc).
const RECEIVER_THREAD: &str = "otlp-receiver";

struct Settings {
    lookups: usize,
    rounds: usize,
    concurrency: usize,
    peers: usize,
    grpc: bool,
    bsp_delay_ms: Option<u64>,
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let s = Settings {
            lookups: env_number("TRACING_BENCH_LOOKUPS", 10_000) as usize,
            rounds: env_number("TRACING_BENCH_ROUNDS", 7) as usize,
            concurrency: env_number("TRACING_BENCH_CONCURRENCY", 16) as usize,
            peers: env_number("TRACING_BENCH_PEERS", 5) as usize,
            grpc: env_number("TRACING_BENCH_GRPC", 1) != 0,
            bsp_delay_ms: std::env::var("TRACING_BENCH_BSP_DELAY_MS")
                .ok()
                .map(|_| env_number("TRACING_BENCH_BSP_DELAY_MS", 0)),
        };
        assert!(
            s.lookups > 0 && s.rounds > 0 && s.concurrency > 0 && s.peers > 0,
            "sizes must be at least 1"
        );
        s
    }

    fn print(&self) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("## Lookup throughput with trace export on vs off");
        println!();
        println!(
            "- lookups per ring per round: {} (TRACING_BENCH_LOOKUPS)",
            self.lookups
        );
        println!("- rounds: {} (TRACING_BENCH_ROUNDS)", self.rounds);
        println!(
            "- concurrent clients: {} (TRACING_BENCH_CONCURRENCY), one pooled HTTP/1.1 client, round-robin over the ring's peers",
            self.concurrency
        );
        println!("- peers per ring: {} (TRACING_BENCH_PEERS)", self.peers);
        println!(
            "- 100 % over gRPC ring: {} (TRACING_BENCH_GRPC)",
            if self.grpc { "yes" } else { "no" }
        );
        println!(
            "- OTEL_BSP_SCHEDULE_DELAY: {} (TRACING_BENCH_BSP_DELAY_MS)",
            self.bsp_delay_ms.map_or_else(
                || "SDK default (5000 ms)".to_string(),
                |d| format!("{d} ms")
            )
        );
        println!("- CPU cores: {cores}; peers run with 100 ms maintenance intervals");
        println!();
    }

    /// How long the tail of the exports may take to arrive once the load stops.
    fn export_tail(&self) -> Duration {
        Duration::from_millis(self.bsp_delay_ms.unwrap_or(5000) + 1500)
    }
}

/// One ring's configuration.
struct Setup {
    label: &'static str,
    /// `OTEL_SERVICE_NAME` of its peers (empty: export off); tells its spans apart.
    service: &'static str,
    sampler: &'static str,
    env: Vec<(String, String)>,
}

fn setups(settings: &Settings, endpoint: &str) -> Vec<Setup> {
    let exporting = |service: &str, protocol: &str, sampler: &str, arg: Option<&str>| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_TRACES_SAMPLER", sampler),
        ];
        if let Some(arg) = arg {
            env.push(("OTEL_TRACES_SAMPLER_ARG", arg));
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(d) = settings.bsp_delay_ms {
            env.push(("OTEL_BSP_SCHEDULE_DELAY".to_string(), d.to_string()));
        }
        env
    };
    let mut setups = vec![
        Setup {
            label: "off",
            service: "",
            sampler: "- (no OTEL vars)",
            env: Vec::new(),
        },
        Setup {
            label: "100 % http",
            service: "bench-100-http",
            sampler: "parentbased_always_on",
            env: exporting(
                "bench-100-http",
                "http/protobuf",
                "parentbased_always_on",
                None,
            ),
        },
        Setup {
            label: "1 % http",
            service: "bench-1-http",
            sampler: "parentbased_traceidratio 0.01",
            env: exporting(
                "bench-1-http",
                "http/protobuf",
                "parentbased_traceidratio",
                Some("0.01"),
            ),
        },
    ];
    if settings.grpc {
        setups.push(Setup {
            label: "100 % grpc",
            service: "bench-100-grpc",
            sampler: "parentbased_always_on",
            env: exporting("bench-100-grpc", "grpc", "parentbased_always_on", None),
        });
    }
    setups
}

/// One running ring and what was measured on it.
struct Ring {
    setup: Setup,
    cluster: Cluster,
    /// `http://127.0.0.1:PORT` of every peer's API.
    apis: Arc<[String]>,
    /// Lookups/s of every round, in round order.
    rates: Vec<f64>,
    /// Latency of every measured lookup, µs.
    latencies: Vec<u64>,
    /// Hops of the measured lookups, summed (as the answers report them).
    hops: u64,
    errors: usize,
    measured: usize,
    /// Lookups sent to the ring, warm-up included (what its traces are counted against).
    issued: usize,
    /// CPU used during the ring's own measurements.
    cpu: Cpu,
    /// Wall time of the ring's own measurements.
    wall: Duration,
    /// CPU ticks of the ring's peers during the idle window.
    idle_ticks: u64,
}

impl Ring {
    fn cpu_ticks(&self) -> u64 {
        self.cluster
            .peers
            .iter()
            .filter_map(|p| p.child.as_ref())
            .filter_map(|c| cpu_ticks(&format!("/proc/{}/stat", c.id())))
            .sum()
    }
}

/// user + system CPU ticks from a `/proc/…/stat` file (0 when unreadable, e.g. not Linux).
fn cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), starting at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// CPU ticks of this process's receiver threads.
fn receiver_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(RECEIVER_THREAD))
        })
        .filter_map(|t| cpu_ticks(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// CPU ticks by who used them.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The peers of the ring measured.
    own: u64,
    /// The peers of the other rings (idle: maintenance, and its export where on).
    others: u64,
    /// The receiver's threads.
    receiver: u64,
    /// The rest of this process: the load generator.
    client: u64,
    /// Every process on the machine (busy ticks of all CPUs, from /proc/stat).
    machine: u64,
}

/// Busy ticks of all CPUs together (all but idle and iowait), from /proc/stat.
fn machine_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    cpu.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(k, _)| *k != 3 && *k != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

impl Cpu {
    /// Now, with ring `measured` as the own ring.
    fn now(rings: &[Ring], measured: usize) -> Cpu {
        let mut cpu = Cpu::default();
        for (i, ring) in rings.iter().enumerate() {
            if i == measured {
                cpu.own += ring.cpu_ticks();
            } else {
                cpu.others += ring.cpu_ticks();
            }
        }
        cpu.receiver = receiver_ticks();
        cpu.client = cpu_ticks("/proc/self/stat")
            .unwrap_or(0)
            .saturating_sub(cpu.receiver);
        cpu.machine = machine_ticks();
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            own: self.own.saturating_sub(before.own),
            others: self.others.saturating_sub(before.others),
            receiver: self.receiver.saturating_sub(before.receiver),
            client: self.client.saturating_sub(before.client),
            machine: self.machine.saturating_sub(before.machine),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.own += other.own;
        self.others += other.others;
        self.receiver += other.receiver;
        self.client += other.client;
        self.machine += other.machine;
    }

    fn total(&self) -> u64 {
        self.own + self.others + self.receiver + self.client
    }
}

fn ms_of_ticks(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / TICKS_PER_SECOND
}

/// The node id of peer `i` of every ring: the rings share their ids, so they have the same
/// shape (finger tables, successor lists) and a key takes the same path in each of them.
fn node_id(i: usize) -> Id {
    Id::hash(format!("tracing-bench-peer-{i}"))
}

/// Starts the peers of every ring at once (the first peer of a ring founds it, the others join
/// through it), then waits until every ring is ready and agrees on its members.
async fn start_rings(settings: &Settings, setups: Vec<Setup>) -> Vec<Ring> {
    let n = settings.peers;
    // All ports at once, so no two rings can be handed the same free port.
    let ports = free_ports(2 * n * setups.len());
    let mut rings = Vec::new();
    for (r, setup) in setups.into_iter().enumerate() {
        let name = format!("bench-tracing-{}", setup.label.replace([' ', '%'], ""));
        let (mut cluster, _) = Cluster::empty(&name, 0);
        std::fs::create_dir_all(&cluster.root).expect("cluster dir");
        let ports = &ports[2 * n * r..2 * n * (r + 1)];
        let bootstrap = format!("127.0.0.1:{}", ports[0]);
        let mut apis = Vec::new();
        for i in 0..n {
            let advertise = format!("127.0.0.1:{}", ports[2 * i]);
            let api = format!("127.0.0.1:{}", ports[2 * i + 1]);
            let dir = cluster.root.join(format!("peer-{i}"));
            let log = cluster.root.join(format!("peer-{i}.log"));
            let id = node_id(i).to_string();
            let env: Vec<(&str, &str)> = setup
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("CHORDNET_NODE__ID", id.as_str())])
                .collect();
            let peer = spawn_logged(
                &advertise,
                &api,
                &dir,
                (i > 0).then_some(&bootstrap),
                &env,
                Some(&log),
            );
            apis.push(format!("http://{api}"));
            cluster.peers.push(peer);
        }
        rings.push(Ring {
            setup,
            cluster,
            apis: apis.into(),
            rates: Vec::new(),
            latencies: Vec::new(),
            hops: 0,
            errors: 0,
            measured: 0,
            issued: 0,
            cpu: Cpu::default(),
            wall: Duration::ZERO,
            idle_ticks: 0,
        });
    }
    for ring in &rings {
        let c = &ring.cluster;
        wait_for("all peers ready", Duration::from_secs(90), || c.all_ready()).await;
        wait_for("ring walks agree", Duration::from_secs(60), || {
            ring_converged(ring)
        })
        .await;
    }
    rings
}

/// Whether every peer's ring walk is complete and lists all the peers' ids in ring order.
/// (`Cluster::rings_agree` assumes ids hashed from the addresses; these peers are given theirs.)
async fn ring_converged(ring: &Ring) -> bool {
    let mut ids: Vec<Id> = (0..ring.apis.len()).map(node_id).collect();
    ids.sort();
    for (i, api) in ring.apis.iter().enumerate() {
        let Some((200, walk)) = ring.cluster.get(&format!("{api}/v1/ring")).await else {
            return false;
        };
        let walked: Vec<Id> = walk["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["id"].as_str()?.parse().ok())
            .collect();
        let mut expected = ids.clone();
        let start = ids.iter().position(|&id| id == node_id(i)).unwrap_or(0);
        expected.rotate_left(start);
        if walk["complete"] != true || walked != expected {
            return false;
        }
    }
    true
}

/// What one batch of lookups took.
struct Batch {
    elapsed: Duration,
    latencies: Vec<u64>,
    hops: u64,
    errors: usize,
}

/// The `hops` of a lookup answer, without parsing the whole JSON.
fn hops_of(body: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = b"\"hops\":";
    let at = body.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// `n` lookups of the keys `{prefix}-0 … {prefix}-(n-1)` from `concurrency` tasks, lookup `i`
/// sent to peer `i mod peers`.
async fn lookups(
    http: &reqwest::Client,
    apis: &Arc<[String]>,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Batch {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (http, apis, next, prefix) = (
            http.clone(),
            Arc::clone(apis),
            Arc::clone(&next),
            prefix.to_string(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(n / concurrency + 1);
            let mut errors = 0;
            let mut hops = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let url = format!("{}/v1/lookup/{prefix}-{i}", apis[i % apis.len()]);
                let sent = Instant::now();
                let ok = match http.get(&url).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        // Read the whole answer, so the connection goes back to the pool.
                        match resp.bytes().await {
                            Ok(body) if status == reqwest::StatusCode::OK => {
                                hops += hops_of(&body).unwrap_or(0);
                                true
                            }
                            _ => false,
                        }
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            (latencies, hops, errors)
        });
    }
    let mut batch = Batch {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(n),
        hops: 0,
        errors: 0,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, hops, errors) = done.expect("client task");
        batch.latencies.extend(latencies);
        batch.hops += hops;
        batch.errors += errors;
    }
    batch.elapsed = started.elapsed();
    batch
}

/// Spans received so far, by trace, with the receiver emptied after every look (it keeps every
/// span in memory otherwise).
#[derive(Default)]
struct Tally {
    traces: HashMap<u128, TraceTally>,
    /// Spans received, by ring (index in the rings).
    spans: Vec<u64>,
    http_exports: usize,
    grpc_exports: usize,
}

#[derive(Default)]
struct TraceTally {
    ring: usize,
    spans: u32,
    /// The API server span of a lookup by key arrived: this trace is a lookup's.
    lookup: bool,
}

impl Tally {
    fn new(rings: usize) -> Tally {
        Tally {
            spans: vec![0; rings],
            ..Tally::default()
        }
    }

    /// Moves what the receiver holds into the tally and empties the receiver.
    async fn drain(&mut self, receiver: &Receiver, rings: &[Ring]) {
        // The receiver has no "take": copy, then clear. An export recorded in between would be
        // lost, so copy again unless the export count stayed the same across the copy and a
        // pause after it (an export that waited for the lock during the copy gets it then).
        // What remains is the gap between two consecutive lock holds.
        let (spans, exports) = loop {
            let before = receiver.exports();
            let spans = receiver.spans();
            tokio::time::sleep(Duration::from_millis(2)).await;
            let exports = receiver.exports();
            if exports == before {
                receiver.clear();
                break (spans, exports);
            }
        };
        self.http_exports += exports.http;
        self.grpc_exports += exports.grpc;
        for span in spans {
            let Some(ring) = rings.iter().position(|r| {
                !r.setup.service.is_empty() && span.service_name() == Some(r.setup.service)
            }) else {
                continue;
            };
            self.spans[ring] += 1;
            let Ok(trace) = u128::from_str_radix(&span.trace_id, 16) else {
                continue;
            };
            let t = self.traces.entry(trace).or_default();
            t.ring = ring;
            t.spans += 1;
            if span.name == LOOKUP_SPAN && span.kind == SpanKind::Server {
                t.lookup = true;
            }
        }
    }

    /// (lookup traces, spans in them) of ring `ring`.
    fn lookup_traces(&self, ring: usize) -> (usize, u64) {
        self.traces
            .values()
            .filter(|t| t.ring == ring && t.lookup)
            .fold((0, 0), |(n, s), t| (n + 1, s + u64::from(t.spans)))
    }
}

/// The value of an unlabelled metric in a peer's `/metrics` (None when absent).
async fn metric(http: &reqwest::Client, api: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of a metric over a ring's peers.
async fn ring_metric(http: &reqwest::Client, ring: &Ring, name: &str) -> Option<f64> {
    let mut sum = 0.0;
    for api in ring.apis.iter() {
        sum += metric(http, api, name).await?;
    }
    Some(sum)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(settings: &Settings, receiver: &Receiver) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(settings.concurrency)
        .build()
        .expect("http client");
    let started = Instant::now();
    let mut rings = start_rings(settings, setups(settings, &receiver.endpoint())).await;
    println!(
        "{} rings of {} peers converged in {:.1} s",
        rings.len(),
        settings.peers,
        started.elapsed().as_secs_f64()
    );
    let mut tally = Tally::new(rings.len());

    // Warm-up: connections (client to API, peer to peer) and finger tables.
    let warm = (settings.lookups / 5).max(100);
    for ring in &mut rings {
        let b = lookups(&http, &ring.apis, "warm", warm, settings.concurrency).await;
        ring.issued += warm;
        if b.errors > 0 {
            println!("warm-up of {}: {} errors", ring.setup.label, b.errors);
        }
    }
    tally.drain(receiver, &rings).await;

    // Idle: what the rings cost with no load (maintenance, and its traces where exported).
    let idle = Duration::from_secs(3);
    let before: Vec<u64> = rings.iter().map(Ring::cpu_ticks).collect();
    tokio::time::sleep(idle).await;
    for (ring, b) in rings.iter_mut().zip(before) {
        ring.idle_ticks = ring.cpu_ticks().saturating_sub(b);
    }
    tally.drain(receiver, &rings).await;

    println!();
    println!("| round | order and lookups/s |");
    println!("|---:|---|");
    let k = rings.len();
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..k).collect();
        order.rotate_left(round % k);
        let mut line = Vec::new();
        for &r in &order {
            let cpu_before = Cpu::now(&rings, r);
            let prefix = format!("r{round}");
            let b = lookups(
                &http,
                &rings[r].apis,
                &prefix,
                settings.lookups,
                settings.concurrency,
            )
            .await;
            let cpu = Cpu::now(&rings, r).since(cpu_before);
            let ring = &mut rings[r];
            ring.cpu.add(cpu);
            ring.wall += b.elapsed;
            let rate = settings.lookups as f64 / b.elapsed.as_secs_f64();
            ring.rates.push(rate);
            ring.latencies.extend(b.latencies);
            ring.hops += b.hops;
            ring.errors += b.errors;
            ring.measured += settings.lookups;
            ring.issued += settings.lookups;
            line.push(format!("{} {:.0}", ring.setup.label, rate));
            tally.drain(receiver, &rings).await;
        }
        println!("| {} | {} |", round + 1, line.join(" → "));
    }

    // The last batches: wait for the schedule delay, then read the exporters' counters and
    // what arrived at the same moment (an export counts once the receiver answered it).
    tokio::time::sleep(settings.export_tail()).await;
    let mut exported = Vec::new();
    for ring in &rings {
        exported.push((
            ring_metric(&http, ring, "chordnet_trace_spans_exported_total").await,
            ring_metric(&http, ring, "chordnet_trace_export_failures_total").await,
        ));
    }
    tally.drain(receiver, &rings).await;

    report(settings, &rings, &tally, &exported, idle);
}

fn report(
    settings: &Settings,
    rings: &[Ring],
    tally: &Tally,
    exported: &[(Option<f64>, Option<f64>)],
    idle: Duration,
) {
    let off = median(&rings[0].rates);
    println!();
    println!(
        "### Throughput ({} rounds × {} lookups per ring, {} concurrent clients)",
        settings.rounds, settings.lookups, settings.concurrency
    );
    println!();
    println!(
        "| ring | sampler | lookups/s (median) | min | max | × off (ratio of medians) | × off (median of per-round ratios) | mean ms | p50 ms | p99 ms | errors | hops per lookup |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ring in rings {
        let med = median(&ring.rates);
        let min = ring.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ring.rates.iter().copied().fold(0.0, f64::max);
        let per_round: Vec<f64> = ring
            .rates
            .iter()
            .zip(&rings[0].rates)
            .map(|(a, b)| a / b)
            .collect();
        let mut lat = ring.latencies.clone();
        lat.sort_unstable();
        let mean = lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {} | {:.3} |",
            ring.setup.label,
            ring.setup.sampler,
            med,
            min,
            max,
            med / off,
            median(&per_round),
            mean,
            percentile(&lat, 0.50) as f64 / 1000.0,
            percentile(&lat, 0.99) as f64 / 1000.0,
            ring.errors,
            ring.hops as f64 / ring.measured as f64,
        );
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!();
    println!(
        "### CPU during each ring's measurements (ms per lookup; /proc ticks of 10 ms), and idle"
    );
    println!();
    println!(
        "| ring | its peers | its peers × off | other rings' peers | OTLP receiver | load generator | total (this bench) | CPUs busy: this bench % | CPUs busy: all processes % | idle: its peers, % of a core |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let own_off = ms_of_ticks(rings[0].cpu.own) / rings[0].measured as f64;
    for ring in rings {
        let per = |ticks: u64| ms_of_ticks(ticks) / ring.measured as f64;
        let capacity = ring.wall.as_secs_f64() * 1000.0 * cores;
        let busy = ms_of_ticks(ring.cpu.total()) / capacity;
        let machine = ms_of_ticks(ring.cpu.machine) / capacity;
        println!(
            "| {} | {:.4} | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0} | {:.0} | {:.1} |",
            ring.setup.label,
            per(ring.cpu.own),
            per(ring.cpu.own) / own_off,
            per(ring.cpu.others),
            per(ring.cpu.receiver),
            per(ring.cpu.client),
            per(ring.cpu.total()),
            100.0 * busy,
            100.0 * machine,
            ms_of_ticks(ring.idle_ticks) / idle.as_secs_f64() / 10.0,
        );
    }
    println!();
    println!("Ratios (median lookups/s with export on / off):");
    for ring in &rings[1..] {
        println!(
            "- {} / off = {:.3}",
            ring.setup.label,
            median(&ring.rates) / off
        );
    }

    println!();
    println!("### Spans");
    println!();
    println!(
        "| ring | lookups sent (warm-up included) | lookup traces received | fraction traced | spans per traced lookup | spans per lookup | spans received (all, maintenance included) | chordnet_trace_spans_exported_total (peers' sum) | received − exported | chordnet_trace_export_failures_total |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    for (i, ring) in rings.iter().enumerate() {
        let (traces, spans) = tally.lookup_traces(i);
        let per_trace = if traces > 0 {
            format!("{:.2}", spans as f64 / traces as f64)
        } else {
            "-".to_string()
        };
        println!(
            "| {} | {} | {} | {:.4} | {} | {:.3} | {} | {} | {} | {} |",
            ring.setup.label,
            ring.issued,
            traces,
            traces as f64 / ring.issued as f64,
            per_trace,
            spans as f64 / ring.issued as f64,
            tally.spans[i],
            show(exported[i].0),
            exported[i].0.map_or_else(
                || "-".to_string(),
                |e| format!("{:+.0}", tally.spans[i] as f64 - e)
            ),
            show(exported[i].1),
        );
    }
    println!();
    println!(
        "received − exported: exports in flight when the counters were read (> 0), spans lost (< 0)."
    );
    println!();
    println!(
        "Export requests received: {} over OTLP/HTTP, {} over OTLP/gRPC.",
        tally.http_exports, tally.grpc_exports
    );
}

fn main() {
    let settings = Settings::from_env();
    settings.print();
    // The receiver decodes on its own thread, apart from the load generator's.
    let receiver_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(RECEIVER_THREAD)
        .enable_all()
        .build()
        .expect("receiver runtime");
    let receiver = receiver_rt.block_on(Receiver::start());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime");
    let started = Instant::now();
    // The rings (and their peer processes) are dropped at the end of `run`.
    rt.block_on(run(&settings, &receiver));
    drop(rt);
    drop(receiver);
    drop(receiver_rt);
    println!();
    println!("Total bench time: {:.1} s", started.elapsed().as_secs_f64());
}
