//! Ring subcommands: node, fingers, ring walk, lookup, join, leave.

use anyhow::bail;
use serde_json::Value;

use super::failure::Unavailable;
use super::{JoinArgs, LookupArgs, Target, encode_segment, peer, print_json, request};

fn print_node(v: &Value) {
    // A missing or empty (null) field shows as `-`.
    let s = |k: &str| match v.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(x)) => x.clone(),
        Some(x) => x.to_string(),
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
    if t.quiet {
        return Ok(());
    }
    if t.json {
        return print_json(&v);
    }
    print_node(&v);
    Ok(())
}

pub async fn fingers(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::GET, "/v1/node/fingers", None).await?;
    if t.quiet {
        return Ok(());
    }
    if t.json {
        return print_json(&v);
    }
    let fingers = v["fingers"].as_array().cloned().unwrap_or_default();
    println!("{:<7}  {:<40}  node", "index", "start");
    for run in finger_runs(&fingers) {
        let index = if run.first == run.last {
            run.first.to_string()
        } else {
            format!("{}-{}", run.first, run.last)
        };
        println!("{index:<7}  {:<40}  {}", run.start, run.node);
    }
    Ok(())
}

/// Consecutive fingers pointing at the same node (they usually do: the first ~log2 N of them
/// all point at the successor).
struct FingerRun {
    first: u64,
    last: u64,
    /// The start of the first finger of the run.
    start: String,
    node: String,
}

fn finger_runs(fingers: &[Value]) -> Vec<FingerRun> {
    let mut runs: Vec<FingerRun> = Vec::new();
    for f in fingers {
        let index = f["index"].as_u64().unwrap_or(0);
        let node = f.get("node").map_or("-".into(), peer);
        match runs.last_mut() {
            Some(run) if run.node == node => run.last = index,
            _ => runs.push(FingerRun {
                first: index,
                last: index,
                start: f["start"].as_str().unwrap_or("?").to_string(),
                node,
            }),
        }
    }
    runs
}

pub async fn ring(t: Target) -> anyhow::Result<()> {
    let me = request(&t, reqwest::Method::GET, "/v1/node", None).await?;
    let state = me["state"].as_str().unwrap_or("?");
    if matches!(state, "left" | "joining") {
        bail!(
            "{} is not a member of a ring (state {state}): there is no ring to walk from it \
             (`chordnet join BOOTSTRAP --api {}` makes it join one)",
            t.api,
            t.api
        );
    }
    let v = request(&t, reqwest::Method::GET, "/v1/ring", None).await?;
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let complete = v["complete"].as_bool().unwrap_or(false);
    if t.quiet {
        // the exit code tells
    } else if t.json {
        print_json(&v)?;
    } else {
        for (i, p) in nodes.iter().enumerate() {
            println!("{i:>4}  {}", peer(p));
        }
    }
    if !complete {
        return Err(Unavailable(format!(
            "the walk did not come back to the start after {} peers: the ring is not closed \
             (a peer failed, joined or left moments ago; it closes within a few stabilization \
             rounds)",
            nodes.len()
        ))
        .into());
    }
    if !t.json && !t.quiet {
        println!("the walk came back to the start: the ring is closed");
    }
    Ok(())
}

pub async fn lookup(a: LookupArgs) -> anyhow::Result<()> {
    let path = format!("/v1/lookup/{}", encode_segment(&a.key));
    let v = request(&a.target, reqwest::Method::GET, &path, None).await?;
    if a.target.quiet {
        return Ok(());
    }
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
    if a.target.quiet {
        return Ok(());
    }
    if a.target.json {
        return print_json(&v);
    }
    println!(
        "{} joined ring {} through {} (successor {})",
        me(&v),
        v["ring_id"].as_str().unwrap_or("-"),
        a.bootstrap,
        v["successors"].get(0).map_or("-".into(), me)
    );
    Ok(())
}

pub async fn leave(t: Target) -> anyhow::Result<()> {
    let v = request(&t, reqwest::Method::POST, "/v1/ring/leave", None).await?;
    if t.quiet {
        return Ok(());
    }
    if t.json {
        return print_json(&v);
    }
    println!(
        "{} left the ring (state {}; `chordnet join BOOTSTRAP` joins again)",
        me(&v),
        v["state"].as_str().unwrap_or("-")
    );
    Ok(())
}

/// A peer as one word: `id@address`, as the logs show it.
fn me(v: &Value) -> String {
    format!(
        "{}@{}",
        v["id"].as_str().unwrap_or("?"),
        v["address"].as_str().unwrap_or("?")
    )
}
