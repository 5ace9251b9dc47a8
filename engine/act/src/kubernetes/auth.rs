//! How the Kubernetes actuator reaches the API server: a kubeconfig (current or named context;
//! server, CA file or data, `insecure-skip-tls-verify`; token, token file, client certificate
//! and key, or basic auth) or the pod's service account (in-cluster).
//!
//! Credential plugins (`exec`, `auth-provider`) are not run: an actuator that executes
//! programs named in a file is a larger trust decision than this crate should make quietly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::http;

/// Where the service account's files are mounted in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How requests are authenticated.
#[derive(Debug, Clone)]
enum Credentials {
    None,
    Token(String),
    /// Re-read on every object operation: projected service-account tokens rotate.
    TokenFile(PathBuf),
    Basic(String, String),
}

/// A resolved connection to one API server.
#[derive(Clone)]
pub struct Connection {
    server: String,
    namespace: Option<String>,
    credentials: Credentials,
    pub(crate) client: reqwest::Client,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and passwords stay out of logs.
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextSpec,
}

#[derive(Deserialize)]
struct ContextSpec {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterSpec,
}

#[derive(Deserialize)]
struct ClusterSpec {
    server: String,
    #[serde(rename = "certificate-authority", default)]
    ca_file: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: UserSpec,
}

#[derive(Deserialize, Default)]
struct UserSpec {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate", default)]
    cert_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-key", default)]
    key_file: Option<PathBuf>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml::Value>,
    #[serde(rename = "auth-provider", default)]
    auth_provider: Option<serde_yaml::Value>,
}

fn decode(setting: &str, data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{setting}: not base64: {e}"))
}

/// Relative paths in a kubeconfig are relative to the file (as kubectl reads them).
fn relative_to(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// A file or inline base64 data, whichever the kubeconfig gives.
fn file_or_data(
    dir: &Path,
    setting: &str,
    file: &Option<PathBuf>,
    data: &Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    match (data, file) {
        (Some(data), _) => decode(&format!("{setting}-data"), data).map(Some),
        (None, Some(path)) => http::read_file(setting, &relative_to(dir, path)).map(Some),
        (None, None) => Ok(None),
    }
}

impl Connection {
    /// Reads a kubeconfig; `context` overrides its `current-context`.
    pub fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
        let file: Kubeconfig = serde_yaml::from_str(&text)
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = context
            .map(str::to_string)
            .or(file.current_context.clone())
            .ok_or_else(|| {
                format!(
                    "kubeconfig {}: no current-context and no context configured",
                    path.display()
                )
            })?;
        let ctx = file
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("kubeconfig {}: no context {name:?}", path.display()))?;
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                format!(
                    "kubeconfig {}: context {name:?} names cluster {:?}, which is not defined",
                    path.display(),
                    ctx.context.cluster
                )
            })?;
        let user = match &ctx.context.user {
            Some(user) => &file
                .users
                .iter()
                .find(|u| &u.name == user)
                .ok_or_else(|| {
                    format!(
                        "kubeconfig {}: context {name:?} names user {user:?}, which is not defined",
                        path.display()
                    )
                })?
                .user,
            None => &UserSpec::default(),
        };
        let server = http::base_url(&cluster.cluster.server)
            .map_err(|e| format!("kubeconfig cluster {:?} server: {e}", ctx.context.cluster))?;
        let mut tls = http::Tls {
            ca_pem: file_or_data(
                dir,
                "certificate-authority",
                &cluster.cluster.ca_file,
                &cluster.cluster.ca_data,
            )?,
            identity_pem: None,
            insecure: cluster.cluster.insecure,
        };
        let cert = file_or_data(dir, "client-certificate", &user.cert_file, &user.cert_data)?;
        let key = file_or_data(dir, "client-key", &user.key_file, &user.key_data)?;
        match (cert, key) {
            (Some(mut cert), Some(key)) => {
                cert.push(b'\n');
                cert.extend(key);
                tls.identity_pem = Some(cert);
            }
            (None, None) => {}
            _ => return Err("kubeconfig user: client certificate and key go together".into()),
        }
        let credentials = match (&user.token, &user.token_file, &user.username) {
            (Some(token), _, _) => Credentials::Token(token.trim().to_string()),
            (None, Some(file), _) => Credentials::TokenFile(relative_to(dir, file)),
            (None, None, Some(name)) => {
                Credentials::Basic(name.clone(), user.password.clone().unwrap_or_default())
            }
            (None, None, None) => Credentials::None,
        };
        if matches!(credentials, Credentials::None)
            && tls.identity_pem.is_none()
            && (user.exec.is_some() || user.auth_provider.is_some())
        {
            return Err(format!(
                "kubeconfig user {:?} uses a credential plugin (exec / auth-provider), which is not supported: give it a token, a token file or a client certificate",
                ctx.context.user.clone().unwrap_or_default()
            ));
        }
        let client = http::client(timeout, tls)?;
        Ok(Self {
            server,
            namespace: ctx.context.namespace.clone(),
            credentials,
            client,
        })
    }

    /// The pod's service account: `KUBERNETES_SERVICE_HOST` / `_PORT` and the token, CA and
    /// namespace files under [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster(timeout: Duration) -> Result<Self, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "in-cluster: KUBERNETES_SERVICE_HOST is not set (not in a pod?)")?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT")
            .map_err(|_| "in-cluster: KUBERNETES_SERVICE_PORT is not set (not in a pod?)")?;
        Self::in_cluster_from(Path::new(SERVICE_ACCOUNT_DIR), &host, &port, timeout)
    }

    /// In-cluster with the service-account files in `dir` and the API server at `host:port`.
    pub fn in_cluster_from(
        dir: &Path,
        host: &str,
        port: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let token = dir.join("token");
        if !token.is_file() {
            return Err(format!(
                "in-cluster: no service-account token at {}",
                token.display()
            ));
        }
        let ca = http::read_file("in-cluster ca.crt", &dir.join("ca.crt"))?;
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        // An IPv6 service address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let server = http::base_url(&format!("https://{host}:{port}"))?;
        let client = http::client(
            timeout,
            http::Tls {
                ca_pem: Some(ca),
                ..http::Tls::default()
            },
        )?;
        Ok(Self {
            server,
            namespace,
            credentials: Credentials::TokenFile(token),
            client,
        })
    }

    /// The API server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The namespace of the kubeconfig context or the service account, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Adds the credentials to a request.
    pub(crate) fn authorise(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.credentials {
            Credentials::None => request,
            Credentials::Token(token) => request.bearer_auth(token),
            Credentials::TokenFile(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
                request.bearer_auth(token.trim())
            }
            Credentials::Basic(user, password) => request.basic_auth(user, Some(password)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_kubeconfig_gives_server_namespace_and_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            r#"
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: local, user: me, namespace: databases}
- name: other
  context: {cluster: local, user: file}
clusters:
- name: local
  cluster:
    server: http://127.0.0.1:6443/
    insecure-skip-tls-verify: true
    extensions: []
users:
- name: me
  user: {token: abc}
- name: file
  user: {tokenFile: token}
- name: plugin
  user: {exec: {command: aws}}
"#,
        )
        .unwrap();
        let conn = Connection::from_kubeconfig(&path, None, TIMEOUT).unwrap();
        assert_eq!(conn.server(), "http://127.0.0.1:6443");
        assert_eq!(conn.namespace(), Some("databases"));
        assert!(matches!(conn.credentials, Credentials::Token(ref t) if t == "abc"));
        let other = Connection::from_kubeconfig(&path, Some("other"), TIMEOUT).unwrap();
        assert!(
            matches!(other.credentials, Credentials::TokenFile(ref p) if p == &dir.path().join("token"))
        );
        let missing = Connection::from_kubeconfig(&path, Some("nope"), TIMEOUT).unwrap_err();
        assert!(missing.contains("no context \"nope\""), "{missing}");
    }

    #[test]
    fn credential_plugins_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n\
             clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n\
             users: [{name: u, user: {exec: {command: aws}}}]\n",
        )
        .unwrap();
        let error = Connection::from_kubeconfig(&path, None, TIMEOUT).unwrap_err();
        assert!(error.contains("credential plugin"), "{error}");
    }

    #[test]
    fn in_cluster_reads_the_service_account() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            Connection::in_cluster_from(dir.path(), "10.0.0.1", "443", TIMEOUT).unwrap_err();
        assert!(error.contains("no service-account token"), "{error}");
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
        let error =
            Connection::in_cluster_from(dir.path(), "10.0.0.1", "443", TIMEOUT).unwrap_err();
        assert!(
            error.contains("no certificate") || error.contains("CA"),
            "{error}"
        );
    }
}
