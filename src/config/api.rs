//! The `[api]` section: where the REST API listens, who may use it, and its limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::humantime_duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the REST API, probes and `/metrics` listen.
    pub listen: SocketAddr,
    /// Bearer tokens, one `ROLE TOKEN` pair per line (roles `read`, `write`, `admin`); none
    /// leaves the API open (a dev ring). Read again when the file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// With tokens: whether `/metrics` needs a `read` token too (the probes never do).
    #[serde(default)]
    pub protect_metrics: bool,
    /// The most API connections open at once; more are answered `503` and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a connection may stay open with no request in progress.
    #[serde(default = "default_idle_timeout", with = "humantime_duration")]
    pub idle_timeout: Duration,
    /// The most uploads and downloads in progress at once (each holds up to 8 MiB of blocks);
    /// one more is answered `503` with `Retry-After`.
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
}

pub(super) fn default_max_transfers() -> usize {
    16
}

pub(super) fn default_max_connections() -> usize {
    8192
}

pub(super) fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
