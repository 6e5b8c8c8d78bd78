//! The feed's HTTP server as a calendar app (or a nosy local user) meets it (raw sockets for
//! the clients that misbehave): GET and HEAD of the token's path (HEAD without a body, with
//! the GET's length), 304 for an ETag the client has, 404 for any other path, 405 for another
//! method, one request per connection, 431 for a head over MAX_HEAD, a silent client cut
//! after READ_TIMEOUT, and no more than MAX_CONNECTIONS served at once.

use gpubook_client::feed::{self, FeedBody, FeedServer, MAX_CONNECTIONS, MAX_HEAD, READ_TIMEOUT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

const ICS: &str =
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//gpubook//test//EN\r\nEND:VCALENDAR\r\n";
const ETAG: &str = "\"0123456789abcdef\"";

/// A running feed server: its address, the path with its token, and the stop.
struct Running {
    addr: SocketAddr,
    path: String,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Running {
    let token = feed::new_token();
    let server = FeedServer::bind("127.0.0.1:0".parse().unwrap(), token.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (_tx, body) = watch::channel(Arc::new(FeedBody {
        ics: ICS.into(),
        etag: ETAG.into(),
    }));
    // The sender may go: the server keeps the last body.
    std::mem::forget(_tx);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(body, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        path: format!("/{token}/{}", feed::FILE_NAME),
        _stop: stop,
    }
}

/// `method path` with `headers`, on a connection of its own: the status, the headers and the
/// body.
async fn ask(f: &Running, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let url = format!("http://{}{path}", f.addr);
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(Duration::from_secs(5), req.send())
        .await
        .expect("an answer")
        .unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.text().await.unwrap())
}

type Answer = (u16, reqwest::header::HeaderMap, String);

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn get_head_etag_and_every_refusal() {
    let f = start().await;

    let (status, h, body) = ask(&f, "GET", &f.path, &[]).await;
    assert_eq!((status, body.as_str()), (200, ICS));
    assert_eq!(
        header(&h, "content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert_eq!(header(&h, "etag"), Some(ETAG));
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    assert_eq!(
        header(&h, "connection"),
        Some("close"),
        "one request per connection"
    );
    let length = ICS.len().to_string();
    assert_eq!(header(&h, "content-length"), Some(length.as_str()));

    // HEAD: the same head, no body.
    let (status, h, body) = ask(&f, "HEAD", &f.path, &[]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(header(&h, "etag"), Some(ETAG));
    assert_eq!(header(&h, "content-length"), Some(length.as_str()));

    // A query is not part of the path.
    let with_query = format!("{}?refresh=1", f.path);
    assert_eq!(ask(&f, "GET", &with_query, &[]).await.0, 200);

    // The client has it: 304, no body; also for one of several tags, and for *.
    for tags in [ETAG.to_string(), format!("\"other\", {ETAG}"), "*".into()] {
        let (status, h, body) = ask(&f, "GET", &f.path, &[("If-None-Match", &tags)]).await;
        assert_eq!((status, body.as_str()), (304, ""), "{tags}");
        assert_eq!(header(&h, "etag"), Some(ETAG));
    }
    let stale = [("If-None-Match", "\"stale\"")];
    assert_eq!(ask(&f, "GET", &f.path, &stale).await.0, 200);

    // Another token, a prefix of it, no token, the token without the file: 404, nothing told.
    let other = format!("/{}/{}", feed::new_token(), feed::FILE_NAME);
    let prefix = f.path[..f.path.len() - 1].to_string();
    let bare = f.path.trim_end_matches(feed::FILE_NAME).to_string();
    for path in [other.as_str(), prefix.as_str(), "/", bare.as_str()] {
        let (status, _, body) = ask(&f, "GET", path, &[]).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("VCALENDAR"));
        let (status, _, body) = ask(&f, "HEAD", path, &[]).await;
        assert_eq!((status, body.as_str()), (404, ""), "HEAD {path}");
    }
    // A write, even with the token: 405 and what is allowed.
    let (status, h, _) = ask(&f, "POST", &f.path, &[]).await;
    assert_eq!(status, 405);
    assert_eq!(header(&h, "allow"), Some("GET, HEAD"));
    // The wrong token with another method tells no more than 404.
    assert_eq!(ask(&f, "DELETE", &other, &[]).await.0, 404);
}

#[tokio::test]
async fn a_head_over_max_head_is_refused_with_431() {
    let f = start().await;
    let big = "a".repeat(MAX_HEAD);
    assert_eq!(ask(&f, "GET", &f.path, &[("X-Padding", &big)]).await.0, 431);
    // Well under the limit is served.
    let fits = "a".repeat(MAX_HEAD / 2);
    assert_eq!(
        ask(&f, "GET", &f.path, &[("X-Padding", &fits)]).await.0,
        200
    );
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_head_is_cut_after_read_timeout() {
    let f = start().await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: l", f.path).as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(
        READ_TIMEOUT + Duration::from_secs(5),
        s.read_to_end(&mut out),
    )
    .await
    .expect("the server closes a slow client's connection");
    let waited = started.elapsed();
    assert!(
        waited >= READ_TIMEOUT - Duration::from_millis(500),
        "cut after {waited:?}, before READ_TIMEOUT"
    );
    // Closed (or reset) without the calendar.
    let text = String::from_utf8_lossy(&out);
    assert!(r.is_err() || !text.contains("VCALENDAR"), "{text}");
}

#[tokio::test]
async fn no_more_than_max_connections_are_served_at_once() {
    let f = start().await;
    // MAX_CONNECTIONS clients that send half a head and wait.
    let mut hogs = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        hogs.push(s);
    }
    // Let the server take them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("http://{}{}", f.addr, f.path);
    let late = tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !late.is_finished(),
        "a client beyond MAX_CONNECTIONS was served while {MAX_CONNECTIONS} were open"
    );
    // One leaves: the waiting client is served.
    drop(hogs.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), late)
        .await
        .expect("served once a connection is free")
        .unwrap();
    assert_eq!(status, 200);
}
