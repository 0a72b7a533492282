//! Large files between real processes: a 256 MiB upload and download with a 200 ms RPC
//! time-out (transfers have their own deadline, by size), and the peers' memory stays flat
//! (content is cut into blocks as it streams, a bounded window of them in flight, never held
//! whole).

#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use bytes::Bytes;
use cluster::Cluster;
use futures_util::StreamExt;
use sha2::Digest;

/// The file's size: 256 MiB, or `CHORDNET_BIG_FILE_MIB` MiB (for the README's 1 GiB figure).
fn size() -> u64 {
    std::env::var("CHORDNET_BIG_FILE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(256)
        << 20
}

/// `kind` (VmRSS or VmHWM) of a process, in bytes.
fn memory(pid: u32, kind: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(kind))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// MiB `k` of the file: every MiB differs (a pattern alone repeats every 2 MiB, and the
/// ring would store its blocks once).
fn chunk(k: u64) -> Bytes {
    let piece = 1u64 << 20;
    let mut seed = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    seed = (seed ^ (seed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    seed = (seed ^ (seed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Bytes::from(
        (k * piece..(k + 1) * piece)
            .map(|i| ((i.wrapping_mul(2654435761) >> 13) as u8) ^ (seed >> ((i % 8) * 8)) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_file_goes_up_and_down_with_a_200ms_rpc_timeout_in_flat_memory() {
    let size = size();
    let limit = format!("{}MiB", (size >> 20) + 64);
    let c = Cluster::start_each(
        "big",
        3,
        |_| {
            vec![
                ("CHORDNET_RING__RPC_TIMEOUT".into(), "200ms".into()),
                ("CHORDNET_FILES__MAX_FILE_SIZE".into(), limit.clone()),
            ]
        },
        true,
    )
    .converged()
    .await;
    let pids: Vec<u32> = c
        .peers
        .iter()
        .map(|p| p.child.as_ref().expect("running").id())
        .collect();
    let idle: Vec<u64> = pids.iter().map(|p| memory(*p, "VmRSS")).collect();

    let mut expected = sha2::Sha256::new();
    for k in 0..(size >> 20) {
        expected.update(chunk(k));
    }
    let expected: String = expected
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body =
        futures_util::stream::iter(0..(size >> 20)).map(|k| Ok::<_, std::io::Error>(chunk(k)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let up = http
        .put(c.peers[0].url("/v1/files/big.bin"))
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload answered");
    let status = up.status();
    let answer: serde_json::Value = up.json().await.expect("json");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["size"], size);
    assert_eq!(answer["sha256"], expected.as_str());
    assert_eq!(answer["replicas"], 2);

    // Downloaded through another peer, hashed as it streams.
    let down = http
        .get(c.peers[1].url("/v1/files/big.bin"))
        .send()
        .await
        .expect("download answered");
    assert_eq!(down.status(), 200);
    let mut got = sha2::Sha256::new();
    let mut n = 0u64;
    let mut stream = down.bytes_stream();
    while let Some(part) = stream.next().await {
        let part = part.expect("body");
        n += part.len() as u64;
        got.update(&part);
    }
    let got: String = got.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!((n, got.as_str()), (size, expected.as_str()));

    for (i, pid) in pids.iter().enumerate() {
        let peak = memory(*pid, "VmHWM");
        let above = peak.saturating_sub(idle[i]);
        eprintln!(
            "peer {i}: idle RSS {} MiB, peak RSS {} MiB ({} MiB above idle) for a {} MiB file",
            idle[i] >> 20,
            peak >> 20,
            above >> 20,
            size >> 20
        );
        assert!(above < 64 << 20, "peer {i} grew {above} bytes above idle");
    }
}
