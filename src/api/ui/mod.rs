//! `GET /ui/`: the ring page. One self-contained HTML document (inline style and script, no
//! external assets, no build step) compiled into the binary; it polls `GET /v1/ring/view`
//! (one request per second, whatever the ring's size) and calls `GET /v1/lookup/{key}`.
//! The Content-Security-Policy allows exactly the page's own inline script and style (by
//! their SHA-256) and requests to its own origin.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The page.
pub const PAGE: &str = include_str!("page.html");

pub(super) async fn page() -> Response {
    page_response()
}

/// `/ui` → `/ui/` (relative, so it also works behind a proxy that adds a path prefix).
pub(super) async fn redirect() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "ui/")]).into_response()
}

/// The page with its security headers (public for benches and tests that serve it beside a
/// synthetic view).
pub fn page_response() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(h, header::CONTENT_SECURITY_POLICY, csp());
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-cache");
    r
}

/// The policy: nothing by default; the page's inline script and style by hash; fetches to
/// its own origin only.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hashes = |tag: &str| -> String {
            inline_blocks(PAGE, tag)
                .iter()
                .map(|b| format!(" 'sha256-{}'", base64(&Sha256::digest(b.as_bytes()))))
                .collect()
        };
        format!(
            "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hashes("script"),
            hashes("style")
        )
    })
}

/// The contents of every `<tag>…</tag>` block of `html`.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// Standard base64 with padding (what CSP hash sources use).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    /// The page is one document with one script and one style, and nothing it loads comes
    /// from elsewhere.
    #[test]
    fn the_page_is_self_contained_and_its_policy_names_its_blocks() {
        assert_eq!(inline_blocks(PAGE, "script").len(), 1);
        assert_eq!(inline_blocks(PAGE, "style").len(), 1);
        for outside in [
            "http://",
            "https://",
            "<script src",
            "<link",
            "@import",
            "url(",
        ] {
            let hits: Vec<&str> = PAGE
                .lines()
                .filter(|l| l.contains(outside))
                .filter(|l| !l.contains("www.w3.org/2000/svg") && !l.contains("url(#"))
                .filter(|l| !l.contains(r#"<link rel="icon" href="data:,">"#))
                .collect();
            assert!(hits.is_empty(), "{outside}: {hits:?}");
        }
        let csp = csp();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
