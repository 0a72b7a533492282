//! Shared directories as a user meets them on real peers: a file a peer shares stays
//! downloadable while the ring changes around it (issue 10, item 4). Every wait is bounded.

use crate::support::cluster;

use std::time::Duration;

use chordnet::id::Id;
use cluster::*;

/// Item 4: right after a second peer joins, a file in the first peer's shared directory whose
/// key the newcomer now owns downloads through both peers, as `locate` promises, without
/// waiting for the next republish (30 s by default: set to 60 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_downloads_right_after_its_key_moves() {
    shared_file_downloads_after_its_key_moves("shared-moves", &[]).await;
}

/// The same when the old owner is not among the new owner's holders (one copy per key here;
/// in a bigger ring, a key that moved twice): its provider records must move with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_records_move_with_their_key() {
    let one_copy = [
        ("CHORDNET_RING__REPLICAS", "1"),
        ("CHORDNET_FILES__WRITE_QUORUM", "1"),
        ("CHORDNET_FILES__READ_QUORUM", "1"),
    ];
    shared_file_downloads_after_its_key_moves("shared-records-move", &one_copy).await;
}

async fn shared_file_downloads_after_its_key_moves(name: &str, env: &[(&str, &str)]) {
    let (mut c, ports) = Cluster::empty(name, 2);
    let advertise: Vec<String> = (0..2)
        .map(|i| format!("127.0.0.1:{}", ports[2 * i]))
        .collect();
    let api: Vec<String> = (0..2)
        .map(|i| format!("127.0.0.1:{}", ports[2 * i + 1]))
        .collect();
    // Names whose key the second peer will own.
    let (a, b) = (
        Id::hash(advertise[0].as_bytes()),
        Id::hash(advertise[1].as_bytes()),
    );
    let owned_by_b = |id: Id| {
        if a < b {
            id > a && id <= b
        } else {
            id > a || id <= b
        }
    };
    let names: Vec<String> = (0..1000)
        .map(|k| format!("doc-{k}.txt"))
        .filter(|n| owned_by_b(Id::hash(n.as_bytes())))
        .take(3)
        .collect();
    assert_eq!(names.len(), 3);
    let dir0 = c.root.join("peer-0");
    std::fs::create_dir_all(dir0.join("shared")).expect("shared dir");
    for n in &names {
        std::fs::write(dir0.join("shared").join(n), n.as_bytes()).expect("write");
    }
    let mut slow = vec![("CHORDNET_FILES__REPUBLISH_INTERVAL", "60s")];
    slow.extend_from_slice(env);
    c.peers
        .push(spawn_with(&advertise[0], &api[0], &dir0, None, &slow));
    wait_for("the sharer is ready", Duration::from_secs(30), || {
        c.all_ready()
    })
    .await;
    let fetch = |via: usize, name: &str| {
        let url = format!("http://{}/v1/files/{name}", api[via]);
        let http = c.http.clone();
        async move {
            match http.get(url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }
    };
    for n in &names {
        wait_for("published", Duration::from_secs(30), || async {
            fetch(0, n).await == 200
        })
        .await;
    }
    c.peers.push(spawn_with(
        &advertise[1],
        &api[1],
        &c.root.join("peer-1"),
        Some(&advertise[0]),
        &slow,
    ));
    wait_for("both ready", Duration::from_secs(30), || c.all_ready()).await;
    wait_for("one ring", Duration::from_secs(30), || c.rings_agree()).await;
    // Well within the 60 s republish interval.
    for n in &names {
        for via in 0..2 {
            wait_for(
                &format!("{n} downloads through peer {via}"),
                Duration::from_secs(10),
                || async { fetch(via, n).await == 200 },
            )
            .await;
        }
    }
}
