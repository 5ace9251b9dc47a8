//! An SMTP sink. SMTP is not HTTP, so this is a small Tokio TCP server of its own.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Running;

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

/// An SMTP server on a free 127.0.0.1 port that accepts (or refuses) every message and records
/// what the client sent; it stops when dropped. It speaks just enough SMTP for lettre: EHLO with
/// AUTH PLAIN and LOGIN offered, no STARTTLS.
pub struct SmtpSink {
    server: String,
    mails: Arc<Mutex<Vec<Mail>>>,
    _running: Running,
}

impl SmtpSink {
    /// Starts a sink; with `reject_rcpt` it answers 550 to every RCPT TO.
    pub fn start(reject_rcpt: bool) -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let log = mails.clone();
        let running = Running::spawn(listener, move |listener| async move {
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
            _running: running,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
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
