//! What a request must satisfy before a handler sees it: a state-changing request must come
//! from setpoint's own origin, and every body must arrive whole, in time and within the cap.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::auth::{Via, header};
use super::{failure, wants_json};

/// The origins setpoint's own pages are served from.
#[derive(Debug, Clone)]
pub struct Origins {
    allowed: Vec<String>,
}

impl Origins {
    /// `public` (the configured `serve.public_url`'s origin) when set; otherwise the address
    /// the server is bound to, and its `localhost` names when it is a loopback address. A
    /// server bound to every address (`0.0.0.0`) without a public URL has no origin of its
    /// own: forms are refused until `serve.public_url` names it.
    pub fn new(public: Option<String>, bound: SocketAddr, tls: bool) -> Self {
        if let Some(origin) = public {
            return Self {
                allowed: vec![origin],
            };
        }
        let scheme = if tls { "https" } else { "http" };
        let port = bound.port();
        let mut hosts = Vec::new();
        if !bound.ip().is_unspecified() {
            hosts.push(bound.to_string());
        }
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
        }
        let allowed = hosts
            .iter()
            .filter_map(|host| url::Url::parse(&format!("{scheme}://{host}/")).ok())
            .map(|url| url.origin().ascii_serialization())
            .collect();
        Self { allowed }
    }

    /// Whether any origin is accepted at all.
    pub fn any(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// The accepted origins, for messages.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a state-changing request comes from one of these origins: its `Origin`, or
    /// without one its `Referer`, must be ours. A `null` origin (sandboxed frames, some
    /// redirects, `file:` pages) is refused, as is a request naming neither, unless it is
    /// authenticated by a bearer token, which browsers never send on their own.
    pub fn check(&self, headers: &HeaderMap, via: Via) -> Result<(), OriginRefusal> {
        if header(headers, "sec-fetch-site").is_some_and(|s| s == "cross-site") {
            return Err(OriginRefusal::CrossSite);
        }
        if let Some(origin) = header(headers, "origin") {
            if origin == "null" {
                return Err(OriginRefusal::Null);
            }
            return if self.allowed.iter().any(|a| a == origin) {
                Ok(())
            } else {
                Err(OriginRefusal::Foreign(origin.to_string()))
            };
        }
        if let Some(referer) = header(headers, "referer") {
            let ours = self.allowed.iter().any(|a| {
                referer == a
                    || referer
                        .strip_prefix(a.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            return if ours {
                Ok(())
            } else {
                Err(OriginRefusal::Foreign(referer.to_string()))
            };
        }
        if via == Via::Bearer {
            Ok(())
        } else {
            Err(OriginRefusal::Missing)
        }
    }
}

/// Why a state-changing request's origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    /// The browser says the request comes from another site.
    #[error("the browser says it came from another site (Sec-Fetch-Site: cross-site)")]
    CrossSite,
    /// `Origin: null`.
    #[error("its origin is null")]
    Null,
    /// `Origin` or `Referer` names another origin.
    #[error("it came from {0}")]
    Foreign(String),
    /// Neither `Origin` nor `Referer`, on a request a browser could have sent.
    #[error("it names no Origin or Referer")]
    Missing,
}

/// How much of a body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The most bytes accepted.
    pub max_bytes: usize,
    /// How long the whole body may take to arrive.
    pub timeout: Duration,
}

/// Reads a request's body whole before its handler runs: a body over the cap is refused with
/// 413 and one that does not arrive in time with 408, so no handler ever sees a partial or
/// empty stand-in for what was sent.
pub async fn bounded_body(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let json =
        wants_json(request.headers()) || request.headers().contains_key(header::AUTHORIZATION);
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        limits.timeout,
        Limited::new(body, limits.max_bytes).collect(),
    );
    let refused = |status: StatusCode, message: String| {
        let mut response = failure(status, &message, json);
        // The rest of the body is never read, so the connection cannot carry another request:
        // say so, or a client may send its next one into a connection being closed.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let bytes: Bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body larger than {} bytes (serve.max_body_bytes)",
                    limits.max_bytes
                ),
            );
        }
        Ok(Err(error)) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("request body not read: {error}"),
            );
        }
        Err(_) => {
            return refused(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} (serve.body_timeout)",
                    humantime::format_duration(limits.timeout)
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn loopback() -> Origins {
        Origins::new(
            None,
            "127.0.0.1:9464".parse().unwrap_or_else(|e| panic!("{e}")),
            false,
        )
    }

    #[test]
    fn a_loopback_server_accepts_its_own_address_and_localhost() {
        let origins = loopback();
        assert_eq!(
            origins.allowed(),
            ["http://127.0.0.1:9464", "http://localhost:9464"]
        );
        for ok in ["http://127.0.0.1:9464", "http://localhost:9464"] {
            assert_eq!(
                origins.check(&headers(&[("origin", ok)]), Via::Session),
                Ok(())
            );
        }
        let referer = headers(&[("referer", "http://127.0.0.1:9464/targets/pg-01")]);
        assert_eq!(origins.check(&referer, Via::Session), Ok(()));
    }

    #[test]
    fn null_absent_and_foreign_origins_are_refused() {
        let origins = loopback();
        let refused = |pairs: &[(&'static str, &str)], via| origins.check(&headers(pairs), via);
        assert_eq!(
            refused(&[("origin", "null")], Via::Session),
            Err(OriginRefusal::Null)
        );
        assert_eq!(
            refused(&[("origin", "null")], Via::Bearer),
            Err(OriginRefusal::Null)
        );
        assert_eq!(refused(&[], Via::Session), Err(OriginRefusal::Missing));
        assert_eq!(refused(&[], Via::Proxy), Err(OriginRefusal::Missing));
        assert_eq!(refused(&[], Via::Bearer), Ok(()));
        assert_eq!(
            refused(&[("origin", "http://127.0.0.1:9465")], Via::Session),
            Err(OriginRefusal::Foreign("http://127.0.0.1:9465".into()))
        );
        // A cross-site Referer without Origin.
        assert!(refused(&[("referer", "https://evil.example/x")], Via::Session).is_err());
        // A prefix of our origin is not our origin.
        assert!(refused(&[("referer", "http://127.0.0.1:94640/")], Via::Session).is_err());
        assert!(
            refused(
                &[("referer", "http://127.0.0.1:9464.evil.example/")],
                Via::Session
            )
            .is_err()
        );
        assert_eq!(
            refused(
                &[
                    ("origin", "http://127.0.0.1:9464"),
                    ("sec-fetch-site", "cross-site")
                ],
                Via::Session
            ),
            Err(OriginRefusal::CrossSite)
        );
    }

    #[test]
    fn a_public_url_replaces_the_listen_address_and_every_address_has_none() {
        let bound = "0.0.0.0:9464".parse().unwrap_or_else(|e| panic!("{e}"));
        let public = Origins::new(Some("https://setpoint.example.com".into()), bound, true);
        let ok = headers(&[("origin", "https://setpoint.example.com")]);
        assert_eq!(public.check(&ok, Via::Session), Ok(()));
        let listen = headers(&[("origin", "http://0.0.0.0:9464")]);
        assert!(public.check(&listen, Via::Session).is_err());
        let none = Origins::new(None, bound, false);
        assert!(!none.any());
        assert!(none.check(&listen, Via::Session).is_err());
        // Default ports are left out, as browsers leave them out of Origin.
        let https = Origins::new(
            None,
            "127.0.0.1:443".parse().unwrap_or_else(|e| panic!("{e}")),
            true,
        );
        assert_eq!(https.allowed()[0], "https://127.0.0.1");
    }
}
