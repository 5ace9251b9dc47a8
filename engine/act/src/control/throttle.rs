//! Throttling through a token bucket held in Redis that the service reads.
//!
//! setpoint writes a service's limit to the hash `setpoint:throttle:<service>` (rate, burst,
//! who set it, when, and when it expires); the service runs [`SCRIPT`] (`throttle.lua`, by
//! EVALSHA) before each request and serves it only when the script admits it. [`ThrottleGate`]
//! is that caller for Rust services and for the tests; any language with a Redis client can
//! call the script the same way.
//!
//! Why this mechanism: the bucket is one per service, shared by every replica (a per-replica
//! limit would drift as the replica count changes); changing a limit is one hash write, with no
//! proxy configuration to reload; it costs one round trip per request; a limit carries its own
//! expiry, so a setpoint that dies does not throttle for ever. Redis being down is the callers'
//! choice ([`FailMode`]): open by default, so that a Redis outage never becomes a service
//! outage.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use serde::{Deserialize, Serialize};

use crate::http::{self, error_chain};
use crate::{ActError, Result, Site};

/// The token-bucket script the service runs before each request (see its header for the
/// protocol).
pub const SCRIPT: &str = include_str!("throttle.lua");

/// The prefix of a service's limit key: `setpoint:throttle:<service>`.
pub const DEFAULT_KEY_PREFIX: &str = "setpoint:throttle:";

/// The actuator name in errors and outcomes.
pub const NAME: &str = "throttle";

/// How long the limit hash stays in Redis after its expiry, so that people can still see what
/// the last limit was; Redis then removes it.
const LINGER: Duration = Duration::from_secs(3600);

/// Where the limits live and how they are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// `redis://host:port/db`, without a password (see `password_file`).
    pub redis_url: String,
    /// File holding the Redis password (its first line), so that it stays out of the config.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The prefix of each service's key.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// The bucket's size in seconds of the rate: 1 s at 50 req/s admits 50 requests at once.
    #[serde(default = "default_burst_seconds")]
    pub burst_seconds: f64,
    /// How long a limit applies unless setpoint writes it again; setpoint refreshes a limit
    /// once half of this has passed.
    #[serde(default = "default_ttl", with = "http::duration")]
    pub ttl: Duration,
    /// Timeout of connecting and of one command.
    #[serde(default = "default_timeout", with = "http::duration")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    DEFAULT_KEY_PREFIX.into()
}
fn default_burst_seconds() -> f64 {
    1.0
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl ThrottleConfig {
    /// Limits in the Redis at `redis_url`, with the defaults.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            password_file: None,
            key_prefix: default_prefix(),
            burst_seconds: default_burst_seconds(),
            ttl: default_ttl(),
            timeout: default_timeout(),
        }
    }
}

/// A limit as setpoint writes it to the service's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleState {
    /// Requests per second admitted in the long run.
    pub rate: f64,
    /// The most requests admitted at once.
    pub burst: f64,
    /// Who set it (e.g. `setpoint/fast-scaling`).
    pub set_by: String,
    /// When it was set (setpoint's clock).
    pub set_at: DateTime<Utc>,
    /// When it stops applying (compared with the Redis server's clock by the script).
    pub expires_at: DateTime<Utc>,
}

impl ThrottleState {
    /// The hash fields setpoint writes.
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("rate", self.rate.to_string()),
            ("burst", self.burst.to_string()),
            ("set_by", self.set_by.clone()),
            ("set_at", self.set_at.to_rfc3339()),
            ("expires_at", self.expires_at.to_rfc3339()),
            (
                "expires_at_ms",
                self.expires_at.timestamp_millis().to_string(),
            ),
        ]
    }

    /// The limit a hash holds: `None` for no hash; an error for a hash setpoint did not write.
    fn parse(hash: &HashMap<String, String>) -> Result<Option<ThrottleState>, String> {
        if hash.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            hash.get(name)
                .ok_or_else(|| format!("the hash has no field {name:?}"))
        };
        let number = |name: &str| -> Result<f64, String> {
            field(name)?
                .parse::<f64>()
                .map_err(|_| format!("{name} = {:?} is not a number", hash.get(name)))
        };
        let expires_ms: i64 = field("expires_at_ms")?
            .parse()
            .map_err(|_| "expires_at_ms is not a whole number".to_string())?;
        let expires_at = DateTime::from_timestamp_millis(expires_ms)
            .ok_or_else(|| format!("expires_at_ms = {expires_ms} is out of range"))?;
        let set_at = DateTime::parse_from_rfc3339(field("set_at")?)
            .map_err(|e| format!("set_at: {e}"))?
            .with_timezone(&Utc);
        Ok(Some(ThrottleState {
            rate: number("rate")?,
            burst: number("burst")?,
            set_by: field("set_by")?.clone(),
            set_at,
            expires_at,
        }))
    }

    /// Whether `self`, found in Redis, already is the limit `wanted` sets: same rate and burst,
    /// and not due for a refresh (at least half of `wanted`'s lifetime left).
    pub fn serves(&self, wanted: &ThrottleState) -> bool {
        let lifetime = wanted.expires_at - wanted.set_at;
        self.rate == wanted.rate
            && self.burst == wanted.burst
            && self.expires_at >= wanted.expires_at - lifetime / 2
    }
}

/// The limit `rate` (req/s) set by `set_by` at `now` (to the millisecond): its burst from the
/// configuration, its expiry `ttl` later. Rates are kept to a hundredth so that a rate derived from an observed one
/// does not rewrite the hash for noise.
pub(crate) fn limit(
    config: &ThrottleConfig,
    rate: f64,
    set_by: &str,
    now: DateTime<Utc>,
) -> ThrottleState {
    let rate = (rate * 100.0).round() / 100.0;
    let burst = (rate * config.burst_seconds).max(1.0).ceil();
    let ttl = TimeDelta::from_std(config.ttl).unwrap_or(TimeDelta::MAX);
    // Milliseconds, as the hash and the script keep them: what is read back is what was planned.
    let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    ThrottleState {
        rate,
        burst,
        set_by: set_by.to_string(),
        set_at: now,
        expires_at: now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// A Redis client from a URL and an optional password file.
fn client(
    url: &str,
    password_file: Option<&PathBuf>,
) -> std::result::Result<redis::Client, String> {
    let mut info = url
        .into_connection_info()
        .map_err(|e| format!("redis_url: {e}"))?;
    if info.redis_settings().password().is_some() {
        return Err("redis_url carries a password: put it in password_file instead".into());
    }
    if let Some(path) = password_file {
        let bytes = http::read_file("password_file", path)?;
        let text = String::from_utf8(bytes).map_err(|_| "password_file is not UTF-8")?;
        let password = text.lines().next().unwrap_or_default().to_string();
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info).map_err(|e| format!("redis_url: {e}"))
}

fn connection_config(timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
}

/// Whether trying again could help: the connection or the server had a passing problem.
fn transient(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || !matches!(error.retry_method(), redis::RetryMethod::NoRetry)
}

/// setpoint's side: reads, writes and lifts limits.
pub(crate) struct Throttler {
    config: ThrottleConfig,
    client: redis::Client,
}

impl std::fmt::Debug for Throttler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttler")
            .field("key_prefix", &self.config.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Where a Redis request goes, for errors.
struct At<'a> {
    service: &'a str,
    key: &'a str,
    operation: &'a str,
}

impl At<'_> {
    fn site(&self) -> Box<Site> {
        Site::new(
            NAME,
            self.service,
            format!("redis {}", self.key),
            self.operation,
        )
    }

    fn error(&self, what: &str, error: &redis::RedisError) -> ActError {
        let message = format!("{what}: {}", error_chain(error));
        if transient(error) {
            ActError::Failed {
                site: self.site(),
                message,
            }
        } else {
            ActError::Unusable {
                site: self.site(),
                message,
            }
        }
    }
}

impl Throttler {
    /// Checks the configuration (URL, password file, numbers) before any request.
    pub(crate) fn new(config: ThrottleConfig) -> Result<Self> {
        let error = |message: String| ActError::Config {
            actuator: NAME.into(),
            message,
        };
        if !(config.burst_seconds.is_finite() && config.burst_seconds > 0.0) {
            return Err(error(format!(
                "burst_seconds = {} must be a positive number",
                config.burst_seconds
            )));
        }
        if config.ttl.is_zero() {
            return Err(error("ttl must be longer than zero".into()));
        }
        let client = client(&config.redis_url, config.password_file.as_ref()).map_err(error)?;
        Ok(Self { config, client })
    }

    pub(crate) fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// The key of a service's limit.
    pub(crate) fn key(&self, service: &str) -> String {
        format!("{}{service}", self.config.key_prefix)
    }

    async fn connection(&self, at: &At<'_>) -> Result<MultiplexedConnection> {
        self.client
            .get_multiplexed_async_connection_with_config(&connection_config(self.config.timeout))
            .await
            .map_err(|e| at.error("connect", &e))
    }

    async fn read_with(
        &self,
        at: &At<'_>,
        connection: &mut MultiplexedConnection,
    ) -> Result<Option<ThrottleState>> {
        let hash: HashMap<String, String> = connection
            .hgetall(at.key)
            .await
            .map_err(|e| at.error("HGETALL", &e))?;
        ThrottleState::parse(&hash).map_err(|message| ActError::Unusable {
            site: at.site(),
            message: format!("not a limit setpoint wrote: {message}"),
        })
    }

    /// The limit at `key` for `service`, if any (an expired one included).
    pub(crate) async fn read(&self, service: &str, key: &str) -> Result<Option<ThrottleState>> {
        let at = At {
            service,
            key,
            operation: "read the limit",
        };
        let mut connection = self.connection(&at).await?;
        self.read_with(&at, &mut connection).await
    }

    /// Writes `limit` at `key` (keeping the bucket's own fields) and reads it back.
    pub(crate) async fn write(
        &self,
        service: &str,
        key: &str,
        limit: &ThrottleState,
    ) -> Result<()> {
        let operation = format!("set {} req/s, burst {}", limit.rate, limit.burst);
        let at = At {
            service,
            key,
            operation: &operation,
        };
        let mut connection = self.connection(&at).await?;
        let linger = self.config.ttl.saturating_add(LINGER);
        let linger_ms = i64::try_from(linger.as_millis()).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(key, &limit.fields())
            .ignore()
            .pexpire(key, linger_ms)
            .ignore();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| at.error("MULTI HSET PEXPIRE EXEC", &e))?;
        let stored = self.read_with(&at, &mut connection).await?;
        if stored.as_ref() != Some(limit) {
            return Err(ActError::NotVerified {
                site: at.site(),
                expected: format!("{limit:?}"),
                found: format!("{stored:?}"),
            });
        }
        Ok(())
    }

    /// Deletes the limit at `key` (and the bucket with it) and checks that it is gone.
    pub(crate) async fn lift(&self, service: &str, key: &str) -> Result<()> {
        let at = At {
            service,
            key,
            operation: "lift the limit",
        };
        let mut connection = self.connection(&at).await?;
        connection.del(key).await.map_err(|e| at.error("DEL", &e))?;
        let left: bool = connection
            .exists(key)
            .await
            .map_err(|e| at.error("EXISTS", &e))?;
        if left {
            return Err(ActError::NotVerified {
                site: at.site(),
                expected: "no key".into(),
                found: "the key is still there".into(),
            });
        }
        Ok(())
    }
}

/// What a caller of the script does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Admit the request: a Redis outage never becomes a service outage, but the limit does
    /// not hold while Redis is down.
    #[default]
    Open,
    /// Refuse the request: the limit holds, and so does a Redis outage, for every request.
    Closed,
}

/// The script's answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// Serve the request.
    pub admitted: bool,
    /// A limit is in force (false: no limit, or an expired one).
    pub limited: bool,
    /// Tokens left in the bucket, when limited.
    pub tokens: Option<f64>,
    /// Why Redis gave no answer, when it did not; `admitted` then follows the [`FailMode`].
    pub unavailable: Option<String>,
}

/// The service's side: asks the script whether to admit a request.
///
/// Keeps one multiplexed connection, made again after a connection error. Each call is one
/// EVALSHA (the script is loaded on the first NOSCRIPT).
pub struct ThrottleGate {
    client: redis::Client,
    key_prefix: String,
    fail: FailMode,
    timeout: Duration,
    script: redis::Script,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for ThrottleGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleGate")
            .field("key_prefix", &self.key_prefix)
            .field("fail", &self.fail)
            .finish_non_exhaustive()
    }
}

impl ThrottleGate {
    /// A gate on the Redis at `redis_url` (no password in it), with the default key prefix
    /// and a 200 ms timeout: a request waits for the limiter that long at most.
    pub fn new(redis_url: &str, fail: FailMode) -> Result<Self> {
        let client = client(redis_url, None).map_err(|message| ActError::Config {
            actuator: NAME.into(),
            message,
        })?;
        Ok(Self {
            client,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            fail,
            timeout: Duration::from_millis(200),
            script: redis::Script::new(SCRIPT),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The same gate reading keys under another prefix (as [`ThrottleConfig::key_prefix`]).
    pub fn with_key_prefix(self, prefix: impl Into<String>) -> Self {
        Self {
            key_prefix: prefix.into(),
            ..self
        }
    }

    /// The same gate with another timeout for connecting and for each call.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// The SHA1 the script is called by.
    pub fn script_sha1(&self) -> &str {
        self.script.get_hash()
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut cached = self.connection.lock().await;
        if let Some(connection) = cached.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&connection_config(self.timeout))
            .await?;
        *cached = Some(connection.clone());
        Ok(connection)
    }

    async fn call(&self, service: &str) -> redis::RedisResult<(i64, i64, String)> {
        let mut connection = self.connection().await?;
        let key = format!("{}{service}", self.key_prefix);
        let answer = self
            .script
            .key(key)
            .arg(1)
            .invoke_async(&mut connection)
            .await;
        if let Err(error) = &answer
            && (error.is_unrecoverable_error() || error.is_io_error() || error.is_timeout())
        {
            *self.connection.lock().await = None;
        }
        answer
    }

    /// Whether to serve one request of `service`.
    pub async fn admit(&self, service: &str) -> Admission {
        match self.call(service).await {
            Ok((admitted, limited, tokens)) => Admission {
                admitted: admitted == 1,
                limited: limited == 1,
                tokens: tokens.parse().ok(),
                unavailable: None,
            },
            Err(error) => Admission {
                admitted: self.fail == FailMode::Open,
                limited: false,
                tokens: None,
                unavailable: Some(error_chain(&error)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_limit_round_trips_through_its_hash_fields() {
        let config = ThrottleConfig::new("redis://127.0.0.1:1/");
        let limit = limit(&config, 49.996, "setpoint/fast", at(0));
        assert_eq!(limit.rate, 50.0);
        assert_eq!(limit.burst, 50.0);
        assert_eq!(limit.expires_at, at(300));
        let hash: HashMap<String, String> = limit
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(ThrottleState::parse(&hash).unwrap(), Some(limit));
        assert_eq!(ThrottleState::parse(&HashMap::new()).unwrap(), None);
        let foreign = HashMap::from([("rate".to_string(), "5".to_string())]);
        assert!(ThrottleState::parse(&foreign).is_err());
    }

    #[test]
    fn a_limit_is_refreshed_once_half_its_lifetime_has_passed() {
        let config = ThrottleConfig::new("redis://127.0.0.1:1/");
        let written = limit(&config, 50.0, "setpoint", at(0));
        assert!(written.serves(&limit(&config, 50.0, "setpoint", at(100))));
        assert!(written.serves(&limit(&config, 50.0, "setpoint", at(150))));
        assert!(!written.serves(&limit(&config, 50.0, "setpoint", at(151))));
        assert!(!written.serves(&limit(&config, 40.0, "setpoint", at(10))));
    }

    #[test]
    fn a_password_stays_out_of_the_url() {
        assert!(client("redis://:secret@127.0.0.1:6379/", None).is_err());
        assert!(client("redis://127.0.0.1:6379/0", None).is_ok());
        assert!(client("not a url", None).is_err());
    }
}
