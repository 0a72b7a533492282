//! What users of kubectl, etcdctl and the like expect of a command line (issue 10, "what
//! users expect"): exit codes scripts can use, no backtraces for user errors, `--api
//! host:port`, `ls` and `status`, no silent overwrites, one-line join/leave, `locate` of an
//! unknown name, `dev` saying when the ring is ready. The real binary against real peers.

use crate::support::cli;
use crate::support::cluster;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use cli::*;
use cluster::*;

const NOT_FOUND: Option<i32> = Some(3);
const UNAVAILABLE: Option<i32> = Some(4);

/// Exit codes: 3 for not found, 4 for unavailable, 2 for usage; a user error never prints a
/// backtrace, even with RUST_BACKTRACE=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_scripts_what_happened() {
    let (_c, api) = one_peer("habits-codes").await;
    let backtrace = [("RUST_BACKTRACE", "1")];
    let limit = Duration::from_secs(30);
    let r =
        run_bounded_env(&["get", "never.txt", "--api", &api], &backtrace, limit).expect("finishes");
    assert_eq!(r.code, NOT_FOUND, "{r}");
    assert!(!r.stderr.to_lowercase().contains("backtrace"), "{r}");
    assert!(r.stderr.contains("not found"), "{r}");
    let r = run(&["node", "--api", "http://127.0.0.1:1"]);
    assert_eq!(r.code, UNAVAILABLE, "{r}");
    let r = run(&["rm", "a/b", "--api", &api]);
    assert_eq!(r.code, Some(2), "{r}");
}

/// `--api host:port` works like the URL; a peer-protocol port given by mistake says where the
/// API is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_takes_host_port_and_a_peer_port_is_named() {
    let (c, _api) = one_peer("habits-api").await;
    let r = run(&["node", "--api", &c.peers[0].api]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains(&c.peers[0].advertise), "{r}");
    let r = run(&["node", "--api", &c.peers[0].advertise]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("api.listen"), "{r}");
}

/// `ls` lists the files of a peer, `status` shows one screen; `join`/`leave` confirm in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_status_and_one_line_confirmations() {
    let (c, api) = one_peer("habits-ls").await;
    upload(&c, "listed.txt", b"in the ring").await;
    let r = run(&["ls", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("listed.txt"), "{r}");
    let r = run(&["status", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("ready    yes"), "{r}");
    assert!(r.stdout.contains("1 peers, the walk closes"), "{r}");
    assert!(r.stdout.contains("stored   1 keys"), "{r}");
    let r = run(&["leave", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert_eq!(r.stdout.lines().count(), 1, "{r}");
    assert!(r.stdout.contains("left the ring"), "{r}");
}

/// `get` does not overwrite a file it chose itself (no -o, or -o DIR) unless --force; a file
/// named with -o is the user's choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_does_not_overwrite_unless_asked() {
    let (c, api) = one_peer("habits-force").await;
    upload(&c, "f.txt", b"new").await;
    let dir = c.root.join("out");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("f.txt"), b"old").expect("old");
    let d = dir.to_string_lossy().into_owned();
    let r = run(&["get", "f.txt", "-o", &d, "--api", &api]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("--force"), "{r}");
    assert_eq!(std::fs::read(dir.join("f.txt")).expect("kept"), b"old");
    let r = run(&["get", "f.txt", "-o", &d, "--force", "--api", &api]);
    assert!(r.ok(), "{r}");
    assert_eq!(std::fs::read(dir.join("f.txt")).expect("new"), b"new");
    std::fs::write(dir.join("f.txt"), b"old").expect("old");
    let named = dir.join("f.txt").to_string_lossy().into_owned();
    let r = run(&["get", "f.txt", "-o", &named, "--api", &api]);
    assert!(r.ok(), "{r}");
    assert_eq!(std::fs::read(dir.join("f.txt")).expect("new"), b"new");
}

/// `locate` of a name nobody has says so and shows where it would live (exit code 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_of_an_unknown_name_shows_the_responsible_peer() {
    let (c, api) = one_peer("habits-locate").await;
    let r = run(&["locate", "nobody.txt", "--api", &api]);
    assert_eq!(r.code, NOT_FOUND, "{r}");
    assert!(r.stderr.contains("no copy"), "{r}");
    assert!(r.stderr.contains(&c.peers[0].advertise), "{r}");
}

/// `dev` says when its ring is ready, prints its banner again on Enter, and Ctrl-C (SIGINT)
/// ends it with exit code 0. Every log line a peer writes says which peer (`[peer 0]`).
#[test]
fn dev_says_when_the_ring_is_ready() {
    let dir = std::env::temp_dir().join(format!("chordnet-habits-dev-{}", std::process::id()));
    let ports = free_ports(2);
    let (peer, api) = (ports[0].to_string(), ports[1].to_string());
    let d = dir.to_string_lossy().into_owned();
    std::fs::create_dir_all(&dir).expect("dir");
    let log_path = dir.join("dev.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--peers",
            "1",
            "--peer-port",
            &peer,
            "--api-port",
            &api,
        ])
        .args(["--dir", &d])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut banners = |want: usize, seen: &mut Vec<String>| {
        while seen.iter().filter(|l| l.starts_with("Ctrl-C")).count() < want {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("no banner: {seen:?}");
                }
            }
        }
    };
    banners(1, &mut seen);
    assert!(seen.iter().any(|l| l == "ring ready: 1 peer"), "{seen:?}");
    assert!(
        seen.iter().any(
            |l| l.starts_with("The ring page (any peer serves it): http://") && l.ends_with("/ui/")
        ),
        "{seen:?}"
    );
    stdin.write_all(b"\n").expect("Enter");
    banners(2, &mut seen);
    assert_eq!(seen.iter().filter(|l| *l == "Try:").count(), 2, "{seen:?}");
    drop(stdin);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dev did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    let from_peer: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("chordnet::peer") || l.contains("chordnet::runtime"))
        .collect();
    assert!(from_peer.len() >= 3, "{log}");
    assert!(
        from_peer.iter().all(|l| l.starts_with("[peer 0] ")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shell completions, and a --help with examples and the exit codes.
#[test]
fn completions_and_help_with_examples() {
    let r = run(&["completions", "bash"]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("_chordnet"), "{r}");
    assert!(r.stdout.contains("locate"), "{r}");
    let r = run(&["completions", "zsh"]);
    assert!(r.ok() && r.stdout.contains("#compdef chordnet"), "{r}");
    let r = run(&["--help"]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("Examples:"), "{r}");
    assert!(r.stdout.contains("Exit codes"), "{r}");
}

/// `--quiet` prints nothing on success and leaves errors and exit codes as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_prints_nothing_but_errors() {
    let (c, api) = one_peer("habits-quiet").await;
    let file = c.root.join("q.txt");
    std::fs::write(&file, b"quiet").expect("write");
    let f = file.to_string_lossy().into_owned();
    let out = c.root.join("q-copy.txt").to_string_lossy().into_owned();
    for args in [
        vec!["put", &f, "-q"],
        vec!["get", "q.txt", "-o", &out, "--quiet"],
        vec!["locate", "q.txt", "-q"],
        vec!["ring", "-q"],
        vec!["status", "-q"],
        vec!["rm", "q.txt", "-q"],
    ] {
        let mut args = args;
        args.extend(["--api", &api]);
        let r = run(&args);
        assert!(r.ok(), "{args:?}: {r}");
        assert_eq!(r.stdout, "", "{args:?}: {r}");
        assert_eq!(r.stderr, "", "{args:?}: {r}");
    }
    assert_eq!(
        std::fs::read(c.root.join("q-copy.txt")).expect("copy"),
        b"quiet"
    );
    let r = run(&["get", "q.txt", "-q", "--api", &api]);
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.stderr.contains("not found"), "{r}");
}
