//! chordnet: a peer-to-peer file-sharing network on the Chord distributed hash table.
//!
//! - [`id`]: 160-bit identifiers and ring interval arithmetic.
//! - [`ring`]: the Chord node as a sans-io state machine (no sockets, no clocks).
//! - [`sim`]: a deterministic discrete-event simulator that drives thousands of `ring` nodes over
//!   a virtual network, with an invariant checker.

pub mod id;
pub mod ring;
pub mod sim;
