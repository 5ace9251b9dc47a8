//! Who is asking: a bearer token (or the same token in a cookie set by the sign-in form) from
//! the tokens file, or a user and role named by a trusted reverse proxy.
//!
//! Viewers read; approvers also approve and reject. Approving changes production, so it is
//! refused to anyone unauthenticated (401) and to viewers (403), and it is POST only. A browser
//! form is protected from cross-site requests twice: the cookie is `SameSite=Strict`, and the
//! form carries a value derived from the token that another site cannot know.

use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
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

/// The cookie the sign-in form sets.
pub const COOKIE: &str = "setpoint_token";

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
    /// The sign-in cookie: forms must carry the CSRF value.
    Cookie,
    /// The trusted proxy's headers.
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
    /// The value a form posted with the cookie must carry (derived from the token).
    pub csrf: String,
}

struct Token {
    user: String,
    role: Role,
    digest: [u8; 32],
}

/// The configured ways to authenticate.
pub struct Auth {
    tokens: Vec<Token>,
    proxy: Option<setpoint_runtime::ProxyAuthConfig>,
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
        })
    }

    /// Whether any authentication is configured (without any, everyone is a viewer).
    pub fn configured(&self) -> bool {
        !self.tokens.is_empty() || self.proxy.is_some()
    }

    /// Who sent these headers; `None` when they carry no valid credentials.
    pub fn user(&self, headers: &HeaderMap) -> Option<User> {
        if let Some(token) = bearer(headers) {
            return self.by_token(token, Via::Bearer);
        }
        if let Some(token) = cookie(headers, COOKIE) {
            return self.by_token(token, Via::Cookie);
        }
        if let Some(proxy) = &self.proxy {
            let name = header(headers, &proxy.user_header)?;
            let role = Role::parse(header(headers, &proxy.role_header)?)?;
            if name.is_empty() {
                return None;
            }
            return Some(User {
                csrf: csrf_for(name.as_bytes()),
                name: name.to_string(),
                role,
                via: Via::Proxy,
            });
        }
        (!self.configured()).then(|| User {
            name: "anonymous".to_string(),
            role: Role::Viewer,
            via: Via::Anonymous,
            csrf: String::new(),
        })
    }

    /// The user a token belongs to (for the sign-in form).
    pub fn by_token(&self, token: &str, via: Via) -> Option<User> {
        let digest = digest(token.as_bytes());
        // Compare digests in constant time, so response times say nothing about a token.
        let found = self.tokens.iter().find(|t| {
            t.digest
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })?;
        Some(User {
            name: found.user.clone(),
            role: found.role,
            via,
            csrf: csrf_for(token.as_bytes()),
        })
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The form value that proves a POST came from a page setpoint served to this user.
fn csrf_for(secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"setpoint-csrf:");
    hasher.update(secret);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

/// Whether a POST from a browser comes from our own pages: a cross-site `Origin` or
/// `Sec-Fetch-Site` is refused, and a cookie- or proxy-authenticated form must carry the
/// user's CSRF value.
pub fn same_site(headers: &HeaderMap, user: &User, form_csrf: Option<&str>) -> bool {
    if header(headers, "sec-fetch-site").is_some_and(|s| s == "cross-site") {
        return false;
    }
    if let (Some(origin), Some(host)) = (header(headers, "origin"), header(headers, "host")) {
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin != "null" && origin_host != host {
            return false;
        }
    }
    match user.via {
        Via::Bearer => true,
        Via::Cookie | Via::Proxy => form_csrf == Some(user.csrf.as_str()),
        Via::Anonymous => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_lines_and_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# comment\nalice:approver:aaaaaaaaaaaaaaaaaaaa\nbob:viewer:bbbbbbbbbbbbbbbbbbbb\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let auth = Auth {
            tokens: read_tokens(&path).unwrap_or_else(|e| panic!("{e}")),
            proxy: None,
        };
        let alice = auth.by_token("aaaaaaaaaaaaaaaaaaaa", Via::Bearer);
        assert_eq!(
            alice.map(|u| (u.name, u.role)),
            Some(("alice".into(), Role::Approver))
        );
        assert!(auth.by_token("nope", Via::Bearer).is_none());
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
}
