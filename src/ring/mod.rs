//! The Chord node as a sans-io state machine.
//!
//! A [`Node`] owns its routing state (predecessor, successor list, fingers) and makes every
//! protocol decision, but performs no I/O and reads no clock: the driver (the real server, or the
//! simulator) feeds it events and executes the [`Output`]s it produces.
//!
//! - Inputs: [`Node::tick`] for the periodic timers, [`Node::handle_request`] for a peer's request
//!   (answered synchronously), [`Node::handle_response`] / [`Node::handle_failure`] for the answer
//!   to (or the time-out of) a request this node sent, and user commands ([`Node::create`],
//!   [`Node::join`], [`Node::lookup`], [`Node::leave`]).
//! - Outputs, collected with [`Node::drain_outputs`]: requests to send, finished lookups, and ring
//!   events (successor/predecessor changed = key range changed, peer failed, joined, left, ...).
//!
//! Maintenance follows Zave's corrected Chord ("Reasoning about identifier spaces: how to make
//! Chord correct", 2017): a successor list of length r, a join that copies the successor's list,
//! stabilize that adopts the successor's predecessor only once it has answered (is alive), rectify
//! that replaces a dead predecessor, and fingers that only ever speed lookups up.

pub mod bootstrap;
mod bounds;
mod cancel;
mod dispatch;
mod fingers;
mod lookup;
mod membership;
mod message;
mod node;
mod passive;
pub mod placement;
mod recent;
mod rename;
mod routing;
mod stabilize;
mod table;
mod types;
mod unify;
pub mod verify;

pub use bootstrap::{
    Action as BootstrapAction, Bootstrap, BootstrapConfig, FoundReason, JoinOutcome,
    MIN_DOWN_ATTEMPTS, Remembered,
};
pub use lookup::{
    LookupError, LookupId, LookupResult, MAX_HOPS, NO_ROUTE_RETRIES, RETRY_AFTER_TICKS,
};
pub use message::{
    Address, Member, Peer, Rejection, Request, RequestEnvelope, RequestId, Response,
    ResponseEnvelope, RingId,
};
pub use node::Node;
pub use types::{
    Cause, CommandError, JoinFailure, Membership, MergeTrigger, NotReady, Output, RingConfig,
    RingEvent, Timer,
};

#[cfg(test)]
mod tests;
