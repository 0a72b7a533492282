//! `chordnet dev`: a local ring of peers in one process, with built-in defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tracing::info;

use chordnet::config::Config;
use chordnet::peer::{self, RunningPeer};
use chordnet::telemetry::logs::PEER_THREAD_PREFIX;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 8)]
    peers: u16,
    /// Peer-protocol port of the first peer; the others follow.
    #[arg(long, default_value_t = 7000)]
    peer_port: u16,
    /// API port of the first peer; the others follow.
    #[arg(long, default_value_t = 8080)]
    api_port: u16,
    /// Where the peers' shared and store directories go.
    #[arg(long, default_value = "chordnet-dev")]
    dir: PathBuf,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.peers >= 1, "--peers must be at least 1");
    let peer_ports = port_range("--peer-port", args.peer_port, args.peers)?;
    let api_ports = port_range("--api-port", args.api_port, args.peers)?;
    anyhow::ensure!(
        peer_ports.end() < api_ports.start() || api_ports.end() < peer_ports.start(),
        "the peer ports {}-{} and the API ports {}-{} overlap: move one with --peer-port or --api-port",
        peer_ports.start(),
        peer_ports.end(),
        api_ports.start(),
        api_ports.end()
    );
    let mut peers: Vec<RunningPeer> = Vec::new();
    // Each peer on its own runtime, whose threads are named after it: its log lines say which
    // peer wrote them.
    let mut runtimes: Vec<PeerRuntime> = Vec::new();
    let first = format!("127.0.0.1:{}", args.peer_port);
    for i in 0..args.peers {
        let mut config = Config::default();
        config.node.advertise = format!("127.0.0.1:{}", args.peer_port + i);
        config.node.listen = Some(SocketAddr::from(([127, 0, 0, 1], args.peer_port + i)));
        config.api.listen = SocketAddr::from(([127, 0, 0, 1], args.api_port + i));
        config.ring.bootstrap = (i > 0).then(|| first.clone());
        config.ring.leave_timeout = Duration::from_secs(5);
        let dir = args.dir.join(format!("peer-{i}"));
        config.files.shared_dir = dir.join("shared");
        config.files.store_dir = dir.join("data");
        prepare_dirs(&config, i)?;
        let rt = PeerRuntime::new(i)?;
        let p = rt
            .run(peer::start(config))
            .await?
            .with_context(|| format!("starting peer {i}"))?;
        peers.push(p);
        runtimes.push(rt);
    }
    let ready = wait_until_ready(&peers).await;

    print!("{}", banner(&peers, ready));
    println!("(Enter prints this again.)");
    let (again_tx, mut again) = tokio::sync::mpsc::unbounded_channel();
    // A plain thread: a read blocked on a terminal must not hold the runtime's shutdown.
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            if again_tx.send(()).is_err() {
                break;
            }
        }
    });
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            Some(()) = again.recv() => {
                let ready = peers.iter().filter(|p| p.service.readiness().is_empty()).count();
                print!("{}", banner(&peers, ready));
            }
        }
    }

    println!("leaving...");
    // One after another, so that no two neighbours leave at the same moment.
    while let (Some(p), Some(rt)) = (peers.pop(), runtimes.pop()) {
        rt.run(p.shutdown()).await?;
    }
    println!("all peers left");
    Ok(())
}

/// One dev peer's runtime: one worker thread (and its blocking threads) named
/// `chordnet-peer-<i>`. Dropped without waiting, as an async context must.
struct PeerRuntime(Option<tokio::runtime::Runtime>);

impl PeerRuntime {
    fn new(i: u16) -> anyhow::Result<PeerRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{PEER_THREAD_PREFIX}{i}"))
            .enable_all()
            .build()
            .with_context(|| format!("starting the runtime of peer {i}"))?;
        Ok(PeerRuntime(Some(rt)))
    }

    /// Runs `task` on this peer's runtime and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let rt = self.0.as_ref().context("the peer's runtime is gone")?;
        rt.spawn(task).await.context("a peer task panicked")
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What dev prints once its peers run (again on Enter): the peers, commands to try, the
/// state of the ring.
fn banner(peers: &[RunningPeer], ready: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let api = format!("http://{}", peers[0].api_addr);
    // Files go in through one peer and out through another: any peer serves any file.
    let other = |k: usize| format!("http://{}", peers[k.min(peers.len() - 1)].api_addr);
    let last = peers.len() - 1;
    let _ = writeln!(
        out,
        "chordnet dev ring: {} peers on 127.0.0.1\n",
        peers.len()
    );
    let _ = writeln!(out, "  {:<4} {:<42} {:<22} peer", "#", "id", "API");
    for (i, p) in peers.iter().enumerate() {
        let me = p.service.me();
        let _ = writeln!(
            out,
            "  {:<4} {:<42} http://{:<15} {}",
            i, me.id, p.api_addr, me.address
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "The ring page (any peer serves it): {api}/ui/");
    let _ = writeln!(out);
    let _ = writeln!(out, "Try:");
    let _ = writeln!(out, "  curl -s {api}/v1/node");
    let _ = writeln!(out, "  curl -s {api}/v1/ring");
    let _ = writeln!(out, "  curl -s {api}/v1/lookup/hello.txt");
    let _ = writeln!(out, "  cargo run --release -- ring --api {api}");
    let _ = writeln!(out, "  cargo run --release -- lookup hello.txt --api {api}");
    let _ = writeln!(
        out,
        "  cargo run --release -- put ./some-file.pdf --api {}",
        other(3)
    );
    let _ = writeln!(
        out,
        "  cargo run --release -- get some-file.pdf -o copy.pdf --api {}",
        other(5)
    );
    let _ = writeln!(
        out,
        "  cargo run --release -- locate hello-from-peer-{last}.txt --api {api}"
    );
    let _ = writeln!(out);
    if ready == peers.len() {
        let s = if ready == 1 { "" } else { "s" };
        let _ = writeln!(out, "ring ready: {ready} peer{s}");
    } else {
        let _ = writeln!(out, "{ready} of {} peers ready so far", peers.len());
    }
    let _ = writeln!(
        out,
        "Ctrl-C leaves the ring gracefully, one peer after another."
    );
    out
}

/// The ports `first`, `first + 1`, … of `peers` peers, checked to be real ports (1..=65535).
fn port_range(flag: &str, first: u16, peers: u16) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    anyhow::ensure!(first > 0, "{flag} must be a port from 1 to 65535, got 0");
    match first.checked_add(peers - 1) {
        Some(last) => Ok(first..=last),
        None => anyhow::bail!(
            "{flag} {first} with --peers {peers} needs ports up to {}, past 65535: choose a port \
             of at most {}",
            u32::from(first) + u32::from(peers) - 1,
            65536 - u32::from(peers)
        ),
    }
}

/// Creates the directories and a small file in each shared directory.
fn prepare_dirs(config: &Config, i: u16) -> anyhow::Result<()> {
    let shared = &config.files.shared_dir;
    std::fs::create_dir_all(shared).with_context(|| format!("creating {}", shared.display()))?;
    std::fs::create_dir_all(&config.files.store_dir)
        .with_context(|| format!("creating {}", config.files.store_dir.display()))?;
    let file = shared.join(format!("hello-from-peer-{i}.txt"));
    if !file.exists() {
        std::fs::write(&file, format!("hello from chordnet dev peer {i}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

/// Waits (bounded) until every peer is ready, logging progress; how many are.
async fn wait_until_ready(peers: &[RunningPeer]) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let not_ready = peers
            .iter()
            .filter(|p| !p.service.readiness().is_empty())
            .count();
        if not_ready == 0 {
            return peers.len();
        }
        if tokio::time::Instant::now() > deadline {
            info!(not_ready, "some peers are not ready yet; continuing");
            return peers.len() - not_ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
