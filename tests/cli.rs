//! The command line as a user meets it: the real `chordnet` binary's client subcommands and
//! `dev` against real peers on 127.0.0.1 (issue 10). Every wait is bounded.

use crate::support::cli;
use crate::support::cluster;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cli::*;
use cluster::*;
use serde_json::Value;

fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("chordnet-part"))
                .collect()
        })
        .unwrap_or_default()
}

/// Item 1: `-o` naming a special file writes straight through it and never renames anything
/// over it (as root, the old client replaced /dev/null with a regular file). A FIFO stands for
/// /dev/null here: the test must not put the machine's /dev/null at risk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_writes_through_a_special_file_and_never_replaces_it() {
    use std::os::unix::fs::FileTypeExt;
    let (c, api) = one_peer("cli-fifo").await;
    upload(&c, "song.mp3", b"la la la").await;
    let fifo = c.root.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&reading));
    });
    let fifo_arg = fifo.to_string_lossy().into_owned();
    let r = run(&["get", "song.mp3", "-o", &fifo_arg, "--api", &api]);
    assert!(r.ok(), "{r}");
    let meta = std::fs::symlink_metadata(&fifo).expect("still there");
    assert!(meta.file_type().is_fifo(), "the FIFO was replaced: {r}");
    let read = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the reader got the content");
    assert_eq!(read.expect("read the FIFO"), b"la la la");
    assert!(partial_files(&c.root).is_empty(), "{r}");
}

/// Item 2: a directory as `-o` means "under the file's name inside it"; a failed download
/// leaves no partial file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_into_a_directory_saves_under_the_name_and_failures_leave_nothing() {
    let (c, api) = one_peer("cli-dir").await;
    upload(&c, "a.txt", b"alpha").await;
    upload(&c, "b.txt", b"beta").await;
    let out = c.root.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let slash = format!("{}/", out.display());
    let plain = out.to_string_lossy().into_owned();

    let r = run(&["get", "a.txt", "-o", &slash, "--api", &api]);
    assert!(r.ok(), "{r}");
    assert_eq!(std::fs::read(out.join("a.txt")).expect("a.txt"), b"alpha");
    let r = run(&["get", "b.txt", "-o", &plain, "--api", &api]);
    assert!(r.ok(), "{r}");
    assert_eq!(std::fs::read(out.join("b.txt")).expect("b.txt"), b"beta");

    let missing = format!("{}/", c.root.join("missing").display());
    let r = run(&["get", "a.txt", "-o", &missing, "--api", &api]);
    assert!(!r.ok(), "{r}");
    let target = out.join("never.txt").to_string_lossy().into_owned();
    let r = run(&["get", "never.txt", "-o", &target, "--api", &api]);
    assert!(!r.ok(), "{r}");
    assert!(!out.join("never.txt").exists());
    assert!(
        partial_files(&c.root).is_empty(),
        "{:?}",
        partial_files(&c.root)
    );
    assert!(partial_files(&out).is_empty(), "{:?}", partial_files(&out));
}

/// Item 6: `--json` prints a JSON answer on `rm` and `get` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_printed_by_get_and_rm() {
    let (c, api) = one_peer("cli-json").await;
    upload(&c, "j.txt", b"json").await;
    let target = c.root.join("j.txt").to_string_lossy().into_owned();
    let r = run(&["get", "j.txt", "-o", &target, "--json", "--api", &api]);
    assert!(r.ok(), "{r}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!(v["name"], "j.txt", "{v}");
    assert_eq!(v["size"], 4, "{v}");
    assert_eq!(v["sha256"], chordnet::files::sha256_hex(b"json"), "{v}");
    let r = run(&["rm", "j.txt", "--json", "--api", &api]);
    assert!(r.ok(), "{r}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!(v["name"], "j.txt", "{v}");
    assert_eq!(v["deleted"], true, "{v}");
}

/// Item 7: names the contract refuses are refused by the client before anything is sent, with
/// the server's words (no peer listens at the API given here).
#[test]
fn invalid_names_are_refused_before_sending() {
    let dir = std::env::temp_dir().join(format!("chordnet-cli-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("f.txt");
    std::fs::write(&file, b"x").expect("file");
    let file = file.to_string_lossy().into_owned();
    let nowhere = "http://127.0.0.1:1";
    for (args, words) in [
        (
            vec!["put", &file, "--name", ".."],
            "'.' and '..' are not file names",
        ),
        (vec!["put", &file, "--name", ""], "1 to 255 bytes"),
        (vec!["get", "."], "'.' and '..' are not file names"),
        (vec!["rm", "a/b"], "may not contain '/'"),
        (vec!["locate", ".."], "'.' and '..' are not file names"),
    ] {
        let mut args = args;
        args.extend(["--api", nowhere]);
        let r = run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {r}");
        assert!(r.stderr.contains(words), "{args:?}: {r}");
        assert!(!r.stderr.contains("cannot reach"), "{args:?}: {r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 9: port ranges that do not fit are refused at start, before any peer starts.
#[test]
fn dev_refuses_port_ranges_that_do_not_fit() {
    let dir = std::env::temp_dir().join(format!("chordnet-cli-ports-{}", std::process::id()));
    let dir_arg = dir.to_string_lossy().into_owned();
    let api = free_ports(1)[0].to_string();
    let r = run_bounded(
        &[
            "dev",
            "--peer-port",
            "65534",
            "--peers",
            "3",
            "--api-port",
            &api,
            "--dir",
            &dir_arg,
        ],
        Duration::from_secs(20),
    )
    .expect("dev exits at once");
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("--peer-port"), "{r}");
    assert!(r.stderr.contains("65535"), "{r}");
    let peer = free_ports(1)[0].to_string();
    let r = run_bounded(
        &[
            "dev",
            "--api-port",
            "0",
            "--peers",
            "2",
            "--peer-port",
            &peer,
            "--dir",
            &dir_arg,
        ],
        Duration::from_secs(20),
    )
    .expect("dev exits at once");
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("--api-port"), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 11: the finger table's columns line up and runs of identical fingers show as ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingers_show_ranges_in_aligned_columns() {
    let (_c, api) = one_peer("cli-fingers").await;
    let r = run(&["fingers", "--api", &api]);
    assert!(r.ok(), "{r}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one peer: one run of 160 fingers\n{r}");
    assert!(lines[1].trim_start().starts_with("0-159 "), "{r}");
    // The start column begins at the same place on every line.
    let header = lines[0].find("start").expect("header");
    let row = lines[1]
        .char_indices()
        .skip_while(|(_, ch)| *ch == ' ')
        .skip_while(|(_, ch)| *ch != ' ')
        .find(|(_, ch)| *ch != ' ')
        .map(|(i, _)| i)
        .expect("row");
    assert_eq!(header, row, "{r}");
}

/// Item 12: a peer that has left says so: `ring` fails with a reason, `node` and `leave` show
/// an empty ring id as `-`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_left_says_so() {
    let (_c, api) = one_peer("cli-left").await;
    let r = run(&["leave", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert!(!r.stdout.contains("null"), "{r}");
    let r = run(&["node", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert!(!r.stdout.contains("null"), "{r}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("ring id") && l.trim_end().ends_with(" -")),
        "{r}"
    );
    let r = run(&["ring", "--api", &api]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("not a member"), "{r}");
}

/// Item 5: `put` of a file over `files.max_file_size` reports the server's 413, not the broken
/// connection the refused body ends in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_over_the_size_limit_reports_the_servers_answer() {
    let (c, api) = one_peer("cli-big").await;
    let file = c.root.join("big.bin");
    std::fs::write(&file, vec![7u8; 32 << 20]).expect("write");
    let file = file.to_string_lossy().into_owned();
    // The old client lost the answer only now and then (a race with the closing connection).
    for _ in 0..5 {
        let r = run(&["put", &file, "--api", &api]);
        assert!(!r.ok(), "{r}");
        assert!(r.stderr.contains("413"), "{r}");
        assert!(r.stderr.contains("files.max_file_size"), "{r}");
        assert!(!r.stderr.contains("cannot reach"), "{r}");
    }
}

/// Item 13: `rm` of a file that only a shared directory has says so, instead of "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_of_a_shared_file_says_who_shares_it() {
    let (c, api) = one_peer("cli-rm-shared").await;
    let shared = c.peers[0].dir.join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    std::fs::write(shared.join("mine.txt"), b"shared").expect("write");
    wait_for(
        "the shared file is published",
        Duration::from_secs(30),
        || async {
            matches!(
                c.get(&c.peers[0].url("/v1/files/mine.txt/locations")).await,
                Some((200, _))
            )
        },
    )
    .await;
    let r = run(&["rm", "mine.txt", "--api", &api]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("shared"), "{r}");
    assert!(r.stderr.contains(&c.peers[0].advertise), "{r}");
    assert!(shared.join("mine.txt").exists());
}

/// Item 16: the last peer of a ring leaving is not a failure: no hand-off warnings, one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_peer_leaving_warns_about_nothing() {
    let info = |_| vec![("RUST_LOG".to_string(), "info".to_string())];
    let mut c = Cluster::start_each("cli-last", 1, info).converged().await;
    upload(&c, "kept.txt", b"k").await;
    upload(&c, "gone.txt", b"g").await;
    let del = c
        .http
        .delete(c.peers[0].url("/v1/files/gone.txt"))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    let status = c.peers[0].terminate();
    assert!(status.success());
    let log = std::fs::read_to_string(c.root.join("peer-0.log")).expect("log");
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("hand-off")),
        "{log}"
    );
    assert!(log.contains("last peer"), "{log}");
}

/// Item 10: scripts/k8s-check.sh finds the binary where cargo put it (CARGO_TARGET_DIR), as
/// scripts/k8s-emulate.sh does.
#[test]
fn the_k8s_check_finds_the_binary_in_cargo_target_dir() {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/k8s-check.sh"))
            .expect("script");
    let line = script
        .lines()
        .find(|l| l.starts_with("CHORDNET_BIN="))
        .expect("the CHORDNET_BIN default");
    let out = Command::new("bash")
        .args(["-c", &format!("ROOT=/repo; {line}; echo \"$CHORDNET_BIN\"")])
        .env("CARGO_TARGET_DIR", "/elsewhere")
        .env_remove("CHORDNET_BIN")
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/elsewhere/release/chordnet"
    );
    let out = Command::new("bash")
        .args(["-c", &format!("ROOT=/repo; {line}; echo \"$CHORDNET_BIN\"")])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CHORDNET_BIN")
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/repo/target/release/chordnet"
    );
}

/// Item 15: a ring restarted from its stores says "restarted ring <id>" (not "founded a new
/// ring") and why it waited, with one warning per peer at most rather than one per retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ring_says_so_and_why_it_waited() {
    let info = |_| vec![("RUST_LOG".to_string(), "info".to_string())];
    let mut c = Cluster::start_each("cli-restart", 3, info)
        .converged()
        .await;
    let (_, node) = c.get(&c.peers[0].url("/v1/node")).await.expect("node");
    let ring_id = node["ring_id"].as_str().expect("a ring id").to_string();
    for p in &mut c.peers {
        p.kill();
    }
    let bootstrap = c.peers[0].advertise.clone();
    let env = [("RUST_LOG", "info")];
    for i in 0..3 {
        let log = c.root.join(format!("peer-{i}.restart.log"));
        c.peers[i] = c.peers[i].respawn((i > 0).then_some(&bootstrap), &env, Some(&log));
    }
    wait_for("restarted ring ready", Duration::from_secs(60), || {
        c.all_ready()
    })
    .await;
    let (_, node) = c.get(&c.peers[0].url("/v1/node")).await.expect("node");
    assert_eq!(node["ring_id"], ring_id.as_str());
    let logs: Vec<String> = (0..3)
        .map(|i| {
            std::fs::read_to_string(c.root.join(format!("peer-{i}.restart.log"))).expect("log")
        })
        .collect();
    assert!(
        logs[0].contains(&format!("restarted ring {ring_id}")),
        "{}",
        logs[0]
    );
    assert!(
        logs[0].contains(&format!("restarting the remembered ring {ring_id}: ")),
        "the reason is given: {}",
        logs[0]
    );
    for log in &logs {
        assert!(!log.contains("founded a new ring"), "{log}");
        let warnings = log
            .lines()
            .filter(|l| l.contains("could not join any peer yet"))
            .count();
        assert!(warnings <= 1, "{warnings} warnings: {log}");
    }
}

/// Issue 15: a download cut after 40 % (what it kept is in the part file) goes on with
/// `--resume` from there, asking only for the rest, and ends byte-identical; a part file
/// that is not a prefix of the file fails the whole-file check and is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_resume_continues_a_cut_download_and_checks_the_whole_file() {
    let (c, api) = one_peer("cli-resume").await;
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    upload(&c, "movie.bin", &data).await;
    let target = c.root.join("movie.bin");
    let part = c.root.join(".movie.bin.chordnet-part");
    let cut = data.len() * 2 / 5;
    std::fs::write(&part, &data[..cut]).expect("part file");
    let target_arg = target.to_string_lossy().into_owned();
    let r = run(&[
        "get",
        "movie.bin",
        "-o",
        &target_arg,
        "--resume",
        "--json",
        "--api",
        &api,
    ]);
    assert!(r.ok(), "{r}");
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["resumed_at"], cut as u64);
    assert_eq!(v["size"], data.len() as u64);
    assert!(std::fs::read(&target).expect("saved") == data);
    assert!(partial_files(&c.root).is_empty(), "{r}");

    // A part file from other content: the whole-file SHA-256 says so.
    std::fs::remove_file(&target).expect("remove");
    std::fs::write(&part, vec![0u8; cut]).expect("part file");
    let r = run(&[
        "get",
        "movie.bin",
        "-o",
        &target_arg,
        "--resume",
        "--api",
        &api,
    ]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("download corrupted"), "{r}");
    assert!(!target.exists() && partial_files(&c.root).is_empty(), "{r}");
}
