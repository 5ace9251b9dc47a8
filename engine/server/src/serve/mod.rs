//! `setpoint serve`: the loops on their schedules, as `setpoint run` runs them, plus an HTTP
//! server with the engine's own metrics (`/metrics`) and the review web page.
//!
//! The state store admits one process and one opener at a time and a cycle holds it while it
//! runs, so every request opens it on a blocking thread, reads what it needs and drops it.
//!
//! What the server has to say while it runs goes to the caller as [`ServeEvent`]s, so the
//! binary decides how it is printed.

mod auth;
mod cache;
mod guard;
mod listener;
mod metrics;
mod pages;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use setpoint_core::SharedClock;
use setpoint_runtime::{Config, Runtime, RuntimeError, Shutdown};
use setpoint_state::{KillSwitchScope, StateError, Store};

use crate::describe;
use crate::review::{self, Decided, ReviewDecision, ReviewError};
use auth::{Auth, Identified, Role, User, Via};
use guard::{BodyLimits, Origins};
use metrics::EngineMetrics;

pub use auth::AuthError;
pub use listener::TlsError;

/// The longest comment a decision may carry, in characters.
const MAX_COMMENT_CHARS: usize = 4096;

/// How `setpoint serve` runs, besides what the configuration's `serve:` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on, instead of `serve.listen`.
    pub listen: Option<String>,
    /// Run one cycle of every loop at start, before waiting for their schedules.
    pub run_once_first: bool,
    /// Do not run the loops at all: only serve what the store holds.
    pub no_loops: bool,
}

/// What can stop the server from starting, or end it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The tokens file could not be used.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The loops could not be set up, or running them on their schedules failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A review could not be decided.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    AsyncRuntime(#[source] std::io::Error),
    /// The listening address could not be bound.
    #[error("serve.listen: cannot listen on {address}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why it could not be bound.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that held the store panicked or was cancelled.
    #[error("store task failed")]
    StoreTask(#[source] tokio::task::JoinError),
}

/// Something the running server reports; its `Display` is the line a person reads.
#[derive(Debug)]
pub enum ServeEvent {
    /// Neither a tokens file nor a proxy is configured.
    NoAuthentication,
    /// The server listens on this address.
    Listening {
        /// The address.
        address: String,
        /// Whether it speaks HTTPS.
        tls: bool,
    },
    /// No origin is setpoint's own (listening on every address without `serve.public_url`):
    /// every form is refused.
    NoPublicUrl,
    /// The first cycle (`run_once_first`) failed; the loops still run on their schedules.
    FirstCycleFailed(RuntimeError),
    /// The loops run on their schedules from now on.
    Scheduled {
        /// How many loops.
        loops: usize,
    },
    /// The HTTP server's task panicked or was cancelled.
    ServerTaskFailed(tokio::task::JoinError),
    /// Everything stopped after a shutdown signal.
    Stopped,
}

impl fmt::Display for ServeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeEvent::NoAuthentication => f.write_str(
                "no serve.tokens_file or serve.proxy configured: everyone may view, nobody may approve",
            ),
            ServeEvent::Listening { address, tls } => write!(
                f,
                "listening on {}://{address}",
                if *tls { "https" } else { "http" }
            ),
            ServeEvent::NoPublicUrl => f.write_str(
                "serve.public_url is not set and setpoint listens on every address: forms \
                 (sign-in, approvals, kill switches) are refused until serve.public_url names \
                 the URL people open the page at",
            ),
            ServeEvent::FirstCycleFailed(error) => write!(f, "first cycle failed: {error}"),
            ServeEvent::Scheduled { loops } => write!(
                f,
                "running {loops} loop(s) on their schedules; Ctrl-C to stop"
            ),
            ServeEvent::ServerTaskFailed(error) => write!(f, "server task failed: {error}"),
            ServeEvent::Stopped => f.write_str("stopped"),
        }
    }
}

/// How long a request waits for the store while a cycle holds it.
const STORE_WAIT: Duration = Duration::from_secs(20);

/// What every request handler shares.
struct AppState {
    config: Config,
    runtime: Arc<Runtime>,
    auth: Auth,
    /// The origins a state-changing request may come from.
    origins: Origins,
    /// The index page's data, while the store and the kill switches are unchanged.
    index: cache::FileCache<pages::IndexData>,
    metrics: Arc<EngineMetrics>,
    clock: SharedClock,
}

type Shared = Arc<AppState>;

/// Runs the loops and the HTTP server until SIGINT/SIGTERM, reporting to `on_event` as it goes.
pub fn serve(
    config: Config,
    options: &ServeOptions,
    clock: SharedClock,
    on_event: impl Fn(&ServeEvent),
) -> Result<(), ServeError> {
    let serve_config = config.serve.clone().unwrap_or_default();
    let listen = options
        .listen
        .clone()
        .unwrap_or_else(|| serve_config.listen.clone());
    let auth = Auth::load(&serve_config)?;
    let tls = match &serve_config.tls {
        Some(tls) => Some(listener::tls_acceptor(&tls.cert_file, &tls.key_file)?),
        None => None,
    };
    if !auth.configured() {
        on_event(&ServeEvent::NoAuthentication);
    }
    let metrics = Arc::new(EngineMetrics::new());
    metrics.declare_loops(
        config
            .loops
            .iter()
            .map(|l| (l.name.as_str(), l.mode == setpoint_core::Mode::DryRun)),
    );
    let runtime = Arc::new(Runtime::new(config.clone())?.with_clock(clock.clone()));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::AsyncRuntime)?;
    let shutdown = Shutdown::new();
    tokio.block_on(async {
        crate::spawn_signal_listener(shutdown.clone());
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(source) => {
                return Err(ServeError::Listen {
                    address: listen,
                    source,
                });
            }
        };
        let bound = listener.local_addr().map_err(|source| ServeError::Listen {
            address: listen.clone(),
            source,
        })?;
        let origins = Origins::new(serve_config.public_origin(), bound, tls.is_some());
        if !origins.any() {
            on_event(&ServeEvent::NoPublicUrl);
        }
        let state = Arc::new(AppState {
            index: cache::FileCache::of_state_dir(&config.state_dir),
            config,
            runtime: runtime.clone(),
            auth,
            origins,
            metrics: metrics.clone(),
            clock,
        });
        refresh_reviews(&state).await;
        let limits = BodyLimits {
            max_bytes: usize::try_from(serve_config.max_body_bytes).unwrap_or(usize::MAX),
            timeout: serve_config.body_timeout.0,
        };
        let app = router(state.clone(), limits);
        let server = tokio::spawn(listener::serve(
            listener,
            app,
            tls.clone(),
            serve_config.header_timeout.0,
            shutdown.clone(),
        ));
        on_event(&ServeEvent::Listening {
            address: bound.to_string(),
            tls: tls.is_some(),
        });
        if options.run_once_first && !options.no_loops {
            match runtime.run_once(state.clock.now(), None, &shutdown).await {
                Ok(reports) => {
                    for report in &reports {
                        metrics.observe_cycle(report);
                    }
                    state.index.invalidate().await;
                    refresh_reviews(&state).await;
                }
                Err(error) => on_event(&ServeEvent::FirstCycleFailed(error)),
            }
        }
        if options.no_loops {
            shutdown.wait().await;
        } else {
            on_event(&ServeEvent::Scheduled {
                loops: runtime.loops().len(),
            });
            let after_cycle = state.clone();
            runtime
                .run_scheduled(shutdown.clone(), move |report| {
                    after_cycle.metrics.observe_cycle(report);
                    let state = after_cycle.clone();
                    tokio::spawn(async move {
                        state.index.invalidate().await;
                        refresh_reviews(&state).await;
                    });
                })
                .await?;
        }
        if let Err(error) = server.await {
            on_event(&ServeEvent::ServerTaskFailed(error));
        }
        on_event(&ServeEvent::Stopped);
        Ok(())
    })
}

fn router(state: Shared, limits: BodyLimits) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(pages_index))
        .route("/targets/{id}", get(pages_target))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/api/reviews", get(api_reviews))
        .route("/reviews/{id}/approve", post(approve))
        .route("/reviews/{id}/reject", post(reject))
        .route("/kill-switches", post(kill_switch))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            guard::bounded_body,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_bytes))
        .with_state(state)
}

/// The HTTP application that [`serve`] runs for `config`, as if listening on `bound` (plain
/// HTTP), without the listener, the loops or signal handling: for the fuzz targets in `fuzz/`,
/// which drive it one request at a time. Not part of the crate's API.
#[doc(hidden)]
pub fn app_for_fuzzing(
    config: Config,
    clock: SharedClock,
    bound: std::net::SocketAddr,
) -> Result<Router, ServeError> {
    let serve_config = config.serve.clone().unwrap_or_default();
    let runtime = Arc::new(Runtime::new(config.clone())?.with_clock(clock.clone()));
    let state = Arc::new(AppState {
        index: cache::FileCache::of_state_dir(&config.state_dir),
        auth: Auth::load(&serve_config)?,
        origins: Origins::new(serve_config.public_origin(), bound, false),
        metrics: Arc::new(EngineMetrics::new()),
        config,
        runtime,
        clock,
    });
    let limits = BodyLimits {
        max_bytes: usize::try_from(serve_config.max_body_bytes).unwrap_or(usize::MAX),
        timeout: serve_config.body_timeout.0,
    };
    Ok(router(state, limits))
}

/// Opens the store on a blocking thread, runs `f`, and drops the store.
async fn with_store<T, F>(state: &Shared, wait: Duration, f: F) -> Result<T, ServeError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ServeError> + Send + 'static,
{
    let dir = state.config.state_dir.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open_waiting(&dir, wait)?;
        f(&store)
    })
    .await
    .map_err(ServeError::StoreTask)?
}

/// [`with_store`] for what only reads: a snapshot, never waiting for a running cycle.
async fn reading_store<T, F>(state: &Shared, f: F) -> Result<T, ServeError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ServeError> + Send + 'static,
{
    let dir = state.config.state_dir.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open_for_reading(&dir)?;
        f(&store)
    })
    .await
    .map_err(ServeError::StoreTask)?
}

async fn refresh_reviews(state: &Shared) {
    if !state
        .config
        .state_dir
        .join(setpoint_state::DB_FILE)
        .exists()
    {
        return;
    }
    match reading_store(state, |store| Ok(store.reviews()?)).await {
        Ok(reviews) => state.metrics.observe_reviews(&reviews, state.clock.now()),
        Err(error) => tracing::debug!(error = %describe(&error), "reviews not refreshed"),
    }
}

async fn metrics_handler(State(state): State<Shared>) -> Response {
    refresh_reviews(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// An error page or JSON error, as the client asked.
fn failure(status: StatusCode, message: &str, json: bool) -> Response {
    if json {
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        page(status, pages::message_page(status.as_u16(), message))
    }
}

/// A rendered page with its status, or a plain 500 when the template could not be rendered.
fn page(status: StatusCode, rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "page not rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page could not be rendered: {error}"),
            )
                .into_response()
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The request's user, or the response that refuses it: JSON clients get 401, browsers the
/// sign-in page.
fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Identified, Box<Response>> {
    state.auth.identify(headers, Instant::now()).ok_or_else(|| {
        Box::new(
            if wants_json(headers) || headers.contains_key(header::AUTHORIZATION) {
                failure(StatusCode::UNAUTHORIZED, "authentication required", true)
            } else {
                Redirect::to("/login").into_response()
            },
        )
    })
}

/// `response` with the session cookie a request started, if it started one.
fn with_session(mut response: Response, set_cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A form's fields; an empty body is an empty form (an API client approving without a
/// comment), anything else that is not a form is refused with the extractor's status.
fn form_fields<T: Default>(
    headers: &HeaderMap,
    form: Result<Form<T>, FormRejection>,
    json: bool,
) -> Result<T, Box<Response>> {
    match form {
        Ok(Form(fields)) => Ok(fields),
        Err(_)
            if headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|length| length == "0")
                && !headers.contains_key(header::TRANSFER_ENCODING)
                && !headers.contains_key(header::CONTENT_TYPE) =>
        {
            Ok(T::default())
        }
        Err(rejection) => Err(Box::new(failure(
            rejection.status(),
            &rejection.body_text(),
            json,
        ))),
    }
}

/// Filters of the index page.
#[derive(Debug, Default, Deserialize)]
struct Filters {
    /// Only this technology.
    #[serde(default)]
    technology: String,
    /// Only this class.
    #[serde(default)]
    class: String,
    /// Only this verdict.
    #[serde(default)]
    verdict: String,
}

async fn pages_index(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let Identified { user, set_cookie } = match viewer(&state, &headers) {
        Ok(identified) => identified,
        Err(response) => return *response,
    };
    let data = state
        .index
        .get(|| {
            let dir = state.config.state_dir.clone();
            reading_store(&state, move |store| {
                Ok(pages::IndexData::load(store, &dir)?)
            })
        })
        .await;
    let now = state.clock.now();
    let response = match data {
        Ok(data) => with_flash(&headers, |flash| {
            pages::index(&data, &filters, &user, flash, now)
        }),
        Err(error) => failure(StatusCode::SERVICE_UNAVAILABLE, &describe(&error), false),
    };
    with_session(response, set_cookie)
}

async fn pages_target(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let Identified { user, set_cookie } = match viewer(&state, &headers) {
        Ok(identified) => identified,
        Err(response) => return *response,
    };
    let target = id.clone();
    let now = state.clock.now();
    let data = reading_store(&state, move |store| {
        Ok(pages::TargetData::load(store, &target, now)?)
    })
    .await;
    let response = match data {
        Ok(Some(data)) => with_flash(&headers, |flash| pages::target(&data, &user, flash)),
        Ok(None) => failure(
            StatusCode::NOT_FOUND,
            &format!("no decision recorded for target {id:?}"),
            false,
        ),
        Err(error) => failure(StatusCode::SERVICE_UNAVAILABLE, &describe(&error), false),
    };
    with_session(response, set_cookie)
}

/// The cookie that carries the outcome of a decision to the page it redirects to.
const FLASH_COOKIE: &str = "setpoint_flash";

/// Renders a page with the pending flash message, if any, and clears it.
fn with_flash(
    headers: &HeaderMap,
    render: impl FnOnce(Option<&str>) -> askama::Result<String>,
) -> Response {
    let flash = auth::cookie(headers, FLASH_COOKIE).map(pages::url_unescape);
    let mut response = page(StatusCode::OK, render(flash.as_deref()));
    if flash.is_some() {
        response.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("setpoint_flash=; Path=/; SameSite=Strict; Max-Age=0"),
        );
    }
    response
}

async fn api_reviews(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if state.auth.identify(&headers, Instant::now()).is_none() {
        return failure(StatusCode::UNAUTHORIZED, "authentication required", true);
    }
    match reading_store(&state, |store| Ok(store.reviews()?)).await {
        Ok(reviews) => Json(reviews).into_response(),
        Err(error) => failure(StatusCode::SERVICE_UNAVAILABLE, &describe(&error), true),
    }
}

/// The approve and reject forms' fields.
#[derive(Debug, Default, Deserialize)]
struct DecisionForm {
    /// Why.
    #[serde(default)]
    comment: String,
    /// The user's CSRF value (forms posted with the cookie or through the proxy).
    #[serde(default)]
    csrf: Option<String>,
}

async fn approve(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    decide(state, headers, id, true, form).await
}

async fn reject(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    decide(state, headers, id, false, form).await
}

/// Approves or rejects review `id` for an approver; in an enforce loop an approval is
/// re-checked and carried out at once, as `setpoint review approve` does.
async fn decide(
    state: Shared,
    headers: HeaderMap,
    id: u64,
    approve: bool,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let json = wants_json(&headers) || headers.contains_key(header::AUTHORIZATION);
    let form = match form_fields(&headers, form, json) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let user = match approver(
        &state,
        &headers,
        form.csrf.as_deref(),
        "approve or reject",
        json,
    ) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let comment = form.comment.trim().to_string();
    let length = comment.chars().count();
    if length > MAX_COMMENT_CHARS {
        return failure(
            StatusCode::BAD_REQUEST,
            &format!("comment: at most {MAX_COMMENT_CHARS} characters, got {length}"),
            json,
        );
    }
    if !approve && comment.is_empty() {
        return failure(
            StatusCode::BAD_REQUEST,
            "a rejection needs a comment saying why",
            json,
        );
    }
    let config = state.config.clone();
    let decision = ReviewDecision {
        id,
        approve,
        by: user.name.clone(),
        comment: Some(comment).filter(|c| !c.is_empty()),
    };
    let now = state.clock.now();
    let recorded = with_store(&state, STORE_WAIT, move |store| {
        Ok(review::decide(&config, store, &decision, now)?)
    })
    .await;
    let Decided {
        item,
        recheck_now: enforce,
    } = match recorded {
        Ok(recorded) => recorded,
        Err(error) => {
            let status = match &error {
                ServeError::State(state_error)
                | ServeError::Review(ReviewError::State(state_error)) => match state_error {
                    StateError::UnknownReview { .. } => StatusCode::NOT_FOUND,
                    StateError::ReviewNotPending { .. } => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                },
                _ => StatusCode::BAD_REQUEST,
            };
            return failure(status, &describe(&error), json);
        }
    };
    let mut lines = vec![format!(
        "review {}: {} on {} {} by {}",
        item.id,
        item.action,
        item.target,
        if approve { "approved" } else { "rejected" },
        user.name
    )];
    if enforce {
        match review::recheck(&state.runtime, &item, state.clock.now()).await {
            Ok(report) => {
                lines.extend(review::recheck_summary(&report).lines);
                state.metrics.observe_cycle(&report);
            }
            Err(error) => lines.push(format!("re-check failed: {}", describe(&error))),
        }
    } else if approve {
        lines.push(format!(
            "the next cycle of loop {} re-checks it on fresh data and acts if it still holds",
            item.loop_name
        ));
    }
    state.index.invalidate().await;
    refresh_reviews(&state).await;
    tracing::info!(review = item.id, user = %user.name, approve, "review decided on the web");
    if json {
        Json(serde_json::json!({
            "review": item,
            "messages": lines,
        }))
        .into_response()
    } else {
        redirect_with_flash(
            &format!("/targets/{}", pages::url_escape(&item.target)),
            &lines.join("\n"),
        )
    }
}

/// The signed-in approver behind a state-changing request from setpoint's own page (or with a
/// bearer token), or the response refusing it: 401 without a sign-in, 403 for a viewer or a
/// request from another site.
fn approver(
    state: &Shared,
    headers: &HeaderMap,
    csrf: Option<&str>,
    what: &str,
    json: bool,
) -> Result<User, Box<Response>> {
    let Some(user) = state
        .auth
        .identify(headers, Instant::now())
        .map(|i| i.user)
        .filter(|u| u.via != Via::Anonymous)
    else {
        return Err(Box::new(failure(
            StatusCode::UNAUTHORIZED,
            &format!("authentication required: only an approver may {what}"),
            json,
        )));
    };
    if user.role < Role::Approver {
        return Err(Box::new(failure(
            StatusCode::FORBIDDEN,
            &format!("{} is a viewer: only approvers may {what}", user.name),
            json,
        )));
    }
    if let Err(refusal) = state.origins.check(headers, user.via) {
        return Err(Box::new(failure(
            StatusCode::FORBIDDEN,
            &format!(
                "refused: {refusal}, not from setpoint's own page ({}; set serve.public_url \
                 when people open it at another URL)",
                expected_origins(&state.origins)
            ),
            json,
        )));
    }
    if !auth::csrf_matches(&user, csrf) {
        return Err(Box::new(failure(
            StatusCode::FORBIDDEN,
            "refused: the form does not carry this session's CSRF value (reload the page)",
            json,
        )));
    }
    Ok(user)
}

/// The kill-switch form.
#[derive(Debug, Default, Deserialize)]
struct KillSwitchForm {
    /// `global`, `loop:<name>` or `target:<id>`.
    #[serde(default)]
    switch: String,
    /// `on` or `off`.
    #[serde(default)]
    state: String,
    /// The user's CSRF value (forms posted with the cookie or through the proxy).
    #[serde(default)]
    csrf: Option<String>,
}

/// Which switch a form names, checked against the configured loops.
fn kill_switch_scope(config: &Config, name: &str) -> Result<KillSwitchScope, String> {
    let scope: KillSwitchScope = name.parse()?;
    if let KillSwitchScope::Loop(loop_name) = &scope
        && !config.loops.iter().any(|l| l.name.as_str() == loop_name)
    {
        let known: Vec<&str> = config.loops.iter().map(|l| l.name.as_str()).collect();
        return Err(format!(
            "no loop named {loop_name:?}; the loops are {}",
            known.join(", ")
        ));
    }
    Ok(scope)
}

/// Turns a kill switch on or off for an approver, recording who turned it on, as
/// `setpoint kill-switch` does. A cycle re-reads the switches before each actuator's share of
/// a plan, so turning one on stops what has not started yet.
async fn kill_switch(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<KillSwitchForm>, FormRejection>,
) -> Response {
    let json = wants_json(&headers) || headers.contains_key(header::AUTHORIZATION);
    let form: KillSwitchForm = match form_fields(&headers, form, json) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let user = match approver(
        &state,
        &headers,
        form.csrf.as_deref(),
        "turn kill switches on or off",
        json,
    ) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let on = match form.state.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("state must be on or off, not {other:?}"),
                json,
            );
        }
    };
    let scope = match kill_switch_scope(&state.config, &form.switch) {
        Ok(scope) => scope,
        Err(message) => return failure(StatusCode::BAD_REQUEST, &message, json),
    };
    let dir = state.config.state_dir.clone();
    let by = user.name.clone();
    let now = state.clock.now();
    let what = match &scope {
        KillSwitchScope::Global => "global".to_string(),
        KillSwitchScope::Loop(name) => format!("loop {name}"),
        KillSwitchScope::Target(id) => format!("target {id}"),
    };
    let written = tokio::task::spawn_blocking(move || {
        if on {
            setpoint_state::set_kill_switch_by(&dir, &scope, true, Some((&by, now)))
        } else {
            setpoint_state::set_kill_switch(&dir, &scope, false)
        }
    })
    .await;
    state.index.invalidate().await;
    let switches = match written {
        Ok(Ok(switches)) => switches,
        Ok(Err(error)) => {
            return failure(StatusCode::SERVICE_UNAVAILABLE, &error.to_string(), json);
        }
        Err(error) => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("kill switch task failed: {error}"),
                json,
            );
        }
    };
    let line = format!(
        "kill switch {what} turned {} by {}",
        if on { "on" } else { "off" },
        user.name
    );
    tracing::warn!(switch = %what, on, user = %user.name, "kill switch set on the web");
    if json {
        return Json(serde_json::json!({"kill_switches": switches, "messages": [line]}))
            .into_response();
    }
    redirect_with_flash("/", &line)
}

/// A redirect after a form, carrying what happened to the next page (shown once).
fn redirect_with_flash(to: &str, message: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=30",
        pages::url_escape(message)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The origins named in refusals.
fn expected_origins(origins: &Origins) -> String {
    if origins.any() {
        format!("expected {}", origins.allowed().join(" or "))
    } else {
        "no origin is accepted until serve.public_url is set".to_string()
    }
}

async fn login_form(State(state): State<Shared>) -> Response {
    page(
        StatusCode::OK,
        pages::login_page(state.auth.configured(), None),
    )
}

/// The sign-in form's field.
#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Starts a session for a token from the tokens file. The form must come from our own page,
/// so another site cannot sign a browser in as someone else.
async fn login(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let form: LoginForm = match form_fields(&headers, form, false) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    if let Err(refusal) = state.origins.check(&headers, Via::Session) {
        return page(
            StatusCode::FORBIDDEN,
            pages::login_page(
                state.auth.configured(),
                Some(&format!(
                    "refused: {refusal}, not from this page ({})",
                    expected_origins(&state.origins)
                )),
            ),
        );
    }
    match state.auth.sign_in(form.token.trim(), Instant::now()) {
        Ok(Some((user, cookie))) => {
            tracing::info!(user = %user.name, "signed in");
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok(None) => page(
            StatusCode::UNAUTHORIZED,
            pages::login_page(state.auth.configured(), Some("unknown token")),
        ),
        Err(error) => failure(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string(), false),
    }
}

/// The sign-out form's field.
#[derive(Debug, Default, Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// Ends the session, when the form comes from its own page.
async fn logout(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let form: LogoutForm = match form_fields(&headers, form, false) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let signed_in = state
        .auth
        .identify(&headers, Instant::now())
        .map(|i| i.user)
        .filter(|u| u.via == Via::Session);
    if let Some(user) = signed_in {
        if state.origins.check(&headers, user.via).is_err()
            || !auth::csrf_matches(&user, form.csrf.as_deref())
        {
            return failure(
                StatusCode::FORBIDDEN,
                "refused: sign out from setpoint's own page",
                false,
            );
        }
        state.auth.sign_out(&headers);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.auth.clear_cookie());
    response
}
