//! The feed's HTTP side: the listening socket, the token in the URL's path, and the answer to
//! one request (GET or HEAD, with an ETag), bounded in size, time and connections.

use super::FeedBody;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The file name after the token.
pub const FILE_NAME: &str = "gpubook.ics";

/// A new random token for the feed's path: 128 bits, hex.
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a feed's token comes from.
#[derive(Clone)]
enum Token {
    /// Given once, for the feed's life.
    Fixed(Arc<str>),
    /// The `feed-token` file [`stored_token`] keeps, read for every request so a renewal
    /// elsewhere takes effect at once; a missing or damaged file lets no one in.
    Stored(Arc<std::path::Path>),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The token is the feed's only key.
            Token::Fixed(_) => f.write_str("Fixed(hidden)"),
            Token::Stored(p) => f.debug_tuple("Stored").field(p).finish(),
        }
    }
}

impl Token {
    /// The token now.
    fn current(&self) -> std::io::Result<String> {
        match self {
            Token::Fixed(t) => Ok(t.to_string()),
            Token::Stored(path) => read_token(path)?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds no feed token", path.display()),
                )
            }),
        }
    }
}

/// The feed's listening socket.
#[derive(Debug)]
pub struct FeedServer {
    /// Where it listens.
    listener: TcpListener,
    /// The path's secret, or where to read it.
    token: Token,
}

impl FeedServer {
    /// Listens on `addr` (127.0.0.1 and a port; port 0 picks a free one), with `token` for
    /// the feed's life.
    pub async fn bind(addr: SocketAddr, token: String) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            token: Token::Fixed(token.into()),
        })
    }

    /// Listens on `addr` with the token kept in `dir` ([`stored_token`]: made on first use, or
    /// anew when `renew`), and reads that token again for every request: a renewal by
    /// another process (`gpubook feed --new-token`) stops the old URL here at once, and a
    /// removed token file stops the feed's URL altogether.
    pub async fn bind_stored(
        addr: SocketAddr,
        dir: &std::path::Path,
        renew: bool,
    ) -> std::io::Result<Self> {
        stored_token(dir, renew)?;
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            token: Token::Stored(dir.join(TOKEN_FILE).into()),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The URL to subscribe to, with the token as it is now.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!(
            "http://{}/{}/{FILE_NAME}",
            self.local_addr()?,
            self.token.current()?
        ))
    }

    /// Serves `body` until `shutdown`.
    pub async fn run(
        self,
        body: watch::Receiver<Arc<FeedBody>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => return,
                p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return,
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    // Out of descriptors and the like: wait a little rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let body = body.borrow().clone();
            let token = self.token.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &token, &body).await;
                drop(permit);
            });
        }
    }
}

/// Answers one request.
async fn serve(mut stream: TcpStream, token: &Token, body: &FeedBody) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                &[],
                b"",
                true,
            )
            .await
        }
        _ => return Ok(()),
    };
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        request.next().unwrap_or_default(),
        request.next().unwrap_or_default(),
    );
    let target = target.split('?').next().unwrap_or_default();
    // Read after the request, so a token renewed while it was on its way already counts.
    // No token (the file gone or damaged) lets no one in.
    let path = token.current().ok().map(|t| format!("/{t}/{FILE_NAME}"));
    if !path.is_some_and(|p| same(target.as_bytes(), p.as_bytes())) {
        return respond(
            &mut stream,
            "404 Not Found",
            &[],
            b"not found\n",
            method != "HEAD",
        )
        .await;
    }
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"",
            true,
        )
        .await;
    }
    let matches = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("if-none-match"))
        .any(|(_, v)| {
            v.split(',')
                .any(|t| t.trim() == body.etag || t.trim() == "*")
        });
    let headers = [
        ("Content-Type", "text/calendar; charset=utf-8"),
        ("ETag", body.etag.as_str()),
        ("Cache-Control", "no-cache"),
    ];
    if matches {
        return respond(&mut stream, "304 Not Modified", &headers, b"", false).await;
    }
    respond(
        &mut stream,
        "200 OK",
        &headers,
        body.ics.as_bytes(),
        method == "GET",
    )
    .await
}

/// The request head up to the blank line; `None` when it is longer than [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

/// Compares in constant time (`subtle`), so timing does not tell the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The file in the state directory that keeps the feed's token.
pub const TOKEN_FILE: &str = "feed-token";

/// The token in `path`; `None` when there is no file or it holds no token.
fn read_token(path: &std::path::Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() == 32 && t.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(t.trim().to_string()))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The feed's token kept in `dir` (so a subscribed URL keeps working across restarts), made
/// on first use or when `renew`; the file is readable by its owner only. It is replaced by a
/// rename, so a feed reading it ([`FeedServer::bind_stored`]) sees the old token or the new
/// one, never half of either.
pub fn stored_token(dir: &std::path::Path, renew: bool) -> std::io::Result<String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = dir.join(TOKEN_FILE);
    if !renew {
        if let Some(t) = read_token(&path)? {
            return Ok(t);
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let token = new_token();
    // One name per process, so two renewing at once do not write into each other's file.
    let tmp = dir.join(format!("{TOKEN_FILE}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}
