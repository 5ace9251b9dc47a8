//! `setpoint serve`'s HTTP application — the router with its middleware (origin checks, body
//! limits), sign-in, sessions, CSRF values and the form handlers — driven one request at a
//! time over a temporary state directory, without a socket. The directory lives as long as the
//! process, under `$TMPDIR` (scripts/fuzz.sh points it into fuzz/target and cleans it).
//!
//! An input is a request written as text: `METHOD /path`, header lines, an empty line, the
//! body. `{approver}` and `{viewer}` stand for the tokens of an approver and a viewer,
//! `{session}` and `{csrf}` for a fresh approver session and its CSRF value, so the fuzzer
//! reaches what lies behind authentication. Asserts that no request gets a 500 and that the
//! kill switches change only for an approver: with the approver's token, or with the approver's
//! session, its CSRF value and setpoint's own origin.
//!
//! The check itself: `fuzz/fuzz_targets/serve_http.rs` drives it under libFuzzer, and
//! `tests/it/fuzz_seeds.rs` replays every seed of `fuzz/corpus/serve_http` through it in the suite.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use setpoint_runtime::Config;
use tower::ServiceExt;

const PUBLIC: &str = "http://127.0.0.1:8080";
const APPROVER_TOKEN: &str = "approver-token-0123456789abcdef";
const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef";

struct App {
    tokio: tokio::runtime::Runtime,
    router: Router,
    kill_switches: PathBuf,
    // Kept for the directory's lifetime.
    _dir: tempfile::TempDir,
}

static APP: LazyLock<App> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let state = dir.path().join("state");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("alice:approver:{APPROVER_TOKEN}\nbob:viewer:{VIEWER_TOKEN}\n"),
    )
    .unwrap_or_else(|e| panic!("tokens file: {e}"));
    let yaml = format!(
        "state_dir: {state:?}\n\
         plugin_cache_dir: {cache:?}\n\
         loops:\n  - name: redis-rightsizing\n    plugin: builtin:redis\n\
         serve:\n  public_url: {PUBLIC}\n  tokens_file: {tokens:?}\n  max_body_bytes: 4096\n",
        cache = dir.path().join("plugin-cache"),
    );
    let config = Config::parse(&yaml, "fuzz.yaml").unwrap_or_else(|e| panic!("{e}"));
    // An empty store, so that the pages render rather than say there is none.
    drop(setpoint_state::Store::open(&state).unwrap_or_else(|e| panic!("store: {e}")));
    let bound: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let router =
        setpoint_server::serve::app_for_fuzzing(config, setpoint_core::system_clock(), bound)
            .unwrap_or_else(|e| panic!("app: {e}"));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    App {
        tokio,
        router,
        kill_switches: state.join(setpoint_state::KILL_SWITCHES_FILE),
        _dir: dir,
    }
});

/// Status, `Set-Cookie` values and body of one request.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Vec<String>, String) {
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let body = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(e) => panic!("response body: {e}"),
    };
    (status, cookies, body)
}

/// A fresh approver session: its id and CSRF value.
async fn sign_in(router: &Router) -> (String, String) {
    let request = Request::post("/login")
        .header(header::ORIGIN, PUBLIC)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={APPROVER_TOKEN}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, cookies, body) = send(router, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "sign-in: {body}");
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("setpoint_session="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("sign-in without a session: {cookies:?}"))
        .to_string();
    let request = Request::get("/")
        .header(header::COOKIE, format!("setpoint_session={session}"))
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, page) = send(router, request).await;
    assert_eq!(status, StatusCode::OK, "index: {page}");
    let csrf = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_string())
        .unwrap_or_else(|| panic!("no CSRF value on the index page"));
    (session, csrf)
}

/// The request an input describes, or `None` when it is not one `http` can represent (hyper
/// would have refused it before the router).
fn request(text: &str) -> Option<Request<Body>> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let (method, path) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(path);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    builder.body(Body::from(body.to_string())).ok()
}

/// Runs one input through the target's checks; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let app = &*APP;
    app.tokio.block_on(async {
        let mut text = text
            .replace("{approver}", APPROVER_TOKEN)
            .replace("{viewer}", VIEWER_TOKEN);
        let mut session = None;
        if text.contains("{session}") || text.contains("{csrf}") {
            let (id, csrf) = sign_in(&app.router).await;
            text = text.replace("{session}", &id).replace("{csrf}", &csrf);
            session = Some((id, csrf));
        }
        let Some(request) = request(&text) else {
            return;
        };
        let headers = request.headers().clone();
        let before = std::fs::read(&app.kill_switches).ok();
        let (status, _, body) = send(&app.router, request).await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text:?}: {body}");
        let after = std::fs::read(&app.kill_switches).ok();
        if before != after {
            let value = |name: header::HeaderName| {
                headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let by_token = value(header::AUTHORIZATION).contains(APPROVER_TOKEN);
            // Browsers send one Origin (or Referer); a client that sends several, one of them
            // ours, is not a browser tricked by another site.
            let names = |name: header::HeaderName, ours: fn(&str) -> bool| {
                headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(ours))
            };
            let from_us = if headers.contains_key(header::ORIGIN) {
                names(header::ORIGIN, |v| v == PUBLIC)
            } else {
                names(header::REFERER, |v| v.starts_with(PUBLIC))
            };
            let by_session = session.as_ref().is_some_and(|(id, csrf)| {
                value(header::COOKIE).contains(id.as_str()) && text.contains(csrf.as_str())
            }) && from_us;
            assert!(
                by_token || by_session,
                "the kill switches changed for a request without an approver's credentials: {text:?}"
            );
            // Back as they were, so that the next input starts from the same state.
            match before {
                Some(bytes) => std::fs::write(&app.kill_switches, bytes),
                None => std::fs::remove_file(&app.kill_switches),
            }
            .unwrap_or_else(|e| panic!("restoring the kill switches: {e}"));
        }
    });
}
