//! Client subcommands: talk to any peer's REST API and print tables (or `--json`).

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::Value;

/// The local dev ring's first peer.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

#[derive(clap::Args)]
pub struct Target {
    /// The peer's API base URL.
    #[arg(long, default_value = DEFAULT_API, env = "CHORDNET_API")]
    api: String,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
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
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The file name in the ring.
    name: String,
    /// Where to write it (default: the name, in the current directory; `-` for stdout).
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// The file name in the ring.
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

impl Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.trim_end_matches('/'))
    }
}

/// Sends a request; an HTTP error becomes an error carrying the problem's `detail`.
async fn send(req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<reqwest::Response> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    bail!("{url}: {status}: {detail}")
}

async fn request(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = t.url(path);
    let mut req = reqwest::Client::new().request(method, &url);
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

fn print_node(v: &Value) {
    let s = |k: &str| {
        v.get(k).map_or("-".into(), |x| {
            x.as_str().map_or(x.to_string(), str::to_string)
        })
    };
    println!("id           {}", s("id"));
    println!("address      {}", s("address"));
    println!("api          {}", s("api"));
    println!("state        {}", s("state"));
    println!("ring id      {}", s("ring_id"));
    println!(
        "predecessor  {}",
        v.get("predecessor").map_or("-".into(), peer)
    );
    if let Some(list) = v.get("successors").and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            let label = if i == 0 { "successors" } else { "" };
            println!("{label:<12} {}", peer(p));
        }
    }
}

pub async fn node(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::GET, "/v1/node", None).await?;
    if t.json {
        return print_json(&v);
    }
    print_node(&v);
    Ok(())
}

pub async fn fingers(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::GET, "/v1/node/fingers", None).await?;
    if t.json {
        return print_json(&v);
    }
    println!("{:>5}  {:<40}  node", "index", "start");
    let mut last = String::new();
    for f in v["fingers"].as_array().into_iter().flatten() {
        let node = f.get("node").map_or("-".into(), peer);
        // Consecutive fingers usually point at the same node: print each run once.
        if node == last {
            continue;
        }
        println!(
            "{:>5}  {:<40}  {}",
            f["index"],
            f["start"].as_str().unwrap_or("?"),
            node
        );
        last = node;
    }
    Ok(())
}

pub async fn ring(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::GET, "/v1/ring", None).await?;
    if t.json {
        return print_json(&v);
    }
    for (i, p) in v["nodes"].as_array().into_iter().flatten().enumerate() {
        println!("{i:>4}  {}", peer(p));
    }
    let complete = v["complete"].as_bool().unwrap_or(false);
    println!(
        "{}",
        if complete {
            "the walk came back to the start: the ring is closed"
        } else {
            "the walk did NOT come back to the start"
        }
    );
    Ok(())
}

pub async fn lookup(a: LookupArgs) -> anyhow::Result<()> {
    let path = format!("/v1/lookup/{}", encode_segment(&a.key));
    let v = request(&a.target, reqwest::Method::GET, &path, None).await?;
    if a.target.json {
        return print_json(&v);
    }
    println!("key    {}", a.key);
    println!("id     {}", v["id"].as_str().unwrap_or("?"));
    println!("node   {}", peer(&v["node"]));
    println!("hops   {}", v["hops"]);
    for (i, p) in v["path"].as_array().into_iter().flatten().enumerate() {
        println!("  {:>2}. {}", i + 1, peer(p));
    }
    Ok(())
}

pub async fn join(a: JoinArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({ "bootstrap": a.bootstrap });
    let v = request(
        &a.target,
        reqwest::Method::POST,
        "/v1/ring/join",
        Some(body),
    )
    .await?;
    if a.target.json {
        return print_json(&v);
    }
    print_node(&v);
    Ok(())
}

pub async fn leave(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::POST, "/v1/ring/leave", None).await?;
    if t.json {
        return print_json(&v);
    }
    print_node(&v);
    Ok(())
}

fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    Some(bar)
}

pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .context("the file has no usable name; give one with --name")?,
    };
    let data = tokio::fs::read(&a.file)
        .await
        .with_context(|| format!("reading {}", a.file.display()))?;
    let len = data.len() as u64;
    let bar = progress_bar(len, "upload");
    // Send in chunks so that the bar moves with the bytes actually handed to the network.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let bar_for_stream = bar.clone();
    let stream = futures_util::stream::iter(chunks).inspect(move |c| {
        if let (Some(b), Ok(c)) = (&bar_for_stream, c) {
            b.inc(c.len() as u64);
        }
    });
    let url = a
        .target
        .url(&format!("/v1/files/{}", encode_segment(&name)));
    let req = reqwest::Client::new()
        .put(&url)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let result = send(req, &url).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let resp = result?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if a.target.json {
        return print_json(&v);
    }
    println!(
        "{} {} ({} bytes, sha256 {})",
        if status == reqwest::StatusCode::CREATED {
            "stored"
        } else {
            "replaced"
        },
        name,
        v["size"],
        v["sha256"].as_str().unwrap_or("?")
    );
    println!("at     {}", peer(&v["node"]));
    println!("copies {} more on its successors", v["replicas"]);
    Ok(())
}

pub async fn get(a: GetArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let url = a
        .target
        .url(&format!("/v1/files/{}", encode_segment(&a.name)));
    let resp = send(reqwest::Client::new().get(&url), &url).await?;
    let expected = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    let bar = progress_bar(resp.content_length().unwrap_or(0), "download");
    let mut data = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the download")?;
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
        data.extend_from_slice(&chunk);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let actual = chordnet::files::sha256_hex(&data);
    if let Some(expected) = expected
        && expected != actual
    {
        bail!("download corrupted: sha256 {actual}, expected {expected}");
    }
    let out = a
        .output
        .unwrap_or_else(|| std::path::PathBuf::from(&a.name));
    if out.as_os_str() == "-" {
        tokio::io::stdout().write_all(&data).await?;
        return Ok(());
    }
    // Write next to the target, then rename: an interrupted download leaves no half file.
    let tmp = out.with_extension("chordnet-part");
    tokio::fs::write(&tmp, &data)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, &out)
        .await
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{} bytes written to {} (sha256 {actual})",
        data.len(),
        out.display()
    );
    Ok(())
}

pub async fn locate(a: NameArgs) -> anyhow::Result<()> {
    let path = format!("/v1/files/{}/locations", encode_segment(&a.name));
    let v = request(&a.target, reqwest::Method::GET, &path, None).await?;
    if a.target.json {
        return print_json(&v);
    }
    println!("name       {}", a.name);
    println!("id         {}", v["id"].as_str().unwrap_or("?"));
    println!("node       {}", peer(&v["node"]));
    for (label, key) in [("replicas", "replicas"), ("providers", "providers")] {
        let list = v[key].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("{label:<10} -");
        }
        for (i, p) in list.iter().enumerate() {
            println!("{:<10} {}", if i == 0 { label } else { "" }, peer(p));
        }
    }
    println!("hops       {}", v["hops"]);
    Ok(())
}

pub async fn rm(a: NameArgs) -> anyhow::Result<()> {
    let path = format!("/v1/files/{}", encode_segment(&a.name));
    request(&a.target, reqwest::Method::DELETE, &path, None).await?;
    if !a.target.json {
        println!("deleted {}", a.name);
    }
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
