//! `chordnet events`: the ring's events from its JetStream stream (docs/events.md), as lines
//! for people or JSON lines, up to the stream's end or (`--follow`) until SIGINT/SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use chordnet::config::{Config, Overrides};
use chordnet::events::reader::{self, Read, ReadOptions, Since};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// The NATS broker (default: `nats.url` of the configuration, CHORDNET_NATS__URL).
    #[arg(long)]
    nats: Option<String>,
    /// The ring's name (default: `nats.ring_name`, CHORDNET_NATS__RING_NAME, else "default").
    #[arg(long)]
    ring_name: Option<String>,
    /// Where to start: a stream sequence number (42) or how long ago (5m, 2h); default: the
    /// oldest event the stream holds.
    #[arg(long)]
    since: Option<Since>,
    /// Keep printing new events until interrupted (SIGINT, SIGTERM).
    #[arg(long)]
    follow: bool,
    /// One JSON object per line (the events as stored) instead of lines for people.
    #[arg(long)]
    json: bool,
    /// A TOML configuration file for the broker's credentials and the stream's name (also
    /// CHORDNET_CONFIG; CHORDNET_NATS__CREDENTIALS_FILE, CHORDNET_NATS__TOKEN_FILE and the
    /// broker TLS files CHORDNET_NATS__TLS_{CA,CERT,KEY}_FILE work too).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config, &Overrides::default())?;
    let mut nats = config.nats.clone();
    if let Some(url) = args.nats {
        nats.url = url;
    }
    if let Some(ring) = args.ring_name {
        nats.ring_name = ring;
    }
    let stream = config.events.stream_name(&nats.ring_name);
    let options = ReadOptions {
        nats,
        stream,
        since: args.since.unwrap_or(Since::Start),
        follow: args.follow,
    };
    let json = args.json;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let print = |r: Read| {
        if failed.is_some() {
            return;
        }
        let line = if json {
            String::from_utf8_lossy(&r.payload).trim_end().to_owned()
        } else {
            match &r.event {
                Ok(e) => format!("#{} {}", r.seq, e.human()),
                Err(why) => format!("#{} {} (not an event: {why})", r.seq, r.subject_kind),
            }
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            failed = Some(e);
        }
    };
    reader::read(options, print, crate::shutdown_signal()).await?;
    match failed {
        // A closed pipe (`| head`) ends the listing, it is not an error.
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
