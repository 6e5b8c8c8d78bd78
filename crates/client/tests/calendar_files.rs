//! The exported calendar and the subscription feed, validated by an independent parser
//! (Python's icalendar): RFC 5545 lines, one event per booking with the right UID, SEQUENCE,
//! STATUS and times, nobody else's command, and the feed following the agent's changes.

use gpubook_client::feed::{self, Feed, FeedServer};
use gpubook_client::ical::{self, CalendarContext, Scope};
use gpubook_core::{BookingState, Role};
use gpubook_proto::{BookRequest, GpuChoice, Request, Response, WhenChoice};
use gpubook_testkit::agent::SERVER;
use gpubook_testkit::bookings::*;
use gpubook_testkit::radicale::*;
use gpubook_testkit::{require_python, wait_for};
use serde_json::Value;
use std::time::Duration;

fn event<'a>(v: &'a Value, uid: &str) -> &'a Value {
    let all = v["events"].as_array().unwrap();
    let found: Vec<&Value> = all.iter().filter(|e| e["uid"] == uid).collect();
    assert_eq!(found.len(), 1, "one event {uid} in {v:#}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_file_is_valid_icalendar_with_one_event_per_booking() {
    if !require_python("export", "icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let conn = agent.connect().await;
    let me = conn.welcome().user.clone();
    let tricky =
        "yolov8 defects, run 2; lr=0.1 \\ a title long enough that its line must be folded — ×××";
    let plain = book_with(
        &conn,
        &[0, 1],
        0,
        8,
        tricky,
        Some("python train.py --secret-flag"),
    )
    .await;
    let cancelled = book(&conn, &[2], 0, 4, "dropped").await;
    cancel(&conn, cancelled.id).await;
    // Every GPU is taken from soon on, so a request "as soon as possible" waits behind it.
    let soon = gpubook_core::time::floor_to(chrono::Utc::now(), chrono::Duration::minutes(15))
        + chrono::Duration::minutes(30);
    let block = conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Count {
                count: 4,
                min_memory: None,
            },
            when: WhenChoice::At {
                start: soon,
                end: soon + chrono::Duration::minutes(90),
            },
            title: "everything".into(),
            job: None,
        }))
        .await;
    assert!(matches!(block, Ok(Response::Booking(_))), "{block:?}");
    let asap = match conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Count {
                count: 1,
                min_memory: None,
            },
            when: WhenChoice::Asap {
                duration_secs: 3600,
            },
            title: "queued".into(),
            job: None,
        }))
        .await
    {
        Ok(Response::Booking(b)) => b.booking,
        other => panic!("{other:?}"),
    };
    // Over the policy's two hours as a plain user: waits for an admin.
    let pending = agent
        .as_user(&me, Role::User, book_op(&[3], 0, 16, "long run", None))
        .await;
    assert_eq!(pending.state, BookingState::PendingApproval);
    let theirs = agent
        .as_user(
            "mallory",
            Role::User,
            book_op(&[3], 20, 24, "not yours", Some("rm -rf ~/mallory-secret")),
        )
        .await;

    // Mine, without commands.
    let ics = ical::export(&conn, Scope::Mine, false).await.unwrap();
    let v = validate(&ics);
    assert_eq!(v["errors"], serde_json::json!([]), "{ics}");
    assert_eq!(v["method"], "PUBLISH");
    assert_eq!(v["events"].as_array().unwrap().len(), 5, "{v:#}");
    let e = event(&v, &format!("{}@{SERVER}", plain.id));
    assert_eq!(
        e["summary"],
        format!("2× simulated GPU on {SERVER} — {tricky}")
    );
    assert_eq!(e["status"], "CONFIRMED");
    assert_eq!(e["sequence"], plain.revision);
    assert_eq!(e["location"], SERVER);
    assert_eq!(e["x-gpubook-server"], SERVER);
    assert_eq!(e["dtstamp"], true);
    assert_eq!(e["dtstart"], slot(0).to_rfc3339());
    assert_eq!(e["dtend"], slot(8).to_rfc3339());
    let desc = e["description"].as_str().unwrap();
    assert!(
        desc.contains("SIM-lab-test-0") && desc.contains("SIM-lab-test-1"),
        "{desc}"
    );
    assert!(
        desc.contains("confirmed") && desc.contains(SERVER),
        "{desc}"
    );
    assert!(
        !ics.contains("secret-flag"),
        "a command shows without the setting"
    );
    assert_eq!(
        event(&v, &format!("{}@{SERVER}", cancelled.id))["status"],
        "CANCELLED"
    );
    assert_eq!(
        event(&v, &format!("{}@{SERVER}", asap.id))["status"],
        "TENTATIVE"
    );
    assert_eq!(
        event(&v, &format!("{}@{SERVER}", pending.id))["status"],
        "TENTATIVE"
    );
    assert!(!ics.contains(&format!("{}@{SERVER}", theirs.id)));

    // The lab's calendar, with commands: one's own shows, another person's never (the
    // agent sends it to an admin, which this test's user is).
    let ics = ical::export(&conn, Scope::All, true).await.unwrap();
    let v = validate(&ics);
    assert_eq!(v["errors"], serde_json::json!([]), "{ics}");
    assert_eq!(v["events"].as_array().unwrap().len(), 6);
    let e = event(&v, &format!("{}@{SERVER}", theirs.id));
    assert_eq!(
        e["summary"],
        format!("1× simulated GPU on {SERVER} — not yours (mallory)")
    );
    assert!(
        !ics.contains("mallory-secret"),
        "another person's command shows"
    );
    assert!(event(&v, &format!("{}@{SERVER}", plain.id))["description"]
        .as_str()
        .unwrap()
        .contains("python train.py --secret-flag"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_serves_valid_icalendar_and_follows_changes() {
    if !require_python("feed", "icalendar") {
        return;
    }
    let agent = calendar_agent().await;
    let conn = agent.connect().await;
    let first = book(&conn, &[0], 0, 4, "first").await;
    let ctx = CalendarContext::load(&conn, Scope::Mine, false)
        .await
        .unwrap();
    let mut feed = Feed::new(ctx.clone(), ctx.bookings(&conn).await.unwrap());
    let body = feed.body();
    let token = feed::new_token();
    assert_eq!(token.len(), 32);
    let server = FeedServer::bind("127.0.0.1:0".parse().unwrap(), token.clone())
        .await
        .unwrap();
    let url = server.url().unwrap();
    let addr = server.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop2_tx, stop2_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(body, async move {
        let _ = stop_rx.await;
    }));
    let (session, events) = agent.live();
    let follower = tokio::spawn(async move {
        let _session = session;
        feed::keep_current(events, &mut feed, async move {
            let _ = stop2_rx.await;
        })
        .await;
    });
    let http = reqwest::Client::new();
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap() }
    };

    let r = get(url.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/calendar; charset=utf-8");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    let v = validate(&text);
    assert_eq!(v["errors"], serde_json::json!([]), "{text}");
    event(&v, &format!("{}@{SERVER}", first.id));

    // A wrong token, or none, finds nothing.
    let wrong = format!("http://{addr}/{}/{}", feed::new_token(), feed::FILE_NAME);
    assert_eq!(get(wrong).await.status(), 404);
    assert_eq!(get(format!("http://{addr}/")).await.status(), 404);
    // Unchanged: 304 for a client that has it.
    let r = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // A booking made and one moved show up without restarting anything.
    let second = book(&conn, &[1], 4, 8, "second").await;
    let moved = move_to(&conn, first.id, 8, 12).await;
    let uid2 = format!("{}@{SERVER}", second.id);
    wait_for("the feed shows the change", || {
        let (url, uid2) = (url.clone(), uid2.clone());
        async move {
            let text = get(url).await.text().await.unwrap();
            text.contains(&uid2) && text.contains(&format!("SEQUENCE:{}", moved.revision))
        }
    })
    .await;
    let r = get(url.clone()).await;
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let v = validate(&r.text().await.unwrap());
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(
        event(&v, &format!("{}@{SERVER}", first.id))["dtstart"],
        slot(8).to_rfc3339()
    );
    event(&v, &uid2);

    let _ = stop_tx.send(());
    let _ = stop2_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the feed stops")
        .unwrap();
}
