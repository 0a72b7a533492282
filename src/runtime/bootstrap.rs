//! Becoming a member: the runtime side of [`crate::ring::Bootstrap`] (real joins, name
//! resolution, time, the remembered ring), and fresh ring ids.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Service, ServiceError};
use crate::persist::RingState;
use crate::ring::{
    Address, Bootstrap, BootstrapAction as Action, BootstrapConfig, JoinFailure, JoinOutcome,
    Remembered, RingId,
};

impl Service {
    /// Founds a ring or joins one: drives the sans-io founder machine ([`Bootstrap`]; the rule
    /// is documented there and proven by the simulator) with real joins, name resolution,
    /// time and the store directory's remembered ring.
    pub(super) async fn become_member(self: Arc<Self>, remembered: Option<RingState>) {
        let ring = &self.config.ring;
        let address = |s: &String| Address::new(s);
        let mut machine = Bootstrap::new(BootstrapConfig {
            me: Address::new(&self.config.node.advertise),
            bootstrap: ring.bootstrap.as_ref().map(address),
            seeds: ring.seeds.iter().map(address).collect(),
            remembered: remembered.map(|s| Remembered {
                ring_id: s.ring_id(),
                peers: s.peers.iter().map(address).collect(),
            }),
            fresh_ring_id: new_ring_id(),
            create_after: ring.create_after,
            join_retry_interval: ring.join_retry_interval,
            answer_timeout: ring.rpc_timeout,
        });
        let started = Instant::now();
        // Rounds that ended without a way in: the first is a warning, the rest are told once
        // it is over (joined or founded), with how long it took.
        let mut waits = 0u32;
        let mut incompatible = std::collections::HashSet::new();
        let waited = |waits: u32| {
            if waits == 0 {
                String::new()
            } else {
                format!(
                    " after {waits} round(s) of asking, {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            }
        };
        let mut stop = self.shutdown.subscribe();
        let mut action = machine.start(Duration::ZERO);
        loop {
            if *stop.borrow() {
                return;
            }
            action = match action {
                Action::TryJoin(target) => {
                    let outcome = match self.join(target.as_str()).await {
                        Ok(()) | Err(ServiceError::AlreadyMember) => {
                            if waits > 0 {
                                info!(%target, "joined through {target}{}", waited(waits));
                            }
                            JoinOutcome::Joined
                        }
                        Err(ServiceError::JoinFailed(JoinFailure::NotMember {
                            remembers, ..
                        })) => {
                            debug!(%target, "seed is not a ring member yet");
                            JoinOutcome::NotMember { remembers }
                        }
                        Err(ServiceError::JoinFailed(JoinFailure::Unreachable { .. })) => {
                            JoinOutcome::Unreachable
                        }
                        Err(e @ ServiceError::JoinFailed(JoinFailure::Incompatible { .. })) => {
                            // A misconfiguration: say it loudly, once per target, and keep
                            // trying (the other side may be redeployed with the right kind).
                            if incompatible.insert(target.clone()) {
                                warn!(%target, "cannot join: {e}");
                            }
                            JoinOutcome::Other(e.to_string())
                        }
                        Err(e) => {
                            debug!(%target, error = %e, "join attempt failed");
                            JoinOutcome::Other(e.to_string())
                        }
                    };
                    machine.on_join(started.elapsed(), outcome)
                }
                Action::CheckResolves(target) => {
                    let resolves = self.resolves(target.as_str()).await;
                    if !resolves {
                        debug!(%target, "seed does not exist (its name does not resolve)");
                    }
                    machine.on_resolves(started.elapsed(), resolves)
                }
                Action::Create(ring_id) => {
                    if let Some(reason) = machine.founded() {
                        let what = if machine.remembers(ring_id) {
                            "restarting the remembered ring"
                        } else {
                            "founding a new ring"
                        };
                        info!(?reason, %ring_id, "{what} {ring_id}: {reason}{}", waited(waits));
                    }
                    match self.create(ring_id).await {
                        Ok(()) | Err(ServiceError::AlreadyMember) => return,
                        Err(e) => {
                            debug!(error = %e, "could not found the ring");
                            return;
                        }
                    }
                }
                Action::Wait(delay) => {
                    if waits == 0 {
                        warn!(tried = ?machine.targets(), "could not join any peer yet; retrying every {delay:?}");
                    } else {
                        debug!(tried = ?machine.targets(), round = waits + 1, "still no way in; retrying");
                    }
                    waits += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    machine.on_wake(started.elapsed())
                }
                Action::Done => return,
            };
        }
    }
}

/// A random word: the standard library's random hasher keys mixed with the clock, the process
/// id and `k`.
fn random_u64(k: usize) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_usize(k);
    h.finish()
}

/// A random incarnation for this start of the peer (a restart is then told from a partition).
pub fn new_incarnation() -> u64 {
    random_u64(2)
}

/// A random ring id (UUID version 4 layout), from the standard library's random hasher keys
/// mixed with the clock and process id.
pub fn new_ring_id() -> RingId {
    let words = [random_u64(0), random_u64(1)];
    let mut v = (u128::from(words[0]) << 64) | u128::from(words[1]);
    v = (v & !(0xf << 76)) | (0x4 << 76); // version 4
    v = (v & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    RingId(v)
}
