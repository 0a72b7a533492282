//! What the lookups bench reads from /proc: the CPU time, memory and TCP connections of the
//! peers it started (and of its own process).

use std::collections::HashSet;

/// utime + stime of `pids`, in milliseconds.
pub fn cpu_ms(pids: &[u32]) -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            // Fields after the command name (which may hold spaces), from field 3 on.
            let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            t(11) + t(12)
        })
        .sum::<f64>()
        * 1000.0
        / tck
}

pub fn self_cpu_ms() -> f64 {
    cpu_ms(&[std::process::id()])
}

/// The TCP connections with one end at a ring's listening port, as normalized 4-tuples, split
/// by the kind of port the server end listens on.
#[derive(Default)]
pub struct Connections {
    pub peer: HashSet<(String, String)>,
    /// The peer-to-peer ones in TIME_WAIT (closed).
    pub peer_closed: HashSet<(String, String)>,
    pub api: HashSet<(String, String)>,
    pub time_wait: usize,
}

impl Connections {
    /// (peer to peer opened, peer to peer closed, to the API opened) here that `before` did
    /// not have.
    pub fn opened_since(&self, before: &Connections) -> (usize, usize, usize) {
        (
            self.peer.difference(&before.peer).count(),
            self.peer_closed.difference(&before.peer_closed).count(),
            self.api.difference(&before.api).count(),
        )
    }
}

/// Every TCP connection (any state but LISTEN) on this machine with one end at a port in
/// `peers` or `apis`, from /proc/net/tcp and /proc/net/tcp6.
pub fn connections(peers: &[u16], apis: &[u16]) -> Connections {
    let peers: HashSet<u16> = peers.iter().copied().collect();
    let apis: HashSet<u16> = apis.iter().copied().collect();
    let mut out = Connections::default();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(&state)) = (f.get(1), f.get(2), f.get(3)) else {
                continue;
            };
            if state == "0A" {
                continue; // LISTEN
            }
            let port = |end: &str| {
                end.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            let (Some(lp), Some(rp)) = (port(local), port(remote)) else {
                continue;
            };
            let key = if local < remote {
                ((*local).to_owned(), (*remote).to_owned())
            } else {
                ((*remote).to_owned(), (*local).to_owned())
            };
            let to_peer = peers.contains(&lp) || peers.contains(&rp);
            let to_api = apis.contains(&lp) || apis.contains(&rp);
            if to_peer || to_api {
                out.time_wait += usize::from(state == "06");
            }
            if to_peer && state == "06" {
                out.peer_closed.insert(key.clone());
            }
            if to_peer {
                out.peer.insert(key);
            } else if to_api {
                out.api.insert(key);
            }
        }
    }
    out
}

/// One field of /proc/<pid>/status or /proc/<pid>/smaps_rollup, in KiB.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The memory of a ring's peers, means per peer and totals, in MiB.
#[derive(Clone, Copy)]
pub struct Memory {
    pub rss: f64,
    pub anon: f64,
    pub pss: f64,
    pub total_rss: f64,
    pub total_pss: f64,
}

pub fn memory(pids: &[u32]) -> Memory {
    let sum = |file: &str, field: &str| -> (f64, usize) {
        let v: Vec<f64> = pids
            .iter()
            .filter_map(|&p| proc_kib(p, file, field))
            .collect();
        (v.iter().sum::<f64>() / 1024.0, v.len().max(1))
    };
    let (rss, n) = sum("status", "VmRSS:");
    let (anon, _) = sum("status", "RssAnon:");
    let (pss, _) = sum("smaps_rollup", "Pss:");
    Memory {
        rss: rss / n as f64,
        anon: anon / n as f64,
        pss: pss / n as f64,
        total_rss: rss,
        total_pss: pss,
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB (anonymous {:.1}), Pss {:.1} MiB per peer; ring total RSS {:.0} MiB, Pss {:.0} MiB",
            self.rss, self.anon, self.pss, self.total_rss, self.total_pss
        )
    }
}
