//! The reconnecting link against a real agent process: SIGKILLed mid-stream while another
//! client books, started again on the same state; the link comes back by itself and its
//! consumer sees every event exactly once, in order.

use chrono::{Duration as ChronoDuration, Utc};
use gpubook_client::link::{Link, LinkOptions, LinkStatus};
use gpubook_client::{ClientError, Connection, Pushed};
use gpubook_core::time::floor_to;
use gpubook_proto::{
    read_frame, write_frame, AgentFrame, BookRequest, ErrorKind, Event, GpuChoice, GpusRequest,
    Request, Response, SubscribedResponse, WhenChoice,
};
use gpubook_testkit::agent::AgentProcess;
use gpubook_testkit::wait_until_within;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

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

/// Follows `link`'s status into a list of every state it was seen in.
fn record_status(link: &Link) -> Arc<Mutex<Vec<LinkStatus>>> {
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
fn collect(mut rx: mpsc::UnboundedReceiver<Pushed>) -> Arc<Mutex<Vec<Event>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if let Pushed::Event(e) = p {
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
    let (link, rx) = Link::start(
        move || {
            let s = dial_socket.clone();
            async move { Connection::unix(&s, "link").await }
        },
        LinkOptions {
            after: Some(0),
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(1),
            ..LinkOptions::default()
        },
    );
    let statuses = record_status(&link);
    let got = collect(rx);
    wait_until_within("the link to connect", DEADLINE, || {
        matches!(*link.status().borrow(), LinkStatus::Connected { .. })
    })
    .await;

    const N: u64 = 60;
    let made = Arc::new(Mutex::new(0));
    let booking = tokio::spawn(booker(socket.clone(), N, made.clone()));
    wait_until_within("some bookings", DEADLINE, || {
        got.lock().unwrap().len() >= 15
    })
    .await;

    agent.kill();
    wait_until_within("the link to see the agent gone", DEADLINE, || {
        matches!(*link.status().borrow(), LinkStatus::Unreachable { .. })
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
        .position(|s| matches!(s, LinkStatus::Connected { back: false, .. }))
        .expect("connected");
    let down = statuses[first_up..]
        .iter()
        .position(|s| matches!(s, LinkStatus::Unreachable { .. }))
        .expect("unreachable after connected")
        + first_up;
    assert!(
        statuses[down..].iter().any(
            |s| matches!(s, LinkStatus::Connected { back: true, server } if server == "lab-link")
        ),
        "{statuses:?}"
    );
    // And it answers again.
    assert!(matches!(
        link.request(Request::Gpus(GpusRequest {})).await,
        Ok(Response::Gpus(_))
    ));
}

/// A request in flight when the connection drops gets "connection lost", not a hang. The
/// peer is scripted (a real agent answers too fast to cut it in the middle): it says hello,
/// takes the subscription, then reads one request and hangs up without answering.
#[tokio::test]
async fn a_request_in_flight_when_the_connection_drops_gets_connection_lost() {
    let (link, _rx) = Link::start(
        || async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let (mut rd, mut wr) = tokio::io::split(server);
                let _hello = read_frame(&mut rd).await.unwrap().unwrap();
                let welcome = AgentFrame::Welcome(gpubook_proto::Welcome {
                    major: gpubook_proto::PROTOCOL_MAJOR,
                    minor: gpubook_proto::PROTOCOL_MINOR,
                    agent_version: "scripted".into(),
                    server: "scripted".into(),
                    user: "alice".into(),
                    uid: 1000,
                    role: gpubook_core::Role::User,
                    simulated: true,
                });
                write_frame(&mut wr, &welcome).await.unwrap();
                let sub = read_frame(&mut rd).await.unwrap().unwrap();
                let id = serde_json::from_slice::<serde_json::Value>(&sub).unwrap()["id"]
                    .as_u64()
                    .unwrap();
                let answer = AgentFrame::Response {
                    id,
                    body: Response::Subscribed(SubscribedResponse { latest: 0 }),
                };
                write_frame(&mut wr, &answer).await.unwrap();
                // The next request is read, never answered; then the line goes dead.
                let _ = read_frame(&mut rd).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
            let (rd, wr) = tokio::io::split(client);
            Connection::over(rd, wr, "link-test").await
        },
        LinkOptions {
            first_retry: Duration::from_secs(60),
            ..LinkOptions::default()
        },
    );
    let statuses = record_status(&link);
    wait_until_within("connected", DEADLINE, || {
        matches!(*link.status().borrow(), LinkStatus::Connected { .. })
    })
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        link.request(Request::Gpus(GpusRequest {})),
    )
    .await
    .expect("the request must not hang");
    assert!(matches!(r, Err(ClientError::ConnectionLost)), "{r:?}");
    wait_until_within("unreachable", DEADLINE, || {
        statuses.lock().unwrap().iter().any(
            |s| matches!(s, LinkStatus::Unreachable { reason, .. } if reason == "connection lost"),
        )
    })
    .await;
}
