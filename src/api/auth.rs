//! Bearer tokens for the REST API (`api.tokens_file`): one `ROLE TOKEN` pair per line, roles
//! `read` < `write` < `admin`. Without the file the API is open (a dev ring). With it, every
//! route but the probes (and `/metrics`, unless `api.protect_metrics`) needs a token whose role
//! covers the request: `401` without a (known) token, `403` with a weaker role, both as problem
//! documents. The file is read again when it changes, so tokens rotate without a restart; a
//! file that no longer parses keeps the tokens in force and says why in the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::IntCounterVec;
use sha2::{Digest, Sha256};

use super::Problem;

/// The shortest token accepted: 16 characters (a guessable token is no protection).
pub const MIN_TOKEN_LEN: usize = 16;
/// How often the tokens file is checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// What a token allows; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// GET and HEAD: downloads, lookups, the ring's state.
    Read,
    /// Uploads and deletes.
    Write,
    /// Joining and leaving a ring.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    fn parse(word: &str) -> Option<Role> {
        match word {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role a request needs; `None` for what stays open (the probes, the ring page's
    /// static document, which holds no data and asks for a token itself, and `/metrics`
    /// unless it is protected).
    pub fn needed(method: &Method, path: &str, protect_metrics: bool) -> Option<Role> {
        match path {
            "/healthz" | "/readyz" => return None,
            "/ui" | "/ui/" if *method == Method::GET || *method == Method::HEAD => return None,
            "/metrics" if !protect_metrics => return None,
            _ => {}
        }
        Some(if *method == Method::GET || *method == Method::HEAD {
            Role::Read
        } else if path.starts_with("/v1/ring/") && *method == Method::POST {
            // join, leave (and whatever changes membership next).
            Role::Admin
        } else {
            // PUT, DELETE and anything else that changes something.
            Role::Write
        })
    }
}

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the API tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} holds no token (one `ROLE TOKEN` pair per line; roles read, write, admin)")]
    Empty { path: PathBuf },
}

/// The tokens of one file, kept as SHA-256 digests (the file's secrets are not kept in memory,
/// and a lookup by digest leaks nothing about a token through timing).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    roles: HashMap<[u8; 32], Role>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses a tokens file's text: `ROLE TOKEN` per line, `#` comments and blank lines ignored.
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokensError> {
        let mut roles = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| TokensError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `ROLE TOKEN` (two words)".into()));
            };
            let role = Role::parse(role).ok_or_else(|| {
                bad(format!(
                    "unknown role {role:?} (roles are read, write, admin)"
                ))
            })?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(bad(format!(
                    "the token is {} characters; at least {MIN_TOKEN_LEN} are needed",
                    token.len()
                )));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad("a token is printable ASCII without spaces".into()));
            }
            if let Some(other) = roles.insert(digest(token), role)
                && other != role
            {
                return Err(bad("this token is listed twice with different roles".into()));
            }
        }
        if roles.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens { roles })
    }

    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(path, &text)
    }

    pub fn role(&self, token: &str) -> Option<Role> {
        self.roles.get(&digest(token)).copied()
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// Who may use the API: open, or the tokens of a file (read again when it changes).
#[derive(Clone)]
pub struct Access {
    tokens: Option<Arc<Watched>>,
    protect_metrics: bool,
    failures: Option<IntCounterVec>,
}

struct Watched {
    path: PathBuf,
    current: RwLock<Arc<Tokens>>,
    stamp: RwLock<Option<Stamp>>,
}

/// What tells a changed file: its modification time and size (a Kubernetes Secret volume
/// swaps a symlink, which changes both as seen through the path).
type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Access {
    /// No tokens: every route is open.
    pub fn open() -> Access {
        Access {
            tokens: None,
            protect_metrics: false,
            failures: None,
        }
    }

    /// The API as `api.tokens_file` and `api.protect_metrics` say; the file must parse now.
    pub fn from_config(
        tokens_file: Option<&Path>,
        protect_metrics: bool,
        failures: Option<IntCounterVec>,
    ) -> Result<Access, TokensError> {
        let tokens = match tokens_file {
            None => None,
            Some(path) => {
                let before = stamp(path);
                let tokens = Tokens::load(path)?;
                Some(Arc::new(Watched {
                    path: path.to_path_buf(),
                    current: RwLock::new(Arc::new(tokens)),
                    stamp: RwLock::new(before),
                }))
            }
        };
        Ok(Access {
            tokens,
            protect_metrics,
            failures,
        })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// Reads the tokens file again if it changed since the last look; returns whether the
    /// tokens in force changed.
    pub fn reload_if_changed(&self) -> bool {
        let Some(w) = &self.tokens else {
            return false;
        };
        let now = stamp(&w.path);
        if now.is_some() && *w.stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
            return false;
        }
        *w.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
        match Tokens::load(&w.path) {
            Ok(tokens) => {
                let mut current = w.current.write().unwrap_or_else(|e| e.into_inner());
                if **current == tokens {
                    return false;
                }
                tracing::info!(path = %w.path.display(), tokens = tokens.len(), "API tokens reloaded");
                *current = Arc::new(tokens);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "API tokens file not reloaded; the previous tokens stay in force");
                false
            }
        }
    }

    /// Checks the file for changes every [`RELOAD_EVERY`] until `stop` turns true.
    pub fn watch(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.tokens.is_none() {
            return;
        }
        let access = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let a = access.clone();
                // A stat and maybe a small read: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(move || a.reload_if_changed()).await;
            }
        });
    }

    /// Whether `request` may go on; the problem to answer if not.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), Refused> {
        let Some(w) = &self.tokens else {
            return Ok(());
        };
        let Some(needed) = Role::needed(method, path, self.protect_metrics) else {
            return Ok(());
        };
        let Some(token) = authorization.and_then(|v| v.to_str().ok()).and_then(bearer) else {
            return Err(Refused::Missing);
        };
        let role = w
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .role(token);
        match role {
            None => Err(Refused::Unknown),
            Some(role) if role < needed => Err(Refused::Weak { role, needed }),
            Some(_) => Ok(()),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Unknown,
    Weak { role: Role, needed: Role },
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::Unknown => "unknown",
            Refused::Weak { .. } => "forbidden",
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let problem = match self {
            Refused::Missing => Problem::new(
                StatusCode::UNAUTHORIZED,
                "this API needs a bearer token (Authorization: Bearer TOKEN; the CLI reads \
                 --token or CHORDNET_TOKEN)",
            ),
            Refused::Unknown => Problem::new(StatusCode::UNAUTHORIZED, "unknown token"),
            Refused::Weak { role, needed } => Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs a token with the {} role; this token has {}",
                    needed.name(),
                    role.name()
                ),
            ),
        };
        let mut r = problem.into_response();
        if !matches!(self, Refused::Weak { .. }) {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"chordnet\""),
            );
        }
        r
    }
}

/// Middleware: refuses what the request's token does not allow.
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    let verdict = access.check(
        request.method(),
        request.uri().path(),
        request.headers().get(header::AUTHORIZATION),
    );
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            if let Some(f) = &access.failures {
                f.with_label_values(&[refused.label()]).inc();
            }
            tracing::debug!(
                path = request.uri().path(),
                reason = refused.label(),
                "API request refused"
            );
            refused.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = "read-token-0123456789";
    const WRITE: &str = "write-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";

    fn tokens() -> Tokens {
        let text = format!(
            "# who may do what\n\nread {READ}\nwrite   {WRITE}  # the uploader\nadmin {ADMIN}\n"
        );
        Tokens::parse(Path::new("tokens"), &text).expect("valid")
    }

    #[test]
    fn a_tokens_file_parses_with_comments_and_blank_lines() {
        let t = tokens();
        assert_eq!(t.len(), 3);
        assert_eq!(t.role(READ), Some(Role::Read));
        assert_eq!(t.role(WRITE), Some(Role::Write));
        assert_eq!(t.role(ADMIN), Some(Role::Admin));
        assert_eq!(t.role("nope-nope-nope-nope"), None);
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, words) in [
            ("read\n", "two words"),
            ("read a b c\n", "two words"),
            ("root 0123456789abcdef0\n", "unknown role"),
            ("# ok\nread short\n", "line 2"),
            ("read 0123456789abcdef0\nwrite 0123456789abcdef0\n", "twice"),
            ("# nothing\n", "no token"),
        ] {
            let e = Tokens::parse(Path::new("t"), text)
                .expect_err(text)
                .to_string();
            assert!(e.contains(words), "{text:?}: {e}");
        }
    }

    #[test]
    fn roles_needed_by_route() {
        let n = |m: Method, p: &str| Role::needed(&m, p, false);
        assert_eq!(n(Method::GET, "/healthz"), None);
        assert_eq!(n(Method::GET, "/readyz"), None);
        assert_eq!(n(Method::GET, "/ui/"), None);
        assert_eq!(n(Method::POST, "/ui/"), Some(Role::Write));
        assert_eq!(n(Method::GET, "/metrics"), None);
        assert_eq!(
            Role::needed(&Method::GET, "/metrics", true),
            Some(Role::Read)
        );
        assert_eq!(n(Method::GET, "/v1/files/a"), Some(Role::Read));
        assert_eq!(n(Method::HEAD, "/v1/files/a"), Some(Role::Read));
        assert_eq!(n(Method::PUT, "/v1/files/a"), Some(Role::Write));
        assert_eq!(n(Method::DELETE, "/v1/files/a"), Some(Role::Write));
        assert_eq!(n(Method::POST, "/v1/ring/join"), Some(Role::Admin));
        assert_eq!(n(Method::POST, "/v1/ring/leave"), Some(Role::Admin));
        assert_eq!(n(Method::GET, "/no/such/route"), Some(Role::Read));
    }

    #[test]
    fn checks_follow_the_roles() {
        let access = Access {
            tokens: Some(Arc::new(Watched {
                path: PathBuf::from("t"),
                current: RwLock::new(Arc::new(tokens())),
                stamp: RwLock::new(None),
            })),
            protect_metrics: false,
            failures: None,
        };
        let h = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).expect("header");
        let put = |t: Option<&HeaderValue>| access.check(&Method::PUT, "/v1/files/a", t);
        assert_eq!(put(None), Err(Refused::Missing));
        assert_eq!(
            put(Some(&h("wrong-wrong-wrong-wrong"))),
            Err(Refused::Unknown)
        );
        assert_eq!(
            put(Some(&h(READ))),
            Err(Refused::Weak {
                role: Role::Read,
                needed: Role::Write
            })
        );
        assert_eq!(put(Some(&h(WRITE))), Ok(()));
        assert_eq!(put(Some(&h(ADMIN))), Ok(()));
        let lower = HeaderValue::from_str(&format!("bearer {READ}")).expect("header");
        assert_eq!(access.check(&Method::GET, "/v1/ring", Some(&lower)), Ok(()));
        let basic = HeaderValue::from_static("Basic dXNlcjpwYXNz");
        assert_eq!(
            access.check(&Method::GET, "/v1/ring", Some(&basic)),
            Err(Refused::Missing)
        );
        assert_eq!(access.check(&Method::GET, "/healthz", None), Ok(()));
        assert!(
            Access::open()
                .check(&Method::DELETE, "/v1/files/a", None)
                .is_ok()
        );
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_tokens() {
        let dir = std::env::temp_dir().join(format!("chordnet-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tokens");
        std::fs::write(&path, format!("read {READ}\n")).expect("write");
        let access = Access::from_config(Some(&path), false, None).expect("valid");
        let get = |a: &Access, t: &str| {
            a.check(
                &Method::GET,
                "/v1/ring",
                Some(&HeaderValue::from_str(&format!("Bearer {t}")).expect("h")),
            )
        };
        assert_eq!(get(&access, READ), Ok(()));
        assert!(!access.reload_if_changed(), "unchanged");
        std::fs::write(&path, format!("read {WRITE}-rotated\n")).expect("write");
        assert!(access.reload_if_changed());
        assert_eq!(get(&access, READ), Err(Refused::Unknown));
        assert_eq!(get(&access, &format!("{WRITE}-rotated")), Ok(()));
        std::fs::write(&path, "read short\n").expect("write");
        assert!(!access.reload_if_changed());
        assert_eq!(
            get(&access, &format!("{WRITE}-rotated")),
            Ok(()),
            "old tokens stay"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
