//! Full disks: two of three holders have their store on a tiny tmpfs. Uploads that cannot reach
//! the write quorum get 507 and are not acknowledged; deletes still work (the reserve keeps room
//! for tombstones) and are 204 only once no reader sees the file; a file of several blocks that
//! does not fit is 507 and never visible; afterwards nothing on the small disks is partial,
//! orphaned or corrupt. Needs root (it mounts tmpfs).

use crate::support::harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{Harness, content};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Every data file is referenced by metadata with its SHA-256, and nothing is left in tmp/.
fn check_store(store: &Path) {
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "partial files left: {tmp:?}");
    let objects = store.join("objects");
    let mut referenced = Vec::new();
    for e in std::fs::read_dir(&objects).expect("objects").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).expect("meta")).expect("json");
            // A manifest's bytes are its blocks, each a record of its own.
            if m["deleted"] != true && m["layout"]["blocks"].is_null() {
                let name = format!(
                    "{}-{}.data",
                    m["id"].as_str().unwrap_or(""),
                    m["sha256"].as_str().unwrap_or("")
                );
                let data = std::fs::read(objects.join(&name)).expect("data file of metadata");
                assert_eq!(
                    chordnet::files::sha256_hex(&data),
                    m["sha256"].as_str().unwrap_or("")
                );
                referenced.push(name);
            }
        }
    }
    for e in std::fs::read_dir(&objects).expect("objects").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".data") {
            assert!(referenced.contains(&name), "orphaned {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disks_refuse_with_507_deletes_still_work_and_nothing_is_left_half_done() {
    if !is_root() {
        eprintln!("skipped: mounting tmpfs needs root");
        return;
    }
    let root = std::env::temp_dir().join(format!("chordnet-fulldisk-{}", std::process::id()));
    let small: Vec<PathBuf> = (1..3).map(|i| root.join(format!("small-{i}"))).collect();
    let mounts: Vec<Mount> = small.iter().filter_map(|d| mount_tmpfs(d, "3m")).collect();
    if mounts.len() < small.len() {
        // Root without CAP_SYS_ADMIN (an unprivileged container): nothing to test on.
        eprintln!("skipped: this root cannot mount tmpfs");
        return;
    }
    let stores = small.clone();
    let mut h = Harness::start("fulldisk", 3, move |i, c| {
        c.files.reserve = 512 * 1024;
        if i > 0 {
            c.files.store_dir = stores[i - 1].clone();
        }
    })
    .await;
    h.converged().await;

    let mut stored = Vec::new();
    let mut refused = None;
    for k in 0..40 {
        let name = format!("fill-{k}.bin");
        let data = content(k, 0, 256 * 1024);
        let r = h.put(0, &name, data.clone()).await;
        match r.status().as_u16() {
            201 => stored.push((name, data)),
            507 => {
                let ct = r.headers()["content-type"]
                    .to_str()
                    .unwrap_or("")
                    .to_owned();
                assert_eq!(ct, "application/problem+json");
                let body: serde_json::Value = r.json().await.expect("problem");
                refused = Some((name, body));
                break;
            }
            s => panic!("{name}: unexpected {s}: {:?}", r.text().await),
        }
    }
    let (_, problem) = refused.expect("the small disks filled up and uploads got 507");
    assert!(stored.len() >= 3, "{} files fit", stored.len());
    eprintln!(
        "{} files of 256 KiB fit before 507: {problem}",
        stored.len()
    );
    // Every acknowledged file is intact everywhere.
    for via in 0..3 {
        for (name, data) in &stored {
            let (status, got) = h.get(via, name).await;
            assert!(status == 200 && got == *data, "{name} via {via}: {status}");
        }
    }
    // A delete on the full disks: the tombstone fits in the reserve.
    let (gone, _) = stored.remove(0);
    assert_eq!(h.delete(1, &gone).await, 204);
    for via in 0..3 {
        assert_eq!(h.get(via, &gone).await.0, 404, "{gone} via {via}");
    }
    // Space freed by the delete takes new content again.
    let r = h.put(2, "after.bin", content(99, 0, 64 * 1024)).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    // A file of several blocks that the full disks cannot hold: 507, and no half file is
    // visible (its manifest is only written once every block is stored).
    let r = h.put(0, "blocks.bin", content(98, 0, 3 << 20)).await;
    assert_eq!(r.status(), 507, "{:?}", r.text().await);
    for via in 0..3 {
        assert_eq!(
            h.get(via, "blocks.bin").await.0,
            404,
            "blocks.bin via {via}"
        );
        for (name, data) in &stored {
            let (status, got) = h.get(via, name).await;
            assert!(status == 200 && got == *data, "{name} via {via}: {status}");
        }
    }
    for i in 0..3 {
        h.crash(i).await;
    }
    for s in &small {
        check_store(s);
    }
    drop(h);
    drop(mounts);
    let _ = std::fs::remove_dir_all(&root);
}
