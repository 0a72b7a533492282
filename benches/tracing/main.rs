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

#[path = "../../tests/support/cluster.rs"]
mod cluster;
mod cpu;
mod load;
#[path = "../../tests/support/otlp/mod.rs"]
mod otlp;
mod report;
mod rings;
mod settings;
mod spans;

use std::time::{Duration, Instant};

use cpu::Cpu;
use load::lookups;
use otlp::Receiver;
use report::report;
use rings::{Ring, start_rings};
use settings::{Settings, setups};
use spans::{Tally, ring_metric};

/// The name of the receiver runtime's threads (their CPU time is read from /proc).
pub(crate) const RECEIVER_THREAD: &str = "otlp-receiver";

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
