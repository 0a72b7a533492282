//! The load generator of `cargo bench --bench lookups`: keep-alive HTTP/1.1 clients sending
//! `GET /v1/lookup/<random key>` one after the other, what one run measured, and the medians of
//! several runs.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Ring;
use super::procfs::{cpu_ms, self_cpu_ms};

/// What one run of the load measured.
#[derive(Clone, Copy, Default)]
pub struct Run {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peer_cpu_ms_per_lookup: f64,
    pub hops: f64,
    pub generator_cpu_percent: f64,
    pub errors: u64,
    /// TCP connections opened during the run: between peers, and from the generator.
    pub peer_conns: f64,
    pub peer_closed: f64,
    pub api_conns: f64,
}

/// Reads one HTTP/1.1 response (with Content-Length) from `conn`; returns (status, body).
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Ok((status, body));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn hops_of(body: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(body).ok()?;
    let at = s.find("\"hops\":")? + 7;
    let digits: String = s[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One client: lookups of random keys on one connection until `until`; (latencies in µs,
/// hops total, errors).
async fn client(port: u16, seed: u64, until: Instant) -> (Vec<u32>, u64, u64) {
    let mut lat = Vec::new();
    let (mut hops, mut errors) = (0u64, 0u64);
    let mut x = seed | 1;
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    while Instant::now() < until {
        if conn.is_none() {
            buf.clear();
            conn = TcpStream::connect(("127.0.0.1", port)).await.ok();
            if let Some(c) = &conn {
                let _ = c.set_nodelay(true);
            } else {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let request = format!("GET /v1/lookup/key-{x:016x} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let started = Instant::now();
        let answer = match c.write_all(request.as_bytes()).await {
            Ok(()) => read_response(c, &mut buf).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok((200, body)) => {
                lat.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                hops += u64::from(hops_of(&body).unwrap_or(0));
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (lat, hops, errors)
}

/// `clients` clients against `ring` for `secs` seconds.
pub fn load(
    rt: &tokio::runtime::Runtime,
    ring: &Ring,
    clients: usize,
    secs: f64,
    seed: u64,
) -> Run {
    let pids = ring.pids();
    let conns0 = ring.connections();
    let (cpu0, me0, t0) = (cpu_ms(&pids), self_cpu_ms(), Instant::now());
    let until = t0 + Duration::from_secs_f64(secs);
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let port = ring.apis[i % ring.apis.len()];
                tokio::spawn(client(port, seed.wrapping_mul(1_000_003) + i as u64, until))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                out.push(r);
            }
        }
        out
    });
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, me1) = (cpu_ms(&pids), self_cpu_ms());
    let (peer_conns, peer_closed, api_conns) = ring.connections().opened_since(&conns0);
    let mut lat: Vec<u32> = Vec::new();
    let (mut hops, mut errors) = (0u64, 0u64);
    for (l, h, e) in results {
        lat.extend(l);
        hops += h;
        errors += e;
    }
    lat.sort_unstable();
    let n = lat.len().max(1);
    let pct = |p: f64| {
        lat.get(((p * n as f64).ceil() as usize).clamp(1, n) - 1)
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    Run {
        per_second: lat.len() as f64 / wall,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        peer_cpu_ms_per_lookup: (cpu1 - cpu0) / n as f64,
        hops: hops as f64 / n as f64,
        generator_cpu_percent: 100.0 * (me1 - me0) / (wall * 1000.0),
        errors,
        peer_conns: peer_conns as f64,
        peer_closed: peer_closed as f64,
        api_conns: api_conns as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// The medians of several runs, field by field.
pub fn medians(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Run {
        per_second: m(|r| r.per_second),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        peer_cpu_ms_per_lookup: m(|r| r.peer_cpu_ms_per_lookup),
        hops: m(|r| r.hops),
        generator_cpu_percent: m(|r| r.generator_cpu_percent),
        errors: runs.iter().map(|r| r.errors).sum(),
        peer_conns: m(|r| r.peer_conns),
        peer_closed: m(|r| r.peer_closed),
        api_conns: m(|r| r.api_conns),
    }
}
