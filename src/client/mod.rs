//! Client subcommands: talk to any peer's REST API and print tables (or `--json`).
//! `mod.rs` holds the arguments and the HTTP plumbing; `ring.rs` and `files.rs` the commands.

mod events;
pub mod failure;
mod files;
mod output;
mod overview;
mod preflight;
mod resume;
mod ring;

use anyhow::Context;
use serde_json::Value;

pub use events::{EventsArgs, events};
pub use files::{get, locate, put, rm};
pub use overview::{ls, status};
pub use ring::{fingers, join, leave, lookup, node, ring};

/// The local dev ring's first peer.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

#[derive(clap::Args)]
pub struct Target {
    /// The peer's API: a base URL, or host:port.
    #[arg(long, default_value = DEFAULT_API, env = "CHORDNET_API")]
    api: String,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    /// Print nothing on success (errors still go to stderr; the exit code tells).
    #[arg(short, long, conflicts_with = "json")]
    quiet: bool,
    /// A bearer token, for a peer whose API needs one (api.tokens_file): a `read` token for
    /// downloads and lookups, `write` for uploads and deletes, `admin` for join and leave.
    #[arg(long, env = "CHORDNET_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
pub struct LookupArgs {
    /// The key (a file name, say); its identifier is SHA-1 of it.
    key: String,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// The file to upload.
    file: std::path::PathBuf,
    /// The name in the ring (default: the file's name).
    #[arg(long, value_parser = file_name)]
    name: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The file name in the ring.
    #[arg(value_parser = file_name)]
    name: String,
    /// Where to write it: a file, a directory (the name inside it), or `-` for stdout
    /// (default: the name, in the current directory). A device such as /dev/null is written
    /// to, never replaced.
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// Overwrite an existing file that -o does not name itself (no -o, or -o DIR).
    #[arg(long)]
    force: bool,
    /// Continue an interrupted download: a download with --resume keeps what it received
    /// when it is cut (in `.NAME.chordnet-part` beside the file), and the next one asks only
    /// for the rest (an HTTP range), then checks the whole file's SHA-256.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// The file name in the ring.
    #[arg(value_parser = file_name)]
    name: String,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct JoinArgs {
    /// Peer-protocol address (host:port) of a member of the ring to join.
    bootstrap: String,
    #[command(flatten)]
    target: Target,
}

/// A file name as the API contract allows it, refused before anything is sent with the words
/// the server would use (clap reports it as a usage error: exit code 2).
fn file_name(s: &str) -> Result<String, String> {
    chordnet::files::validate_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

impl Target {
    /// An HTTP client that sends `--token` (if any) with every request.
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    anyhow::anyhow!("--token / CHORDNET_TOKEN: a token is printable ASCII")
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .context("building the HTTP client")
    }

    /// `--api` as a URL (`host:port` alone means `http://host:port`) with `path` appended.
    fn url(&self, path: &str) -> String {
        let base = self.api.trim_end_matches('/');
        if base.contains("://") {
            format!("{base}{path}")
        } else {
            format!("http://{base}{path}")
        }
    }
}

/// Sends a request; an HTTP error becomes an error carrying the problem's `detail`.
async fn send(req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<reqwest::Response> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    answer(resp, url).await
}

/// A response as the commands take it: a success, or an error carrying the problem's `detail`.
async fn answer(resp: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(refused(url, status, text))
}

/// The error for an HTTP error answer: the problem's `detail`, else the body as it came
/// (with a hint when the answer is not from a chordnet API at all).
fn refused(url: &str, status: reqwest::StatusCode, text: String) -> anyhow::Error {
    let detail = match serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
    {
        Some(detail) => detail,
        None if status == reqwest::StatusCode::NOT_FOUND => format!(
            "{text} (this is not a chordnet REST API: a peer-protocol port? the API listens on \
             api.listen, 127.0.0.1:8080 by default)"
        ),
        None => text,
    };
    failure::HttpError {
        url: url.to_string(),
        status,
        detail,
    }
    .into()
}

async fn request(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = t.url(path);
    let mut req = t.client()?.request(method, &url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let text = send(req, &url)
        .await?
        .text()
        .await
        .context("reading the answer")?;
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    })
}

fn peer(v: &Value) -> String {
    match (v.get("id").and_then(Value::as_str), v.get("address")) {
        (Some(id), Some(addr)) => format!("{}  {}", id, addr.as_str().unwrap_or("?")),
        _ => "-".to_string(),
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Percent-encodes a path segment (keys may hold spaces, `?`, `#`, `%`, non-ASCII, ...).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
        assert_eq!(encode_segment("song-1.mp3"), "song-1.mp3");
    }
}
