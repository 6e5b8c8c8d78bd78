//! The feed's HTTP server as a calendar app (or a nosy local user) meets it, spoken to over a
//! raw socket so every byte is seen: GET and HEAD of the token's path (HEAD without a body, with
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

/// Sends `request` and reads until the server closes: the whole answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection after one answer")
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn get(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes()
}

/// The status line's code, a header (by lowercase name) and the body of an answer.
fn parse(answer: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn get_head_etag_and_every_refusal() {
    let f = start().await;

    let (status, h, body) = parse(&exchange(f.addr, &get("GET", &f.path, "")).await);
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
    let (status, h, body) = parse(&exchange(f.addr, &get("HEAD", &f.path, "")).await);
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(header(&h, "etag"), Some(ETAG));
    assert_eq!(header(&h, "content-length"), Some(length.as_str()));

    // A query is not part of the path.
    let with_query = format!("{}?refresh=1", f.path);
    assert_eq!(
        parse(&exchange(f.addr, &get("GET", &with_query, "")).await).0,
        200
    );

    // The client has it: 304, no body; also for one of several tags, and for *.
    for tags in [ETAG.to_string(), format!("\"other\", {ETAG}"), "*".into()] {
        let extra = format!("If-None-Match: {tags}\r\n");
        let (status, h, body) = parse(&exchange(f.addr, &get("GET", &f.path, &extra)).await);
        assert_eq!((status, body.as_str()), (304, ""), "{tags}");
        assert_eq!(header(&h, "etag"), Some(ETAG));
    }
    let extra = "If-None-Match: \"stale\"\r\n";
    assert_eq!(
        parse(&exchange(f.addr, &get("GET", &f.path, extra)).await).0,
        200
    );

    // Another token, a prefix of it, no token, the token without the file: 404, nothing told.
    let other = format!("/{}/{}", feed::new_token(), feed::FILE_NAME);
    let prefix = f.path[..f.path.len() - 1].to_string();
    let bare = f.path.trim_end_matches(feed::FILE_NAME).to_string();
    for path in [other.as_str(), prefix.as_str(), "/", bare.as_str()] {
        let (status, _, body) = parse(&exchange(f.addr, &get("GET", path, "")).await);
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("VCALENDAR"));
        let (status, _, body) = parse(&exchange(f.addr, &get("HEAD", path, "")).await);
        assert_eq!((status, body.as_str()), (404, ""), "HEAD {path}");
    }
    // A write, even with the token: 405 and what is allowed.
    let post = get("POST", &f.path, "Content-Length: 2\r\n");
    let mut post = post;
    post.extend_from_slice(b"{}");
    let (status, h, _) = parse(&exchange(f.addr, &post).await);
    assert_eq!(status, 405);
    assert_eq!(header(&h, "allow"), Some("GET, HEAD"));
    // The wrong token with another method tells no more than 404.
    assert_eq!(
        parse(&exchange(f.addr, &get("DELETE", &other, "")).await).0,
        404
    );
}

#[tokio::test]
async fn a_head_over_max_head_is_refused_with_431() {
    let f = start().await;
    let big = format!("X-Padding: {}\r\n", "a".repeat(MAX_HEAD));
    let answer = exchange(f.addr, &get("GET", &f.path, &big)).await;
    assert_eq!(parse(&answer).0, 431, "{answer}");
    // Just under the limit is served.
    let fits = format!("X-Padding: {}\r\n", "a".repeat(MAX_HEAD / 2));
    assert_eq!(
        parse(&exchange(f.addr, &get("GET", &f.path, &fits)).await).0,
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
    let path = f.path.clone();
    let addr = f.addr;
    let late = tokio::spawn(async move { exchange(addr, &get("GET", &path, "")).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !late.is_finished(),
        "a client beyond MAX_CONNECTIONS was served while {MAX_CONNECTIONS} were open"
    );
    // One leaves: the waiting client is served.
    drop(hogs.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), late)
        .await
        .expect("served once a connection is free")
        .unwrap();
    assert_eq!(parse(&answer).0, 200);
}
