//! The front's unit tests: framing over pieces of any size, refusals, time-outs.

use super::*;

/// Feeds `input` in pieces of `step` bytes and returns what hyper would read and the
/// refusal, if any.
fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<String>) {
    let mut f = Front::new((), Duration::from_secs(10));
    for piece in input.chunks(step) {
        f.pending.extend_from_slice(piece);
        f.advance();
    }
    let refusal = f
        .refusal
        .map(|(r, _)| String::from_utf8_lossy(&r).into_owned());
    (f.checked, refusal)
}

#[test]
fn pipelined_requests_with_bodies_pass_byte_for_byte_in_any_pieces() {
    let stream = b"PUT /v1/files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n\
PUT /v1/files/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
4;ext=1\r\nPUT \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n";
    for step in [1, 2, 3, 7, 64, stream.len()] {
        let (passed, refusal) = run(stream, step);
        assert_eq!(refusal, None, "step {step}");
        assert_eq!(passed, stream.to_vec(), "step {step}");
    }
}

#[test]
fn a_bad_head_after_good_requests_is_refused_and_not_passed() {
    let good = b"GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    for (bad, status) in [
        (
            b"PUT /a HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"PUT /a HTTP/1.1\r\nContent-Length: +1\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
        ),
        (b"GET /a HTTP/9.1\r\n\r\n".to_vec(), 400),
        (b"\x16\x03\x01 not http\r\n\r\n".to_vec(), 400),
        (
            [
                b"GET /".as_slice(),
                &[b'a'; MAX_URI + 100],
                b" HTTP/1.1\r\n\r\n",
            ]
            .concat(),
            414,
        ),
        (
            [
                b"GET / HTTP/1.1\r\nX: ".as_slice(),
                &[b'b'; MAX_HEAD + 10],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
        ),
        (
            [
                b"GET / HTTP/1.1\r\n".as_slice(),
                &b"A: b\r\n".repeat(MAX_HEADERS + 1),
                b"\r\n",
            ]
            .concat(),
            431,
        ),
    ] {
        let stream = [good.as_slice(), &bad, &good].concat();
        let (passed, refusal) = run(&stream, 1000);
        assert_eq!(passed, good, "{:?}", String::from_utf8_lossy(&bad[..30]));
        let refusal = refusal.expect("refused");
        assert!(
            refusal.starts_with(&format!("HTTP/1.1 {status} ")),
            "{refusal}"
        );
        assert!(refusal.contains("application/problem+json"), "{refusal}");
        let body = refusal.split("\r\n\r\n").nth(1).expect("body");
        let problem: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(problem["status"], status);
    }
}

#[tokio::test]
async fn a_head_that_does_not_arrive_whole_in_time_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1024);
    let limit = Duration::from_millis(200);
    let mut front = Front::new(server, limit);
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/node HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let mut got = vec![0u8; 1024];
    let n = front.read(&mut got).await.expect("the first request");
    assert!(got[..n].starts_with(b"GET /healthz"));
    front.gate.leave(); // its answer is done
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(30), front.read(&mut got)).await;
    assert_eq!(end.expect("bounded").expect("end"), 0);
    assert!(started.elapsed() >= limit);
    front.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.expect("answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("did not arrive whole within 200ms"),
        "{answer}"
    );
}

#[test]
fn http2_prior_knowledge_passes_through() {
    let stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for step in [1, 5, stream.len()] {
        let (passed, refusal) = run(stream, step);
        assert_eq!(refusal, None);
        assert_eq!(passed, stream.to_vec());
    }
}
