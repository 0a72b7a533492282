//! Request heads as hyper judges them (httparse, its framing rules), and the problem response
//! that answers a refused one.

use axum::http::StatusCode;

use super::{Chunk, Framing, MAX_HEAD, MAX_HEADERS, MAX_URI};
use crate::api::problem::Problem;

/// The size of a chunk-size line (hex digits, optional `;extensions`).
pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

pub(crate) type Refusal = (StatusCode, String);

/// Checks a request head at the start of `bytes`: `None` while incomplete, else its length
/// and the framing of the body after it, or why it is refused.
pub(crate) fn check_head(bytes: &[u8]) -> Result<Option<(usize, Framing)>, Refusal> {
    let line_end = bytes.iter().position(|&b| b == b'\n');
    if line_end.unwrap_or(bytes.len()) > MAX_URI + 64 {
        return Err((
            StatusCode::URI_TOO_LONG,
            format!("the request line is longer than {MAX_URI} bytes"),
        ));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => {
            return Err(too_large());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(httparse::Error::Version) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "not an HTTP/1.0 or HTTP/1.1 request (HTTP/2 needs prior knowledge or TLS)".into(),
            ));
        }
        Err(e) => return Err((StatusCode::BAD_REQUEST, format!("malformed request: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(too_large());
    }
    if request.path.is_some_and(|p| p.len() > MAX_URI) {
        return Err((
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI} bytes"),
        ));
    }
    let framing = framing(request.version.unwrap_or(1), request.headers)?;
    Ok(Some((len, framing)))
}

fn too_large() -> Refusal {
    (
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        format!("the request head is larger than {MAX_HEAD} bytes"),
    )
}

/// The body's framing from the head's fields, by hyper's rules: `Transfer-Encoding` must end
/// in `chunked` (HTTP/1.1 only) and excludes `Content-Length`; several `Content-Length`
/// values must agree; a value is decimal digits only.
fn framing(version: u8, headers: &[httparse::Header<'_>]) -> Result<Framing, Refusal> {
    let bad = |detail: String| Err((StatusCode::BAD_REQUEST, detail));
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let text = std::str::from_utf8(part)
                    .unwrap_or("")
                    .trim_matches([' ', '\t']);
                let value = match text.parse::<u64>() {
                    Ok(v) if text.bytes().all(|b| b.is_ascii_digit()) => v,
                    _ => {
                        return bad(format!(
                            "invalid Content-Length {:?}: must be a number of bytes",
                            String::from_utf8_lossy(h.value)
                        ));
                    }
                };
                if length.is_some_and(|l| l != value) {
                    return bad("Content-Length values that differ".into());
                }
                length = Some(value);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let text = String::from_utf8_lossy(h.value);
            let last = text.rsplit(',').next().unwrap_or("").trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) => bad("both Transfer-Encoding and Content-Length".into()),
        (Some(_), None) if version == 0 => bad("Transfer-Encoding in an HTTP/1.0 request".into()),
        (Some(false), None) => bad("a Transfer-Encoding that does not end in chunked".into()),
        (Some(true), None) => Ok(Framing::Chunked(Chunk::Size)),
        (None, Some(n)) if n > 0 => Ok(Framing::Body(n)),
        (None, _) => Ok(Framing::Head),
    }
}

/// A complete HTTP/1.1 response carrying a problem document; the connection closes after it.
pub(super) fn problem_response(status: StatusCode, detail: &str) -> Vec<u8> {
    let body = serde_json::to_string(&Problem::new(status, detail)).unwrap_or_default();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes()
}
