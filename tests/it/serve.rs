//! `setpoint serve` through the binary: the engine's metrics on `/metrics` after a cycle,
//! plugin errors and sandbox traps counted per loop, an approval executed through a fake
//! Kubernetes API and its operations counted by actuator and result;
//! approving, rejecting and kill switches refused without credentials and to viewers, done by
//! approvers; and
//! the review page driven end to end by headless Chromium (through chromedriver's WebDriver),
//! saving screenshots of the page and of one target's detail under `target/screenshots/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::setpoint_binary;

const APPROVER_TOKEN: &str = "alice-approver-token-0123456789";
const VIEWER_TOKEN: &str = "bob-viewer-token-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed by PID when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `setpoint serve` over the simulated PostgreSQL fleet, with one approver and one
/// viewer token, that ran its first cycle.
struct Server {
    _child: Killed,
    base: String,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_server(client: &reqwest::Client) -> Server {
    start_server_with(client, "  tokens_file: tokens\n").await
}

/// [`start_server`] with this `serve:` section body.
async fn start_server_with(client: &reqwest::Client, serve: &str) -> Server {
    start_server_loops(client, "", serve).await
}

/// [`start_server_with`] with more loops (YAML list items) after `weekly-rightsizing`.
async fn start_server_loops(client: &reqwest::Client, more_loops: &str, serve: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokens"),
        format!("# user:role:token\nalice:approver:{APPROVER_TOKEN}\nbob:viewer:{VIEWER_TOKEN}\n"),
    )
    .unwrap();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: state\n\
         loops:\n\
         \x20 - name: weekly-rightsizing\n\
         \x20   plugin: builtin:postgres\n\
         \x20   source: {{ kind: simulated, seed: 42 }}\n\
         \x20   classifier: {{ kind: bootstrap }}\n\
         {more_loops}\
         serve:\n{serve}",
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(setpoint_binary())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--run-once-first", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .env_remove("SETPOINT_STATE_DIR")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // A `tls:` section makes it HTTPS.
    let scheme = if serve.contains("tls:") {
        "https"
    } else {
        "http"
    };
    let server = Server {
        _child: Killed(child),
        base: format!("{scheme}://127.0.0.1:{port}"),
        state: dir.path().join("state"),
        _dir: dir,
    };
    // Ready when the first cycle is in the metrics.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(response) = client.get(format!("{}/metrics", server.base)).send().await
            && let Ok(text) = response.text().await
            && metric(
                &text,
                "setpoint_cycles_total{loop_name=\"weekly-rightsizing\"}",
            ) >= 1.0
        {
            return server;
        }
        let log = std::fs::read_to_string(server._dir.path().join("serve.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "setpoint serve did not complete a cycle in time:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(-1.0)
}

/// The sum of every sample of a metric (any labels).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of every sample of a metric whose labels contain `labels`.
fn metric_sum_where(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Signs in on the page with `token`: the `Cookie` header value of the session started.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> String {
    let response = client
        .post(format!("{base}/login"))
        .header("Origin", base)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !cookie.contains(token),
        "the token is in the cookie: {cookie}"
    );
    assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF value in a page's forms.
fn csrf_in(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF value in {page}"))
        .to_string()
}

fn reviews(state: &Path) -> Vec<setpoint_core::ReviewItem> {
    let store = setpoint_state::Store::open_waiting(state, Duration::from_secs(30)).unwrap();
    store.reviews().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_engine_after_a_cycle() {
    let client = client();
    let server = start_server(&client).await;
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let l = "loop_name=\"weekly-rightsizing\"";
    let plugin = "plugin=\"postgres";
    // The quickstart fleet: 54 PostgreSQL targets, reviews for the clear scale-ups and -downs.
    let targets = metric_sum(&text, "setpoint_targets");
    assert!(targets >= 20.0, "targets {targets}\n{text}");
    assert!(
        metric(
            &text,
            &format!("setpoint_targets{{{l},verdict=\"review\",class=\"scale_down\"}}")
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            &format!("setpoint_targets{{{l},verdict=\"hold\",class=\"remain\"}}")
        ) >= 1.0,
        "{text}"
    );
    let duration = metric(
        &text,
        &format!("setpoint_cycle_duration_seconds_sum{{{l}}}"),
    );
    assert!(duration > 0.0 && duration < 600.0, "{text}");
    // One policy evaluation per target, each well under a second.
    let evaluations = metric(
        &text,
        &format!("setpoint_policy_evaluation_seconds_count{{{l}}}"),
    );
    assert_eq!(evaluations, targets, "{text}");
    let policy_seconds = metric(
        &text,
        &format!("setpoint_policy_evaluation_seconds_sum{{{l}}}"),
    );
    assert!(
        policy_seconds > 0.0 && policy_seconds < evaluations,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("setpoint_policy_errors_total{{{l}}}")),
        0.0,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("setpoint_plugin_errors_total{")
                && line.contains(plugin)
                && line.contains("stage=\"features\"")
                && line.ends_with(" 0")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |line| line.starts_with("setpoint_plugin_sandbox_traps_total{") && line.ends_with(" 0")
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "setpoint_actuator_operations_total{{{l},actuator=\"dry-run\",result=\"would_execute\"}}"
        )),
        "{text}"
    );
    let queued = reviews(&server.state)
        .iter()
        .filter(|r| r.status == setpoint_core::ReviewStatus::Pending)
        .count();
    assert!(queued > 0);
    assert_eq!(
        metric(&text, &format!("setpoint_review_queue_depth{{{l}}}")),
        queued as f64,
        "{text}"
    );

    // One approval and one rejection: the queue shrinks by two, the bootstrap model's
    // recommendations were agreed with half the time.
    let pending: Vec<u64> = reviews(&server.state)
        .iter()
        .map(|r| r.id)
        .take(2)
        .collect();
    for (id, verb) in pending.iter().zip(["approve", "reject"]) {
        let response = client
            .post(format!("{}/reviews/{id}/{verb}", server.base))
            .bearer_auth(APPROVER_TOKEN)
            .form(&[("comment", "checked with the team")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, &format!("setpoint_review_queue_depth{{{l}}}")),
        (queued - 2) as f64,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("setpoint_model_reviewer_agreement_ratio{{{l},model_version=\"1\"}}")
        ),
        0.5,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("setpoint_model_reviews_decided{{{l},model_version=\"1\"}}")
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_failures_and_sandbox_traps_are_counted_per_loop() {
    let client = client();
    let loop_yaml = |name: &str| {
        format!(
            "\x20 - name: {name}\n\
             \x20   plugin: {}\n\
             \x20   source: {{ kind: simulated, seed: 42 }}\n\
             \x20   classifier: {{ kind: bootstrap }}\n",
            crate::hostile::guest_path(name)
        )
    };
    let loops = format!("{}{}", loop_yaml("recurse"), loop_yaml("flood"));
    let server = start_server_loops(&client, &loops, "  tokens_file: tokens\n").await;
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |name: &str, loop_name: &str| {
        metric_sum_where(&text, name, &format!("loop_name=\"{loop_name}\""))
    };
    // Every target of the recursing plugin overflowed its stack: a trap, hence a plugin error.
    let recurse_targets = sum("setpoint_targets", "recurse");
    assert!(recurse_targets > 0.0, "{text}");
    assert_eq!(
        sum("setpoint_plugin_errors_total", "recurse"),
        recurse_targets,
        "{text}"
    );
    assert_eq!(
        sum("setpoint_plugin_sandbox_traps_total", "recurse"),
        recurse_targets,
        "{text}"
    );
    // The flooding plugin's answers are refused by the host's output bound: errors, no trap.
    let flood_targets = sum("setpoint_targets", "flood");
    assert!(flood_targets > 0.0, "{text}");
    assert_eq!(
        sum("setpoint_plugin_errors_total", "flood"),
        flood_targets,
        "{text}"
    );
    assert_eq!(
        sum("setpoint_plugin_sandbox_traps_total", "flood"),
        0.0,
        "{text}"
    );
    // The well-behaved loop beside them: none of either.
    assert_eq!(
        sum("setpoint_plugin_errors_total", "weekly-rightsizing"),
        0.0,
        "{text}"
    );
    assert_eq!(
        sum("setpoint_plugin_sandbox_traps_total", "weekly-rightsizing"),
        0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_on_the_page_executes_and_the_operations_are_counted() {
    use crate::enforce::{REPORTING_01, cluster};
    let client = client();
    let api = setpoint_test_support::FakeKube::start(&[(
        REPORTING_01,
        cluster("pg-reporting-01", "8", "32Gi", "8GB"),
    )]);
    let kube = tempfile::tempdir().unwrap();
    let kubeconfig = kube.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let enforced = format!(
        "\x20 - name: enforced\n\
         \x20   plugin: builtin:postgres\n\
         \x20   source: {{ kind: simulated, seed: 42 }}\n\
         \x20   classifier: {{ kind: bootstrap }}\n\
         \x20   mode: enforce\n\
         \x20   actuators:\n\
         \x20     - kubernetes: {{ auth: {{ mode: kubeconfig, path: {} }}, timeout: 5s }}\n\
         \x20   act: {{ retries: 1, backoff: 100ms }}\n\
         \x20   targets:\n\
         \x20     - id: pg-reporting-01\n\
         \x20       labels: {{ k8s_kind: Cluster, k8s_namespace: db, k8s_name: pg-reporting-01 }}\n",
        kubeconfig.display()
    );
    let server = start_server_loops(&client, &enforced, "  tokens_file: tokens\n").await;
    let metrics = async || {
        client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let kubernetes = "loop_name=\"enforced\",actuator=\"kubernetes\"";
    // The first cycle only queued the plan for review: nothing was sent.
    let before = metrics().await;
    assert_eq!(
        metric_sum_where(&before, "setpoint_actuator_operations_total", kubernetes),
        0.0,
        "{before}"
    );
    assert_eq!(api.changes(REPORTING_01), 0);

    let id = reviews(&server.state)
        .into_iter()
        .find(|r| r.loop_name == "enforced" && r.target == "pg-reporting-01")
        .expect("the enforced loop queued pg-reporting-01 for review")
        .id;
    let response = client
        .post(format!("{}/reviews/{id}/approve", server.base))
        .bearer_auth(APPROVER_TOKEN)
        .form(&[("comment", "idle for a month")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["messages"].to_string().contains("executed"), "{body}");
    assert_eq!(api.changes(REPORTING_01), 1);
    assert_eq!(
        api.object(REPORTING_01)["spec"]["resources"]["requests"]["cpu"],
        "4"
    );
    // Every operation of the plan is counted under the actuator that carried it out.
    let after = metrics().await;
    assert_eq!(
        metric_sum_where(&after, "setpoint_actuator_operations_total", kubernetes),
        4.0,
        "{after}"
    );
    assert!(
        metric(
            &after,
            "setpoint_actuator_operations_total{loop_name=\"enforced\",actuator=\"kubernetes\",result=\"applied\"}"
        ) >= 1.0,
        "{after}"
    );
    assert_eq!(
        metric_sum_where(
            &after,
            "setpoint_actuator_operations_total",
            "result=\"failed\""
        ),
        0.0,
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_needs_an_approver() {
    let client = client();
    let server = start_server(&client).await;
    let id = reviews(&server.state)[0].id;
    let approve = format!("{}/reviews/{id}/approve", server.base);

    // Nobody: refused.
    let response = client.post(&approve).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .post(&approve)
        .bearer_auth("not-a-token-at-all-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A GET never approves.
    let response = client.get(&approve).send().await.unwrap();
    assert_eq!(response.status(), 405);
    // A viewer: forbidden, by token and by the sign-in cookie.
    let response = client
        .post(&approve)
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let viewer = sign_in(&client, &server.base, VIEWER_TOKEN).await;
    let response = client
        .post(&approve)
        .header("Cookie", &viewer)
        .header("Origin", &server.base)
        .form(&[("comment", "looks fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The raw token as a cookie is no credential.
    let response = client
        .post(&approve)
        .header("Cookie", format!("setpoint_token={APPROVER_TOKEN}"))
        .header("Origin", &server.base)
        .form(&[("comment", "looks fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // An approver's session without the page's CSRF value: a cross-site form, refused.
    let alice = sign_in(&client, &server.base, APPROVER_TOKEN).await;
    let response = client
        .post(&approve)
        .header("Cookie", &alice)
        .header("Origin", &server.base)
        .form(&[("comment", "looks fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // With the CSRF value but from another origin, a null one, or none: refused.
    let page = client
        .get(format!("{}/", server.base))
        .header("Cookie", &alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page);
    for (name, value) in [
        ("Origin", "null"),
        ("Origin", "http://evil.example"),
        ("Referer", "http://evil.example/approve.html"),
        ("X-None", "none"),
    ] {
        let response = client
            .post(&approve)
            .header("Cookie", &alice)
            .header(name, value)
            .form(&[("comment", "looks fine"), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
        let body = response.text().await.unwrap();
        assert!(body.contains("not from setpoint"), "{body}");
    }
    // A body over the cap is refused with 413, never read as an empty form.
    let response = client
        .post(&approve)
        .bearer_auth(APPROVER_TOKEN)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("comment={}", "x".repeat(96 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("serve.max_body_bytes"),
        "{body}"
    );
    // A comment over 4096 characters is refused, naming the field.
    let response = client
        .post(&approve)
        .bearer_auth(APPROVER_TOKEN)
        .form(&[("comment", "y".repeat(5000).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("comment: at most 4096"),
        "{body}"
    );
    // Junk that is not a form is refused, not taken as an empty one.
    let response = client
        .post(&approve)
        .bearer_auth(APPROVER_TOKEN)
        .header("Content-Type", "application/json")
        .body("{\"comment\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(
        reviews(&server.state)[0].status,
        setpoint_core::ReviewStatus::Pending
    );
    // Viewers still read the page, without the approve buttons.
    let page = client
        .get(format!("{}/", server.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bob · viewer"), "{page}");
    assert!(!page.contains("/approve"), "{page}");
    // The kill switches show who turned them on.
    let output = Command::new(setpoint_binary())
        .args([
            "kill-switch",
            "on",
            "--target",
            "pg-reporting-01",
            "--by",
            "carol",
        ])
        .arg("--state-dir")
        .arg(&server.state)
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("target pg-reporting-01 (by carol at "),
        "{output:?}"
    );
    let page = client
        .get(format!("{}/", server.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("target pg-reporting-01</td><td>carol</td>"),
        "{page}"
    );
    // The journal chain's head, to keep a copy of.
    let head =
        setpoint_state::Store::open_waiting(&server.state, std::time::Duration::from_secs(30))
            .unwrap()
            .chain_head()
            .unwrap()
            .unwrap();
    assert!(
        page.contains(&format!("chain head <code>{head}</code>")),
        "{page}"
    );
    // Without credentials the page sends browsers to the sign-in form.
    let response = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);

    // A rejection needs a comment.
    let reject = format!("{}/reviews/{id}/reject", server.base);
    let response = client
        .post(&reject)
        .bearer_auth(APPROVER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // The approver approves; the store records who and why.
    let response = client
        .post(&approve)
        .bearer_auth(APPROVER_TOKEN)
        .form(&[("comment", "idle for a month")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["review"]["status"], "approved", "{body}");
    let item = reviews(&server.state)
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(item.status, setpoint_core::ReviewStatus::Approved);
    assert_eq!(item.decided_by.as_deref(), Some("alice"));
    assert_eq!(item.comment.as_deref(), Some("idle for a month"));
    // Decided once: a second decision conflicts.
    let response = client
        .post(&reject)
        .bearer_auth(APPROVER_TOKEN)
        .form(&[("comment", "changed my mind")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    // A review that does not exist is not found (not a conflict).
    let response = client
        .post(format!("{}/reviews/999999/approve", server.base))
        .bearer_auth(APPROVER_TOKEN)
        .form(&[("comment", "ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_switches_are_turned_on_and_off_from_the_page_by_approvers() {
    let client = client();
    let server = start_server(&client).await;
    let url = format!("{}/kill-switches", server.base);
    let switches = || setpoint_state::read_kill_switches(&server.state).unwrap();
    // A kill-switch form posted with a bearer token.
    let set = async |token: &str, switch: &str, state: &str| {
        client
            .post(&url)
            .bearer_auth(token)
            .form(&[("switch", switch), ("state", state)])
            .send()
            .await
            .unwrap()
    };
    let viewer = sign_in(&client, &server.base, VIEWER_TOKEN).await;
    let alice = sign_in(&client, &server.base, APPROVER_TOKEN).await;
    let page = async |session: &str| {
        client
            .get(format!("{}/", server.base))
            .header("Cookie", session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    // A viewer sees the switches but no form, and is refused.
    assert!(!page(&viewer).await.contains("action=\"/kill-switches\""));
    let response = set(VIEWER_TOKEN, "global", "on").await;
    assert_eq!(response.status(), 403);
    // An approver's session without the page's CSRF value: refused.
    let response = client
        .post(&url)
        .header("Cookie", &alice)
        .header("Origin", &server.base)
        .form(&[("switch", "global"), ("state", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(!switches().global);

    // The approver's page has the form; posting it turns the switch on and records who.
    let index = page(&alice).await;
    assert!(index.contains("id=\"kill-switch-on\""), "{index}");
    let csrf = csrf_in(&index);
    // With `Origin: null` (a sandboxed frame): refused even with the value.
    let response = client
        .post(&url)
        .header("Cookie", &alice)
        .header("Origin", "null")
        .form(&[
            ("switch", "global"),
            ("state", "on"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(!switches().global);
    let response = client
        .post(&url)
        .header("Cookie", &alice)
        .header("Referer", format!("{}/", server.base))
        .form(&[
            ("switch", "global"),
            ("state", "on"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let on = switches();
    assert!(on.global);
    assert_eq!(on.set_by["global"].by, "alice");
    let index = page(&alice).await;
    assert!(index.contains("global</td><td>alice</td>"), "{index}");
    assert!(index.contains("turn off"), "{index}");

    // Unknown names are refused, naming what exists; nothing changes.
    let response = set(APPROVER_TOKEN, "loop:nightly", "on").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("weekly-rightsizing"), "{body}");
    let response = set(APPROVER_TOKEN, "global", "maybe").await;
    assert_eq!(response.status(), 400);
    assert!(switches().loops.is_empty());

    // A loop and a target by token; then off again.
    for name in ["loop:weekly-rightsizing", "target:pg-reporting-01"] {
        let response = set(APPROVER_TOKEN, name, "on").await;
        assert_eq!(response.status(), 200, "{name}");
    }
    let on = switches();
    assert!(on.loops["weekly-rightsizing"] && on.targets["pg-reporting-01"]);
    for name in [
        "global",
        "loop:weekly-rightsizing",
        "target:pg-reporting-01",
    ] {
        let response = set(APPROVER_TOKEN, name, "off").await;
        assert_eq!(response.status(), 200, "{name}");
    }
    let off = switches();
    assert!(!off.global && !off.loops.values().any(|v| *v) && !off.targets.values().any(|v| *v));
    assert!(page(&alice).await.contains("no kill switch is on"));
    // Signing out ends the session on the server: the cookie no longer works.
    let response = client
        .post(format!("{}/logout", server.base))
        .header("Cookie", &alice)
        .header("Origin", &server.base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let response = client
        .get(format!("{}/", server.base))
        .header("Cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "still signed in after signing out");
}

/// A minimal WebDriver client: the handful of commands the browser test needs.
struct Browser {
    client: reqwest::Client,
    session: String,
    _driver: Killed,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = ["chromium", "chromium-browser"]
            .iter()
            .map(|b| format!("/usr/bin/{b}"))
            .find(|p| Path::new(p).exists())
            .expect("chromium is not installed: run scripts/setup.sh --stack");
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/setup.sh --stack");
        let driver = Killed(driver);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let response: Value = client
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1800"]
                }
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
            .to_string();
        Browser {
            client,
            session: format!("{base}/session/{session}"),
            _driver: driver,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if response["value"].get("error").is_some() {
            panic!("WebDriver {path}: {response}");
        }
        response["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        self.command(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("not an element reference: {e}"))
                .to_string()
        })
        .collect()
    }

    async fn find(&self, css: &str) -> String {
        // After a click that navigates, the new page may not be there yet: wait for it, as a
        // WebDriver implicit wait would, up to 10 s.
        for _ in 0..100 {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no element matches {css} after 10 s")
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        // After a click that navigates, the element found may belong to the page being left:
        // find it again until it is the new page's.
        for _ in 0..100 {
            let element = self.find(css).await;
            let response: Value = self
                .client
                .get(format!("{}/element/{element}/text", self.session))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match response["value"].get("error").and_then(Value::as_str) {
                None => return response["value"].as_str().unwrap().to_string(),
                Some("stale element reference") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some(_) => panic!("WebDriver text of {css}: {response}"),
            }
        }
        panic!("{css} stayed stale for 10 s");
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/attribute/{name}"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn screenshot(&self, path: &Path) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
        println!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; chromedriver itself is killed by PID next.
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(async {
                    let _ = reqwest::Client::new().delete(session).send().await;
                });
            }
        })
        .join();
    }
}

/// Where the test run leaves its screenshots: `<target dir>/screenshots`.
fn screenshots_dir() -> PathBuf {
    // The test executable is <target dir>/<profile>/deps/it-<hash>.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn count(text: &str) -> usize {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn review_page_in_a_browser() {
    let client = client();
    let server = start_server(&client).await;
    let browser = Browser::start().await;
    let shots = screenshots_dir();

    // Unauthenticated: the sign-in form; the approver signs in with a token.
    browser.go(&format!("{}/", server.base)).await;
    browser.type_into("#token", APPROVER_TOKEN).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#user").await, "alice · approver");
    let all = count(&browser.text("#shown").await);
    assert!(all >= 20, "{all} targets");
    let depth: usize = browser.text("#queue-depth").await.parse().unwrap();
    assert!(depth > 0);

    // Filter: scale-downs awaiting review.
    browser
        .click("#filter-class option[value=\"scale_down\"]")
        .await;
    browser
        .click("#filter-verdict option[value=\"review\"]")
        .await;
    browser.click("#apply-filters").await;
    // Wait for the filtered page (the old one may still answer for a moment).
    let mut shown = count(&browser.text("#shown").await);
    for _ in 0..100 {
        if shown < all {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        shown = count(&browser.text("#shown").await);
    }
    assert!(shown > 0 && shown < all, "{shown} of {all}");
    assert_eq!(browser.find_all("tr.target").await.len(), shown);
    browser.screenshot(&shots.join("review-page.png")).await;

    // Open the first one: its chart, the classifier's view, the diff, the trace.
    let target = browser.attribute("tr.target", "data-target").await;
    browser.click("tr.target a").await;
    assert_eq!(browser.text("#target-id").await, target);
    assert!(browser.text("#classification").await.contains("scale_down"));
    assert!(!browser.find_all(".diff td.changed").await.is_empty());
    assert!(browser.text("#trace").await.contains(&target));
    assert!(!browser.find_all("svg").await.is_empty());
    browser.screenshot(&shots.join("target-detail.png")).await;

    // Approve it with a comment: the page says so, and the queue is one shorter.
    browser
        .type_into("textarea[id^=\"comment-\"]", "idle for a month, checked")
        .await;
    browser.click("button[id^=\"approve-\"]").await;
    let flash = browser.text("#flash").await;
    assert!(flash.contains("approved by alice"), "{flash}");
    assert!(browser.text("#decided .status").await.contains("approved"));
    browser.go(&format!("{}/", server.base)).await;
    let after: usize = browser.text("#queue-depth").await.parse().unwrap();
    assert_eq!(after, depth - 1);
    let approved = reviews(&server.state)
        .into_iter()
        .find(|r| r.target == target)
        .unwrap();
    assert_eq!(approved.status, setpoint_core::ReviewStatus::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_user_and_role() {
    let client = client();
    let server = start_server_with(
        &client,
        "  proxy: { user_header: X-Auth-User, role_header: X-Auth-Role }\n",
    )
    .await;
    let id = reviews(&server.state)[0].id;
    let approve = format!("{}/reviews/{id}/approve", server.base);
    let as_user = |user: &str, role: &str| {
        client
            .post(&approve)
            .header("X-Auth-User", user)
            .header("X-Auth-Role", role)
    };
    assert_eq!(client.post(&approve).send().await.unwrap().status(), 401);
    let viewer = as_user("bob", "viewer").send().await.unwrap();
    assert_eq!(viewer.status(), 403);
    // A proxied form must come from the page, which carries the user's CSRF value.
    let no_csrf = as_user("alice", "approver")
        .form(&[("comment", "ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let response = client
        .get(format!(
            "{}/targets/{}",
            server.base,
            reviews(&server.state)[0].target
        ))
        .header("X-Auth-User", "alice")
        .header("X-Auth-Role", "approver")
        .send()
        .await
        .unwrap();
    // The proxy's user gets a session of their own, for a random CSRF value.
    let session = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_in(&response.text().await.unwrap());
    // Another proxied user with alice's cookie and value, and alice with `Origin: null`:
    // refused (a forged approve from a sandboxed frame).
    let mallory = as_user("mallory", "approver")
        .header("Cookie", &session)
        .header("Origin", &server.base)
        .form(&[("comment", "ok"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(mallory.status(), 403);
    let null = as_user("alice", "approver")
        .header("Cookie", &session)
        .header("Origin", "null")
        .form(&[("comment", "ok"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(null.status(), 403);
    let approved = as_user("alice", "approver")
        .header("Cookie", &session)
        .header("Origin", &server.base)
        .form(&[("comment", "ok"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 303);
    let item = reviews(&server.state)
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(item.status, setpoint_core::ReviewStatus::Approved);
    assert_eq!(item.decided_by.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_half_sent_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let client = client();
    let server = start_server_with(
        &client,
        "  tokens_file: tokens\n  header_timeout: 1s\n  body_timeout: 1s\n",
    )
    .await;
    let address = server.base.trim_start_matches("http://").to_string();
    let id = reviews(&server.state)[0].id;
    // Everything the server sends until it closes the connection, or None if it held it
    // open for 10 s.
    let until_closed = async |stream: &mut tokio::net::TcpStream| {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .ok()
            .map(|_| String::from_utf8_lossy(&answer).to_string())
    };

    // Headers that never end.
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        until_closed(&mut half).await.is_some(),
        "half-sent headers held their connection for 10 s"
    );

    // A keep-alive connection left idle after its answer.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle)
        .await
        .unwrap_or_else(|| panic!("an idle keep-alive connection stayed open for 10 s"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body that trickles: 408, and the review untouched.
    let mut trickle = tokio::net::TcpStream::connect(&address).await.unwrap();
    trickle
        .write_all(
            format!(
                "POST /reviews/{id}/approve HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {APPROVER_TOKEN}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 100\r\n\r\ncomment=sl"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = until_closed(&mut trickle)
        .await
        .unwrap_or_else(|| panic!("a trickling body held its connection for 10 s"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("serve.body_timeout"), "{answer}");
    assert_eq!(
        reviews(&server.state)
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
            .status,
        setpoint_core::ReviewStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_served_over_tls_with_secure_session_cookies() {
    let certificates = tempfile::tempdir().unwrap();
    setpoint_test_support::make_certificates(certificates.path());
    let ca = std::fs::read(certificates.path().join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let serve = format!(
        "  tokens_file: tokens\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        certificates.path().join("server.pem").display(),
        certificates.path().join("server.key").display()
    );
    let server = start_server_with(&client, &serve).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let response = client
        .post(format!("{}/login", server.base))
        .header("Origin", &server.base)
        .form(&[("token", APPROVER_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    let page = client
        .get(format!("{}/", server.base))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("alice · approver"));
    // Plain HTTP to the TLS port gets no page.
    let plain = client
        .get(server.base.replacen("https://", "http://", 1))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "{plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_page_of_a_hundred_targets_holds_under_concurrent_load() {
    let client = client();
    let server = start_server_loops(
        &client,
        "\x20 - name: cache-rightsizing\n\
         \x20   plugin: builtin:redis\n\
         \x20   source: { kind: simulated, seed: 7, targets: 64 }\n\
         \x20   classifier: { kind: bootstrap }\n",
        "  tokens_file: tokens\n",
    )
    .await;
    // The figures of the benchmark (tests/benches/serve_load.rs) come from a release build;
    // here the point is that every request of a concurrent burst is answered, whole.
    let report = setpoint_test_support::load::run(
        &format!("{}/", server.base),
        &[("authorization", &format!("Bearer {VIEWER_TOKEN}"))],
        16,
        800,
    )
    .await;
    println!("index page, 100 targets, debug build: {report}");
    assert_eq!(report.failed, 0, "{:?}", report.first_failure);
    assert_eq!(report.ok, 800);
    let rows = report.sample.matches("<tr class=\"target\"").count();
    assert!(rows >= 100, "{rows} targets on the page");
}
