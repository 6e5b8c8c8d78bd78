//! The app's calendar feed over every server it has: two real agents (in this process, each
//! on its own socket with simulated GPUs) added to a `Manager` as the app adds servers; the
//! feed URL is fetched over HTTP like a calendar app does. Both servers' bookings are in
//! the one VCALENDAR (UIDs `<id>@<server>`); a cancelled booking turns CANCELLED and a new
//! one appears within seconds; a server added later joins the feed and a removed one
//! leaves it; the ETag answers 304 when nothing changed. With `$GPUBOOK_PYTHON` (or
//! python3) able to import `icalendar`, the body is also parsed by it (else that check says
//! why it is skipped; it fails when `GPUBOOK_REQUIRE_SERVICES=1`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpubook_client::Connection;
use gpubook_core::Booking;
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    calendar, Address, EventPayload, Files, Manager, ReadingsPayload, ServerView, Sink,
};
use gpubook_proto::{CancelRequest, Request, Response};
use gpubook_testkit::agent::InProcessAgent;
use gpubook_testkit::{bookings, radicale, require_python};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Quiet;

impl Sink for Quiet {
    fn server(&self, _: &ServerView) {}
    fn event(&self, _: &EventPayload) {}
    fn readings(&self, _: &ReadingsPayload) {}
}

impl Notifier for Quiet {
    fn show(&self, _: Notice, _: Option<Box<dyn FnOnce() + Send>>) {}
}

/// An agent named `name` in this process, with two simulated GPUs.
async fn agent(name: &str) -> InProcessAgent {
    InProcessAgent::builder(2)
        .name(name)
        .sample_every(Duration::from_secs(5))
        .start()
        .await
}

/// A booking of GPU 0 for two slots from slot `from`.
async fn book(conn: &Connection, from: i64, title: &str) -> Booking {
    bookings::book(conn, &[0], from, from + 2, title).await
}

/// One HTTP/1.1 request to `url` (http://HOST:PORT/PATH): the status code, the headers
/// (names lower-cased) and the body.
async fn http_get(url: &str, if_none_match: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(tag) = if_none_match {
        req.push_str(&format!("If-None-Match: {tag}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("the answer is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// The STATUS of the VEVENT with `uid` in `ics`, if there is one.
fn status_of(ics: &str, uid: &str) -> Option<String> {
    ics.split("BEGIN:VEVENT")
        .skip(1)
        .find(|ev| ev.lines().any(|l| l.trim_end() == format!("UID:{uid}")))
        .and_then(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("STATUS:"))
                .map(|s| s.trim_end().to_string())
        })
}

/// Fetches the feed until `ok` holds for its body; the body.
async fn until(url: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _, body) = http_get(url, None).await;
        assert_eq!(status, 200);
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the feed is:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The (UID, STATUS) of every VEVENT as Python's icalendar parses `ics`; `None` when it
/// cannot be imported (a failure when services are required).
fn parsed_by_icalendar(ics: &str) -> Option<Vec<(String, String)>> {
    if !require_python("the icalendar check", "icalendar") {
        return None;
    }
    let mut child = Command::new(radicale::python())
        .arg("-c")
        .arg(
            r#"
import sys
from icalendar import Calendar
cals = Calendar.from_ical(sys.stdin.read(), multiple=True)
assert len(cals) == 1, f"{len(cals)} calendars"
for ev in cals[0].walk("VEVENT"):
    print(f"{ev['UID']} {ev['STATUS']}")
"#,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "icalendar rejected the feed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .collect();
    v.sort();
    Some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_carries_every_server_and_follows_changes() {
    let (a, b, c) = (
        agent("lab-a").await,
        agent("lab-b").await,
        agent("lab-c").await,
    );
    let conn_a = Connection::unix(&a.socket(), "test").await.unwrap();
    let conn_b = Connection::unix(&b.socket(), "test").await.unwrap();
    let conn_c = Connection::unix(&c.socket(), "test").await.unwrap();
    let on_a = book(&conn_a, 0, "on a").await;
    let on_b = book(&conn_b, 0, "on b").await;
    let uid_a = format!("{}@lab-a", on_a.id);
    let uid_b = format!("{}@lab-b", on_b.id);

    let app = tempfile::tempdir().unwrap();
    let m = Manager::new(
        Files {
            settings: app.path().join("settings.json"),
            last_seen: app.path().join("last-seen.json"),
        },
        Arc::new(Quiet),
        Arc::new(Quiet),
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.add("local", "This computer", Address::Unix(a.socket()));
    m.add("lab-b", "lab-b", Address::Unix(b.socket()));
    let url = calendar::serve_feed(m.clone(), app.path()).await.unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The token is kept: the same URL after a restart.
    let token = std::fs::read_to_string(app.path().join("feed-token")).unwrap();
    assert!(url.contains(token.trim()), "{url}");

    let t0 = Instant::now();
    let body = until(&url, "both servers' bookings", |ics| {
        status_of(ics, &uid_a).is_some() && status_of(ics, &uid_b).is_some()
    })
    .await;
    eprintln!("both servers in the feed after {:?}", t0.elapsed());
    assert_eq!(body.matches("BEGIN:VCALENDAR").count(), 1, "{body}");
    assert_eq!(body.matches("BEGIN:VEVENT").count(), 2, "{body}");
    assert_eq!(status_of(&body, &uid_a).as_deref(), Some("CONFIRMED"));
    if let Some(events) = parsed_by_icalendar(&body) {
        let mut want = vec![
            (uid_a.clone(), "CONFIRMED".to_string()),
            (uid_b.clone(), "CONFIRMED".to_string()),
        ];
        want.sort();
        assert_eq!(events, want);
    }

    // Nothing changed: the ETag says so.
    let (_, headers, _) = http_get(&url, None).await;
    let etag = header(&headers, "etag").to_string();
    assert!(etag.starts_with('"'), "{headers:?}");
    let (status, _, _) = http_get(&url, Some(&etag)).await;
    assert_eq!(status, 304);

    // A cancel on one server and a new booking on the other show within seconds.
    match conn_b
        .request(Request::Cancel(CancelRequest { id: on_b.id }))
        .await
    {
        Ok(Response::Booking(_)) => {}
        other => panic!("expected the cancelled booking, got {other:?}"),
    }
    let more = book(&conn_a, 4, "later on a").await;
    let uid_more = format!("{}@lab-a", more.id);
    let t1 = Instant::now();
    let body = until(&url, "the cancel and the new booking", |ics| {
        status_of(ics, &uid_b).is_none_or(|s| s == "CANCELLED")
            && status_of(ics, &uid_more).is_some()
    })
    .await;
    eprintln!(
        "a cancel and a new booking in the feed after {:?}",
        t1.elapsed()
    );
    assert_eq!(status_of(&body, &uid_a).as_deref(), Some("CONFIRMED"));
    let (status, _, _) = http_get(&url, Some(&etag)).await;
    assert_eq!(status, 200, "the ETag changed with the events");

    // A server added later joins the feed; a removed one leaves it.
    let on_c = book(&conn_c, 0, "on c").await;
    let uid_c = format!("{}@lab-c", on_c.id);
    m.add("lab-c", "lab-c", Address::Unix(c.socket()));
    until(&url, "the added server's booking", |ics| {
        status_of(ics, &uid_c).is_some()
    })
    .await;
    m.remove("lab-b").unwrap();
    let body = until(&url, "the removed server's events to leave", |ics| {
        !ics.contains("@lab-b")
    })
    .await;
    assert!(status_of(&body, &uid_a).is_some() && status_of(&body, &uid_c).is_some());
    if let Some(events) = parsed_by_icalendar(&body) {
        let uids: Vec<&str> = events.iter().map(|(u, _)| u.as_str()).collect();
        assert!(
            uids.contains(&uid_c.as_str()) && !uids.contains(&uid_b.as_str()),
            "{events:?}"
        );
    }

    // A wrong token finds nothing.
    let wrong = url.replace(token.trim(), &"0".repeat(32));
    assert_eq!(http_get(&wrong, None).await.0, 404);
}
