//! CalDAV discovery against two real servers, Radicale and Xandikos: from the server's bare
//! address to the person's calendars (RFC 6764 `.well-known`, current-user-principal,
//! calendar-home-set), a "GPU bookings" calendar made with MKCALENDAR, and a sync into it read
//! back by Python's icalendar. Each error is the one it says: a wrong password, a server that
//! is not CalDAV, an account without a calendar home. And the conditional writes observed: an
//! edit on the server between the sync's read and its write is refused with 412, counted, and
//! the sync converges.

use gpubook_client::caldav::{self, Collection, DiscoverError, Discovery, Syncer};
use gpubook_client::ical::{CalendarContext, Scope};
use gpubook_client::secrets::Secret;
use gpubook_testkit::agent::SERVER;
use gpubook_testkit::bookings::{book, calendar_agent, move_to};
use gpubook_testkit::radicale::{python, read_back, with_uid, Radicale, PASSWORD, USER};
use gpubook_testkit::sshd::free_port;
use gpubook_testkit::xandikos::Xandikos;
use gpubook_testkit::{require_python, temp_dir, DEADLINE};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn discovery(base: &str, password: &str) -> Discovery {
    Discovery::new(base, Some(USER), Secret::new(password)).unwrap()
}

async fn syncer(conn: &gpubook_client::Connection, url: &str, dir: &Path) -> Syncer {
    let ctx = CalendarContext::load(conn, Scope::Mine, false)
        .await
        .unwrap();
    let target = Collection {
        url: url.into(),
        user: USER.into(),
        keep_cancelled: false,
    };
    Syncer::open(&target, Secret::new(PASSWORD), ctx, dir).unwrap()
}

/// From `base` alone: the calendars listed (with `existing` among them), "GPU bookings" made
/// (twice: the second gets its own URL), listed afterwards, and a sync to it read back.
async fn discover_create_and_sync(base: &str, existing: &str) {
    let d = discovery(base, PASSWORD);
    let found = d.find().await.unwrap();
    assert!(
        found.home.starts_with(base) && found.principal.starts_with(base),
        "{found:?}"
    );
    let cal = found
        .calendars
        .iter()
        .find(|c| c.url.trim_end_matches('/').ends_with(existing))
        .unwrap_or_else(|| panic!("{existing} is not listed: {found:?}"));
    assert!(cal.events, "{cal:?}");
    assert!(found.named("GPU bookings").is_none());

    let made = d.create(&found, "GPU bookings").await.unwrap();
    assert_eq!(made.url, format!("{}gpu-bookings/", found.home));
    let again = d.create(&found, "GPU bookings").await.unwrap();
    assert_eq!(again.url, format!("{}gpu-bookings-2/", found.home));
    let found = d.find().await.unwrap();
    let listed = found
        .named("GPU bookings")
        .expect("the new calendar is listed");
    assert_eq!(
        (listed.url.as_str(), listed.events),
        (made.url.as_str(), true)
    );
    assert_eq!(found.named(&made.url), Some(listed));

    let agent = calendar_agent().await;
    let conn = agent.connect().await;
    let b = book(&conn, &[0], 0, 4, "discovered").await;
    let dir = temp_dir();
    let mut s = syncer(&conn, &made.url, dir.path()).await;
    s.check().await.unwrap();
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(r[0].created, 1, "{r:?}");
    let events = read_back(&made.url);
    let e = with_uid(&events, &format!("{}@{SERVER}", b.id));
    assert_eq!(e.len(), 1, "{events:?}");
    assert_eq!(e[0]["dtstart"], b.interval.start.to_rfc3339());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_discovered_from_its_address() {
    if !require_python("caldav_discovery", "radicale, icalendar") {
        return;
    }
    let radicale = Radicale::start().await;
    radicale.mkcalendar("personal").await;
    discover_create_and_sync(&radicale.base(), "/personal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_discovered_from_its_address() {
    if !require_python("caldav_discovery", "xandikos, icalendar") {
        return;
    }
    let x = Xandikos::start("/user/", true).await;
    // Its --defaults calendar.
    discover_create_and_sync(&x.base(), "/user/calendars/calendar").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_says_what_it_is() {
    if !require_python("caldav_discovery", "radicale, xandikos") {
        return;
    }
    let radicale = Radicale::start().await;
    match discovery(&radicale.base(), "wrong").find().await {
        Err(DiscoverError::Unauthorized { user, .. }) => assert_eq!(user, USER),
        other => panic!("a wrong password: {other:?}"),
    }

    // A real web server that is not CalDAV: Python's http.server.
    let web = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut http = Command::new(python())
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(web.path())
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/");
    let until = Instant::now() + DEADLINE;
    while reqwest::get(&base).await.is_err() {
        assert!(Instant::now() < until, "http.server did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = discovery(&base, PASSWORD).find().await;
    let _ = http.kill();
    let _ = http.wait();
    match r {
        Err(e @ DiscoverError::NotCaldav { .. }) => {
            assert!(e.to_string().contains("is not a CalDAV server"), "{e}")
        }
        other => panic!("a web server that is not CalDAV: {other:?}"),
    }

    // Nothing listens.
    let r = discovery(&format!("http://127.0.0.1:{}/", free_port()), PASSWORD)
        .find()
        .await;
    assert!(
        matches!(r, Err(DiscoverError::Http(ref e)) if e.is_transient()),
        "{r:?}"
    );

    // A server that names a principal with no calendar home.
    let x = Xandikos::start("/nobody/", false).await;
    match discovery(&x.base(), PASSWORD).find().await {
        Err(e @ DiscoverError::NoCalendarHome { .. }) => {
            assert!(e.to_string().contains("no calendar home"), "{e}")
        }
        other => panic!("no calendar home: {other:?}\n{}", x.log()),
    }
}

/// The object gpubook wrote for the only booking in `url`: its URL.
fn only_object(base: &str, url: &str) -> String {
    let events = read_back(url);
    assert_eq!(events.len(), 1, "{events:?}");
    let href = events[0]["href"].as_str().unwrap();
    format!("{}{}", base, href.trim_start_matches('/'))
}

/// Edits the object at `object` as a calendar app would (If-Match its ETag); returns the
/// status.
async fn edit_by_hand(object: &str) -> u16 {
    let http = reqwest::Client::new();
    let got = http
        .get(object)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let etag = got.headers()["etag"].to_str().unwrap().to_string();
    let edited = got
        .text()
        .await
        .unwrap()
        .replace("SUMMARY:", "SUMMARY:edited by hand ");
    http.put(object)
        .basic_auth(USER, Some(PASSWORD))
        .header("Content-Type", "text/calendar; charset=utf-8")
        .header("If-Match", etag)
        .body(edited)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The sync reads the collection (and keeps its ETags), the object is edited on the server,
/// the booking moves: the sync's write with the old ETag must get 412, and after it the
/// server holds the moved booking, not the edit.
async fn a_412_between_read_and_write(base: &str, url: &str) {
    let agent = calendar_agent().await;
    let conn = agent.connect().await;
    let a = book(&conn, &[0], 0, 4, "conditional").await;
    let dir = temp_dir();
    let mut s = syncer(&conn, url, dir.path()).await;
    caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(s.conflicts(), 0);

    let object = only_object(base, url);
    assert!(matches!(edit_by_hand(&object).await, 200 | 204));
    let edited = read_back(url);
    assert!(
        edited[0]["summary"].as_str().unwrap().contains("by hand"),
        "the edit landed on the server: {edited:?}"
    );

    let a = move_to(&conn, a.id, 8, 12).await;
    assert!(s.queue(&a).unwrap());
    let flushed = s.flush().await.unwrap();
    assert_eq!(flushed.sent, vec![format!("{}@{SERVER}", a.id)]);
    assert_eq!(s.conflicts(), 1, "the write with the old ETag got one 412");

    let events = read_back(url);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["dtstart"], a.interval.start.to_rfc3339());
    assert_eq!(e["sequence"], a.revision);
    assert!(!e["summary"].as_str().unwrap().contains("by hand"), "{e}");
    // Converged: nothing left to write, and no further 412.
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(
        (r[0].unchanged, r[0].updated, s.pending()),
        (1, 0, 0),
        "{r:?}"
    );
    assert_eq!(s.conflicts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_refuses_a_stale_write_with_412_and_the_sync_converges() {
    if !require_python("caldav_discovery", "radicale, icalendar") {
        return;
    }
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    a_412_between_read_and_write(&radicale.base(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_refuses_a_stale_write_with_412_and_the_sync_converges() {
    if !require_python("caldav_discovery", "xandikos, icalendar") {
        return;
    }
    let x = Xandikos::start("/user/", true).await;
    let url = format!("{}user/calendars/calendar/", x.base());
    a_412_between_read_and_write(&x.base(), &url).await;
}
