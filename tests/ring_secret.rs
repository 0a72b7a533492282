//! The ring secret's life cycle on a 4-peer in-process ring: keys rotate during traffic with
//! zero failed requests, and a key file that cannot be used stops a peer at start.

use crate::support::attacker;
use crate::support::harness;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use attacker::*;
use chordnet::transport::TraceCarrier;
use chordnet::transport::auth::digest_json;
use chordnet::transport::auth::serve::method;
use chordnet::transport::memory::MemoryTransport;
use chordnet::wire::Address;
use chordnet::wire::ring::{Request, RequestEnvelope};
use harness::{address, content, wait_until};

/// Install a new key everywhere, sign with it, remove the old one, while uploads and
/// downloads go on: no request fails, the ring stays one ring, and the old key is refused
/// at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_during_traffic_without_a_failed_request() {
    let dir = secret_dir("rotate");
    let file = dir.join("ring-secret");
    write_keys(&file, &[RING_KEY]);
    let h = Arc::new(ring("sec-rotate", Some(&file)).await);
    for k in 0..8 {
        let name = format!("f{k}.bin");
        assert_eq!(h.put(k % 4, &name, content(k, 0, 2000)).await.status(), 201);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let k = n % 8;
                let via = n % 4;
                let name = format!("f{k}.bin");
                let (status, body) = h.get(via, &name).await;
                if status == 200 && body == content(k, 0, 2000) {
                    ok += 1;
                } else {
                    failed.push(format!("GET {name} via {via}: {status}"));
                }
                if n.is_multiple_of(5) {
                    let new = format!("n{n}.bin");
                    let s = h.put(via, &new, content(n, 1, 500)).await.status().as_u16();
                    if s == 201 {
                        ok += 1
                    } else {
                        failed.push(format!("PUT {new}: {s}"))
                    }
                }
                n += 1;
            }
            (ok, failed)
        })
    };
    let steps: [&[&str]; 3] = [&[RING_KEY, NEW_KEY], &[NEW_KEY, RING_KEY], &[NEW_KEY]];
    for (k, keys) in steps.iter().enumerate() {
        write_keys(&file, keys);
        let want = (k + 1) as f64;
        for i in 0..4 {
            let series = "chordnet_ring_secret_reloads_total{outcome=\"changed\"}";
            wait_until(
                "every peer reloads its keys",
                Duration::from_secs(20),
                || async { metric(&h, i, series).await >= want },
            )
            .await;
        }
        // Traffic under each step's keys for a while (counted by requests, not by time).
        let before = metric(
            &h,
            0,
            "chordnet_peer_rpcs_total{method=\"find_successor\",outcome=\"ok\"}",
        )
        .await;
        wait_until(
            "traffic under the new keys",
            Duration::from_secs(30),
            || async {
                metric(
                    &h,
                    0,
                    "chordnet_peer_rpcs_total{method=\"find_successor\",outcome=\"ok\"}",
                )
                .await
                    >= before + 20.0
            },
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.expect("traffic");
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok >= 20, "{ok} requests");
    let mut rejected = 0.0;
    for i in 0..4 {
        for reason in ["bad_mac", "missing"] {
            let series = format!("chordnet_peer_auth_rejections_total{{reason=\"{reason}\"}}");
            rejected += metric(&h, i, &series).await;
        }
    }
    assert_eq!(rejected, 0.0, "no peer refused another during the rotation");
    assert!(h.settled().await, "one ring");
    // The old key is gone: a message signed with it is refused.
    let a = Attacker::new(&h);
    let ring_id = h.peer(0).service.status().ring_id;
    let ping = RequestEnvelope::new(ring_id, peer(&h, 1), Request::Ping);
    let signer = Attacker::signer(RING_KEY, h.id(1));
    let mut trace = TraceCarrier::default();
    signer.sign_into(
        &mut trace,
        &method::ring(&ping),
        &digest_json(&ping),
        Some(ring_id),
    );
    let r = a
        .clients
        .ring
        .call(&Address::new(address(0)), ping, trace)
        .await
        .expect("answer");
    assert!(is_refused(&r), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key file that cannot be used stops the peer at start with an error naming the file, not
/// the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_or_missing_key_file_stops_the_peer_with_a_clear_error() {
    let dir = secret_dir("bad");
    let file = dir.join("ring-secret");
    std::fs::write(&file, "abcdef0123\n").expect("file");
    let mut c = chordnet::config::Config::default();
    c.transport.kind = chordnet::config::TransportKind::Memory;
    c.node.advertise = "lonely:1".into();
    c.api.listen = "127.0.0.1:0".parse().expect("address");
    c.files.shared_dir = dir.join("shared");
    c.files.store_dir = dir.join("data");
    c.security.ring_secret_file = Some(file.clone());
    let factory = Arc::new(MemoryTransport::new(
        chordnet::transport::memory::MemoryNetwork::new(),
    ));
    let e = chordnet::peer::start_with(c.clone(), factory.clone())
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("ring_secret_file") && text.contains("5 bytes"),
        "{text}"
    );
    assert!(!text.contains("abcdef0123"), "{text}");
    c.security.ring_secret_file = Some(dir.join("absent"));
    let e = chordnet::peer::start_with(c, factory)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("absent"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
