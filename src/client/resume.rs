//! `chordnet get --resume`: what is left to fetch of a download that was cut.

use anyhow::Context;

use super::output::Destination;
use super::send;

/// How a resumed download goes on.
pub enum Plan {
    /// Nothing kept (or more than the file has): the whole file.
    Whole,
    /// `have` bytes kept: the rest, if the file is still the one with `etag` (`If-Range`).
    From { have: u64, etag: String },
    /// Everything kept: only the check of the whole file against `etag` is left.
    Complete { have: u64, etag: String },
}

/// Compares what an interrupted download kept with the file's size and ETag (a `HEAD`).
pub async fn plan(client: &reqwest::Client, url: &str, dest: &Destination) -> anyhow::Result<Plan> {
    let have = dest.partial_len().await;
    if have == 0 {
        return Ok(Plan::Whole);
    }
    let head = send(client.head(url), url).await?;
    let size = head
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .context("the peer did not say how large the file is")?;
    let Some(etag) = head
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return Ok(Plan::Whole);
    };
    Ok(match have {
        h if h > size => Plan::Whole,
        h if h == size => Plan::Complete { have, etag },
        _ => Plan::From { have, etag },
    })
}
