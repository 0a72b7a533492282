//! The rings: one running ring and what was measured on it, and starting them all at once.

use std::sync::Arc;
use std::time::Duration;

use chordnet::id::Id;

use crate::cluster::{Cluster, free_ports, spawn_logged, wait_for};
use crate::cpu::{Cpu, cpu_ticks};
use crate::settings::{Settings, Setup};

/// One running ring and what was measured on it.
pub(crate) struct Ring {
    pub(crate) setup: Setup,
    pub(crate) cluster: Cluster,
    /// `http://127.0.0.1:PORT` of every peer's API.
    pub(crate) apis: Arc<[String]>,
    /// Lookups/s of every round, in round order.
    pub(crate) rates: Vec<f64>,
    /// Latency of every measured lookup, µs.
    pub(crate) latencies: Vec<u64>,
    /// Hops of the measured lookups, summed (as the answers report them).
    pub(crate) hops: u64,
    pub(crate) errors: usize,
    pub(crate) measured: usize,
    /// Lookups sent to the ring, warm-up included (what its traces are counted against).
    pub(crate) issued: usize,
    /// CPU used during the ring's own measurements.
    pub(crate) cpu: Cpu,
    /// Wall time of the ring's own measurements.
    pub(crate) wall: Duration,
    /// CPU ticks of the ring's peers during the idle window.
    pub(crate) idle_ticks: u64,
}

impl Ring {
    pub(crate) fn cpu_ticks(&self) -> u64 {
        self.cluster
            .peers
            .iter()
            .filter_map(|p| p.child.as_ref())
            .filter_map(|c| cpu_ticks(&format!("/proc/{}/stat", c.id())))
            .sum()
    }
}

/// The node id of peer `i` of every ring: the rings share their ids, so they have the same
/// shape (finger tables, successor lists) and a key takes the same path in each of them.
fn node_id(i: usize) -> Id {
    Id::hash(format!("tracing-bench-peer-{i}"))
}

/// Starts the peers of every ring at once (the first peer of a ring founds it, the others join
/// through it), then waits until every ring is ready and agrees on its members.
pub(crate) async fn start_rings(settings: &Settings, setups: Vec<Setup>) -> Vec<Ring> {
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
