//! A secret from the configuration — a bearer token, a password, a webhook URL, an
//! authentication header — that prints as `(redacted)` wherever it goes: `config check`,
//! errors, logs, traces, the journal, the page, notifications. Only
//! [`Secret::expose`], at the point of use, gives the value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as.
pub const REDACTED: &str = "(redacted)";

/// A secret value. Read from the configuration as a plain string; written, debugged and
/// displayed as [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (a header, a request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// `url` with the password of its user information, if any, replaced by [`REDACTED`]: what
/// may be shown of a URL that carries credentials.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:{REDACTED}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The user name and password in `url`'s user information, and the URL without them.
pub fn split_url_credentials(url: &str) -> (String, Option<(String, Secret)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}{tail}"),
                Some((user.to_string(), Secret::new(password))),
            )
        }
        None => (url.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        for shown in [
            format!("{secret}"),
            format!("{secret:?}"),
            serde_json::to_string(&secret).unwrap(),
            format!("{:?}", Some(secret.clone())),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn url_credentials_are_redacted_or_split_off() {
        let url = "https://ops:hunter2@tsdb.example:8428/select/0?x=1";
        assert_eq!(
            redact_url(url),
            "https://ops:(redacted)@tsdb.example:8428/select/0?x=1"
        );
        let (bare, credentials) = split_url_credentials(url);
        assert_eq!(bare, "https://tsdb.example:8428/select/0?x=1");
        let (user, password) = credentials.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("ops", "hunter2"));
        assert_eq!(redact_url("http://127.0.0.1:9090"), "http://127.0.0.1:9090");
        assert_eq!(
            split_url_credentials("http://h/a@b").1,
            None,
            "an @ in the path"
        );
    }
}
