//! Real peers whose API port is their peer port + 1, the layout the ring page's gather
//! expects (every peer at the same API-to-peer port offset, as in a StatefulSet or
//! `chordnet dev`). Include beside `support/cluster.rs` (as `mod cluster`).
#![allow(dead_code)]

use std::net::TcpListener;

use super::cluster::{Cluster, PeerProcess, spawn_logged};

/// `n` ports `p` such that `p` and `p + 1` were both free.
pub fn port_pairs(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    while out.len() < n {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = a.local_addr().expect("local addr").port();
        if p == u16::MAX {
            continue;
        }
        if let Ok(b) = TcpListener::bind(("127.0.0.1", p + 1)) {
            out.push(p);
            held.push((a, b));
        }
    }
    out
}

/// Starts peer `i` on `port` (API on `port + 1`), joining through `bootstrap`.
pub fn spawn_paired(c: &Cluster, i: usize, port: u16, bootstrap: Option<&String>) -> PeerProcess {
    spawn_logged(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", port + 1),
        &c.root.join(format!("peer-{i}")),
        bootstrap,
        &[],
        None,
    )
}

/// `n` peers with paired ports (the first founds), plus `spare` pairs for peers started later.
pub fn start_paired(name: &str, n: usize, spare: usize) -> (Cluster, Vec<u16>) {
    let (mut c, _) = Cluster::empty(name, 0);
    let ports = port_pairs(n + spare);
    let bootstrap = format!("127.0.0.1:{}", ports[0]);
    for (i, &port) in ports.iter().enumerate().take(n) {
        let p = spawn_paired(&c, i, port, (i > 0).then_some(&bootstrap));
        c.peers.push(p);
    }
    (c, ports)
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to a running peer.
pub fn signal(p: &PeerProcess, signal: &str) {
    let child = p.child.as_ref().expect("peer is running");
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}
