//! Why the server refused an upload whose connection broke.
//!
//! A peer refuses an upload over `files.max_file_size` with a 413 and then closes the
//! connection while the body is still on its way; the client's write fails (broken pipe,
//! reset) and the answer is lost with the connection. So after such a failure the client asks
//! again, without a body: the same `PUT` head with `Expect: 100-continue`, which the peer
//! answers at once with its refusal (or with `100 Continue` when it would take the body: then
//! the failure was something else).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's refusal of a `PUT url` of `len` bytes: its status and body, or `None` when
/// it would take it or cannot be asked (only `http://` URLs are asked). Bounded: 5 s.
/// `token` is the bearer token the upload carried.
pub async fn refusal(
    url: &str,
    len: u64,
    token: Option<&str>,
) -> Option<(reqwest::StatusCode, String)> {
    let url = reqwest::Url::parse(url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?.to_string();
    let port = url.port_or_known_default()?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let auth = token
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len}\r\n\
         {auth}Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    let ask = async move {
        let mut stream = TcpStream::connect((host.as_str(), port)).await.ok()?;
        stream.write_all(head.as_bytes()).await.ok()?;
        read_final_answer(&mut stream).await
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()?;
    (status.is_client_error() || status.is_server_error()).then_some((status, body))
}

/// Reads one response (at most 64 KiB); `None` for `100 Continue` or anything unreadable.
async fn read_final_answer(stream: &mut TcpStream) -> Option<(reqwest::StatusCode, String)> {
    const MAX: usize = 64 * 1024;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > MAX {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let status = reqwest::StatusCode::from_u16(status).ok()?;
    if status.is_informational() {
        return None;
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX);
    let body_start = end + 4;
    while buf.len() < body_start + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body_end = buf.len().min(body_start + length);
    let body = String::from_utf8_lossy(&buf[body_start..body_end]).into_owned();
    Some((status, body))
}
