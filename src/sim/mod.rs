//! A deterministic discrete-event simulator that drives many sans-io
//! [`Node`](crate::ring::Node)s over a virtual network with latency, message loss, crashes,
//! graceful leaves and partitions.
//!
//! One seed gives one exact run: time is virtual (microseconds), every random choice comes from
//! one seeded [`Rng`], and events at the same instant are ordered by the order they were
//! scheduled. The simulator plays the part the real server plays in production: it fires the
//! timers, carries messages, reports time-outs, and collects what the nodes say.

pub mod check;
pub mod founding;
mod network;
pub mod partition;
mod rng;
pub mod scenario;
mod simulator;
mod types;
mod verify;

pub use rng::Rng;
pub use simulator::Sim;
pub use types::{LookupRecord, Micros, NodeIndex, SimConfig, Slot, Stats};
