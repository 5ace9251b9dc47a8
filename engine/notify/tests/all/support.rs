//! Servers for the tests, each on a free 127.0.0.1 port and stopped when dropped: an SMTP sink
//! that records what a client sent, and an HTTP/1.1 receiver (one request per connection, as
//! engine/act's test server) that answers with a handler.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the SMTP sink received it.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// AUTH credentials, (user, password), when the client logged in.
    pub auth: Option<(String, String)>,
    /// The envelope sender (MAIL FROM), without the angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO) that were accepted.
    pub to: Vec<String>,
    /// The message after DATA, headers and body, dot-stuffing undone.
    pub data: String,
}

/// A running SMTP sink.
pub struct SmtpSink {
    /// `127.0.0.1:port`.
    pub server: String,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an SMTP sink; with `reject_rcpt` it answers 550 to every RCPT TO.
pub async fn smtp_sink(reject_rcpt: bool) -> SmtpSink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap().to_string();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let log = mails.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let _ = smtp_session(stream, reject_rcpt, log).await;
            });
        }
    });
    SmtpSink {
        server,
        mails,
        task,
    }
}

async fn smtp_session(
    stream: TcpStream,
    reject_rcpt: bool,
    log: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut mail = Mail::default();
    write.write_all(b"220 sink ESMTP test\r\n").await?;
    loop {
        let line = read_line(&mut read).await?;
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-sink\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n".into()
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            "250 ok\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = line[10..].trim().to_string();
            let encoded = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                read_line(&mut read).await?
            } else {
                initial
            };
            let decoded = String::from_utf8(base64_decode(&encoded)).unwrap();
            let mut parts = decoded.split('\0').skip(1);
            let user = parts.next().unwrap_or_default().to_string();
            let password = parts.next().unwrap_or_default().to_string();
            mail.auth = Some((user, password));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = String::from_utf8(base64_decode(&read_line(&mut read).await?)).unwrap();
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let password = String::from_utf8(base64_decode(&read_line(&mut read).await?)).unwrap();
            mail.auth = Some((user, password));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = angle(&line);
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            if reject_rcpt {
                format!(
                    "550 5.1.1 <{}>: Recipient address rejected: User unknown\r\n",
                    angle(&line)
                )
            } else {
                mail.to.push(angle(&line));
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                let line = read_line(&mut read).await?;
                if line == "." {
                    break;
                }
                let line = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(line);
                data.push_str("\r\n");
            }
            mail.data = data;
            log.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 Ok: queued as TEST1\r\n".into()
        } else if upper == "RSET" {
            mail = Mail {
                auth: mail.auth.take(),
                ..Mail::default()
            };
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// One line without its CRLF; an error at the end of the stream.
async fn read_line(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut line = String::new();
    if read.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The address between `<` and `>`.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

/// Standard base64, enough for AUTH.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.trim().bytes().take_while(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// An address nothing listens on: a port that was free a moment ago.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// An HTTP request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with its query.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Handler = dyn Fn(usize, &Request) -> (u16, String) + Send + Sync;

/// A running HTTP receiver.
pub struct HttpReceiver {
    /// `http://127.0.0.1:port`.
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a receiver; `handler` gets the request's index (0 for the first) and the request,
/// and returns the status and body to answer.
pub async fn http_receiver(
    handler: impl Fn(usize, &Request) -> (u16, String) + Send + Sync + 'static,
) -> HttpReceiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let log = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len() - 1
                };
                let (status, body) = handler(index, &request);
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    if status < 300 { "OK" } else { "Error" },
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    HttpReceiver {
        url,
        requests,
        task,
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}
