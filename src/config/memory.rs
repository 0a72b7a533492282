//! The `[memory]` section: what a running peer gives back to the system.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::humantime_duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// How often a ready peer gives back its resident code pages (clean copies of the
    /// executable, which stay in the page cache; what runs next maps its pages again). The
    /// first time is a few seconds after the peer is first ready, when start-up code is done.
    /// `0s` never does.
    #[serde(with = "humantime_duration")]
    pub release_code_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            release_code_interval: Duration::from_secs(30),
        }
    }
}

impl MemoryConfig {
    /// The interval, or `None` when releasing is off.
    pub fn release_code_every(&self) -> Option<Duration> {
        (!self.release_code_interval.is_zero()).then_some(self.release_code_interval)
    }
}
