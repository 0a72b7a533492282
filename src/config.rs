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
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;

/// Everything a peer needs to know at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub api: ApiConfig,
    pub ring: RingSection,
    pub files: FilesConfig,
    pub log: LogConfig,
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
pub struct ApiConfig {
    /// Where the REST API, probes and `/metrics` listen.
    pub listen: SocketAddr,
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub shared_dir: PathBuf,
    pub store_dir: PathBuf,
    #[serde(with = "byte_size")]
    pub max_file_size: u64,
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
            },
            files: FilesConfig {
                shared_dir: PathBuf::from("./shared"),
                store_dir: PathBuf::from("./data"),
                max_file_size: 64 * 1024 * 1024,
                republish_interval: Duration::from_secs(30),
                repair_interval: Duration::from_secs(5),
                tombstone_ttl: Duration::from_secs(24 * 3600),
            },
            log: LogConfig {
                format: LogFormat::Text,
            },
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
        if self.ring.successors == 0 {
            return rule("ring.successors", "must be at least 1");
        }
        if self.ring.replicas == 0 {
            return rule("ring.replicas", "must be at least 1");
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
        ] {
            if d.is_zero() {
                return rule(key, "must be longer than zero");
            }
        }
        if self.files.max_file_size == 0 {
            return rule("files.max_file_size", "must be at least 1 byte");
        }
        Ok(())
    }

    /// Where the peer protocol listens.
    pub fn peer_listen(&self) -> SocketAddr {
        self.node.listen.unwrap_or_else(|| {
            let port = split_host_port(&self.node.advertise).map_or(7000, |(_, p)| p);
            SocketAddr::from(([0, 0, 0, 0], port))
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
            format!("`{key}` {source}: {}", e.kind)
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

mod humantime_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"500ms\" or \"2s\": {e}"
            ))
        })
    }
}

/// Byte sizes: a plain number of bytes, or a number with a unit (`64MiB`, `10MB`, `512KiB`).
mod byte_size {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a size like 67108864, \"64MiB\" or \"10MB\""
                ))
            }),
        }
    }

    pub fn parse(text: &str) -> Option<u64> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number.parse().ok()?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(factor)
    }
}

#[cfg(test)]
// figment's Jail closure returns its large error type by value; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_are_sane() {
        let c = Config::default();
        assert_eq!(c.peer_listen(), "0.0.0.0:7000".parse().unwrap());
        assert_eq!(c.node_id(), Id::hash("127.0.0.1:7000"));
        assert_eq!(c.files.max_file_size, 64 << 20);
        c.validate().unwrap();
    }

    #[test]
    fn the_example_file_is_valid_and_shows_the_defaults() {
        Jail::expect_with(|jail| {
            let example = include_str!("../chordnet.example.toml");
            jail.create_file("example.toml", example)?;
            let c = Config::load(Some("example.toml".into()), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn sizes_and_addresses_parse() {
        assert_eq!(byte_size::parse("64MiB"), Some(64 << 20));
        assert_eq!(byte_size::parse("10MB"), Some(10_000_000));
        assert_eq!(byte_size::parse("123"), Some(123));
        assert_eq!(byte_size::parse("12 parsecs"), None);
        assert_eq!(
            split_host_port("chordnet-0.chordnet-headless:7000"),
            Some(("chordnet-0.chordnet-headless", 7000))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":80"), None);
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                r#"
                [node]
                advertise = "a:1"
                [ring]
                successors = 8
                replicas = 2
                stabilize_interval = "2s"
                [files]
                max_file_size = "1MiB"
                "#,
            )?;
            jail.set_env("CHORDNET_RING__SUCCESSORS", "6");
            jail.set_env("CHORDNET_LOG__FORMAT", "json");
            jail.set_env("CHORDNET_CONFIG", "ignored-when-a-file-is-given.toml");
            jail.set_env("CHORDNET_RING__SEEDS", "s-0.h:7000, s-1.h:7000,");
            // Kubernetes service links for a Service named `chordnet` are not config keys.
            jail.set_env("CHORDNET_SERVICE_HOST", "10.0.0.1");
            jail.set_env("CHORDNET_PORT", "tcp://10.0.0.1:8080");
            jail.set_env("CHORDNET_PORT_8080_TCP_ADDR", "10.0.0.1");
            let overrides = Overrides {
                advertise: Some("b:2".into()),
                ..Overrides::default()
            };
            let c = Config::load(Some("c.toml".into()), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(c.node.advertise, "b:2");
            assert_eq!(c.ring.successors, 6);
            assert_eq!(c.ring.replicas, 2);
            assert_eq!(c.ring.stabilize_interval, Duration::from_secs(2));
            assert_eq!(c.files.max_file_size, 1 << 20);
            assert_eq!(c.log.format, LogFormat::Json);
            assert_eq!(c.ring.seeds, vec!["s-0.h:7000", "s-1.h:7000"]);
            assert_eq!(c.peer_listen(), "0.0.0.0:2".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[ring]\nstabilize_interval = \"soon\"\n")?;
            let err = Config::load(Some("bad.toml".into()), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("ring.stabilize_interval"), "{err}");
            assert!(err.contains("bad.toml"), "{err}");

            jail.set_env("CHORDNET_RING__SUCCESSORS", "many");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("ring.successors"), "{err}");
            assert!(err.contains("CHORDNET_RING__SUCCESSORS"), "{err}");

            jail.set_env("CHORDNET_RING__SUCCESSORS", "0");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`ring.successors`: must be at least 1"),
                "{err}"
            );

            jail.set_env("CHORDNET_RING__SUCCESSORS", "4");
            jail.set_env("CHORDNET_RING__TYPO", "1");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("typo"), "{err}");

            let err = Config::load(Some("missing.toml".into()), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("missing.toml"), "{err}");
            Ok(())
        });
    }
}
