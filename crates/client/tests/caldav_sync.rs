//! CalDAV sync against a real Radicale, the collection read back over CalDAV and parsed by
//! Python's icalendar: bookings made, moved and cancelled in a real agent show up as they
//! are; a server that goes away mid-sync converges once back, with no duplicates, and the
//! queue survives a restart of the sync; an event edited by hand is set right (also through a
//! 412); other objects are never touched; a wrong password, a URL that is not a calendar, an
//! absent server and one answering 503 are clear errors.

use gpubook_client::caldav::{self, CaldavError, Collection, FollowOptions, SyncNote, Syncer};
use gpubook_client::ical::{CalendarContext, Scope};
use gpubook_client::secrets::Secret;
use gpubook_client::Connection;
use gpubook_core::Booking;
use gpubook_testkit::agent::SERVER;
use gpubook_testkit::bookings::*;
use gpubook_testkit::radicale::*;
use gpubook_testkit::{file_has, require_python, temp_dir, wait_for, DEADLINE};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const FOREIGN: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//another app//EN\r\n\
BEGIN:VEVENT\r\nUID:team-meeting-7@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nSUMMARY:Team meeting\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";

async fn syncer(conn: &Connection, url: &str, password: &str, dir: &Path, scope: Scope) -> Syncer {
    let ctx = CalendarContext::load(conn, scope, false).await.unwrap();
    Syncer::open(
        &Collection {
            url: url.into(),
            user: USER.into(),
            keep_cancelled: false,
        },
        Secret::new(password),
        ctx,
        dir,
    )
    .unwrap()
}

fn uid(b: &Booking) -> String {
    format!("{}@{SERVER}", b.id)
}

/// The collection holds exactly `bookings` as they are (one copy each) and the foreign event.
fn matches(events: &[Value], bookings: &[&Booking]) -> Result<(), String> {
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["uid"].as_str().unwrap().ends_with(&format!("@{SERVER}")))
        .collect();
    if ours.len() != bookings.len() {
        return Err(format!(
            "{} events for {} bookings",
            ours.len(),
            bookings.len()
        ));
    }
    for b in bookings {
        let found = with_uid(events, &uid(b));
        let [e] = found.as_slice() else {
            return Err(format!("{} copies of {}", found.len(), uid(b)));
        };
        if e["dtstart"] != b.interval.start.to_rfc3339()
            || e["dtend"] != b.interval.end.to_rfc3339()
            || e["sequence"] != b.revision
            || e["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("by hand")
        {
            return Err(format!("{} is stale: {e}", uid(b)));
        }
    }
    if with_uid(events, "team-meeting-7@example.org").len() != 1 {
        return Err("the foreign event is gone or doubled".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_move_cancel_and_the_collection_matches() {
    if !require_python("caldav", "radicale, icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    assert_eq!(
        radicale
            .put(&format!("{url}meeting.ics"), FOREIGN, None)
            .await,
        201
    );
    let (foreign_etag, foreign_text) = radicale.get(&format!("{url}meeting.ics")).await;
    let conn = agent.connect().await;
    let a = book(&conn, &[0], 0, 4, "yolov8 defects, run; 2").await;
    let b = book(&conn, &[1, 2], 4, 8, "sweep").await;
    let theirs = agent
        .as_user(
            "mallory",
            gpubook_core::Role::User,
            book_op(&[3], 0, 4, "not yours", None),
        )
        .await;
    let dir = temp_dir();
    let mut s = syncer(&conn, &url, PASSWORD, dir.path(), Scope::Mine).await;

    let reports = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(
        (reports[0].created, reports[0].foreign),
        (2, 1),
        "{reports:?}"
    );
    let events = read_back(&url);
    matches(&events, &[&a, &b]).unwrap();
    assert!(with_uid(&events, &uid(&theirs)).is_empty());
    let e = with_uid(&events, &uid(&a))[0];
    assert_eq!(
        e["summary"],
        format!("1× simulated GPU on {SERVER} — yolov8 defects, run; 2")
    );
    assert_eq!(e["status"], "CONFIRMED");
    assert_eq!(e["location"], SERVER);

    let a = move_to(&conn, a.id, 12, 16).await;
    cancel(&conn, b.id).await;
    let c = book(&conn, &[2], 20, 22, "new").await;
    let reports = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(
        (reports[0].created, reports[0].updated, reports[0].deleted),
        (1, 1, 1),
        "{reports:?}"
    );
    let events = read_back(&url);
    matches(&events, &[&a, &c]).unwrap();
    // The other app's event is as it was, byte for byte.
    assert_eq!(
        radicale.get(&format!("{url}meeting.ics")).await,
        (foreign_etag, foreign_text)
    );
    // Nothing to do the second time.
    let reports = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(
        (
            reports[0].created,
            reports[0].updated,
            reports[0].deleted,
            reports[0].unchanged
        ),
        (0, 0, 0, 2),
        "{reports:?}"
    );

    // The lab's calendar in a second collection holds everybody's.
    let lab = radicale.mkcalendar("lab").await;
    let mut all = syncer(&conn, &lab, PASSWORD, dir.path(), Scope::All).await;
    caldav::sync_once(&conn, std::slice::from_mut(&mut all))
        .await
        .unwrap();
    let events = read_back(&lab);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(with_uid(&events, &uid(&theirs)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_sync_converges_without_duplicates() {
    if !require_python("caldav", "radicale, icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let mut radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    assert_eq!(
        radicale
            .put(&format!("{url}meeting.ics"), FOREIGN, None)
            .await,
        201
    );
    let conn = agent.connect().await;
    let mut bookings = Vec::new();
    for i in 0..80 {
        bookings.push(
            book(
                &conn,
                &[(i % 4) as u32],
                (i / 4) * 4,
                (i / 4) * 4 + 4,
                &format!("run {i}"),
            )
            .await,
        );
    }
    let dir = temp_dir();
    let s = syncer(&conn, &url, PASSWORD, dir.path(), Scope::Mine).await;
    let state_path = s.state_path().to_path_buf();
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (session, events) = agent.live();
    let follower = tokio::spawn(async move {
        let _session = session;
        let mut syncers = vec![s];
        caldav::follow(
            events,
            &mut syncers,
            FollowOptions {
                reconcile_every: Duration::from_secs(3600),
                retry_min: Duration::from_millis(100),
                retry_max: Duration::from_millis(400),
            },
            notes_tx,
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    // Kill the server while the first reconcile is writing: frozen first, so what it had
    // stored at the stop is what is counted.
    wait_for("the first events are written", || {
        let n = radicale.stored("gpu");
        async move { n >= 6 }
    })
    .await;
    radicale.freeze();
    let written = radicale.stored("gpu");
    radicale.stop();
    eprintln!("stopped Radicale with {written} objects stored");
    // The stop landed mid-sync: some of the 80 bookings were written, not all of them.
    let all = bookings.len() + 1;
    assert!(
        (6..all).contains(&written),
        "the stop did not land mid-sync: {written} of {all} objects stored"
    );
    // Changes while it is away are queued, durably.
    bookings[0] = move_to(&conn, bookings[0].id, 200, 204).await;
    cancel(&conn, bookings[1].id).await;
    bookings.remove(1);
    bookings.push(book(&conn, &[3], 300, 304, "while away").await);
    let queued = uid(bookings.last().unwrap());
    wait_for("the change is queued in the state file", || {
        let yes = file_has(&state_path, &queued);
        async move { yes }
    })
    .await;
    let mut waited = false;
    while let Ok(n) = notes.try_recv() {
        waited |= matches!(n, SyncNote::Waiting { .. });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(n) = notes.try_recv() {
        waited |= matches!(n, SyncNote::Waiting { .. });
    }
    assert!(waited, "no note said the server is away");

    radicale.restart().await;
    let expected: Vec<&Booking> = bookings.iter().collect();
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        match matches(&read_back(&url), &expected) {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() > until => panic!("no convergence: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = stop_tx.send(());
    follower.await.unwrap().unwrap();
    // No duplicates on disk either: one file per event.
    assert_eq!(radicale.stored("gpu"), bookings.len() + 1);
    let hrefs: BTreeSet<String> = read_back(&url)
        .iter()
        .map(|e| e["href"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hrefs.len(), bookings.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_a_restart_of_the_sync() {
    if !require_python("caldav", "radicale, icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let mut radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let conn = agent.connect().await;
    let a = book(&conn, &[0], 0, 4, "a").await;
    let dir = temp_dir();
    let mut s = syncer(&conn, &url, PASSWORD, dir.path(), Scope::Mine).await;
    caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();

    radicale.stop();
    let a = move_to(&conn, a.id, 8, 12).await;
    let b = book(&conn, &[1], 0, 4, "b").await;
    assert!(s.queue(&a).unwrap());
    assert!(s.queue(&b).unwrap());
    assert!(
        !s.queue(&b).unwrap(),
        "an unchanged booking is queued twice"
    );
    let e = s.flush().await.unwrap_err();
    assert!(matches!(e, CaldavError::Unreachable { .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(s.pending(), 2);
    drop(s);

    // A new run, with the agent gone too: the queue alone is enough.
    drop(conn);
    drop(agent);
    radicale.restart().await;
    let ctx = CalendarContext {
        server: SERVER.into(),
        gpus: Vec::new(),
        viewer: a.owner.clone(),
        with_commands: false,
        scope: Scope::Mine,
    };
    let mut s = Syncer::open(
        &Collection {
            url: url.clone(),
            user: USER.into(),
            keep_cancelled: false,
        },
        Secret::new(PASSWORD),
        ctx,
        dir.path(),
    )
    .unwrap();
    assert_eq!(s.pending(), 2);
    let flushed = s.flush().await.unwrap();
    assert_eq!(flushed.sent.len(), 2, "{flushed:?}");
    assert_eq!(s.pending(), 0);
    let events = read_back(&url);
    assert_eq!(events.len(), 2);
    assert_eq!(
        with_uid(&events, &uid(&a))[0]["dtstart"],
        a.interval.start.to_rfc3339()
    );
    assert_eq!(with_uid(&events, &uid(&b)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_by_hand_is_set_right() {
    if !require_python("caldav", "radicale, icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let conn = agent.connect().await;
    let a = book(&conn, &[0], 0, 4, "a").await;
    let dir = temp_dir();
    let mut s = syncer(&conn, &url, PASSWORD, dir.path(), Scope::Mine).await;
    caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    let href = with_uid(&read_back(&url), &uid(&a))[0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let object = format!("{}{}", radicale.base(), href.trim_start_matches('/'));

    // Edited in a calendar app: the reconcile puts it back.
    let (etag, text) = radicale.get(&object).await;
    let edited = text.replace("SUMMARY:", "SUMMARY:edited by hand ");
    assert_eq!(radicale.put(&object, &edited, Some(&etag)).await, 204);
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(r[0].updated, 1, "{r:?}");
    let e = &with_uid(&read_back(&url), &uid(&a))[0].clone();
    assert!(!e["summary"].as_str().unwrap().contains("by hand"), "{e}");

    // Edited again, then the booking moves: the PUT with the old ETag gets 412, and the sync
    // looks again and writes over it.
    let (etag, text) = radicale.get(&object).await;
    let edited = text.replace("SUMMARY:", "SUMMARY:edited by hand ");
    assert_eq!(radicale.put(&object, &edited, Some(&etag)).await, 204);
    let a = move_to(&conn, a.id, 4, 8).await;
    assert!(s.queue(&a).unwrap());
    let flushed = s.flush().await.unwrap();
    assert_eq!(flushed.sent, vec![uid(&a)]);
    let events = read_back(&url);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["dtstart"], a.interval.start.to_rfc3339());
    assert!(!e["summary"].as_str().unwrap().contains("by hand"), "{e}");

    // Deleted by hand: created again.
    let (etag, _) = radicale.get(&object).await;
    let del = reqwest::Client::new()
        .delete(&object)
        .basic_auth(USER, Some(PASSWORD))
        .header("If-Match", etag)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(r[0].created, 1, "{r:?}");
    assert_eq!(read_back(&url).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_wrong_url_and_no_server_are_clear_errors() {
    if !require_python("caldav", "radicale, icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let conn = agent.connect().await;
    book(&conn, &[0], 0, 4, "a").await;
    let dir = temp_dir();

    let mut s = syncer(&conn, &url, "wrong password", dir.path(), Scope::Mine).await;
    let e = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap_err();
    assert!(matches!(e, CaldavError::Unauthorized { .. }), "{e:?}");
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains("401") && msg.contains("gpubook caldav login"),
        "{msg}"
    );
    assert!(!msg.contains("wrong password"), "the password leaks: {msg}");
    drop(s);

    // The principal is a collection but not a calendar.
    let principal = format!("{}{USER}/", radicale.base());
    let mut s = syncer(&conn, &principal, PASSWORD, dir.path(), Scope::Mine).await;
    let e = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap_err();
    assert!(matches!(e, CaldavError::NotACalendar { .. }), "{e:?}");
    assert!(e.to_string().contains("not a calendar"), "{e}");
    drop(s);

    let mut s = syncer(
        &conn,
        &radicale.url("nope"),
        PASSWORD,
        dir.path(),
        Scope::Mine,
    )
    .await;
    let e = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap_err();
    assert!(matches!(e, CaldavError::NotFound { .. }), "{e:?}");
    drop(s);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = syncer(
        &conn,
        &format!("http://127.0.0.1:{closed}/cal/"),
        PASSWORD,
        dir.path(),
        Scope::Mine,
    )
    .await;
    let e = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap_err();
    assert!(matches!(e, CaldavError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());

    drop(s);

    // A server in trouble: 503 to everything.
    let failing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = failing.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = failing.accept().await {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let _ = c
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n")
                .await;
        }
    });
    let mut s = syncer(
        &conn,
        &format!("http://127.0.0.1:{port}/cal/"),
        PASSWORD,
        dir.path(),
        Scope::Mine,
    )
    .await;
    let e = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CaldavError::Server { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());

    let e = Syncer::open(
        &Collection {
            url: "ftp://example.org/cal".into(),
            user: USER.into(),
            keep_cancelled: false,
        },
        Secret::new(PASSWORD),
        s.context().clone(),
        dir.path(),
    )
    .unwrap_err();
    assert!(matches!(e, CaldavError::BadUrl { .. }), "{e:?}");
}
