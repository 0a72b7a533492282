//! The `chordnet` command line.

mod client;
mod dev;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use chordnet::config::{Config, LogFormat, Overrides};
use chordnet::sim::scenario::{JoinMode, Progress, Report, Scenario};
use chordnet::telemetry;

#[derive(Parser)]
#[command(
    name = "chordnet",
    version,
    about = "A peer-to-peer file-sharing network on Chord",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  chordnet dev                                  a local ring of 8 peers (Ctrl-C leaves)
  chordnet status                               this peer, its ring, readiness
  chordnet put ./report.pdf                     upload (the name in the ring: report.pdf)
  chordnet get report.pdf -o ~/Downloads/       download into a directory
  chordnet locate report.pdf                    who holds it, who shares it
  chordnet ls --api 127.0.0.1:8083              the files of another peer
  chordnet serve --advertise 10.0.0.5:7000 --bootstrap 10.0.0.4:7000
  chordnet sim --nodes 10000 --lookups 1000000
  chordnet events --nats nats://127.0.0.1:4222 --since 5m --follow

Every client command takes --api (URL or host:port; CHORDNET_API) and --json.
Exit codes: 0 done, 1 error, 2 usage, 3 not found, 4 unavailable.";

#[derive(Subcommand)]
enum Command {
    /// Run one peer: REST API, peer protocol, ring maintenance.
    Serve(ServeArgs),
    /// Run a local ring of peers on 127.0.0.1 with built-in defaults (Ctrl-C leaves gracefully).
    Dev(dev::DevArgs),
    /// Run a deterministic simulation of a Chord ring and print a report.
    Sim(SimArgs),
    /// Print the ring's events from its JetStream stream (peers with events.enabled).
    Events(client::EventsArgs),
    /// Show a peer's node info.
    Node(client::Target),
    /// Show a peer's finger table.
    Fingers(client::Target),
    /// Walk the ring from a peer.
    Ring(client::Target),
    /// Find the peer responsible for a key.
    Lookup(client::LookupArgs),
    /// Upload a file into the ring.
    Put(client::PutArgs),
    /// Download a file from the ring.
    Get(client::GetArgs),
    /// Show where a file is stored and who provides it.
    Locate(client::NameArgs),
    /// Delete an uploaded file from the ring.
    Rm(client::NameArgs),
    /// Make a peer join the ring of another peer.
    Join(client::JoinArgs),
    /// Make a peer leave its ring gracefully.
    Leave(client::Target),
    /// List a peer's files: shared from its directory, stored for the ring.
    Ls(client::Target),
    /// One screen about a peer: itself, its ring, readiness, what it stores.
    Status(client::Target),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:\n  \
        chordnet completions bash > /etc/bash_completion.d/chordnet\n  \
        chordnet completions zsh > \"${fpath[1]}/_chordnet\"\n  \
        chordnet completions fish > ~/.config/fish/completions/chordnet.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (also CHORDNET_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Peer-protocol address other peers use (host:port; DNS names allowed).
    #[arg(long)]
    advertise: Option<String>,
    /// Where the peer protocol listens (default: the advertised port, on 127.0.0.1 when the
    /// advertised address is loopback, else on 0.0.0.0).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the REST API, probes and /metrics listen (default 127.0.0.1:8080).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// A member of the ring to join (host:port); none founds a new ring.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Directory whose files this peer shares.
    #[arg(long)]
    shared_dir: Option<PathBuf>,
    /// Directory where this peer stores content for the ring.
    #[arg(long)]
    store_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum JoinArg {
    Concurrent,
    Sequential,
}

#[derive(clap::Args)]
struct SimArgs {
    /// Number of nodes in the initial ring.
    #[arg(long, default_value_t = 1024)]
    nodes: usize,
    /// Number of measured lookups (random keys from random nodes).
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Seed: one seed gives one exact run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Successor list length r.
    #[arg(long, default_value_t = 4)]
    successors: usize,
    /// Crash this fraction of the nodes at once after convergence (0..1), then repair.
    #[arg(long, default_value_t = 0.0)]
    fail_fraction: f64,
    /// Joins plus crashes per stabilization period while the lookups run.
    #[arg(long, default_value_t = 0.0)]
    churn_rate: f64,
    /// How the initial nodes join the bootstrap node.
    #[arg(long, value_enum, default_value_t = JoinArg::Concurrent)]
    join: JoinArg,
    /// Probability that a message is lost (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Stabilization periods over which the measured lookups are spread.
    #[arg(long, default_value_t = 20)]
    lookup_rounds: u64,
    /// Bound on the rounds any convergence phase may take.
    #[arg(long, default_value_t = 5_000)]
    max_rounds: u64,
    /// Split the converged ring into this many parts of random members (at least 2), heal the
    /// network after --partition-rounds, and report the merge.
    #[arg(long, default_value_t = 0)]
    partition_parts: usize,
    /// Stabilization periods the split lasts (lookups and churn go on inside each part).
    #[arg(long, default_value_t = 20)]
    partition_rounds: u64,
    /// Most peers each node's membership table holds (one-hop lookups); 0 turns it off, so
    /// lookups route by fingers alone.
    #[arg(long, default_value_t = 4096)]
    membership_table_max: usize,
    /// The lookups reuse what responsible peers said during the current period, as the API's
    /// lookups do with `ring.reuse_lookup_answers` (off by default here: Chord's own figures).
    #[arg(long)]
    reuse_lookup_answers: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", client::failure::report(&e));
            ExitCode::from(client::failure::exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Dev(args) => dev(args),
        Command::Sim(args) => run_sim(args),
        Command::Events(a) => on_runtime(client::events, a),
        Command::Node(t) => on_runtime(client::node, t),
        Command::Fingers(t) => on_runtime(client::fingers, t),
        Command::Ring(t) => on_runtime(client::ring, t),
        Command::Lookup(a) => on_runtime(client::lookup, a),
        Command::Put(a) => on_runtime(client::put, a),
        Command::Get(a) => on_runtime(client::get, a),
        Command::Locate(a) => on_runtime(client::locate, a),
        Command::Rm(a) => on_runtime(client::rm, a),
        Command::Join(a) => on_runtime(client::join, a),
        Command::Leave(t) => on_runtime(client::leave, t),
        Command::Ls(t) => on_runtime(client::ls, t),
        Command::Status(t) => on_runtime(client::status, t),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "chordnet", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Raises the open-files limit as far as allowed; warns when it stays below what
/// `api.max_connections` needs.
fn open_files_limit(max_connections: usize) {
    match chordnet::fsutil::raise_open_files_limit() {
        Ok(limit) if limit < max_connections as u64 + 256 => tracing::warn!(
            limit,
            max_connections,
            "the open-files limit is below api.max_connections: past it, new API connections \
             fail to be accepted instead of being answered 503 (raise `ulimit -n` or lower \
             api.max_connections)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

/// Runs a client command's future, made here: not inlined, so [`run`]'s frame does not hold
/// room for every command's future. A serving peer's main thread keeps `run`'s frame for as long
/// as it serves, and the compiler touches every page of a large frame on entry (stack probes):
/// with all of them inlined, that frame was 79 KiB of the idle peer's resident memory.
#[inline(never)]
fn on_runtime<A, F>(command: impl FnOnce(A) -> F, args: A) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    runtime()?.block_on(command(args))
}

#[inline(never)]
fn dev(args: dev::DevArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let exporting = init_telemetry(&rt, LogFormat::Text, "warn,chordnet=info", None);
    open_files_limit(0);
    let result = rt.block_on(dev::run(args));
    shut_down_telemetry(exporting);
    result
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Not inlined, and the peer's future boxed: the main thread waits in this call for as long as
/// the peer serves, so its frame stays small (see [`on_runtime`]).
#[inline(never)]
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        advertise: args.advertise,
        listen: args.listen,
        api: args.api,
        bootstrap: args.bootstrap,
        shared_dir: args.shared_dir,
        store_dir: args.store_dir,
    };
    let config = Config::load(args.config, &overrides)?;
    let one_arena = chordnet::memory::one_arena();
    let rt = runtime()?;
    let node_id = config.node_id().to_string();
    let exporting = init_telemetry(&rt, config.log.format, "info", Some(&node_id));
    tracing::debug!(
        one_arena,
        "allocator: one arena for every thread (memory::one_arena)"
    );
    open_files_limit(config.api.max_connections);
    let result = rt.block_on(Box::pin(async move {
        chordnet::peer::serve(config, shutdown_signal()).await?;
        Ok(())
    }));
    shut_down_telemetry(exporting);
    result
}

/// Completes on SIGTERM (Kubernetes, `kill`) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stderr (text for a terminal, JSON for Kubernetes; `RUST_LOG` overrides the level)
/// and exports spans when the `OTEL_*` variables ask for it. `node_id` names the peer in the
/// exported resource (a process running one peer).
fn init_telemetry(
    rt: &tokio::runtime::Runtime,
    format: LogFormat,
    default_filter: &str,
    node_id: Option<&str>,
) -> Option<telemetry::Exporting> {
    let settings =
        telemetry::ExportSettings::from_env(|k| std::env::var(k).ok()).map(|s| match node_id {
            Some(id) => s
                .with_attribute("chordnet.node.id", id)
                .with_attribute("service.instance.id", id),
            None => s,
        });
    let wanted = settings.is_some();
    let exporting = {
        let _runtime = rt.enter();
        telemetry::init(format, default_filter, settings)
    };
    if !wanted {
        tracing::info!("traces are not exported (set OTEL_EXPORTER_OTLP_ENDPOINT to export them)");
    }
    exporting
}

/// Flushes queued spans, bounded: an unreachable collector must not delay the exit.
fn shut_down_telemetry(exporting: Option<telemetry::Exporting>) {
    if let Some(e) = exporting {
        e.shutdown(std::time::Duration::from_secs(3));
    }
}

#[inline(never)]
fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.successors == 0 {
        bail!("--successors must be at least 1");
    }
    if args.partition_parts == 1 || args.partition_parts > args.nodes {
        bail!(
            "--partition-parts must be 0 (no split) or 2..={} (the nodes), got {}",
            args.nodes,
            args.partition_parts
        );
    }
    for (name, value) in [
        ("--fail-fraction", args.fail_fraction),
        ("--loss", args.loss),
    ] {
        if !(0.0..1.0).contains(&value) {
            bail!("{name} must be in [0, 1), got {value}");
        }
    }
    if !(args.churn_rate >= 0.0 && args.churn_rate.is_finite()) {
        bail!(
            "--churn-rate must be a non-negative number, got {}",
            args.churn_rate
        );
    }
    let scenario = Scenario {
        nodes: args.nodes,
        lookups: args.lookups,
        seed: args.seed,
        successors: args.successors,
        fail_fraction: args.fail_fraction,
        churn_rate: args.churn_rate,
        join: match args.join {
            JoinArg::Concurrent => JoinMode::Concurrent,
            JoinArg::Sequential => JoinMode::Sequential,
        },
        loss: args.loss,
        lookup_rounds: args.lookup_rounds,
        max_rounds: args.max_rounds,
        partition_parts: args.partition_parts,
        partition_rounds: args.partition_rounds,
        membership_table_max: args.membership_table_max,
        reuse_lookup_answers: args.reuse_lookup_answers,
    };

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>9} [{bar:40}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut on_progress = |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_prefix(p.phase);
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    };
    let report = scenario.run(&mut on_progress);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    if args.json {
        let json = serde_json::to_string(&report).context("serializing the report")?;
        println!("{json}");
    } else {
        print!("{}", human_report(&report));
    }
    Ok(())
}

fn human_report(r: &Report) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "did not converge".to_string(), |v| v.to_string());
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<34} {v}\n"));
    line(
        "scenario",
        format!(
            "{} nodes, r = {}, {:?} joins, seed {}, membership table max {}{}",
            r.nodes,
            r.successors,
            r.join,
            r.seed,
            r.membership_table_max,
            if r.reuse_lookup_answers {
                ", answers reused"
            } else {
                ""
            }
        ),
    );
    line("rounds to converge", opt(r.converge_rounds));
    line(
        "fingers",
        format!(
            "{:.2}% right after {} more rounds",
            100.0 * r.finger_accuracy,
            r.finger_rounds
        ),
    );
    if r.crashed > 0 {
        line("crashed at once", r.crashed.to_string());
        line(
            "lookups during repair",
            format!(
                "{} issued, {:.2}% correct",
                r.repair_lookups,
                100.0 * r.repair_lookup_success_rate.unwrap_or(0.0)
            ),
        );
        line("rounds to repair", opt(r.repair_rounds));
    }
    if let Some(p) = &r.partition {
        let sizes: Vec<String> = p.part_sizes.iter().map(ToString::to_string).collect();
        line(
            "partition",
            format!(
                "{} parts ({} nodes), each its own ring: {}",
                p.part_sizes.len(),
                sizes.join(" / "),
                p.parts_were_rings
            ),
        );
        line("rounds to merge after healing", opt(p.merge_rounds));
        line(
            "merge messages per node",
            format!(
                "{:.1} ({} unifications started)",
                p.merge_messages_per_node, p.merges_started
            ),
        );
        line("one ring after healing", p.merged.to_string());
    }
    if r.churn_events > 0 {
        line("churn events", r.churn_events.to_string());
        line(
            "rounds to settle after churn",
            opt(r.post_churn_converge_rounds),
        );
    }
    line(
        "lookups",
        format!(
            "{} issued, {:.3}% correct ({} wrong node, {} failed)",
            r.lookups,
            100.0 * r.lookup_success_rate,
            r.lookups_wrong,
            r.lookups_failed
        ),
    );
    line(
        "hops mean / p50 / p99 / max",
        format!(
            "{:.3} / {} / {} / {}   (½·log2 N = {:.3})",
            r.hops_mean, r.hops_p50, r.hops_p99, r.hops_max, r.hops_expected
        ),
    );
    line(
        "lookup latency (virtual)",
        format!("{:.1} ms mean", r.lookup_latency_ms_mean),
    );
    line(
        "messages per node per second",
        format!(
            "{:.2} during lookups, {:.2} idle (maintenance)",
            r.messages_per_node_per_second, r.maintenance_messages_per_node_per_second
        ),
    );
    line("live nodes at the end", r.live_nodes.to_string());
    line("invariants hold at the end", r.converged.to_string());
    line("simulated time", format!("{:.1} s", r.sim_seconds));
    line("wall time", format!("{:.2} s", r.wall_seconds));
    out
}
