//! The feed's HTTP side, served by hyper: the listening socket, the token in the URL's path,
//! and the answer to one request (GET or HEAD, with an ETag), bounded in size, time and
//! connections.

use super::FeedBody;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

    /// Serves `body` until `shutdown`: HTTP/1.1 by hyper, one request per connection, at most
    /// [`MAX_CONNECTIONS`] at once, each head at most [`MAX_HEAD`] bytes (431 beyond) and
    /// read within [`READ_TIMEOUT`] (closed otherwise).
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
                let service = service_fn(move |req: Request<Incoming>| {
                    let answer = answer(&req, &token, &body);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .max_header_size(MAX_HEAD)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    }
}

/// The answer to one request: the calendar for GET and HEAD of the token's path (304 when
/// the client has it), 404 for any other path, 405 for another method.
fn answer(req: &Request<Incoming>, token: &Token, body: &FeedBody) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    // Read after the request, so a token renewed while it was on its way already counts.
    // No token (the file gone or damaged) lets no one in.
    let path = token.current().ok().map(|t| format!("/{t}/{FILE_NAME}"));
    if !path.is_some_and(|p| same(req.uri().path().as_bytes(), p.as_bytes())) {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == body.etag || t.trim() == "*");
    let mut r = if matches {
        reply(StatusCode::NOT_MODIFIED, "")
    } else {
        // hyper sends no body to HEAD, with the Content-Length a GET would get.
        Response::new(Full::new(Bytes::from(body.ics.clone())))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    if let Ok(etag) = HeaderValue::from_str(&body.etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
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
    let path = dir.join(TOKEN_FILE);
    if !renew {
        if let Some(t) = read_token(&path)? {
            return Ok(t);
        }
    }
    crate::private_files::create_dir_all(dir)?;
    let token = new_token();
    // One name per process, so two renewing at once do not write into each other's file.
    let tmp = dir.join(format!("{TOKEN_FILE}.{}.tmp", std::process::id()));
    let mut f = crate::private_files::options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}
