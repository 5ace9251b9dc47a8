//! The HTTP harness: a recorder that answers through a handler.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_TYPE};
use serde_json::Value;

use crate::Running;

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its place in arrival order, 0 for the first.
    pub index: usize,
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path with its query, as sent (e.g. `/apis/apps/v1/…?dryRun=All`).
    pub target: String,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body, empty when there was none.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a header, whatever the case of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query after `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The query's parameters as an API server reads them: empty ones (`…?` or `?&a=b`, which
    /// kube-rs sends) are no parameters.
    pub fn params(&self) -> Vec<&str> {
        self.query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The path with the query's parameters, as an API server reads them.
    pub fn resource(&self) -> String {
        match self.params().as_slice() {
            [] => self.path().to_string(),
            params => format!("{}?{}", self.path(), params.join("&")),
        }
    }

    /// The body as JSON; `null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer. Every answer closes its connection (`Connection: close`), so a stopped fake
/// leaves no kept-alive connection a client could reuse.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Never answer: hold the connection open until the fake stops (a server that hangs).
    pub hang: bool,
    /// Send the body one byte at a time with this pause before each (a server that trickles).
    pub trickle: Option<Duration>,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Response {
        Response::raw(status, "application/json", body.to_string())
    }

    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::raw(status, "text/plain", body.into())
    }

    /// An answer with this content type and body, whatever the body holds (e.g. broken JSON
    /// sent as `application/json`).
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            body: body.into(),
            hang: false,
            trickle: None,
        }
    }

    /// This answer, its body sent one byte at a time with `pause` before each byte.
    pub fn trickled(self, pause: Duration) -> Response {
        Response {
            trickle: Some(pause),
            ..self
        }
    }

    /// No answer at all: the connection stays open until the fake stops.
    pub fn hang() -> Response {
        Response {
            hang: true,
            ..Response::raw(200, "text/plain", "")
        }
    }
}

impl From<(u16, Value)> for Response {
    fn from((status, body): (u16, Value)) -> Response {
        Response::json(status, &body)
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// An HTTP/1.1 server on a free 127.0.0.1 port that records every request and answers each
/// through a handler; it stops when dropped or by [`HttpFake::stop`].
pub struct HttpFake {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    running: Running,
}

impl HttpFake {
    /// Starts a fake that answers each request with `handler`, which may keep state of its
    /// own; the requests are handled one at a time, in arrival order.
    pub fn start<R: Into<Response>>(
        handler: impl Fn(&Request) -> R + Send + Sync + 'static,
    ) -> HttpFake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(move |request: &Request| handler(request).into());
        let log = requests.clone();
        let running = Running::spawn(listener, move |listener| async move {
            let app = axum::Router::new()
                .fallback(move |request| answer(handler.clone(), log.clone(), request));
            let _ = axum::serve(listener, app).await;
        });
        HttpFake {
            url,
            requests,
            running,
        }
    }

    /// Starts a fake that gives every request the same answer.
    pub fn answering(response: Response) -> HttpFake {
        HttpFake::start(move |_| response.clone())
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Stops the fake: the port is closed and open connections end when this returns.
    pub fn stop(mut self) {
        self.running.stop();
    }
}

/// Records `request`, then answers it through `handler`.
async fn answer(
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Request>>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mut request = Request {
        index: 0,
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    {
        let mut log = log.lock().unwrap();
        request.index = log.len();
        log.push(request.clone());
    }
    let response = handler(&request);
    if response.hang {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let body = match response.trickle {
        None => Body::from(response.body),
        Some(pause) => Body::from_stream(futures_util::stream::unfold(
            response.body.into_iter(),
            move |mut bytes| async move {
                let byte = bytes.next()?;
                tokio::time::sleep(pause).await;
                Some((Ok::<_, std::io::Error>(vec![byte]), bytes))
            },
        )),
    };
    axum::response::Response::builder()
        .status(response.status)
        .header(CONTENT_TYPE, response.content_type)
        .header(CONNECTION, "close")
        .body(body)
        .unwrap()
}

/// A Slack-compatible incoming webhook: answers every post `200 ok` in plain text, as Slack does.
pub fn slack_webhook() -> HttpFake {
    HttpFake::answering(Response::text(200, "ok"))
}
