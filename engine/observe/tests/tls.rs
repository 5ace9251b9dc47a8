//! TLS with a private CA: a Prometheus API served over HTTPS on 127.0.0.1 with a certificate
//! signed by a throwaway CA (made with the `openssl` command), answered by a small Python
//! server. With `ca_file` the source trusts it; without, the error names the certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use setpoint_observe::prometheus::Auth;
use setpoint_observe::{MetricSource, ObserveError, PrometheusConfig, PrometheusSource};

const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("authorization") != "Bearer s3cret":
            self.send_response(401); self.end_headers(); return
        body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"pg_up","instance":"db-1:9187"},"value":[1795413600,"1"]}]}}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The HTTPS server, killed by PID when dropped.
struct Https {
    child: Child,
    port: u16,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Https {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the HTTPS server did not start: {line:?}")
    });
    Https { child, port }
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    setpoint_test_support::make_certificates(dir.path());
    let server = start(dir.path());
    let url = format!("https://127.0.0.1:{}", server.port);
    let settings = PrometheusConfig {
        retries: 0,
        auth: Some(Auth::Bearer {
            token: "s3cret".into(),
        }),
        ..PrometheusConfig::new(&url)
    };

    let trusting = PrometheusSource::new(PrometheusConfig {
        ca_file: Some(dir.path().join("ca.pem")),
        ..settings.clone()
    })
    .unwrap();
    let targets = trusting.discover("postgres").await.unwrap();
    let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["db-1:9187"]);

    let untrusting = PrometheusSource::new(settings).unwrap();
    let error = untrusting.discover("postgres").await.unwrap_err();
    assert!(matches!(error, ObserveError::Unreachable { .. }), "{error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "the error names the certificate: {error}"
    );
}
