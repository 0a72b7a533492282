//! The ring secret over the real transports (peer processes on 127.0.0.1): a 3-peer ring with
//! a secret forms and serves files over HTTP and over gRPC without a single refused message,
//! and a peer with another ring's key cannot get in.

use crate::support::cluster;

use std::time::Duration;

use cluster::{Cluster, free_ports, spawn_with, wait_for};

const KEY: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const OTHER: &str = "5555555555555555555555555555555555555555555555555555555555555555";

async fn refused(c: &Cluster, i: usize) -> f64 {
    let Some(text) = async {
        let r = c.http.get(c.peers[i].url("/metrics")).send().await.ok()?;
        r.text().await.ok()
    }
    .await
    else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with("chordnet_peer_auth_rejections_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_rings_work_over_http_and_grpc_and_keep_other_keys_out() {
    for kind in ["http", "grpc"] {
        let dir = std::env::temp_dir().join(format!("chordnet-rst-{kind}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (key, other) = (dir.join("ring-secret"), dir.join("other-secret"));
        std::fs::write(&key, format!("{KEY}\n")).expect("key");
        std::fs::write(&other, format!("{OTHER}\n")).expect("key");
        let env = |file: &std::path::Path| {
            vec![
                ("CHORDNET_TRANSPORT__KIND".to_string(), kind.to_string()),
                (
                    "CHORDNET_SECURITY__RING_SECRET_FILE".to_string(),
                    file.display().to_string(),
                ),
            ]
        };
        let mut c = Cluster::start_each(&format!("rst-{kind}"), 3, |_| env(&key))
            .converged()
            .await;
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            c.put(&c.peers[0], "signed.bin", &data).await.0,
            201,
            "{kind}"
        );
        assert_eq!(
            c.fetch(&c.peers[2], "signed.bin").await,
            Some(data),
            "{kind}"
        );
        for i in 0..3 {
            assert_eq!(
                refused(&c, i).await,
                0.0,
                "{kind}: peer {i} refused a ring message"
            );
        }
        // Another ring's key: its join is refused, the ring stays the three of them.
        let ports = free_ports(2);
        let bootstrap = c.peers[0].advertise.clone();
        let vars = env(&other);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let intruder = spawn_with(
            &format!("127.0.0.1:{}", ports[0]),
            &format!("127.0.0.1:{}", ports[1]),
            &dir.join("intruder"),
            Some(&bootstrap),
            &vars,
        );
        c.peers.push(intruder);
        wait_for(
            "the intruder is refused",
            Duration::from_secs(30),
            || async { refused(&c, 0).await >= 1.0 },
        )
        .await;
        let ring = c.get(&c.peers[0].url("/v1/ring")).await.expect("ring walk");
        assert_eq!(
            ring.1["nodes"].as_array().map(Vec::len),
            Some(3),
            "{kind}: {}",
            ring.1
        );
        let status = c.get(&c.peers[3].url("/readyz")).await.map(|r| r.0);
        assert_ne!(
            status,
            Some(200),
            "{kind}: the intruder is not a ready member"
        );
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
