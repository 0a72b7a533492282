//! The ring secret (`security.ring_secret_file`): every peer message carries an
//! HMAC-SHA256 authenticator, and a peer acts only on messages signed with a key of its ring.
//!
//! - **What is signed**: the method, a SHA-256 digest of the message (the whole ring envelope;
//!   for an object, its metadata and declared length: the metadata carries the content's
//!   SHA-256 and the store checks the streamed bytes against it, so the content is bound
//!   too), the sender's node id, the sender's ring id, a timestamp and a nonce.
//! - **How it travels**: as one more field (`chordnet-auth`) of the [`TraceCarrier`] every
//!   transport already ships as headers or metadata; no transport knows about it. Servers
//!   hand the data plane's carrier over with [`received`].
//! - **What a receiver refuses**: a missing or malformed authenticator, a MAC no accepted key
//!   makes, a timestamp outside `security.message_window` of its clock, a message it already
//!   accepted (a bounded nonce cache, [`replay`]), another ring's id (data plane; the node
//!   itself answers a key holder of another ring "wrong ring", so a split ring still shows),
//!   and (ring messages) a `from` that is not the signed sender. Refusals name no ring id and
//!   no key; each counts in `chordnet_peer_auth_rejections_total{reason}`.
//! - **Answers**: a ring answer carries its responder's authenticator in the envelope, over
//!   the answer and the authenticator of the request it answers ([`serve::answer_digest`]);
//!   the client layer takes no other answer, so a fake peer cannot answer lookups or lure a
//!   peer into its ring. (Data-plane answers come from holders found by those lookups, and
//!   content is checked against its SHA-256.)
//! - **Rotation**: the file is re-read every second; a changed file that parses replaces the
//!   keys (`chordnet_ring_secret_reloads_total{outcome}`), a broken one keeps the old keys.
//!
//! A shared secret proves "a peer of this ring sent it", not which one: a holder of the key can
//! claim any node id. Binding ids to peers is mutual TLS's job ([`crate::transport::tls`]).

pub mod keys;
pub mod replay;
pub mod serve;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::id::Id;
use crate::metrics::Metrics;
use crate::telemetry::TraceCarrier;
use crate::wire::RingId;
pub use keys::{KeyError, Keyring};
use replay::Replays;

/// The carrier field (HTTP header, gRPC metadata key) that holds the authenticator.
pub const FIELD: &str = crate::telemetry::context::AUTH_FIELD;
/// How many accepted messages the replay cache remembers (about 64 bytes each).
pub const REPLAY_CAPACITY: usize = 1 << 18;
/// How often the key file is checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

const VERSION: &str = "v1";

tokio::task_local! {
    /// The carrier the data-plane request in progress arrived with.
    static RECEIVED: TraceCarrier;
}

/// Runs a data-plane handler call with the carrier its request arrived with, so that the
/// shared layers can check its authenticator. Every transport's server wraps its blob handler
/// calls in this (a server that does not is refused by a peer with a ring secret: safe).
pub async fn received<F: Future>(carrier: TraceCarrier, call: F) -> F::Output {
    RECEIVED.scope(carrier, call).await
}

/// The carrier of the data-plane request in progress (empty outside [`received`]).
pub fn received_carrier() -> TraceCarrier {
    RECEIVED.try_with(Clone::clone).unwrap_or_default()
}

/// Why a message was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no authenticator")]
    Missing,
    #[error("a malformed authenticator")]
    Malformed,
    #[error("an authenticator no key of this ring makes")]
    BadMac,
    #[error("a timestamp outside the message window")]
    Stale,
    #[error("a message already received")]
    Replayed,
    #[error("another ring's message")]
    WrongRing,
    #[error("a sender other than the signer")]
    Spoofed,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadMac => "bad_mac",
            AuthFailure::Stale => "stale",
            AuthFailure::Replayed => "replayed",
            AuthFailure::WrongRing => "wrong_ring",
            AuthFailure::Spoofed => "spoofed_sender",
        }
    }
}

/// What a receiver learns from a valid authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub sender: Id,
    pub ring: Option<RingId>,
}

/// One peer's ring secret: its keys, its replay cache, its identity.
pub struct RingAuth {
    file: PathBuf,
    keys: RwLock<Arc<Keyring>>,
    window: Duration,
    replays: Mutex<Replays>,
    me: Id,
    nonce_prefix: u64,
    counter: AtomicU64,
    ring: OnceLock<Box<dyn Fn() -> Option<RingId> + Send + Sync>>,
    metrics: Metrics,
}

impl RingAuth {
    /// Loads the key file; a file that cannot be used stops the peer with a clear error.
    pub fn load(
        file: &Path,
        window: Duration,
        me: Id,
        metrics: Metrics,
    ) -> Result<Arc<RingAuth>, KeyError> {
        let keys = Keyring::load(file)?;
        Ok(Arc::new(RingAuth::with_keys(
            file, keys, window, me, metrics,
        )))
    }

    pub fn with_keys(
        file: &Path,
        keys: Keyring,
        window: Duration,
        me: Id,
        metrics: Metrics,
    ) -> RingAuth {
        RingAuth {
            file: file.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            window,
            replays: Mutex::new(Replays::new(REPLAY_CAPACITY)),
            me,
            nonce_prefix: random_word(),
            counter: AtomicU64::new(0),
            ring: OnceLock::new(),
            metrics,
        }
    }

    /// Where this peer's ring id comes from (set once the ring service exists).
    pub fn set_ring_source(&self, source: impl Fn() -> Option<RingId> + Send + Sync + 'static) {
        let _ = self.ring.set(Box::new(source));
    }

    fn my_ring(&self) -> Option<RingId> {
        self.ring.get().and_then(|f| f())
    }

    fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// SHA-256 of the keys in use (tests and the reload log tell versions apart by it).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.keyring().fingerprint()
    }

    /// Re-reads the key file; true when the keys changed. A file that cannot be used keeps
    /// the keys in use.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let outcome = Keyring::load(&self.file).map(|new| {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            if keys.fingerprint() == new.fingerprint() {
                return false;
            }
            *keys = Arc::new(new);
            true
        });
        let label = match &outcome {
            Ok(true) => "changed",
            Ok(false) => "unchanged",
            Err(_) => "error",
        };
        if label != "unchanged" {
            self.metrics
                .secret_reloads
                .with_label_values(&[label])
                .inc();
        }
        outcome
    }

    /// Re-reads the key file every [`RELOAD_EVERY`] until `stop` turns true.
    pub fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match self.reload() {
                    Ok(true) => info!(
                        keys = self.keyring().accepted().len(),
                        "ring secret keys reloaded"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "ring secret file unusable; keeping the keys in use")
                    }
                }
            }
        });
    }

    /// An authenticator for a message of `method` whose content digests to `digest`; `ring`
    /// is the ring id the message claims (a ring envelope's), or this peer's own.
    pub fn sign(&self, method: &str, digest: &[u8; 32], ring: Option<Option<RingId>>) -> String {
        self.sign_at(method, digest, ring, now_ms())
    }

    /// [`RingAuth::sign`] with a given timestamp (milliseconds since the Unix epoch).
    pub fn sign_at(
        &self,
        method: &str,
        digest: &[u8; 32],
        ring: Option<Option<RingId>>,
        ts: u64,
    ) -> String {
        let ring = ring.unwrap_or_else(|| self.my_ring());
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nonce = (u128::from(self.nonce_prefix) << 64) | u128::from(n);
        let mac = mac(
            self.keyring().signing(),
            method,
            digest,
            self.me,
            ring,
            ts,
            nonce,
        );
        let ring = ring.map_or_else(|| "-".to_string(), |r| format!("{:032x}", r.0));
        format!(
            "{VERSION}.{}.{ring}.{ts}.{nonce:032x}.{}",
            self.me,
            keys::to_hex(&mac)
        )
    }

    /// Adds an authenticator to `carrier`.
    pub fn sign_into(
        &self,
        carrier: &mut TraceCarrier,
        method: &str,
        digest: &[u8; 32],
        ring: Option<Option<RingId>>,
    ) {
        carrier.set_field(FIELD, self.sign(method, digest, ring));
    }

    /// Checks the authenticator `carrier` holds for a message of `method` digesting to
    /// `digest`, and counts a refusal by its reason.
    pub fn verify(
        &self,
        carrier: &TraceCarrier,
        method: &str,
        digest: &[u8; 32],
    ) -> Result<Verified, AuthFailure> {
        let outcome = self.check(carrier, method, digest, now_ms());
        if let Err(reason) = outcome {
            self.reject(reason, method);
        }
        outcome
    }

    /// Refuses a verified message from another ring (the data plane's check; ring messages are
    /// checked by the node, which tells a key holder of another ring so: a split ring shows).
    pub fn check_ring(&self, v: &Verified, method: &str) -> Result<(), AuthFailure> {
        match (v.ring, self.my_ring()) {
            (Some(theirs), Some(mine)) if theirs != mine => {
                self.reject(AuthFailure::WrongRing, method);
                Err(AuthFailure::WrongRing)
            }
            _ => Ok(()),
        }
    }

    /// Counts a refusal the caller decided on (a spoofed `from`).
    pub fn reject(&self, reason: AuthFailure, method: &str) {
        self.metrics
            .auth_rejections
            .with_label_values(&[reason.label()])
            .inc();
        debug!(method, %reason, "refused an unauthenticated peer message");
    }

    fn check(
        &self,
        carrier: &TraceCarrier,
        method: &str,
        digest: &[u8; 32],
        now: u64,
    ) -> Result<Verified, AuthFailure> {
        let text = carrier.field(FIELD).ok_or(AuthFailure::Missing)?;
        let parsed = Parsed::read(text).ok_or(AuthFailure::Malformed)?;
        let window = self.window.as_millis() as u64;
        if parsed.ts.abs_diff(now) > window {
            return Err(AuthFailure::Stale);
        }
        let keys = self.keyring();
        let valid = keys.accepted().iter().any(|k| {
            let m = mac(
                k,
                method,
                digest,
                parsed.sender,
                parsed.ring,
                parsed.ts,
                parsed.nonce,
            );
            keys::same(&m, &parsed.mac)
        });
        if !valid {
            return Err(AuthFailure::BadMac);
        }
        let admitted = self
            .replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(parsed.ts, parsed.nonce, now.saturating_sub(window));
        if !admitted {
            return Err(AuthFailure::Replayed);
        }
        Ok(Verified {
            sender: parsed.sender,
            ring: parsed.ring,
        })
    }
}

/// An authenticator's fields.
struct Parsed {
    sender: Id,
    ring: Option<RingId>,
    ts: u64,
    nonce: u128,
    mac: Vec<u8>,
}

impl Parsed {
    fn read(text: &str) -> Option<Parsed> {
        if text.len() > 256 {
            return None;
        }
        let mut parts = text.split('.');
        if parts.next()? != VERSION {
            return None;
        }
        let sender = parts.next()?.parse().ok()?;
        let ring = match parts.next()? {
            "-" => None,
            r if r.len() == 32 => Some(RingId(u128::from_str_radix(r, 16).ok()?)),
            _ => return None,
        };
        let ts = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        if nonce.len() != 32 {
            return None;
        }
        let nonce = u128::from_str_radix(nonce, 16).ok()?;
        let mac = keys::hex(parts.next()?)?;
        if mac.len() != 32 || parts.next().is_some() {
            return None;
        }
        Some(Parsed {
            sender,
            ring,
            ts,
            nonce,
            mac,
        })
    }
}

fn mac(
    key: &keys::Key,
    method: &str,
    digest: &[u8; 32],
    sender: Id,
    ring: Option<RingId>,
    ts: u64,
    nonce: u128,
) -> [u8; 32] {
    let ring = match ring {
        Some(r) => {
            let mut b = [1u8; 17];
            b[1..].copy_from_slice(&r.0.to_be_bytes());
            b
        }
        None => [0u8; 17],
    };
    key.mac(&[
        b"chordnet-auth/v1\n",
        method.as_bytes(),
        b"\n",
        digest,
        &sender.to_bytes(),
        &ring,
        &ts.to_be_bytes(),
        &nonce.to_be_bytes(),
    ])
}

/// SHA-256 of a message's JSON form (both sides encode with the same types, so a message
/// decoded and encoded again digests the same).
pub fn digest_json<T: serde::Serialize>(value: &T) -> [u8; 32] {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&json).into()
}

/// The digest of a put: the metadata (which carries the content's size and SHA-256) and the
/// length of the body that comes with it, if any.
pub fn digest_put(meta: &crate::wire::files::FileMeta, body_len: Option<u64>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(meta).unwrap_or_default());
    match body_len {
        Some(n) => {
            h.update([1]);
            h.update(n.to_be_bytes());
        }
        None => h.update([0]),
    }
    h.finalize().into()
}

/// SHA-256 of raw bytes (an id, a name).
pub fn digest_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_word() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests;
