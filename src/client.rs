//! Client subcommands: talk to any peer's REST API and print tables (or `--json`).

use anyhow::{Context, bail};
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
pub struct JoinArgs {
    /// Peer-protocol address (host:port) of a member of the ring to join.
    bootstrap: String,
    #[command(flatten)]
    target: Target,
}

async fn request(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", t.api.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut req = client.request(method, &url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the answer")?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        bail!("{url}: {status}: {detail}");
    }
    Ok(value)
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
