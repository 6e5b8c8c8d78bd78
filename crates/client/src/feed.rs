//! The subscription feed: a read-only iCalendar URL on 127.0.0.1 for calendar apps that
//! subscribe to one (Thunderbird, GNOME Calendar, Apple Calendar), kept current from the
//! agent's event stream.
//!
//! The URL's path holds a random token (128 bits); any other path is 404, so another local
//! user who finds the port learns nothing. A feed whose token is kept in a file
//! ([`FeedServer::bind_stored`]) reads that file for every request, so a token renewed by
//! another process (`gpubook feed --new-token`, [`stored_token`]) stops the old URL at once. One request per connection, GET or HEAD, with an
//! ETag so a polling app downloads the calendar only when it changed. Requests are bounded:
//! a head of at most [`MAX_HEAD`] bytes, read within [`READ_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] at a time.

use crate::connection::Pushed;
use crate::ical::{self, CalendarContext, EventData};
use crate::live::{LiveEvent, LiveEvents};
use chrono::Utc;
use gpubook_core::{Booking, BookingId};
use std::collections::BTreeMap;
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

/// The calendar as served, with its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBody {
    /// The VCALENDAR.
    pub ics: String,
    /// A quoted entity tag that changes with the content.
    pub etag: String,
}

/// The bookings a feed shows, and the calendar made of them.
#[derive(Debug)]
pub struct Feed {
    /// The server, its GPUs, whose calendar.
    ctx: CalendarContext,
    /// Every booking shown, by id.
    bookings: BTreeMap<BookingId, Booking>,
    /// The current calendar, for the server's connections.
    tx: watch::Sender<Arc<FeedBody>>,
}

impl Feed {
    /// A feed of `bookings` (those `ctx` holds).
    pub fn new(ctx: CalendarContext, bookings: Vec<Booking>) -> Self {
        let (tx, _) = watch::channel(Arc::new(FeedBody {
            ics: String::new(),
            etag: String::new(),
        }));
        let mut feed = Self {
            ctx,
            bookings: BTreeMap::new(),
            tx,
        };
        feed.replace(bookings);
        feed
    }

    /// The current calendar, updated as the feed changes.
    pub fn body(&self) -> watch::Receiver<Arc<FeedBody>> {
        self.tx.subscribe()
    }

    /// Shows exactly `bookings` (after a fresh listing).
    pub fn replace(&mut self, bookings: Vec<Booking>) {
        self.bookings = bookings
            .into_iter()
            .filter(|b| self.ctx.holds(b))
            .map(|b| (b.id, b))
            .collect();
        self.render();
    }

    /// Shows `b` as it is now (from an event); an older revision than the one shown is
    /// ignored.
    pub fn apply(&mut self, b: &Booking) {
        if !self.ctx.holds(b) {
            return;
        }
        if self
            .bookings
            .get(&b.id)
            .is_some_and(|old| old.revision > b.revision)
        {
            return;
        }
        self.bookings.insert(b.id, b.clone());
        self.render();
    }

    fn render(&mut self) {
        let events: Vec<EventData> = self
            .bookings
            .values()
            .map(|b| EventData::from_booking(b, &self.ctx))
            .collect();
        self.tx
            .send_replace(Arc::new(render(&ical::calendar_name(&self.ctx), &events)));
    }
}

/// The calendar named `name` of `events`, with its ETag.
fn render(name: &str, events: &[EventData]) -> FeedBody {
    let ics = ical::calendar(name, events, Utc::now());
    // The ETag covers what the events say, not the DTSTAMP of this rendering.
    let key = serde_json::to_vec(events).unwrap_or_default();
    let etag = format!("\"{:016x}\"", fnv1a(&key));
    FeedBody { ics, etag }
}

/// Several servers' bookings as one calendar: one part per server (its context and
/// bookings, each event's UID `<id>@<server>`), rendered into one VCALENDAR whose ETag
/// covers the events of every part. Cheap to clone; the clones share the parts, so one
/// follower per server can keep its own part current.
#[derive(Debug, Clone)]
pub struct FeedSet {
    inner: Arc<std::sync::Mutex<SetInner>>,
}

#[derive(Debug)]
struct SetInner {
    /// The calendar's name.
    name: String,
    /// Per server (by the caller's key): its context and the bookings shown.
    parts: BTreeMap<String, (CalendarContext, BTreeMap<BookingId, Booking>)>,
    /// The current calendar.
    tx: watch::Sender<Arc<FeedBody>>,
}

impl SetInner {
    /// Renders the parts; publishes only when the events changed (the same ETag).
    fn render(&mut self) {
        let events: Vec<EventData> = self
            .parts
            .values()
            .flat_map(|(ctx, bookings)| {
                bookings
                    .values()
                    .map(move |b| EventData::from_booking(b, ctx))
            })
            .collect();
        let body = render(&self.name, &events);
        self.tx.send_if_modified(|old| {
            if old.etag == body.etag {
                return false;
            }
            *old = Arc::new(body);
            true
        });
    }
}

impl FeedSet {
    /// An empty calendar named `name` (no server yet).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let (tx, _) = watch::channel(Arc::new(render(&name, &[])));
        Self {
            inner: Arc::new(std::sync::Mutex::new(SetInner {
                name,
                parts: BTreeMap::new(),
                tx,
            })),
        }
    }

    /// The current calendar, updated as any part changes.
    pub fn body(&self) -> watch::Receiver<Arc<FeedBody>> {
        self.inner.lock().unwrap().tx.subscribe()
    }

    /// Server `key`'s part shows exactly `bookings` (those `ctx` holds), after a fresh
    /// listing; a new key adds a part.
    pub fn replace(&self, key: &str, ctx: CalendarContext, bookings: Vec<Booking>) {
        let bookings = bookings
            .into_iter()
            .filter(|b| ctx.holds(b))
            .map(|b| (b.id, b))
            .collect();
        let mut inner = self.inner.lock().unwrap();
        inner.parts.insert(key.to_string(), (ctx, bookings));
        inner.render();
    }

    /// Shows `b` as it is now in server `key`'s part (from an event); ignored without such a
    /// part, or when older than the revision shown.
    pub fn apply(&self, key: &str, b: &Booking) {
        let mut inner = self.inner.lock().unwrap();
        let Some((ctx, bookings)) = inner.parts.get_mut(key) else {
            return;
        };
        if !ctx.holds(b)
            || bookings
                .get(&b.id)
                .is_some_and(|old| old.revision > b.revision)
        {
            return;
        }
        bookings.insert(b.id, b.clone());
        inner.render();
    }

    /// Drops server `key`'s part (the server was removed): its events leave the calendar.
    pub fn remove(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap();
        if inner.parts.remove(key).is_some() {
            inner.render();
        }
    }

    /// The keys of the parts.
    pub fn servers(&self) -> Vec<String> {
        self.inner.lock().unwrap().parts.keys().cloned().collect()
    }
}

/// Keeps `feed` current from a live session's stream (see [`crate::live`]) until
/// `shutdown` or the session's end: the bookings are listed again at each (re)connection and
/// the events applied in between. While the agent is away the feed keeps serving what it had.
pub async fn keep_current(
    mut events: LiveEvents,
    feed: &mut Feed,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => return,
            e = events.recv() => e,
        };
        match next {
            None => return,
            Some(LiveEvent::Connected { conn, .. }) => {
                // A failed listing keeps what the feed showed; the events still apply.
                if let Ok(bookings) = feed.ctx.bookings(&conn).await {
                    feed.replace(bookings);
                }
            }
            Some(LiveEvent::Pushed(Pushed::Event(e))) => feed.apply(&e.booking),
            Some(_) => {}
        }
    }
}

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

fn fnv1a(bytes: &[u8]) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ical::Scope;
    use gpubook_core::{BookingState, Gpu, GpuUuid, Interval};

    fn ctx(server: &str) -> CalendarContext {
        CalendarContext {
            server: server.into(),
            gpus: vec![Gpu {
                uuid: GpuUuid(format!("{server}-GPU-0")),
                index: 0,
                name: "NVIDIA H200".into(),
                memory_total: 1 << 37,
                server: server.into(),
                simulated: true,
            }],
            viewer: "alice".into(),
            with_commands: false,
            scope: Scope::Mine,
        }
    }

    fn booking(server: &str, id: u64, owner: &str, revision: u32) -> Booking {
        let t = chrono::DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        Booking {
            id: BookingId(id),
            owner: owner.into(),
            gpus: vec![GpuUuid(format!("{server}-GPU-0"))],
            interval: Interval::new(t, t + chrono::Duration::hours(1)).unwrap(),
            title: format!("run {id}"),
            state: BookingState::Confirmed,
            job: None,
            asap: None,
            pending_reason: None,
            created_at: t,
            revision,
            pending_since: None,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        }
    }

    fn vevents(ics: &str) -> usize {
        ics.matches("BEGIN:VEVENT").count()
    }

    #[test]
    fn a_set_renders_every_server_in_one_calendar() {
        let set = FeedSet::new("My GPU bookings");
        let body = set.body();
        let empty = body.borrow().clone();
        assert_eq!(empty.ics.matches("BEGIN:VCALENDAR").count(), 1);
        assert_eq!(vevents(&empty.ics), 0);

        set.replace(
            "a",
            ctx("lab-a"),
            vec![
                booking("lab-a", 1, "alice", 1),
                booking("lab-a", 2, "bob", 1),
            ],
        );
        set.replace("b", ctx("lab-b"), vec![booking("lab-b", 1, "alice", 1)]);
        let both = body.borrow().clone();
        assert_eq!(both.ics.matches("BEGIN:VCALENDAR").count(), 1);
        assert_eq!(vevents(&both.ics), 2, "bob's booking is not alice's");
        assert!(both.ics.contains("UID:1@lab-a"));
        assert!(both.ics.contains("UID:1@lab-b"));
        assert!(both.ics.contains("X-WR-CALNAME:My GPU bookings"));
        assert_ne!(both.etag, empty.etag);
        assert_eq!(set.servers(), ["a", "b"]);

        // The same listing again: nothing changes, not even the ETag.
        set.replace("b", ctx("lab-b"), vec![booking("lab-b", 1, "alice", 1)]);
        assert_eq!(body.borrow().etag, both.etag);

        // A change on either server changes the ETag.
        let mut moved = booking("lab-b", 1, "alice", 2);
        moved.title = "moved".into();
        set.apply("b", &moved);
        let after_b = body.borrow().clone();
        assert_ne!(after_b.etag, both.etag);
        assert!(after_b.ics.contains("moved"));
        // An older revision is ignored.
        set.apply("b", &booking("lab-b", 1, "alice", 1));
        assert_eq!(body.borrow().etag, after_b.etag);

        set.apply("a", &booking("lab-a", 3, "alice", 1));
        let after_a = body.borrow().clone();
        assert_ne!(after_a.etag, after_b.etag);
        assert!(after_a.ics.contains("UID:3@lab-a"));
        assert_eq!(vevents(&after_a.ics), 3);
        // An event for a server without a part is ignored.
        set.apply("c", &booking("lab-c", 9, "alice", 1));
        assert_eq!(body.borrow().etag, after_a.etag);

        // A removed server's events leave the calendar.
        set.remove("a");
        let without_a = body.borrow().clone();
        assert_eq!(vevents(&without_a.ics), 1);
        assert!(!without_a.ics.contains("@lab-a"));
        assert_ne!(without_a.etag, after_a.etag);
        assert_eq!(set.servers(), ["b"]);
    }
}
