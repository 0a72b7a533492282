//! API bearer tokens (issue 14): with `api.tokens_file` every route but the probes needs a token
//! of the right role (401 / 403 as problem documents), the CLI sends `--token` /
//! `CHORDNET_TOKEN`, tokens rotate by rewriting the file, and a bad file stops the peer at start
//! with the line that is wrong. Real `chordnet serve` processes on 127.0.0.1; every wait is
//! bounded.

use crate::support::cli;
use crate::support::cluster;
use crate::support::paired;

use std::time::Duration;

use cli::run_bounded_env;
use cluster::*;

const READ: &str = "read-token-aaaaaaaaaaaaaaaa";
const WRITE: &str = "write-token-bbbbbbbbbbbbbbbb";
const ADMIN: &str = "admin-token-cccccccccccccccc";

fn tokens_file(root: &std::path::Path, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(root).expect("root");
    let path = root.join("api-tokens");
    std::fs::write(&path, text).expect("tokens file");
    path
}

/// Status, `content-type`, `www-authenticate` and body of a request with `token`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, String, bool, String) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("the API answers");
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let challenge = resp.headers().contains_key("www-authenticate");
    (
        status,
        kind,
        challenge,
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_token_may_do() {
    let (probe, _) = Cluster::empty("tokens-roles-file", 0);
    let root = probe.root.join("conf");
    let file = tokens_file(
        &root,
        &format!("# test tokens\nread {READ}\nwrite {WRITE}\nadmin {ADMIN}\n"),
    );
    let file_s = file.to_string_lossy().into_owned();
    let c = Cluster::start_each("tokens-roles", 2, |i| {
        let mut env = vec![("CHORDNET_API__TOKENS_FILE".to_string(), file_s.clone())];
        if i == 1 {
            env.push(("CHORDNET_API__PROTECT_METRICS".into(), "true".into()));
        }
        env
    });
    wait_for("both peers ready", Duration::from_secs(60), || {
        c.all_ready()
    })
    .await;
    let http = &c.http;
    let p0 = &c.peers[0];
    use reqwest::Method;

    // No token: 401 problem documents with a challenge, even for a route that does not exist.
    // (`/v1/lookup/k`: the lookup fast path refuses alike.)
    for path in [
        "/v1/node",
        "/v1/ring",
        "/v1/files/a.txt",
        "/no/such/route",
        "/v1/lookup/k",
    ] {
        let (status, kind, challenge, body) =
            call(http, Method::GET, &p0.url(path), None, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(kind, "application/problem+json", "{path}");
        assert!(challenge, "{path}: WWW-Authenticate");
        assert!(body.contains("bearer token"), "{body}");
    }
    let (status, ..) = call(
        http,
        Method::GET,
        &p0.url("/v1/node"),
        Some("not-a-token-at-all"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // The probes and (unless protected) /metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, ..) = call(http, Method::GET, &p0.url(path), None, None).await;
        assert_eq!(status, 200, "{path}");
    }
    let p1 = &c.peers[1];
    let (status, ..) = call(http, Method::GET, &p1.url("/metrics"), None, None).await;
    assert_eq!(status, 401, "api.protect_metrics");
    let (status, _, _, metrics) =
        call(http, Method::GET, &p1.url("/metrics"), Some(READ), None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("chordnet_api_auth_failures_total{reason=\"missing\"} 1"),
        "{metrics}"
    );

    // read: GET yes; PUT, DELETE, leave no (403, no challenge).
    let file_url = p0.url("/v1/files/report.txt");
    let (status, ..) = call(http, Method::GET, &p0.url("/v1/node"), Some(READ), None).await;
    assert_eq!(status, 200);
    let (status, _, _, body) =
        call(http, Method::GET, &p0.url("/v1/lookup/k"), Some(READ), None).await;
    assert_eq!(status, 200, "{body}");
    for (method, url) in [
        (Method::PUT, file_url.clone()),
        (Method::DELETE, file_url.clone()),
        (Method::POST, p0.url("/v1/ring/leave")),
    ] {
        let (status, kind, challenge, body) =
            call(http, method.clone(), &url, Some(READ), Some(b"x".to_vec())).await;
        assert_eq!(status, 403, "{method} {url}: {body}");
        assert_eq!(kind, "application/problem+json");
        assert!(!challenge);
        assert!(body.contains("role"), "{body}");
    }
    // write: upload and delete, not leave.
    let (status, _, _, body) = call(
        http,
        Method::PUT,
        &file_url,
        Some(WRITE),
        Some(b"quarterly".to_vec()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, _, got) = call(
        http,
        Method::GET,
        &p1.url("/v1/files/report.txt"),
        Some(READ),
        None,
    )
    .await;
    assert_eq!((status, got.as_str()), (200, "quarterly"));
    let (status, ..) = call(
        http,
        Method::POST,
        &p0.url("/v1/ring/leave"),
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, ..) = call(http, Method::DELETE, &file_url, Some(WRITE), None).await;
    assert_eq!(status, 204);
    // admin: leave.
    let (status, _, _, body) = call(
        http,
        Method::POST,
        &p1.url("/v1/ring/leave"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_its_token_and_tokens_rotate_without_a_restart() {
    let (probe, _) = Cluster::empty("tokens-cli-file", 0);
    let root = probe.root.join("conf");
    let file = tokens_file(&root, &format!("write {WRITE}\nread {READ}\n"));
    let file_s = file.to_string_lossy().into_owned();
    let c = Cluster::start_each("tokens-cli", 1, |_| {
        vec![("CHORDNET_API__TOKENS_FILE".to_string(), file_s.clone())]
    });
    wait_for("the peer ready", Duration::from_secs(60), || c.all_ready()).await;
    let api = c.peers[0].api.clone();
    let upload = root.join("notes.txt");
    std::fs::write(&upload, b"meeting notes").expect("file");
    let upload_s = upload.to_string_lossy().into_owned();
    let limit = Duration::from_secs(30);

    // Without a token: exit 5, and the message says what to do.
    let run = run_bounded_env(&["put", &upload_s, "--api", &api], &[], limit).expect("bounded");
    assert_eq!(run.code, Some(5), "{run}");
    assert!(run.stderr.contains("--token"), "{run}");
    // --token, and CHORDNET_TOKEN.
    let run = run_bounded_env(
        &["put", &upload_s, "--api", &api, "--token", WRITE],
        &[],
        limit,
    )
    .expect("bounded");
    assert!(run.ok(), "{run}");
    let out = root.join("out.txt");
    let out_s = out.to_string_lossy().into_owned();
    let run = run_bounded_env(
        &["get", "notes.txt", "-o", &out_s, "--api", &api],
        &[("CHORDNET_TOKEN", READ)],
        limit,
    )
    .expect("bounded");
    assert!(run.ok(), "{run}");
    assert_eq!(std::fs::read(&out).expect("downloaded"), b"meeting notes");
    // A read token cannot delete: exit 5 with the server's words.
    let run = run_bounded_env(
        &["rm", "notes.txt", "--api", &api],
        &[("CHORDNET_TOKEN", READ)],
        limit,
    )
    .expect("bounded");
    assert_eq!(run.code, Some(5), "{run}");
    assert!(run.stderr.contains("write role"), "{run}");

    // Rotation: the file gets a new read token and loses the old one; the running peer
    // follows within a bounded time.
    const NEW_READ: &str = "rotated-read-token-dddddddddd";
    std::fs::write(&file, format!("write {WRITE}\nread {NEW_READ}\n")).expect("rewrite");
    let node = c.peers[0].url("/v1/node");
    wait_for(
        "the new token works and the old one not",
        Duration::from_secs(20),
        || async {
            let new = call(&c.http, reqwest::Method::GET, &node, Some(NEW_READ), None)
                .await
                .0;
            let old = call(&c.http, reqwest::Method::GET, &node, Some(READ), None)
                .await
                .0;
            new == 200 && old == 401
        },
    )
    .await;
    // A broken rewrite keeps the tokens in force.
    std::fs::write(&file, "read short\n").expect("rewrite");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let check = || async {
        call(&c.http, reqwest::Method::GET, &node, Some(NEW_READ), None)
            .await
            .0
    };
    for _ in 0..30 {
        assert_eq!(
            check().await,
            200,
            "a broken tokens file must not lock everyone out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_bad_tokens_file_stops_the_peer_at_start_naming_the_line() {
    let (probe, ports) = Cluster::empty("tokens-bad", 1);
    let root = probe.root.clone();
    let advertise = format!("127.0.0.1:{}", ports[0]);
    let api = format!("127.0.0.1:{}", ports[1]);
    let store = root.join("data").to_string_lossy().into_owned();
    let serve = |tokens: &std::path::Path| {
        let args = [
            "serve",
            "--advertise",
            &advertise,
            "--api",
            &api,
            "--store-dir",
            &store,
        ];
        let env = [("CHORDNET_API__TOKENS_FILE", &*tokens.to_string_lossy())];
        run_bounded_env(&args, &env, Duration::from_secs(30)).expect("the peer exits by itself")
    };
    let run = serve(&tokens_file(&root, &format!("read {READ}\nroot {ADMIN}\n")));
    assert!(!run.ok(), "{run}");
    assert!(run.stderr.contains("line 2"), "{run}");
    assert!(run.stderr.contains("unknown role"), "{run}");
    let run = serve(&root.join("no-such-file"));
    assert!(!run.ok(), "{run}");
    assert!(
        run.stderr.contains("cannot read the API tokens file"),
        "{run}"
    );
}

/// The ring page's gather asks the other peers' APIs with the caller's token: with tokens on,
/// every peer still shows with its own card (not as `unknown`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_view_gathers_with_the_callers_token() {
    let (mut c, _) = Cluster::empty("tokens-view", 0);
    let file = tokens_file(&c.root.join("conf"), &format!("read {READ}\n"));
    let file = file.to_string_lossy().into_owned();
    let ports = paired::port_pairs(3);
    let bootstrap = format!("127.0.0.1:{}", ports[0]);
    for (i, port) in ports.iter().enumerate() {
        let peer = spawn_logged(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", port + 1),
            &c.root.join(format!("peer-{i}")),
            (i > 0).then_some(&bootstrap),
            &[("CHORDNET_API__TOKENS_FILE", &file)],
            None,
        );
        c.peers.push(peer);
    }
    wait_for("every peer ready", Duration::from_secs(60), || {
        c.all_ready()
    })
    .await;
    let url = c.peers[0].url("/v1/ring/view");
    let (status, ..) = call(&c.http, reqwest::Method::GET, &url, None, None).await;
    assert_eq!(status, 401);
    wait_for(
        "3 peers, each with its card",
        Duration::from_secs(30),
        || async {
            let (status, _, _, body) =
                call(&c.http, reqwest::Method::GET, &url, Some(READ), None).await;
            let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
            status == 200
                && nodes.len() == 3
                && nodes
                    .iter()
                    .all(|n| n["state"] != "unknown" && n["state"] != "unreachable")
        },
    )
    .await;
}
