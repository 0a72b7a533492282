//! Peer configuration: built-in defaults < TOML file (`--config` or `CHORDNET_CONFIG`) <
//! `CHORDNET_*` environment variables (nested keys joined with `__`) < command-line flags.
//!
//! Invalid values stop the peer at start with a message that names the key and where the value
//! came from (figment tracks the source of every value).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::id::Id;
pub use api::ApiConfig;
use api::{default_idle_timeout, default_max_connections, default_max_transfers};
pub use events::EventsConfig;
pub use memory::MemoryConfig;
pub use nats::NatsConfig;
pub use security::{SecurityConfig, TlsConfig, TlsFiles};
use units::{byte_size, humantime_duration};

mod api;
mod defaults;
mod events;
mod memory;
mod nats;
mod security;
pub mod subject;
#[cfg(test)]
mod tests;
mod units;

/// Everything a peer needs to know at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub api: ApiConfig,
    pub ring: RingSection,
    pub files: FilesConfig,
    pub log: LogConfig,
    #[serde(default)]
    pub transport: TransportConfig,
    /// The NATS broker (`transport.kind = "nats"`, and the ring events).
    #[serde(default)]
    pub nats: NatsConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    /// The ring events on a JetStream stream of the `[nats]` broker.
    #[serde(default)]
    pub events: EventsConfig,
    /// What the peer gives back to the system while it runs.
    #[serde(default)]
    pub memory: MemoryConfig,
}

/// How peers reach each other: which transport carries both planes, and the deadlines and
/// limits every transport shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// `http` (HTTP/JSON, the default), `grpc` (gRPC with streamed transfers) or `memory`
    /// (peers in one process only: tests, dev). Every peer of a ring uses the same one.
    pub kind: TransportKind,
    /// Slowest acceptable rate of a file transfer between peers, in bytes per second: a
    /// transfer of `size` bytes may take `bulk_floor + size / min_transfer_rate`.
    #[serde(with = "byte_size")]
    pub min_transfer_rate: u64,
    /// The part of a transfer's deadline that does not depend on its size (connection, fsync).
    #[serde(with = "humantime_duration")]
    pub bulk_floor: Duration,
    /// A transfer that moves no byte for this long fails, whatever its deadline.
    #[serde(with = "humantime_duration")]
    pub progress_timeout: Duration,
    /// File transfers this peer runs at once (as client, and as server); more wait their turn.
    pub max_transfers: usize,
    /// A connection to another peer that carried nothing for this long is closed (HTTP's
    /// pooled connections, gRPC's channels). The periodic traffic to the successors and
    /// fingers keeps theirs open; a peer met once (an exchange partner, a lookup's hop) does
    /// not hold memory and a socket on both sides for long.
    #[serde(with = "humantime_duration")]
    pub idle_timeout: Duration,
}

/// The transports a peer can speak. `transport/registry.rs` maps each to its implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Http,
    Grpc,
    Memory,
    /// Through a NATS broker: peers address each other by subject, never by socket.
    Nats,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            kind: TransportKind::Http,
            min_transfer_rate: 1 << 20,
            bulk_floor: Duration::from_secs(10),
            progress_timeout: Duration::from_secs(10),
            max_transfers: 16,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The peer-protocol address other peers use (`host:port`, DNS names allowed).
    pub advertise: String,
    /// Where the peer protocol listens; defaults to 0.0.0.0 with the advertised port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The node identifier (40 hex characters); defaults to SHA-1 of `advertise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSection {
    /// A member of the ring to join; none founds a new ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// Peers to try, in order, until one lets this peer join (a list, or one comma-separated
    /// string). The first seed is the founder: only a peer advertising that address founds a
    /// ring, and only when no seed is a ring member.
    #[serde(default, deserialize_with = "address_list")]
    pub seeds: Vec<String>,
    /// How long the founder keeps trying unreachable seeds before founding a ring (when it has
    /// no record of an earlier ring in its store directory).
    #[serde(with = "humantime_duration")]
    pub create_after: Duration,
    /// Successor list length r.
    pub successors: usize,
    /// Copies of each stored file (responsible peer + successors).
    pub replicas: usize,
    #[serde(with = "humantime_duration")]
    pub stabilize_interval: Duration,
    #[serde(with = "humantime_duration")]
    pub fix_fingers_interval: Duration,
    #[serde(with = "humantime_duration")]
    pub check_predecessor_interval: Duration,
    /// Time-out of one peer RPC.
    #[serde(with = "humantime_duration")]
    pub rpc_timeout: Duration,
    /// How long a graceful leave may take before the peer exits anyway.
    #[serde(with = "humantime_duration")]
    pub leave_timeout: Duration,
    /// Pause between attempts to join the bootstrap peer.
    #[serde(with = "humantime_duration")]
    pub join_retry_interval: Duration,
    /// Most peers the membership table holds (one-hop lookups for rings that fit; 0 turns the
    /// table off and lookups route by fingers alone).
    #[serde(default = "defaults::membership_table_max")]
    pub membership_table_max: usize,
    /// API lookups reuse what a responsible peer said of its keys during the current
    /// stabilization period (no message; at most one period old). Off: every one asks.
    #[serde(default = "defaults::reuse_lookup_answers")]
    pub reuse_lookup_answers: bool,
}

/// Upper bound of `ring.membership_table_max` (about 100 bytes a peer).
pub const MAX_MEMBERSHIP_TABLE: usize = 1 << 20;

/// Bounds of `files.block_size`.
pub const MIN_BLOCK_SIZE: u64 = 64 << 10;
pub const MAX_BLOCK_SIZE: u64 = 16 << 20;
/// Most block digests one manifest record lists inline (about 70 bytes of JSON per block: a
/// few MiB). New uploads list at most `files::lists::LIST_THRESHOLD` inline and put the
/// digests of bigger files in list blocks; records of up to this many are still read.
pub const MAX_BLOCKS: u64 = 1 << 16;
/// Most block digests one list block holds (32 bytes each: a list block is 512 KiB).
pub const MAX_PER_LIST: u64 = 1 << 14;
/// Most list blocks one manifest lists (about 70 bytes each: a record under 72 KB).
pub const MAX_LISTS: u64 = 1 << 10;
/// Most blocks of one file: `MAX_LISTS` list blocks of `MAX_PER_LIST` digests (16,777,216:
/// 1 TiB in 64 KiB blocks, 16 TiB in 1 MiB blocks).
pub const MAX_FILE_BLOCKS: u64 = MAX_LISTS * MAX_PER_LIST;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub shared_dir: PathBuf,
    pub store_dir: PathBuf,
    #[serde(with = "byte_size")]
    pub max_file_size: u64,
    /// Files larger than this are cut into content-addressed blocks of this size, each stored
    /// at the successor of its digest (64 KiB to 16 MiB).
    #[serde(default = "defaults::block_size", with = "byte_size")]
    pub block_size: u64,
    /// How often the shared directory is re-scanned and provider records are republished;
    /// a record expires after three of these.
    #[serde(with = "humantime_duration")]
    pub republish_interval: Duration,
    /// How often a peer checks that the keys it holds have their copies where they belong.
    #[serde(with = "humantime_duration")]
    pub repair_interval: Duration,
    /// How long a delete's tombstone is kept (so a stale copy cannot bring the file back).
    #[serde(with = "humantime_duration")]
    pub tombstone_ttl: Duration,
    /// Copies that must be durable before an upload or delete is acknowledged (a ring with
    /// fewer members needs all of them).
    #[serde(default = "defaults::write_quorum")]
    pub write_quorum: usize,
    /// Holders a download asks for their version; the newest wins (with `write_quorum`, more
    /// than `ring.replicas`, so a read always meets the last acknowledged write).
    #[serde(default = "defaults::read_quorum")]
    pub read_quorum: usize,
    /// A version stamped further than this in the future (by this peer's clock) is refused.
    #[serde(default = "defaults::max_clock_skew", with = "humantime_duration")]
    pub max_clock_skew: Duration,
    /// Space kept free on the store's disk: content is refused (507) when it would leave less,
    /// so that tombstones and metadata still fit and deletes work on a full disk.
    #[serde(default = "defaults::reserve", with = "byte_size")]
    pub reserve: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node: NodeConfig {
                advertise: "127.0.0.1:7000".into(),
                listen: None,
                id: None,
            },
            api: ApiConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                tokens_file: None,
                protect_metrics: false,
                max_connections: default_max_connections(),
                idle_timeout: default_idle_timeout(),
                max_transfers: default_max_transfers(),
            },
            ring: RingSection {
                bootstrap: None,
                seeds: Vec::new(),
                create_after: Duration::from_secs(10),
                successors: 4,
                replicas: 3,
                stabilize_interval: Duration::from_millis(500),
                fix_fingers_interval: Duration::from_millis(500),
                check_predecessor_interval: Duration::from_millis(500),
                rpc_timeout: Duration::from_secs(1),
                leave_timeout: Duration::from_secs(20),
                join_retry_interval: Duration::from_secs(1),
                membership_table_max: defaults::membership_table_max(),
                reuse_lookup_answers: defaults::reuse_lookup_answers(),
            },
            files: FilesConfig {
                shared_dir: PathBuf::from("./shared"),
                store_dir: PathBuf::from("./data"),
                max_file_size: 64 << 30,
                block_size: defaults::block_size(),
                republish_interval: Duration::from_secs(30),
                repair_interval: Duration::from_secs(5),
                tombstone_ttl: Duration::from_secs(24 * 3600),
                write_quorum: defaults::write_quorum(),
                read_quorum: defaults::read_quorum(),
                max_clock_skew: defaults::max_clock_skew(),
                reserve: defaults::reserve(),
            },
            log: LogConfig {
                format: LogFormat::Text,
            },
            transport: TransportConfig::default(),
            nats: NatsConfig::default(),
            security: SecurityConfig::default(),
            events: EventsConfig::default(),
            memory: MemoryConfig::default(),
        }
    }
}

/// Values given on the command line: they override every other source.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    pub advertise: Option<String>,
    pub listen: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub bootstrap: Option<String>,
    pub shared_dir: Option<PathBuf>,
    pub store_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: `{key}`: {message}")]
    Rule { key: &'static str, message: String },
}

impl Config {
    /// Loads defaults < `file` (or `CHORDNET_CONFIG`) < `CHORDNET_*` < `overrides`.
    pub fn load(file: Option<PathBuf>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = file.or_else(|| std::env::var_os("CHORDNET_CONFIG").map(PathBuf::from));
        Config::figment(file, env_provider(), overrides)
    }

    /// Defaults < a TOML document, validated (the fuzz targets use this; no environment).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The same, with an explicit environment provider (tests use this).
    pub fn figment(
        file: Option<PathBuf>,
        env: Env,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            // A named file must exist: a typo in a path should not silently mean defaults.
            if !file.is_file() {
                return Err(ConfigError::Rule {
                    key: "--config",
                    message: format!("{} is not a readable file", file.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // `CHORDNET_CONFIG` names the file, it is not a key.
        figment = figment.merge(env.ignore(&["config"]));
        let mut cli = Figment::new();
        let o = overrides;
        if let Some(v) = &o.advertise {
            cli = cli.merge(Serialized::default("node.advertise", v));
        }
        if let Some(v) = &o.listen {
            cli = cli.merge(Serialized::default("node.listen", v));
        }
        if let Some(v) = &o.api {
            cli = cli.merge(Serialized::default("api.listen", v));
        }
        if let Some(v) = &o.bootstrap {
            cli = cli.merge(Serialized::default("ring.bootstrap", v));
        }
        if let Some(v) = &o.shared_dir {
            cli = cli.merge(Serialized::default("files.shared_dir", v));
        }
        if let Some(v) = &o.store_dir {
            cli = cli.merge(Serialized::default("files.store_dir", v));
        }
        let config: Config = figment
            .merge(cli)
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rule = |key, message: &str| {
            Err(ConfigError::Rule {
                key,
                message: message.to_string(),
            })
        };
        self.validate_nats_tls()?;
        if self.transport.kind == TransportKind::Nats {
            // Addresses are subjects (`chordnet.<ring>.peer.<node>`), not sockets.
            self.validate_nats()?;
        } else {
            if split_host_port(&self.node.advertise).is_none() {
                return rule("node.advertise", "must be host:port with a port number");
            }
            if let Some(b) = &self.ring.bootstrap
                && split_host_port(b).is_none()
            {
                return rule("ring.bootstrap", "must be host:port with a port number");
            }
            if let Some(bad) = self
                .ring
                .seeds
                .iter()
                .find(|s| split_host_port(s).is_none())
            {
                return rule("ring.seeds", &format!("{bad:?} is not host:port"));
            }
        }
        if self.ring.successors == 0 {
            return rule("ring.successors", "must be at least 1");
        }
        if self.ring.replicas == 0 {
            return rule("ring.replicas", "must be at least 1");
        }
        if self.ring.membership_table_max > MAX_MEMBERSHIP_TABLE {
            return rule(
                "ring.membership_table_max",
                "must be at most 1048576 (0 turns the table off)",
            );
        }
        for (key, d) in [
            ("ring.stabilize_interval", self.ring.stabilize_interval),
            ("ring.fix_fingers_interval", self.ring.fix_fingers_interval),
            (
                "ring.check_predecessor_interval",
                self.ring.check_predecessor_interval,
            ),
            ("ring.rpc_timeout", self.ring.rpc_timeout),
            ("ring.join_retry_interval", self.ring.join_retry_interval),
            ("files.republish_interval", self.files.republish_interval),
            ("files.repair_interval", self.files.repair_interval),
            ("api.idle_timeout", self.api.idle_timeout),
        ] {
            if d.is_zero() {
                return rule(key, "must be longer than zero");
            }
        }
        if self.api.max_connections == 0 {
            return rule("api.max_connections", "must be at least 1");
        }
        if self.api.max_transfers == 0 {
            return rule("api.max_transfers", "must be at least 1");
        }
        if self.files.max_file_size == 0 {
            return rule("files.max_file_size", "must be at least 1 byte");
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.files.block_size) {
            return rule("files.block_size", "must be 64KiB..=16MiB");
        }
        if self.files.max_file_size.div_ceil(self.files.block_size) > MAX_FILE_BLOCKS {
            return rule(
                "files.max_file_size",
                &format!(
                    "a file has at most {MAX_FILE_BLOCKS} blocks ({MAX_LISTS} list blocks of \
                     {MAX_PER_LIST} block digests), that is {} GiB in blocks of {} KiB: raise \
                     files.block_size or lower files.max_file_size",
                    MAX_FILE_BLOCKS.saturating_mul(self.files.block_size) >> 30,
                    self.files.block_size >> 10
                ),
            );
        }
        if self.files.write_quorum == 0 || self.files.write_quorum > self.ring.replicas {
            return rule("files.write_quorum", "must be 1..=ring.replicas");
        }
        if self.files.read_quorum == 0 || self.files.read_quorum > self.ring.replicas {
            return rule("files.read_quorum", "must be 1..=ring.replicas");
        }
        if self.transport.min_transfer_rate == 0 {
            return rule(
                "transport.min_transfer_rate",
                "must be at least 1 byte per second",
            );
        }
        if self.transport.max_transfers == 0 {
            return rule("transport.max_transfers", "must be at least 1");
        }
        if self.transport.idle_timeout.is_zero() {
            return rule("transport.idle_timeout", "must be longer than zero");
        }
        if self.transport.progress_timeout.is_zero() {
            return rule("transport.progress_timeout", "must be longer than zero");
        }
        if self.security.message_window < Duration::from_secs(1) {
            return rule("security.message_window", "must be at least 1s");
        }
        self.validate_events()?;
        self.validate_tls()?;
        Ok(())
    }

    /// Where the peer protocol listens: `node.listen`, else the advertised port on loopback
    /// when the advertised address is a loopback one (a laptop does not expose its peer port),
    /// and on every interface otherwise (other hosts must reach it).
    pub fn peer_listen(&self) -> SocketAddr {
        self.node.listen.unwrap_or_else(|| {
            let (host, port) = split_host_port(&self.node.advertise).unwrap_or(("", 7000));
            let ip: std::net::IpAddr = match host.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_loopback() => ip,
                Err(_) if host.eq_ignore_ascii_case("localhost") => [127, 0, 0, 1].into(),
                _ => [0, 0, 0, 0].into(),
            };
            SocketAddr::new(ip, port)
        })
    }

    /// The node identifier: configured, or SHA-1 of the advertised address.
    pub fn node_id(&self) -> Id {
        self.node
            .id
            .unwrap_or_else(|| Id::hash(self.node.advertise.as_bytes()))
    }
}

/// `CHORDNET_<SECTION>__<KEY>` variables. Only names with a `__` are configuration keys:
/// Kubernetes injects service links such as `CHORDNET_SERVICE_HOST` and `CHORDNET_PORT` into
/// every pod of a namespace with a Service named `chordnet`, and those must not stop a peer.
/// (A misspelt key inside a section is still refused.)
pub fn env_provider() -> Env {
    Env::prefixed("CHORDNET_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// One line per problem: the key, where its value came from, and what is wrong.
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let source = match &e.metadata {
                Some(md) => {
                    let named = format!("CHORDNET_{}", e.path.join("__").to_uppercase());
                    match &md.source {
                        Some(figment::Source::File(path)) => {
                            format!("in file {}", path.display())
                        }
                        _ if md.name.contains("environment") => {
                            format!("from environment variable {named}")
                        }
                        _ => format!("from {}", md.name),
                    }
                }
                None => "from the defaults".to_string(),
            };
            // figment quotes the whole list of alternatives again (``one of `a`, `b```).
            let what = match &e.kind {
                figment::error::Kind::UnknownField(found, expected) => format!(
                    "unknown key `{found}`, expected {}",
                    figment::error::OneOf(expected)
                ),
                figment::error::Kind::UnknownVariant(found, expected) => format!(
                    "unknown value `{found}`, expected {}",
                    figment::error::OneOf(expected)
                ),
                kind => kind.to_string(),
            };
            // A file that does not parse has no key to name.
            if key.is_empty() {
                format!("{source}: {what}")
            } else {
                format!("`{key}` {source}: {what}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `host:port` → (host, port), or `None` when it is not of that shape.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

/// A list of addresses: a TOML/JSON list, or one comma-separated string (handy in env vars).
fn address_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let list = match Raw::deserialize(d)? {
        Raw::List(l) => l,
        Raw::Text(t) => t.split(',').map(str::to_string).collect(),
    };
    Ok(list
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}
