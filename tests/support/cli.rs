//! Running the real `chordnet` binary as a user would, for the CLI tests: bounded runs with
//! their output, and a one-peer ring to point them at. Include beside `support/cluster.rs`
//! (as `mod cluster`).
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{BIN, Cluster};

/// What a finished `chordnet` run printed.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `chordnet ARGS` and waits at most `limit` for it; `None` if it was still running then
/// (it is killed).
pub fn run_bounded(args: &[&str], limit: Duration) -> Option<Run> {
    run_bounded_env(args, &[], limit)
}

/// [`run_bounded`] with `env` added to the environment.
pub fn run_bounded_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Option<Run> {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("CHORDNET_API")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chordnet");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chordnet") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    status.map(|_| run)
}

/// Runs a client command (bounded: 30 s).
pub fn run(args: &[&str]) -> Run {
    run_bounded(args, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("chordnet {args:?} did not finish within 30 s"))
}

/// A one-peer ring and its API URL.
pub async fn one_peer(name: &str) -> (Cluster, String) {
    let c = Cluster::start_converged(name, 1).await;
    let api = format!("http://{}", c.peers[0].api);
    (c, api)
}

pub async fn upload(c: &Cluster, name: &str, data: &[u8]) {
    let resp = c
        .http
        .put(c.peers[0].url(&format!("/v1/files/{name}")))
        .body(data.to_vec())
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success(), "{}", resp.status());
}
