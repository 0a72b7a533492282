//! File subcommands: put, get, locate, rm.

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::Value;

use super::failure::HttpError;
use super::output::{Destination, Sink};
use super::resume;
use super::{
    GetArgs, NameArgs, PutArgs, answer, encode_segment, peer, preflight, print_json, refused,
    request, send,
};

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
    let len = tokio::fs::metadata(&a.file)
        .await
        .with_context(|| format!("reading {}", a.file.display()))?
        .len();
    let bar = progress_bar(len, "upload").filter(|_| !a.target.quiet);
    // Streamed from the file in chunks (never held whole), so that the bar moves with the
    // bytes actually handed to the network.
    let bar_for_stream = bar.clone();
    let stream = chordnet::transport::Body::from_file(a.file.clone(), len)
        .into_stream()
        .inspect(move |c| {
            if let (Some(b), Ok(c)) = (&bar_for_stream, c) {
                b.inc(c.len() as u64);
            }
        });
    let url = a
        .target
        .url(&format!("/v1/files/{}", encode_segment(&name)));
    let req = a
        .target
        .client()?
        .put(&url)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let result = match req.send().await {
        Ok(resp) => answer(resp, &url).await,
        // A refused upload (413) breaks the connection while its body is on the way: ask the
        // server for its answer again, without the body.
        Err(e) => match preflight::refusal(&url, len, a.target.token.as_deref()).await {
            Some((status, text)) => Err(refused(&url, status, text)),
            None => Err(anyhow::Error::new(e).context(format!("cannot reach {url}"))),
        },
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let resp = result?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if a.target.quiet {
        return Ok(());
    }
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
    let dest = Destination::resolve(a.output.as_deref(), &a.name, a.force)?;
    if a.target.json && matches!(dest, Destination::Stdout) {
        bail!("--json prints the answer on stdout: it cannot go with `-o -`");
    }
    let url = a
        .target
        .url(&format!("/v1/files/{}", encode_segment(&a.name)));
    let client = a.target.client()?;
    let plan = if a.resume {
        resume::plan(&client, &url, &dest).await?
    } else {
        resume::Plan::Whole
    };
    let (resp, start) = match &plan {
        resume::Plan::Whole => (Some(send(client.get(&url), &url).await?), 0),
        resume::Plan::From { have, etag } => {
            let req = client
                .get(&url)
                .header(reqwest::header::RANGE, format!("bytes={have}-"))
                .header(reqwest::header::IF_RANGE, etag.as_str());
            let resp = send(req, &url).await?;
            // 200: the file changed (If-Range): start again.
            let start = if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
                *have
            } else {
                0
            };
            (Some(resp), start)
        }
        resume::Plan::Complete { have, .. } => (None, *have),
    };
    let expected = match (&resp, &plan) {
        (Some(r), _) => r
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string()),
        (None, resume::Plan::Complete { etag, .. }) => Some(etag.trim_matches('"').to_string()),
        (None, _) => None,
    };
    let total = start + resp.as_ref().and_then(|r| r.content_length()).unwrap_or(0);
    let bar = progress_bar(total, "download").filter(|_| !a.target.quiet);
    if let Some(b) = &bar {
        b.set_position(start);
    }
    let (mut sink, hasher) = if start > 0 {
        dest.open_at(start).await?
    } else {
        (dest.open().await?, <sha2::Sha256 as sha2::Digest>::new())
    };
    let written = match resp {
        Some(resp) => receive(resp, &mut sink, hasher, start, bar.as_ref()).await,
        None => Ok((
            start,
            chordnet::files::spool::hex(&sha2::Digest::finalize(hasher)),
        )),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (size, actual) = match written {
        Ok(w) => w,
        Err(e) if a.resume => {
            drop(sink);
            let kept = dest.partial_len().await;
            return Err(e.context(format!(
                "download interrupted after {kept} bytes: run the same command again to resume"
            )));
        }
        Err(e) => {
            dest.abandon().await;
            return Err(e);
        }
    };
    drop(sink);
    if let Some(expected) = expected
        && expected != actual
    {
        dest.abandon().await;
        bail!(
            "download corrupted: sha256 {actual}, expected {expected} (written to {})",
            dest.describe()
        );
    }
    dest.commit().await?;
    if a.target.quiet {
        return Ok(());
    }
    if a.target.json {
        let v = serde_json::json!({
            "name": a.name,
            "size": size,
            "sha256": actual,
            "path": dest.describe(),
            "resumed_at": start,
        });
        return print_json(&v);
    }
    if start > 0 {
        eprintln!("resumed at byte {start}");
    }
    eprintln!(
        "{size} bytes written to {} (sha256 {actual})",
        dest.describe()
    );
    Ok(())
}

/// Streams a download into `sink` after `start` bytes already there (hashed into `hasher`):
/// (bytes in all, sha256 of all).
async fn receive(
    resp: reqwest::Response,
    sink: &mut Sink,
    mut hasher: sha2::Sha256,
    start: u64,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let mut size = start;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the download")?;
        hasher.update(&chunk);
        sink.write_all(&chunk)
            .await
            .context("writing the download")?;
        size += chunk.len() as u64;
        if let Some(b) = bar {
            b.inc(chunk.len() as u64);
        }
    }
    sink.flush().await.context("writing the download")?;
    Ok((size, chordnet::files::spool::hex(&hasher.finalize())))
}

pub async fn locate(a: NameArgs) -> anyhow::Result<()> {
    let path = format!("/v1/files/{}/locations", encode_segment(&a.name));
    let v = match request(&a.target, reqwest::Method::GET, &path, None).await {
        Ok(v) => v,
        Err(e) if is_not_found(&e) => return Err(no_copy(&a).await),
        Err(e) => return Err(e),
    };
    if a.target.quiet {
        return Ok(());
    }
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

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<HttpError>()
        .is_some_and(|h| h.status == reqwest::StatusCode::NOT_FOUND)
}

/// `locate` of a name nobody has: where it would live, and that no copy exists (still a 404).
async fn no_copy(a: &NameArgs) -> anyhow::Error {
    let path = format!("/v1/lookup/{}", encode_segment(&a.name));
    let responsible = match request(&a.target, reqwest::Method::GET, &path, None).await {
        Ok(v) => format!("the peer responsible for it is {}", peer(&v["node"])),
        Err(e) => format!("and the peer responsible for it could not be found: {e}"),
    };
    HttpError {
        url: a
            .target
            .url(&format!("/v1/files/{}/locations", encode_segment(&a.name))),
        status: reqwest::StatusCode::NOT_FOUND,
        detail: format!(
            "no copy of {:?} exists (nobody uploaded or shares it); {responsible}",
            a.name
        ),
    }
    .into()
}

pub async fn rm(a: NameArgs) -> anyhow::Result<()> {
    let path = format!("/v1/files/{}", encode_segment(&a.name));
    request(&a.target, reqwest::Method::DELETE, &path, None).await?;
    if a.target.quiet {
        return Ok(());
    }
    if a.target.json {
        return print_json(&serde_json::json!({ "name": a.name, "deleted": true }));
    }
    println!("deleted {}", a.name);
    Ok(())
}
