//! `cargo bench --bench ring`: the figures of the ring simulator, printed as a Markdown table.
//!
//! Hop counts for N = 64 … 10,000 and the wall time of 10,000 nodes with 1,000,000 lookups, each
//! with the membership table off (Chord routing alone) and on (`ring.membership_table_max`
//! 4,096, the default). Pass `quick` (`cargo bench --bench ring -- quick`) to stop at 4,096
//! nodes.

use chordnet::sim::scenario::{Report, Scenario};

fn run(nodes: usize, lookups: usize, table: usize) -> Report {
    Scenario {
        nodes,
        lookups,
        membership_table_max: table,
        ..Scenario::default()
    }
    .run(&mut |_| {})
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let mut sizes = vec![
        (64, 100_000),
        (256, 100_000),
        (1024, 100_000),
        (4096, 100_000),
    ];
    if !quick {
        sizes.push((10_000, 1_000_000));
    }
    println!(
        "| N | table max | rounds to converge | hops mean | p50 | p99 | max | ½·log2 N | lookups | correct | maintenance msg/node/s | wall s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((nodes, lookups), table) in sizes.into_iter().flat_map(|s| [(s, 0), (s, 4096)]) {
        let r = run(nodes, lookups, table);
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {:.3}% | {:.1} | {:.1} |",
            r.nodes,
            r.membership_table_max,
            r.converge_rounds
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
            r.hops_mean,
            r.hops_p50,
            r.hops_p99,
            r.hops_max,
            r.hops_expected,
            r.lookups,
            100.0 * r.lookup_success_rate,
            r.maintenance_messages_per_node_per_second,
            r.wall_seconds
        );
    }
}
