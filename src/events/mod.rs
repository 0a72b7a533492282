//! Ring events on JetStream (docs/events.md): what happens in the ring (members joining,
//! leaving and failing, key ranges moving, files stored and deleted, repairs) as JSON on
//! `chordnet.<nats.ring_name>.events.<kind>`, in one durable stream per ring, independent of
//! which transport carries the peers' calls.
//!
//! - [`decide`]: which changes become events (pure: from the ring's [`crate::ring::RingEvent`]s
//!   and the file layer's results).
//! - [`event`]: the JSON shape, the subjects, the `Nats-Msg-Id`.
//! - [`sink`]: the peer's handle: a bounded queue, never waited on; full means dropped and
//!   counted.
//! - [`publisher`]: the one task that binds the stream and publishes, with back-off.
//! - [`reader`]: reading the stream back (`chordnet events`).

pub mod decide;
pub mod event;
pub mod publisher;
pub mod reader;
pub mod sink;
#[cfg(test)]
mod tests;

pub use event::{Event, EventKind, NodeRef};
pub use sink::Events;
