//! chordnet: a peer-to-peer file-sharing network on the Chord distributed hash table.
//!
//! - [`id`]: 160-bit identifiers and ring interval arithmetic.
//! - [`ring`]: the Chord node as a sans-io state machine (no sockets, no clocks).
//! - [`sim`]: a deterministic discrete-event simulator that drives thousands of `ring` nodes over
//!   a virtual network, with an invariant checker.
//!
//! ```
//! use chordnet::id::Id;
//! use chordnet::sim::check::check_ring;
//! use chordnet::sim::scenario::{Scenario, lookup_from_every_node};
//!
//! // Eight nodes join one bootstrap at once; stabilization makes one correct ring.
//! let scenario = Scenario { nodes: 8, ..Scenario::default() };
//! let mut sim = scenario.build();
//! let rounds = scenario.join_all(&mut sim, &mut |_| {});
//! assert!(rounds.is_some());
//! assert!(check_ring(&sim).quiescent_ok());
//!
//! // Every lookup from every node finds the true successor of its key.
//! let records = lookup_from_every_node(&mut sim, 5);
//! assert!(records.iter().all(|r| r.correct));
//!
//! // Keys are SHA-1 of names; intervals wrap around the ring.
//! let key = Id::hash("song.mp3");
//! assert!(key.in_half_open(key, key));
//! ```

pub mod api;
pub mod config;
pub mod events;
pub mod files;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod memory;
pub mod metrics;
pub mod peer;
pub mod persist;
pub mod ring;
pub mod runtime;
pub mod sim;
pub mod telemetry;
pub mod transport;
pub mod wire;
