//! The report: throughput, CPU and spans per ring, as Markdown tables.

use std::time::Duration;

use crate::cpu::ms_of_ticks;
use crate::rings::Ring;
use crate::settings::Settings;
use crate::spans::Tally;

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

pub(crate) fn report(
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
