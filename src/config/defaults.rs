//! Defaults of the keys a configuration file may leave out (serde's `default = "..."`; the
//! others come from [`super::Config::default`]).

use std::time::Duration;

pub fn write_quorum() -> usize {
    2
}
pub fn read_quorum() -> usize {
    2
}
pub fn max_clock_skew() -> Duration {
    Duration::from_secs(60)
}
pub fn reserve() -> u64 {
    16 << 20
}
pub fn block_size() -> u64 {
    1 << 20
}
pub fn message_window() -> Duration {
    Duration::from_secs(30)
}
pub fn membership_table_max() -> usize {
    4096
}
pub fn reuse_lookup_answers() -> bool {
    true
}
