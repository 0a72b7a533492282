//! One-screen views of a peer: `ls` (its files: the assignment's printMyFiles) and `status`
//! (this peer, its ring, readiness, what it stores).

use anyhow::Context;
use serde_json::Value;

use super::{Target, print_json, request};

pub async fn ls(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::GET, "/v1/node/files", None).await?;
    if t.quiet {
        return Ok(());
    }
    if t.json {
        return print_json(&v);
    }
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    println!("shared from this peer's directory");
    print_files(&list("shared"), "sha256");
    println!("stored here for the ring");
    print_files(&list("stored"), "id");
    Ok(())
}

fn print_files(files: &[Value], key: &str) {
    if files.is_empty() {
        println!("  -");
        return;
    }
    println!("  {:<40} {:>12}  {key}", "name", "size");
    for f in files {
        println!(
            "  {:<40} {:>12}  {}",
            f["name"].as_str().unwrap_or("?"),
            f["size"].as_u64().unwrap_or(0),
            f[key].as_str().unwrap_or("?")
        );
    }
}

pub async fn status(t: Target) -> anyhow::Result<()> {
    let node = request(&t, reqwest::Method::GET, "/v1/node", None).await?;
    // /readyz answers 503 with its reasons: that is an answer here, not a failure.
    let url = t.url("/readyz");
    let ready: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?
        .json()
        .await
        .context("reading /readyz")?;
    let member = !matches!(node["state"].as_str(), Some("left" | "joining"));
    let walk = if member {
        request(&t, reqwest::Method::GET, "/v1/ring", None)
            .await
            .ok()
    } else {
        None
    };
    if t.quiet {
        return Ok(());
    }
    if t.json {
        let all = serde_json::json!({ "node": node, "ready": ready, "ring": walk });
        return print_json(&all);
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "peer     {}@{}  (API {})",
        s(&node["id"]),
        s(&node["address"]),
        s(&node["api"])
    );
    println!("state    {}", s(&node["state"]));
    let ring = match &walk {
        Some(w) => format!(
            "{}: {} peers, {}",
            s(&node["ring_id"]),
            w["nodes"].as_array().map_or(0, Vec::len),
            if w["complete"] == true {
                "the walk closes"
            } else {
                "the walk does NOT close (the ring is changing)"
            }
        ),
        None => "- (not a member)".to_string(),
    };
    println!("ring     {ring}");
    if ready["ready"] == true {
        println!("ready    yes");
    } else {
        let reasons: Vec<String> = ready["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        println!("ready    no: {}", reasons.join("; "));
    }
    println!("stored   {} keys", node["keys"].as_u64().unwrap_or(0));
    Ok(())
}
