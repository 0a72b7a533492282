//! The load generator: batches of lookups from concurrent client tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// What one batch of lookups took.
pub(crate) struct Batch {
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<u64>,
    pub(crate) hops: u64,
    pub(crate) errors: usize,
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
pub(crate) async fn lookups(
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
