//! How a client command fails: the errors that carry a meaning for scripts, and the exit code
//! each maps to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | any other error |
//! | 2 | usage: a bad argument (clap), an invalid file name |
//! | 3 | not found: no such file or key (HTTP 404), no events stream |
//! | 4 | unavailable: the peer (or the NATS broker) cannot be reached, the ring is changing (HTTP 502/503/504), or a ring walk does not close |
//! | 5 | not allowed: the API needs a token, or one with a stronger role (HTTP 401/403) |

use std::fmt;

/// An HTTP error answer from a peer's API.
#[derive(Debug)]
pub struct HttpError {
    pub url: String,
    pub status: reqwest::StatusCode,
    pub detail: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.url, self.status, self.detail)
    }
}

impl std::error::Error for HttpError {}

/// The ring does not answer as a whole right now (a walk that does not close).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

pub const NOT_FOUND: u8 = 3;
pub const UNAVAILABLE: u8 = 4;
pub const NOT_ALLOWED: u8 = 5;

/// The exit code for a failed command.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(h) = cause.downcast_ref::<HttpError>() {
            return match h.status.as_u16() {
                404 => NOT_FOUND,
                502..=504 => UNAVAILABLE,
                401 | 403 => NOT_ALLOWED,
                _ => 1,
            };
        }
        if cause.downcast_ref::<Unavailable>().is_some() {
            return UNAVAILABLE;
        }
        if let Some(r) = cause.downcast_ref::<chordnet::events::reader::ReadError>() {
            use chordnet::events::reader::ReadError;
            return match r {
                ReadError::NoStream { .. } => NOT_FOUND,
                ReadError::Unreachable { .. } => UNAVAILABLE,
                ReadError::Stream { .. } => 1,
            };
        }
        if let Some(r) = cause.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            return UNAVAILABLE;
        }
    }
    1
}

/// The error as a user reads it: the message and its causes, never a backtrace (even with
/// `RUST_BACKTRACE=1`, which is for crashes, not for a file that does not exist).
pub fn report(e: &anyhow::Error) -> String {
    let mut out = format!("Error: {e}");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for (i, c) in causes.iter().enumerate() {
            if causes.len() == 1 {
                out.push_str(&format!("\n    {c}"));
            } else {
                out.push_str(&format!("\n    {i}: {c}"));
            }
        }
    }
    out
}
