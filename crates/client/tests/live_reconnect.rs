//! The live session against a real agent process: SIGKILLed mid-stream while another
//! client books, started again on the same state; the session comes back by itself and its
//! followers (the first, and one that subscribed later) see every event exactly once, in
//! order.

use chrono::{Duration as ChronoDuration, Utc};
use gpubook_client::live::{LiveEvent, LiveEvents, LiveOptions, LiveSession, LiveStatus, StartAt};
use gpubook_client::{ClientError, Connection, Pushed};
use gpubook_core::time::floor_to;
use gpubook_proto::{
    BookRequest, ErrorKind, Event, GpuChoice, GpusRequest, Request, Response, WhenChoice,
};
use gpubook_testkit::agent::AgentProcess;
use gpubook_testkit::wait_until_within;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Books GPU `i % 4` at 15-minute slot `i / 4` from tomorrow, one after another, over its own
/// connections, reconnecting when the agent is gone. Returns how many it made.
async fn booker(socket: std::path::PathBuf, n: u64, made: Arc<Mutex<u64>>) {
    let base = floor_to(Utc::now(), ChronoDuration::minutes(15)) + ChronoDuration::days(1);
    let mut conn: Option<Connection> = None;
    let mut i = 0;
    while i < n {
        if conn.is_none() {
            conn = Connection::unix(&socket, "booker").await.ok();
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        let start = base + ChronoDuration::minutes(15 * (i / 4) as i64);
        let req = Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec![(i % 4).to_string()],
            },
            when: WhenChoice::At {
                start,
                end: start + ChronoDuration::minutes(15),
            },
            title: format!("b{i}"),
            job: None,
        });
        match conn.as_ref().unwrap().request(req).await {
            Ok(Response::Booking(_)) => i += 1,
            // Made before the connection dropped under it: the answer was lost, not the booking.
            Err(ClientError::Agent(e)) if e.kind == ErrorKind::Conflict => i += 1,
            Err(ClientError::ConnectionLost) | Err(ClientError::Unreachable { .. }) => {
                conn = None;
                continue;
            }
            other => panic!("booking {i}: {other:?}"),
        }
        *made.lock().unwrap() = i;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Every event of the agent's log, from a fresh subscription from 0.
async fn all_events(agent: &AgentProcess) -> Vec<Event> {
    let conn = agent.connect().await;
    let (latest, mut rx) = conn.subscribe(Some(0), false).await.unwrap();
    let mut out = Vec::new();
    while out.last().is_none_or(|e: &Event| e.seq < latest) {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(Pushed::Event(e))) => out.push(e),
            Ok(Some(_)) => {}
            other => panic!("the history stopped at {:?}: {other:?}", out.last()),
        }
    }
    out
}

/// Follows `session`'s status into a list of every state it was seen in.
fn record_status(link: &LiveSession) -> Arc<Mutex<Vec<LiveStatus>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut rx = link.status();
    let out = seen.clone();
    tokio::spawn(async move {
        out.lock().unwrap().push(rx.borrow_and_update().clone());
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().clone();
            out.lock().unwrap().push(s);
        }
    });
    seen
}

/// Events arriving on `rx`, collected in the background.
fn collect(mut rx: LiveEvents) -> Arc<Mutex<Vec<Event>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if let LiveEvent::Pushed(Pushed::Event(e)) = p {
                out.lock().unwrap().push(e);
            }
        }
    });
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_comes_back_and_no_event_is_lost_or_repeated() {
    let mut agent = AgentProcess::named("lab-link", 4).await;
    let socket = agent.socket();
    let dial_socket = socket.clone();
    let (link, rx) = LiveSession::start(
        move || {
            let s = dial_socket.clone();
            async move { Connection::unix(&s, "link").await }
        },
        LiveOptions {
            start: StartAt::After(0),
            ..LiveOptions::default()
        },
    );
    let statuses = record_status(&link);
    let got = collect(rx);
    wait_until_within("the link to connect", DEADLINE, || {
        matches!(*link.status().borrow(), LiveStatus::Connected { .. })
    })
    .await;

    // A second follower, as the app's feed and CalDAV sync follow the pump's session.
    let later = collect(link.subscribe());

    const N: u64 = 60;
    let made = Arc::new(Mutex::new(0));
    let booking = tokio::spawn(booker(socket.clone(), N, made.clone()));
    wait_until_within("some bookings", DEADLINE, || {
        got.lock().unwrap().len() >= 15
    })
    .await;

    agent.kill();
    wait_until_within("the link to see the agent gone", DEADLINE, || {
        matches!(
            *link.status().borrow(),
            LiveStatus::Reconnecting { .. } | LiveStatus::Unreachable { .. }
        )
    })
    .await;
    // While it is down, a request fails at once instead of waiting.
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        link.request(Request::Gpus(GpusRequest {})),
    )
    .await
    .expect("a request while down must not hang");
    assert!(matches!(r, Err(ClientError::ConnectionLost)), "{r:?}");
    // Down for a few of the link's retries.
    tokio::time::sleep(Duration::from_millis(700)).await;
    agent.restart().await;

    tokio::time::timeout(DEADLINE * 2, booking)
        .await
        .expect("the booker finished")
        .unwrap();
    let want = all_events(&agent).await;
    assert!(
        want.len() as u64 >= N,
        "{} events for {N} bookings",
        want.len()
    );
    let latest = want.last().unwrap().seq;
    wait_until_within("the link to catch up", DEADLINE, || {
        got.lock().unwrap().last().is_some_and(|e| e.seq >= latest)
    })
    .await;
    // A moment for anything repeated to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = got.lock().unwrap().clone();
    let seqs = |v: &[Event]| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&got), seqs(&want), "every event once, in order");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.booking.id, w.booking.id);
        assert_eq!(g.kind, w.kind);
    }
    // Up, unreachable, then back.
    let statuses = statuses.lock().unwrap().clone();
    let first_up = statuses
        .iter()
        .position(|s| matches!(s, LiveStatus::Connected { back: false, .. }))
        .expect("connected");
    let down = statuses[first_up..]
        .iter()
        .position(|s| {
            matches!(
                s,
                LiveStatus::Reconnecting { .. } | LiveStatus::Unreachable { .. }
            )
        })
        .expect("unreachable after connected")
        + first_up;
    assert!(
        statuses[down..].iter().any(
            |s| matches!(s, LiveStatus::Connected { back: true, server } if server == "lab-link")
        ),
        "{statuses:?}"
    );
    // The later follower: everything from when it subscribed, once each, in order.
    let later = later.lock().unwrap().clone();
    assert!(!later.is_empty());
    assert_eq!(seqs(&later), seqs(&want[want.len() - later.len()..]));
    // And it answers again.
    assert!(matches!(
        link.request(Request::Gpus(GpusRequest {})).await,
        Ok(Response::Gpus(_))
    ));
}
