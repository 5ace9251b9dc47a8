//! Who is asking: a bearer token from the tokens file, a session started by signing in with
//! one, or a user and role named by a trusted reverse proxy.
//!
//! Viewers read; approvers also approve and reject. Approving changes production, so it is
//! refused to anyone unauthenticated (401) and to viewers (403), and it is POST only. A browser
//! form is protected from cross-site requests three times: the session cookie is
//! `SameSite=Strict`, the request's origin must be setpoint's own (see `guard`), and the form
//! carries its session's random CSRF value, which another site cannot know.
//!
//! Sessions live in this process only: a random id in the cookie, never the token, expiring
//! after `serve.session_ttl`; a restart signs everyone out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use setpoint_runtime::ServeConfig;
use sha2::{Digest, Sha256};
/// Why the tokens file could not be used. Messages name the file and the line, never a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("serve.tokens_file: cannot read {}", path.display())]
    Read {
        /// The tokens file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `user:role:token`.
    #[error("{}:{line}: expected user:role:token", path.display())]
    Malformed {
        /// The tokens file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// A line's role is neither `viewer` nor `approver`.
    #[error("{}:{line}: role must be viewer or approver, got {role:?}", path.display())]
    UnknownRole {
        /// The tokens file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The role as written.
        role: String,
    },
    /// A line has no user name, or a token too short to be a secret.
    #[error(
        "{}:{line}: needs a user name and a token of at least 16 characters",
        path.display()
    )]
    Weak {
        /// The tokens file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// The file has no token lines at all.
    #[error("{}: no tokens (user:role:token lines)", path.display())]
    Empty {
        /// The tokens file.
        path: PathBuf,
    },
}

/// The session cookie: a random id naming a session this process keeps.
pub const SESSION_COOKIE: &str = "setpoint_session";

/// At most this many sessions are kept; beyond it the one closest to expiring is dropped, so
/// a flood of sign-ins cannot exhaust memory.
const MAX_SESSIONS: usize = 10_000;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads the pages.
    Viewer,
    /// Also approves and rejects.
    Approver,
}

impl Role {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "viewer" => Some(Role::Viewer),
            "approver" => Some(Role::Approver),
            _ => None,
        }
    }

    /// `viewer` or `approver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
        }
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`: not sent by browsers on their own, so safe from cross-site use.
    Bearer,
    /// A session started on the sign-in page: forms must carry its CSRF value.
    Session,
    /// The trusted proxy's headers (with a session of their own for the CSRF value).
    Proxy,
    /// Nobody: no authentication is configured, everyone may view.
    Anonymous,
}

/// The user behind a request.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's name, recorded with decisions.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// How they were authenticated.
    pub via: Via,
    /// The value a form of this session must carry (random per session; empty without one).
    pub csrf: String,
}

/// A user, and the session cookie to set when this request started a session.
#[derive(Debug)]
pub struct Identified {
    /// Who is asking.
    pub user: User,
    /// `Set-Cookie` for a session started just now (a proxy's user seen without one).
    pub set_cookie: Option<HeaderValue>,
}

struct Token {
    user: String,
    role: Role,
    digest: [u8; 32],
}

struct Session {
    user: String,
    role: Role,
    via: Via,
    csrf: String,
    expires: Instant,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The operating system's random source failed.
    #[error("no random session id: {0}")]
    Random(getrandom::Error),
}

/// The configured ways to authenticate, and the sessions started with them.
pub struct Auth {
    tokens: Vec<Token>,
    proxy: Option<setpoint_runtime::ProxyAuthConfig>,
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    secure_cookies: bool,
}

impl Auth {
    /// Reads the tokens file, if any. Errors name the file and the line, never the token.
    pub fn load(config: &ServeConfig) -> Result<Self, AuthError> {
        let tokens = match &config.tokens_file {
            Some(path) => read_tokens(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            tokens,
            proxy: config.proxy.clone(),
            sessions: Mutex::new(HashMap::new()),
            ttl: config.session_ttl.0,
            secure_cookies: config.tls.is_some(),
        })
    }

    /// Whether any authentication is configured (without any, everyone is a viewer).
    pub fn configured(&self) -> bool {
        !self.tokens.is_empty() || self.proxy.is_some()
    }

    /// Who sent these headers at `now`; `None` when they carry no valid credentials. A proxy's
    /// user seen without a session of theirs gets one (to carry the CSRF value), returned as
    /// the cookie to set.
    pub fn identify(&self, headers: &HeaderMap, now: Instant) -> Option<Identified> {
        if let Some(token) = bearer(headers) {
            return self.by_token(token).map(|(name, role)| Identified {
                user: User {
                    name,
                    role,
                    via: Via::Bearer,
                    csrf: String::new(),
                },
                set_cookie: None,
            });
        }
        let session = cookie(headers, SESSION_COOKIE).and_then(|id| self.session(id, now));
        if let Some(proxy) = &self.proxy {
            let name = header(headers, &proxy.user_header)?;
            let role = Role::parse(header(headers, &proxy.role_header)?)?;
            if name.is_empty() {
                return None;
            }
            // The proxy says who it is on every request; a session only lends its CSRF value,
            // and only to the user it was started for.
            if let Some(user) =
                session.filter(|s| s.via == Via::Proxy && s.name == name && s.role == role)
            {
                return Some(Identified {
                    user,
                    set_cookie: None,
                });
            }
            let (id, csrf) = self.start(name, role, Via::Proxy, now).ok()?;
            return Some(Identified {
                user: User {
                    name: name.to_string(),
                    role,
                    via: Via::Proxy,
                    csrf,
                },
                set_cookie: self.cookie_for(&id),
            });
        }
        if let Some(user) = session.filter(|s| s.via == Via::Session) {
            return Some(Identified {
                user,
                set_cookie: None,
            });
        }
        (!self.configured()).then(|| Identified {
            user: User {
                name: "anonymous".to_string(),
                role: Role::Viewer,
                via: Via::Anonymous,
                csrf: String::new(),
            },
            set_cookie: None,
        })
    }

    /// Signs in with a token from the tokens file: the user and the session cookie to set, or
    /// `None` for an unknown token.
    pub fn sign_in(
        &self,
        token: &str,
        now: Instant,
    ) -> Result<Option<(User, HeaderValue)>, SessionError> {
        let Some((name, role)) = self.by_token(token) else {
            return Ok(None);
        };
        let (id, csrf) = self.start(&name, role, Via::Session, now)?;
        let Some(cookie) = self.cookie_for(&id) else {
            return Ok(None);
        };
        Ok(Some((
            User {
                name,
                role,
                via: Via::Session,
                csrf,
            },
            cookie,
        )))
    }

    /// Ends the session these headers carry, if any.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.lock().remove(id);
        }
    }

    /// The `Set-Cookie` value that clears the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("setpoint_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// How many sessions are live (for tests of expiry and the cap).
    /// How many sessions are live (for tests of expiry and the cap).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map cannot leave a session half-written: inserts and
        // removes are single calls. Keep serving with what is there.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session(&self, id: &str, now: Instant) -> Option<User> {
        let mut sessions = self.lock();
        let session = sessions.get(id)?;
        if session.expires <= now {
            sessions.remove(id);
            return None;
        }
        Some(User {
            name: session.user.clone(),
            role: session.role,
            via: session.via,
            csrf: session.csrf.clone(),
        })
    }

    /// Starts a session: its id and CSRF value.
    fn start(
        &self,
        user: &str,
        role: Role,
        via: Via,
        now: Instant,
    ) -> Result<(String, String), SessionError> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut sessions = self.lock();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                role,
                via,
                csrf: csrf.clone(),
                expires: now + self.ttl,
            },
        );
        Ok((id, csrf))
    }

    fn cookie_for(&self, id: &str) -> Option<HeaderValue> {
        // HttpOnly: scripts cannot read it; SameSite=Strict: other sites cannot send it;
        // Secure over TLS: never sent in clear.
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure_cookies { "; Secure" } else { "" }
        ))
        .ok()
    }

    /// The user and role a token belongs to.
    fn by_token(&self, token: &str) -> Option<(String, Role)> {
        let digest = digest(token.as_bytes());
        let found = self
            .tokens
            .iter()
            .find(|t| constant_time_eq(&t.digest, &digest))?;
        Some((found.user.clone(), found.role))
    }
}

/// Compares without returning early, so response times say nothing about a secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// 32 bytes from the operating system's random source, in hex.
fn random_hex() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(SessionError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read_tokens(path: &Path) -> Result<Vec<Token>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_number = number + 1;
        let mut parts = line.splitn(3, ':');
        let (Some(user), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed {
                path: path.to_path_buf(),
                line: line_number,
            });
        };
        let Some(role) = Role::parse(role) else {
            return Err(AuthError::UnknownRole {
                path: path.to_path_buf(),
                line: line_number,
                role: role.to_string(),
            });
        };
        if user.trim().is_empty() || token.trim().len() < 16 {
            return Err(AuthError::Weak {
                path: path.to_path_buf(),
                line: line_number,
            });
        }
        tokens.push(Token {
            user: user.trim().to_string(),
            role,
            digest: digest(token.trim().as_bytes()),
        });
    }
    if tokens.is_empty() {
        return Err(AuthError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(tokens)
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    header(headers, "authorization")?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a form carries the CSRF value of the session it was posted with. Bearer requests
/// need none: browsers never send a bearer token on their own.
pub fn csrf_matches(user: &User, form_csrf: Option<&str>) -> bool {
    match user.via {
        Via::Bearer => true,
        Via::Session | Via::Proxy => form_csrf.is_some_and(|value| {
            !user.csrf.is_empty() && constant_time_eq(value.as_bytes(), user.csrf.as_bytes())
        }),
        Via::Anonymous => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "aaaaaaaaaaaaaaaaaaaa";

    fn auth(dir: &Path, proxy: bool) -> Auth {
        let path = dir.join("tokens");
        std::fs::write(
            &path,
            format!("# comment\nalice:approver:{ALICE}\nbob:viewer:bbbbbbbbbbbbbbbbbbbb\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let config = ServeConfig {
            tokens_file: Some(path),
            proxy: proxy.then(|| setpoint_runtime::ProxyAuthConfig {
                user_header: "x-user".into(),
                role_header: "x-role".into(),
            }),
            session_ttl: setpoint_runtime::config::HumanDuration(Duration::from_secs(60)),
            ..ServeConfig::default()
        };
        Auth::load(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    /// The session id in a `Set-Cookie` value.
    fn session_id(cookie: &HeaderValue) -> String {
        let text = cookie.to_str().unwrap_or_default();
        text.strip_prefix("setpoint_session=")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn tokens_file_lines_and_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let auth = auth(dir.path(), false);
        let alice = auth.by_token(ALICE);
        assert_eq!(alice, Some(("alice".into(), Role::Approver)));
        assert!(auth.by_token("nope").is_none());
        let path = dir.path().join("tokens");
        std::fs::write(&path, "carol:admin:cccccccccccccccccccc\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let error = read_tokens(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains(":1: role must be viewer or approver"),
            "{error}"
        );
        assert!(!error.contains("cccc"), "a token leaked into {error}");
    }

    #[test]
    fn a_session_is_a_random_id_with_its_own_csrf_value_that_expires() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let auth = auth(dir.path(), false);
        let now = Instant::now();
        let (first, cookie) = auth
            .sign_in(ALICE, now)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("alice's token refused"));
        let text = cookie.to_str().unwrap_or_default().to_string();
        assert!(!text.contains(ALICE), "the token is in the cookie: {text}");
        assert!(
            text.contains("HttpOnly; SameSite=Strict; Max-Age=60"),
            "{text}"
        );
        assert!(!text.contains("Secure"), "{text}");
        let id = session_id(&cookie);
        assert_eq!(id.len(), 64);
        let (second, cookie2) = auth
            .sign_in(ALICE, now)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("alice's token refused"));
        assert_ne!(id, session_id(&cookie2));
        assert_ne!(first.csrf, second.csrf);
        assert_eq!(first.csrf.len(), 64);

        let with_cookie = headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))]);
        let seen = auth
            .identify(&with_cookie, now + Duration::from_secs(59))
            .unwrap_or_else(|| panic!("session not found"));
        assert_eq!(
            (seen.user.name.as_str(), seen.user.via),
            ("alice", Via::Session)
        );
        assert_eq!(seen.user.csrf, first.csrf);
        assert!(csrf_matches(&seen.user, Some(&first.csrf)));
        assert!(!csrf_matches(&seen.user, Some(&second.csrf)));
        assert!(!csrf_matches(&seen.user, None));
        // Expired: gone, and forgotten.
        assert!(
            auth.identify(&with_cookie, now + Duration::from_secs(60))
                .is_none()
        );
        assert_eq!(auth.live(), 1);
        // The old raw-token cookie is no credential.
        let raw = headers(&[("cookie", &format!("setpoint_token={ALICE}"))]);
        assert!(auth.identify(&raw, now).is_none());
        // Signing out ends the session.
        let other = headers(&[(
            "cookie",
            &format!("{SESSION_COOKIE}={}", session_id(&cookie2)),
        )]);
        auth.sign_out(&other);
        assert!(auth.identify(&other, now).is_none());
    }

    #[test]
    fn sessions_are_capped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let auth = auth(dir.path(), false);
        let now = Instant::now();
        for i in 0..(MAX_SESSIONS + 5) {
            let at = now + Duration::from_millis(i as u64);
            let signed = auth.sign_in(ALICE, at).unwrap_or_else(|e| panic!("{e}"));
            assert!(signed.is_some());
        }
        assert_eq!(auth.live(), MAX_SESSIONS);
    }

    #[test]
    fn a_proxy_user_gets_a_session_of_their_own_for_the_csrf_value() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let auth = auth(dir.path(), true);
        let now = Instant::now();
        let first = auth
            .identify(
                &headers(&[("x-user", "alice"), ("x-role", "approver")]),
                now,
            )
            .unwrap_or_else(|| panic!("proxy user refused"));
        let cookie = first
            .set_cookie
            .unwrap_or_else(|| panic!("no session started"));
        let id = session_id(&cookie);
        let again = auth
            .identify(
                &headers(&[
                    ("x-user", "alice"),
                    ("x-role", "approver"),
                    ("cookie", &format!("{SESSION_COOKIE}={id}")),
                ]),
                now,
            )
            .unwrap_or_else(|| panic!("proxy user refused"));
        assert!(again.set_cookie.is_none());
        assert_eq!(again.user.csrf, first.user.csrf);
        // Another user behind the proxy with alice's cookie: not alice's session or CSRF value.
        let mallory = auth
            .identify(
                &headers(&[
                    ("x-user", "mallory"),
                    ("x-role", "approver"),
                    ("cookie", &format!("{SESSION_COOKIE}={id}")),
                ]),
                now,
            )
            .unwrap_or_else(|| panic!("proxy user refused"));
        assert!(mallory.set_cookie.is_some());
        assert_ne!(mallory.user.csrf, first.user.csrf);
        // A fresh server's sessions share nothing with this one's: nothing is computable.
        let other = self::auth(dir.path(), true)
            .identify(
                &headers(&[("x-user", "alice"), ("x-role", "approver")]),
                now,
            )
            .unwrap_or_else(|| panic!("proxy user refused"));
        assert_ne!(other.user.csrf, first.user.csrf);
    }
}
