//! The Patroni REST API actuator: PostgreSQL parameters through `PATCH /config`, restarts
//! scheduled in the target's maintenance window through `POST /restart`.
//!
//! Patroni keeps the cluster-wide configuration in its DCS and applies it on every member, so
//! one `PATCH /config` on any member changes the parameters of the whole cluster; parameters
//! that PostgreSQL reads only at start-up leave the members with `pending_restart`, and a
//! restart with `restart_pending: true` restarts exactly the members that need it.
//!
//! What is verified: the parameters in `GET /config` after the patch and, for live ones, that
//! the member is `running` in `GET /patroni`; for a restart, the `scheduled_restart` each
//! member reports in `GET /patroni`. Live parameters reach PostgreSQL
//! on Patroni's next loop (≈ 0.2 s after the patch, measured); the REST API of Patroni 3.0
//! cannot show a running value, so the end-to-end test checks `SHOW` in PostgreSQL itself.
//!
//! Restart order: PostgreSQL refuses to run a standby whose `max_connections`,
//! `max_worker_processes`, `max_prepared_transactions`, `max_locks_per_transaction` or
//! `max_wal_senders` is lower than the primary's. So when the plan **lowers** one of them the
//! primary restarts first and the replicas one stagger later; otherwise (raising, or any other
//! parameter) the replicas restart first and the primary last. (Patroni also starts a standby
//! with the primary's values from `pg_control` when its own are too low, so the wrong order
//! costs an extra restart, not an outage.) A single-node cluster simply restarts at the start
//! of the window. Lowering `shared_buffers` needs no order: each member uses its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, SecondsFormat, TimeDelta, Utc, Weekday};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setpoint_core::{Operation, Target};

use crate::http::{self, error_chain, excerpt};
use crate::{ActError, Actuator, BoxFuture, Execution, OpStatus, OperationResult, Result, Site};

/// The actuator's name in traces, errors and results.
pub const NAME: &str = "patroni";

impl crate::ActuatorSpec for PatroniConfig {
    const NAME: &'static str = NAME;

    fn paths_mut(&mut self) -> Vec<&mut std::path::PathBuf> {
        [
            &mut self.password_file,
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn Actuator>> {
        Ok(std::sync::Arc::new(Patroni::new(self.clone())?))
    }
}

/// Parameters a standby must hold at least as high as the primary (PostgreSQL "Hot Standby":
/// administrator's overview); they decide the restart order.
pub const HOT_STANDBY_SENSITIVE: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_wal_senders",
];

/// Configuration of the Patroni actuator (one per loop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniConfig {
    /// The REST API of a target when it has no `url_label` label, e.g.
    /// `https://{target}.db.internal:8008`; `{target}` is replaced by the target id.
    #[serde(default)]
    pub url: Option<String>,
    /// The target label that holds its REST API URL (wins over `url`).
    #[serde(default = "default_url_label")]
    pub url_label: String,
    /// Basic-auth user (Patroni `restapi.authentication`), sent with every request.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the basic-auth password (its first line), so that it stays out of the config.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates to trust for an https REST API.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (Patroni `restapi.verify_client`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Timeout of one request.
    #[serde(default = "default_timeout", with = "http::duration")]
    pub timeout: Duration,
    /// How long reading back waits for Patroni to show a change.
    #[serde(default = "default_verify_timeout", with = "http::duration")]
    pub verify_timeout: Duration,
    /// When restarts may happen.
    #[serde(default)]
    pub maintenance_window: MaintenanceWindow,
    /// Time between the restarts of the members of one cluster (first group, then the other).
    #[serde(default = "default_stagger", with = "http::duration")]
    pub restart_stagger: Duration,
}

fn default_url_label() -> String {
    "patroni_url".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_verify_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_stagger() -> Duration {
    Duration::from_secs(300)
}

impl PatroniConfig {
    /// Every default, for a target whose REST API is `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            url_label: default_url_label(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout: default_timeout(),
            verify_timeout: default_verify_timeout(),
            maintenance_window: MaintenanceWindow::default(),
            restart_stagger: default_stagger(),
        }
    }
}

/// A recurring window for restarts, in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Days the window opens (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Opening time, `HH:MM` UTC.
    #[serde(default = "default_start")]
    pub start: String,
    /// How long it stays open.
    #[serde(default = "default_length", with = "http::duration")]
    pub duration: Duration,
    /// The soonest a restart is scheduled after the decision (Patroni refuses a past time).
    #[serde(default = "default_lead", with = "http::duration")]
    pub min_lead: Duration,
}

fn default_start() -> String {
    "02:00".into()
}
fn default_length() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_lead() -> Duration {
    Duration::from_secs(60)
}

impl Default for MaintenanceWindow {
    fn default() -> Self {
        Self {
            days: Vec::new(),
            start: default_start(),
            duration: default_length(),
            min_lead: default_lead(),
        }
    }
}

impl MaintenanceWindow {
    /// Checks the settings without reading the clock.
    pub fn validate(&self) -> Result<(), String> {
        self.opening()?;
        TimeDelta::from_std(self.min_lead)
            .map_err(|e| format!("maintenance_window.min_lead: {e}"))?;
        if self.duration.is_zero() {
            return Err("maintenance_window.duration must be longer than zero".into());
        }
        TimeDelta::from_std(self.duration)
            .map_err(|e| format!("maintenance_window.duration: {e}"))?;
        Ok(())
    }

    fn opening(&self) -> Result<NaiveTime, String> {
        NaiveTime::parse_from_str(&self.start, "%H:%M").map_err(|e| {
            format!(
                "maintenance_window.start {:?}: {e} (want HH:MM)",
                self.start
            )
        })
    }

    /// The first time at least `min_lead` after `now` that lies in the window, to the second.
    pub fn next_slot(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let start = self.opening()?;
        let lead = TimeDelta::from_std(self.min_lead).map_err(|e| e.to_string())?;
        let length = TimeDelta::from_std(self.duration).map_err(|e| e.to_string())?;
        let earliest = ceil_second(now + lead);
        // From yesterday: a window that opened yesterday may still be open.
        let first = earliest.date_naive() - TimeDelta::days(1);
        for offset in 0..=8 {
            let date = first + TimeDelta::days(offset);
            if !self.days.is_empty() && !self.days.contains(&date.weekday()) {
                continue;
            }
            let open = date.and_time(start).and_utc();
            if earliest <= open {
                return Ok(open);
            }
            if earliest < open + length {
                return Ok(earliest);
            }
        }
        Err("maintenance_window never opens".into())
    }
}

fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if whole < t {
        whole + TimeDelta::seconds(1)
    } else {
        whole
    }
}

/// Formats a schedule the way Patroni wants it: ISO 8601 with a timezone.
fn schedule_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// The Patroni actuator.
pub struct Patroni {
    config: PatroniConfig,
    password: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Patroni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("Patroni")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> ActError {
    ActError::Config {
        actuator: NAME.into(),
        message: message.into(),
    }
}

impl Patroni {
    /// Checks the configuration and reads its files (password, certificates).
    pub fn new(config: PatroniConfig) -> Result<Self> {
        let password = match &config.password_file {
            Some(path) => {
                let text = String::from_utf8(
                    http::read_file("password_file", path).map_err(config_error)?,
                )
                .map_err(|_| config_error("password_file is not UTF-8"))?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            None => None,
        };
        if password.is_some() && config.username.is_none() {
            return Err(config_error("password_file is set but username is not"));
        }
        if let Some(url) = &config.url {
            http::base_url(&url.replace("{target}", "target"))
                .map_err(|e| config_error(format!("url: {e}")))?;
        }
        config.maintenance_window.validate().map_err(config_error)?;
        let mut tls = http::Tls::default();
        if let Some(path) = &config.ca_file {
            tls.ca_pem = Some(http::read_file("ca_file", path).map_err(config_error)?);
        }
        match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = http::read_file("client_cert", cert).map_err(config_error)?;
                pem.push(b'\n');
                pem.extend(http::read_file("client_key", key).map_err(config_error)?);
                tls.identity_pem = Some(pem);
            }
            (None, None) => {}
            _ => return Err(config_error("client_cert and client_key go together")),
        }
        let client = http::client(config.timeout, tls).map_err(config_error)?;
        Ok(Self {
            config,
            password,
            client,
        })
    }

    /// The REST API base URL of a target: its `url_label` label, else `url` with `{target}`.
    pub fn base_url(&self, target: &Target) -> Result<String, String> {
        let url = match (target.labels.get(&self.config.url_label), &self.config.url) {
            (Some(url), _) => url.clone(),
            (None, Some(template)) => template.replace("{target}", &target.id),
            (None, None) => {
                return Err(format!(
                    "the target has no {:?} label and no url is configured",
                    self.config.url_label
                ));
            }
        };
        http::base_url(&url)
    }
}

/// What one call is about, for error messages.
struct Ctx<'a> {
    target: &'a str,
    operation: String,
}

impl Ctx<'_> {
    fn failed(&self, object: &str, message: impl Into<String>) -> ActError {
        ActError::Failed {
            site: self.site(object),
            message: message.into(),
        }
    }

    /// An error retrying would not cure (see [`ActError::Unusable`]).
    fn unusable(&self, object: &str, message: impl Into<String>) -> ActError {
        ActError::Unusable {
            site: self.site(object),
            message: message.into(),
        }
    }

    fn site(&self, object: &str) -> Box<Site> {
        Site::new(NAME, self.target, object, self.operation.clone())
    }
}

/// A parameter value as Patroni's config holds it (numbers may be JSON numbers), as text.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One member of the cluster, from `GET /cluster`.
#[derive(Debug, Clone)]
struct Member {
    base: String,
    primary: bool,
}

impl Patroni {
    async fn call(
        &self,
        ctx: &Ctx<'_>,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String)> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(user) = &self.config.username {
            request = request.basic_auth(user, self.password.as_deref());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ctx.failed(url, format!("{method}: {}", error_chain(&e))))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            ctx.failed(
                url,
                format!("{method}: reading the answer: {}", error_chain(&e)),
            )
        })?;
        Ok((status, body))
    }

    async fn get_json(&self, ctx: &Ctx<'_>, url: &str) -> Result<Value> {
        let (status, body) = self.call(ctx, Method::GET, url, None).await?;
        // `GET /patroni` answers 503 on a member that is not running but still describes it.
        if !(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE) {
            return Err(ActError::from_status(
                ctx.site(url),
                status,
                format!("GET: HTTP {status}: {}", excerpt(&body)),
            ));
        }
        serde_json::from_str(&body).map_err(|e| {
            ctx.unusable(
                url,
                format!("GET: the answer is not JSON ({e}): {}", excerpt(&body)),
            )
        })
    }

    fn parameters(config: &Value) -> BTreeMap<String, String> {
        config
            .pointer("/postgresql/parameters")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default()
    }

    /// The members to restart: every member `GET /cluster` lists, or just the target's own
    /// REST API when the list is unavailable or has one member.
    async fn members(&self, ctx: &Ctx<'_>, base: &str) -> Result<Vec<Member>> {
        let url = format!("{base}/cluster");
        let cluster = self.get_json(ctx, &url).await?;
        let listed: Vec<Member> = cluster
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let api = m.get("api_url")?.as_str()?;
                let base = api.trim_end_matches('/').trim_end_matches("/patroni");
                let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
                Some(Member {
                    base: http::base_url(base).ok()?,
                    primary: matches!(role, "leader" | "master" | "standby_leader"),
                })
            })
            .collect();
        if listed.len() <= 1 {
            return Ok(vec![Member {
                base: base.to_string(),
                primary: true,
            }]);
        }
        Ok(listed)
    }

    /// Schedules a restart on one member (or finds the one already scheduled) and verifies it
    /// in `GET /patroni`.
    async fn schedule_restart(
        &self,
        ctx: &Ctx<'_>,
        member: &str,
        at: DateTime<Utc>,
        restart_pending: bool,
    ) -> Result<DateTime<Utc>> {
        let status_url = format!("{member}/patroni");
        if let Some(existing) = scheduled(&self.get_json(ctx, &status_url).await?) {
            // Idempotent: one restart is enough (Patroni refuses a second one with 409).
            return Ok(existing);
        }
        let url = format!("{member}/restart");
        let body = json!({"schedule": schedule_text(at), "restart_pending": restart_pending});
        let (status, answer) = self.call(ctx, Method::POST, &url, Some(&body)).await?;
        if !(status == StatusCode::ACCEPTED
            || status.is_success()
            || status == StatusCode::CONFLICT)
        {
            return Err(ActError::from_status(
                ctx.site(&url),
                status,
                format!("POST {body}: HTTP {status}: {}", excerpt(&answer)),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.config.verify_timeout;
        loop {
            if let Some(at) = scheduled(&self.get_json(ctx, &status_url).await?) {
                return Ok(at);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ActError::NotVerified {
                    site: ctx.site(&status_url),
                    expected: format!("a scheduled_restart at {}", schedule_text(at)),
                    found: "none".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The time of the restart a member reports as scheduled.
fn scheduled(status: &Value) -> Option<DateTime<Utc>> {
    let text = status.pointer("/scheduled_restart/schedule")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether the plan lowers a parameter a standby must hold at least as high as the primary.
fn lowers_hot_standby_parameter(
    current: &BTreeMap<String, String>,
    wanted: &[(&str, &str)],
) -> bool {
    wanted.iter().any(|(name, value)| {
        HOT_STANDBY_SENSITIVE.contains(name)
            && matches!(
                (current.get(*name).and_then(|v| v.trim().parse::<i64>().ok()), value.trim().parse::<i64>()),
                (Some(old), Ok(new)) if new < old
            )
    })
}

impl Actuator for Patroni {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, _target: &Target, operation: &Operation) -> bool {
        matches!(
            operation,
            Operation::SetParameter { .. } | Operation::Restart { .. }
        )
    }

    fn execute<'a>(
        &'a self,
        execution: &'a Execution<'a>,
    ) -> BoxFuture<'a, Result<Vec<OperationResult>>> {
        Box::pin(self.run(execution))
    }
}

impl Patroni {
    async fn run(&self, execution: &Execution<'_>) -> Result<Vec<OperationResult>> {
        let target = execution.target;
        let operations = execution.operations;
        let ctx = Ctx {
            target: &target.id,
            operation: operations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        };
        // Everything is checked before the first request.
        if let Some(op) = operations.iter().find(|op| !self.supports(target, op)) {
            return Err(ActError::Unsupported {
                site: Site::new(NAME, &target.id, "(not contacted)", op.to_string()),
                why: "Patroni sets PostgreSQL parameters and restarts; sizes and node counts \
                      belong to the platform (e.g. the kubernetes actuator)"
                    .into(),
            });
        }
        let base = self
            .base_url(target)
            .map_err(|e| ctx.unusable("(no Patroni URL)", e))?;
        let config_url = format!("{base}/config");
        let status_url = format!("{base}/patroni");

        let current = Self::parameters(&self.get_json(&ctx, &config_url).await?);
        let status = self.get_json(&ctx, &status_url).await?;
        let pending = status.get("pending_restart").and_then(Value::as_bool) == Some(true);

        let wanted: Vec<(&str, &str, bool)> = operations
            .iter()
            .filter_map(|op| match op {
                Operation::SetParameter {
                    name,
                    value,
                    requires_restart,
                } => Some((name.as_str(), value.as_str(), *requires_restart)),
                _ => None,
            })
            .collect();
        let changes: BTreeMap<&str, &str> = wanted
            .iter()
            .filter(|(name, value, _)| current.get(*name).map(String::as_str) != Some(*value))
            .map(|(name, value, _)| (*name, *value))
            .collect();
        let restart_params = wanted.iter().any(|(_, _, restart)| *restart);
        let bare_restart = !restart_params
            && operations
                .iter()
                .any(|op| matches!(op, Operation::Restart { .. }));
        // A restart is due when a restart-requiring parameter changes now, or changed before
        // and PostgreSQL still runs the old value (an earlier attempt that stopped half-way).
        let restart_due = bare_restart
            || wanted
                .iter()
                .any(|(name, _, restart)| *restart && changes.contains_key(name))
            || (restart_params && pending);

        let object = |url: &str| url.to_string();
        let window_slot = || {
            self.config
                .maintenance_window
                .next_slot(execution.now)
                .map_err(|e| ctx.unusable(&status_url, e))
        };

        if execution.dry_run {
            let slot = if restart_due {
                Some(window_slot()?)
            } else {
                None
            };
            return Ok(operations
                .iter()
                .map(|op| {
                    let detail = match op {
                        Operation::SetParameter { name, value, .. } => {
                            match current.get(name.as_str()) {
                                Some(old) if old == value => format!("{name} is already {value}"),
                                old => format!(
                                    "would set {name} from {} to {value}",
                                    old.map(String::as_str).unwrap_or("(default)")
                                ),
                            }
                        }
                        _ => match slot {
                            Some(at) => {
                                format!("would schedule a restart at {}", schedule_text(at))
                            }
                            None => "no restart pending".into(),
                        },
                    };
                    OperationResult {
                        operation: op.clone(),
                        actuator: NAME.into(),
                        object: object(&config_url),
                        status: OpStatus::DryRun,
                        detail,
                    }
                })
                .collect());
        }

        if !changes.is_empty() {
            let patch = json!({"postgresql": {"parameters": changes}});
            let (status, body) = self
                .call(&ctx, Method::PATCH, &config_url, Some(&patch))
                .await?;
            if !status.is_success() {
                return Err(ActError::from_status(
                    ctx.site(&config_url),
                    status,
                    format!("PATCH {patch}: HTTP {status}: {}", excerpt(&body)),
                ));
            }
            // Read back: the DCS must hold every value of the plan.
            let stored = Self::parameters(&self.get_json(&ctx, &config_url).await?);
            for (name, value) in &changes {
                let found = stored.get(*name);
                if found.map(String::as_str) != Some(*value) {
                    return Err(ActError::NotVerified {
                        site: Site::new(
                            NAME,
                            &target.id,
                            &config_url,
                            format!("set {name} = {value}"),
                        ),
                        expected: (*value).to_string(),
                        found: found.cloned().unwrap_or_else(|| "(unset)".into()),
                    });
                }
            }
        }

        let live_changed = wanted
            .iter()
            .any(|(name, _, restart)| !restart && changes.contains_key(name));
        if live_changed {
            // Patroni reloads PostgreSQL on its next loop; a member that is not running would
            // not apply anything, so "applied" also needs the member up.
            let state = self.get_json(&ctx, &status_url).await?;
            let running = state.get("state").and_then(Value::as_str);
            if running != Some("running") {
                return Err(ActError::NotVerified {
                    site: ctx.site(&status_url),
                    expected: "the member running, to reload the parameters".into(),
                    found: format!("state {}", running.unwrap_or("(none)")),
                });
            }
        }

        let mut restart_at: Option<DateTime<Utc>> = None;
        if restart_due {
            let slot = window_slot()?;
            let stagger = TimeDelta::from_std(self.config.restart_stagger)
                .map_err(|e| ctx.unusable(&status_url, format!("restart_stagger: {e}")))?;
            let pairs: Vec<(&str, &str)> = wanted.iter().map(|(n, v, _)| (*n, *v)).collect();
            let primary_first = lowers_hot_standby_parameter(&current, &pairs);
            let members = self.members(&ctx, &base).await?;
            let several = members.len() > 1;
            for member in &members {
                let at = if several && member.primary != primary_first {
                    slot + stagger
                } else {
                    slot
                };
                let scheduled = self
                    .schedule_restart(&ctx, &member.base, at, !bare_restart)
                    .await?;
                // The target's own member decides what its operations report.
                if member.base == base || !several {
                    restart_at = Some(scheduled);
                }
            }
            if restart_at.is_none() {
                restart_at = Some(slot);
            }
        }

        Ok(operations
            .iter()
            .map(|op| {
                let (status, detail) = match op {
                    Operation::SetParameter {
                        name,
                        value,
                        requires_restart,
                    } => {
                        let changed = changes.contains_key(name.as_str());
                        match (changed, *requires_restart, restart_at) {
                            (_, true, Some(at)) => (
                                OpStatus::Scheduled { at: Some(at) },
                                format!(
                                    "{name} = {value} in /config; takes effect at the restart scheduled for {}",
                                    schedule_text(at)
                                ),
                            ),
                            (true, _, _) => (
                                OpStatus::Applied,
                                format!("{name} = {value} in /config"),
                            ),
                            (false, _, _) => (
                                OpStatus::AlreadyApplied,
                                format!("{name} was already {value}"),
                            ),
                        }
                    }
                    _ => match restart_at {
                        Some(at) => (
                            OpStatus::Scheduled { at: Some(at) },
                            format!("restart scheduled for {}", schedule_text(at)),
                        ),
                        None => (
                            OpStatus::AlreadyApplied,
                            "no restart pending: the parameters already run".into(),
                        ),
                    },
                };
                let url = match op {
                    Operation::SetParameter { .. } => &config_url,
                    _ => &status_url,
                };
                OperationResult {
                    operation: op.clone(),
                    actuator: NAME.into(),
                    object: object(url),
                    status,
                    detail,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_next_slot_is_in_the_window_and_after_the_lead() {
        let window = MaintenanceWindow {
            days: vec![Weekday::Sun],
            start: "02:00".into(),
            duration: Duration::from_secs(3600),
            min_lead: Duration::from_secs(60),
        };
        // 2026-11-23 is a Monday: the next Sunday 02:00.
        assert_eq!(
            window.next_slot(at("2026-11-23T10:00:00Z")).unwrap(),
            at("2026-11-29T02:00:00Z")
        );
        // Inside the window: one lead from now, to the second.
        assert_eq!(
            window.next_slot(at("2026-11-29T02:10:00.5Z")).unwrap(),
            at("2026-11-29T02:11:01Z")
        );
        // Too late in the window for the lead: next week.
        assert_eq!(
            window.next_slot(at("2026-11-29T02:59:30Z")).unwrap(),
            at("2026-12-06T02:00:00Z")
        );
        let every_day = MaintenanceWindow::default();
        assert_eq!(
            every_day.next_slot(at("2026-11-23T23:00:00Z")).unwrap(),
            at("2026-11-24T02:00:00Z")
        );
        // A window across midnight that opened yesterday.
        let late = MaintenanceWindow {
            start: "23:00".into(),
            duration: Duration::from_secs(4 * 3600),
            ..MaintenanceWindow::default()
        };
        assert_eq!(
            late.next_slot(at("2026-11-24T01:00:00Z")).unwrap(),
            at("2026-11-24T01:01:00Z")
        );
        let broken = MaintenanceWindow {
            start: "2am".into(),
            ..MaintenanceWindow::default()
        };
        assert!(broken.next_slot(at("2026-11-24T01:00:00Z")).is_err());
    }

    #[test]
    fn lowering_a_hot_standby_parameter_restarts_the_primary_first() {
        let current: BTreeMap<String, String> = [("max_connections", "200"), ("work_mem", "4MB")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(lowers_hot_standby_parameter(
            &current,
            &[("max_connections", "100")]
        ));
        assert!(!lowers_hot_standby_parameter(
            &current,
            &[("max_connections", "300")]
        ));
        assert!(!lowers_hot_standby_parameter(
            &current,
            &[("shared_buffers", "1GB")]
        ));
        // Unknown before: the default order (replicas first) is the safe one.
        assert!(!lowers_hot_standby_parameter(
            &current,
            &[("max_wal_senders", "5")]
        ));
    }

    #[test]
    fn schedules_carry_a_timezone() {
        assert_eq!(
            schedule_text(at("2026-11-24T02:00:00Z")),
            "2026-11-24T02:00:00+00:00"
        );
    }

    #[test]
    fn a_config_reads_with_defaults_and_refuses_unknown_fields() {
        let config: PatroniConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:8008",
            "maintenance_window": {"days": ["sun"], "start": "03:30", "duration": "90m"}
        }))
        .unwrap();
        assert_eq!(config.maintenance_window.days, vec![Weekday::Sun]);
        assert_eq!(
            config.maintenance_window.duration,
            Duration::from_secs(5400)
        );
        assert_eq!(config.url_label, "patroni_url");
        assert!(serde_json::from_value::<PatroniConfig>(json!({"urls": "x"})).is_err());
    }

    #[test]
    fn a_printed_config_shows_durations_as_written_and_reads_back() {
        let config: PatroniConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:8008",
            "timeout": "15s",
            "maintenance_window": {"days": ["sun"], "start": "03:30", "duration": "90m"}
        }))
        .unwrap();
        let printed = serde_json::to_value(&config).unwrap();
        assert_eq!(printed["timeout"], "15s");
        assert_eq!(printed["maintenance_window"]["duration"], "1h 30m");
        let again: PatroniConfig = serde_json::from_value(printed).unwrap();
        assert_eq!(again, config);
    }
}
