//! Fakes of the services setpoint talks to, for the tests of every crate (a dev-dependency
//! only, never published): one HTTP harness ([`HttpFake`]) that records each request and
//! answers through a handler, the fakes built on it ([`FakeKube`], a Kubernetes API server;
//! [`slack_webhook`], an incoming webhook), and an SMTP sink ([`SmtpSink`]). One copy of each,
//! so a fix to how a fake speaks its protocol reaches every suite.
//!
//! Each server binds a free port on 127.0.0.1 and runs on its own thread with its own Tokio
//! runtime, so the same fake serves a test that blocks on a child process and an async test
//! alike; it stops when dropped, and nothing it spawned outlives it.
//!
//! The HTTP harness is axum (the `serve` command's server, already built by the workspace), so
//! the fakes speak the HTTP/1.1 that clients meet in production rather than a hand-parsed subset.

// A fake that cannot bind, build its runtime or lock its log has no caller to report to but
// the test that started it, and a panic is how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http;
mod kube;
pub mod load;
pub mod public_series;
mod smtp;
mod tls;

pub use http::{HttpFake, Request, Response, slack_webhook};
pub use kube::{FakeKube, merge_patch};
pub use smtp::{Mail, SmtpSink};
pub use tls::make_certificates;

use std::net::{SocketAddr, TcpListener};

/// An address nothing listens on: a 127.0.0.1 port that was free a moment ago.
pub fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A server's thread and the way to end it: the thread owns the runtime, so when it returns
/// every connection task is dropped with the runtime.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Serves `listener` with `serve` on a new thread until [`Running::stop`].
    fn spawn<F>(
        listener: TcpListener,
        serve: impl FnOnce(tokio::net::TcpListener) -> F + Send + 'static,
    ) -> Running
    where
        F: Future<Output = ()>,
    {
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    () = serve(listener) => {}
                    _ = stopped => {}
                }
            });
        });
        Running {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Closes the port and ends every connection; returns once the thread has.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
