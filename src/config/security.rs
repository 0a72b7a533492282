//! The `[security]` section: the ring secret that peers sign their messages with.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::humantime_duration;

/// Who may talk to this peer over the peer protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The ring secret: a file of keys, one per line (hex or base64, at least 32 bytes; `#`
    /// comments). Every peer message is then signed with the first key and accepted only with
    /// a valid signature of any listed key; the file is re-read when it changes (rotation
    /// without downtime). Without it, any host that reaches the peer port is a peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_secret_file: Option<PathBuf>,
    /// How far a signed message's timestamp may be from this peer's clock (replays are
    /// refused within it; older or later messages are refused outright).
    #[serde(
        default = "super::defaults::message_window",
        with = "humantime_duration",
        skip_serializing_if = "is_default_window"
    )]
    pub message_window: Duration,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            ring_secret_file: None,
            message_window: super::defaults::message_window(),
        }
    }
}

fn is_default_window(d: &Duration) -> bool {
    *d == super::defaults::message_window()
}
