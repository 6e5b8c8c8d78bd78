//! The retry rules with a dial under the test's control and tokio's clock paused: each wait
//! is measured exactly, and minutes pass in no time. The real agent, killed and restarted,
//! is in `tests/live_reconnect.rs`.

use super::*;
use gpubook_proto::{read_frame, write_frame, AgentFrame, SubscribedResponse};
use std::collections::VecDeque;

/// What the next dial does.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// A scripted agent that says hello, takes the subscription, and hangs up after `hold`.
    Agent { hold: Duration },
    /// Fails with this kind.
    Fail(FailureKind),
}

/// A dial error of the kind the script says.
#[derive(Debug)]
struct Failed(FailureKind);

impl Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl DialFailure for Failed {
    fn failure_kind(&self) -> FailureKind {
        self.0
    }
}

/// The dial's script (what comes after it: outages) and when each dial was made.
#[derive(Debug, Default)]
struct Script {
    next: Mutex<VecDeque<Next>>,
    dials: Mutex<Vec<Instant>>,
}

impl Script {
    fn new(next: &[Next]) -> Arc<Self> {
        Arc::new(Self {
            next: Mutex::new(next.iter().copied().collect()),
            dials: Mutex::new(Vec::new()),
        })
    }

    /// The waits between dials.
    fn gaps(&self) -> Vec<Duration> {
        let d = self.dials.lock().unwrap();
        d.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn start(self: &Arc<Self>) -> (LiveSession, LiveEvents) {
        let script = self.clone();
        LiveSession::start(
            move || {
                script.dials.lock().unwrap().push(Instant::now());
                let next = script.next.lock().unwrap().pop_front();
                async move {
                    match next.unwrap_or(Next::Fail(FailureKind::Outage)) {
                        Next::Fail(k) => Err(Failed(k)),
                        Next::Agent { hold } => Ok(scripted_agent(hold).await),
                    }
                }
            },
            LiveOptions::default(),
        )
    }
}

/// A connection to a scripted agent: hello, welcome, the subscription answered, then after
/// `hold` the line goes dead.
async fn scripted_agent(hold: Duration) -> Connection {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(server);
        let _hello = read_frame(&mut rd).await.unwrap().unwrap();
        let welcome = AgentFrame::Welcome(Welcome {
            major: gpubook_proto::PROTOCOL_MAJOR,
            minor: gpubook_proto::PROTOCOL_MINOR,
            agent_version: "scripted".into(),
            server: "scripted".into(),
            user: "alice".into(),
            uid: 1000,
            role: gpubook_core::Role::User,
            simulated: true,
            slurm: false,
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
        tokio::time::sleep(hold).await;
    });
    let (rd, wr) = tokio::io::split(client);
    Connection::over(rd, wr, "live-test").await.unwrap()
}

/// Every status `session` goes through, with when, from now on.
fn record(session: &LiveSession) -> Arc<Mutex<Vec<(Instant, LiveStatus)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut rx = session.status();
    let out = seen.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().clone();
            out.lock().unwrap().push((Instant::now(), s));
        }
    });
    seen
}

#[test]
fn the_outage_schedule_doubles_from_half_a_second_up_to_thirty() {
    let steps: Vec<u64> = (1..=9).map(|n| outage_step(n).as_millis() as u64).collect();
    assert_eq!(
        steps,
        [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
    );
    assert_eq!(outage_step(u32::MAX), MAX_RETRY);
    for n in [1, 3, 7, 40] {
        for _ in 0..50 {
            let w = outage_wait(n);
            assert!(w >= outage_step(n) / 2 && w <= outage_step(n), "{n}: {w:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_backs_off_on_the_schedule_and_a_server_never_reached_is_unreachable() {
    let script = Script::new(&[]);
    let (session, _events) = script.start();
    let statuses = record(&session);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let gaps = script.gaps();
    assert!(gaps.len() >= 8, "{gaps:?}");
    for (i, g) in gaps.iter().take(9).enumerate() {
        let step = outage_step(i as u32 + 1);
        assert!(
            *g >= step / 2 && *g <= step,
            "wait {i}: {g:?} for a step of {step:?}"
        );
    }
    let statuses = statuses.lock().unwrap();
    assert!(
        statuses.iter().all(
            |(_, s)| matches!(s, LiveStatus::Unreachable { reason, .. } if reason == "Outage")
        ),
        "{statuses:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_login_is_tried_again_by_itself_only_after_five_minutes() {
    let script = Script::new(&[
        Next::Fail(FailureKind::LoginRefused),
        Next::Fail(FailureKind::LoginRefused),
        Next::Agent {
            hold: Duration::from_secs(3600),
        },
    ]);
    let (session, _events) = script.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *session.status().borrow(),
        LiveStatus::LoginRefused {
            reason: "LoginRefused".into(),
            retry_in: LOGIN_RETRY
        }
    );
    tokio::time::sleep(LOGIN_RETRY - Duration::from_secs(2)).await;
    assert_eq!(script.dials.lock().unwrap().len(), 1, "tried again early");
    tokio::time::sleep(LOGIN_RETRY + Duration::from_secs(2)).await;
    assert_eq!(script.gaps(), [LOGIN_RETRY, LOGIN_RETRY]);
    assert!(matches!(
        *session.status().borrow(),
        LiveStatus::Connected { back: false, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_was_up_is_reconnecting_then_unreachable_at_ten_seconds() {
    // Up for 2 s (not stable), then gone.
    let script = Script::new(&[Next::Agent {
        hold: Duration::from_secs(2),
    }]);
    let (session, _events) = script.start();
    let statuses = record(&session);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let statuses = statuses.lock().unwrap().clone();
    let up = statuses
        .iter()
        .position(|(_, s)| matches!(s, LiveStatus::Connected { .. }))
        .expect("connected");
    let (down_at, first_down) = &statuses[up + 1];
    assert_eq!(
        *first_down,
        LiveStatus::Reconnecting {
            reason: LOST.into(),
            retry_in: first_down_wait(first_down),
        }
    );
    let unreachable = statuses
        .iter()
        .find(|(_, s)| matches!(s, LiveStatus::Unreachable { .. }))
        .expect("unreachable");
    // Announced at the 10 s mark, not at the next try.
    assert_eq!(unreachable.0 - *down_at, UNREACHABLE_AFTER, "{statuses:?}");
    assert!(
        statuses[up + 1..]
            .iter()
            .take_while(|(t, _)| *t < unreachable.0)
            .all(|(_, s)| matches!(s, LiveStatus::Reconnecting { .. })),
        "{statuses:?}"
    );
    assert!(session.connection().is_none());
}

/// The wait a Reconnecting status announced (jittered, so read back).
fn first_down_wait(s: &LiveStatus) -> Duration {
    match s {
        LiveStatus::Reconnecting { retry_in, .. } => *retry_in,
        _ => Duration::ZERO,
    }
}

#[tokio::test(start_paused = true)]
async fn a_stable_connection_that_drops_is_dialled_again_at_once_and_followers_hear_it() {
    let script = Script::new(&[
        Next::Agent {
            hold: Duration::from_secs(30),
        },
        Next::Agent {
            hold: Duration::from_secs(3600),
        },
    ]);
    let (session, mut first) = script.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A follower that comes later hears that the session is up, then what follows.
    let mut later = session.subscribe();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(script.gaps().len(), 1);
    let gap = script.gaps()[0];
    assert!(
        gap >= Duration::from_secs(30) && gap < Duration::from_millis(30_100),
        "{gap:?}"
    );
    assert!(matches!(
        *session.status().borrow(),
        LiveStatus::Connected { back: true, .. }
    ));
    for rx in [&mut first, &mut later] {
        let mut kinds = Vec::new();
        while let Ok(e) = rx.try_recv() {
            kinds.push(match e {
                LiveEvent::Connected { back, .. } => format!("connected back={back}"),
                LiveEvent::Pushed(_) => "pushed".into(),
                LiveEvent::Lost => "lost".into(),
            });
        }
        assert_eq!(
            kinds,
            ["connected back=false", "lost", "connected back=true"]
        );
    }
    // Dropping the session ends the followers' streams.
    drop(session);
    assert!(first.recv().await.is_none());
}

/// A request in flight when the connection drops gets "connection lost", not a hang: the
/// scripted agent takes the request and hangs up without answering.
#[tokio::test(start_paused = true)]
async fn a_request_in_flight_when_the_connection_drops_gets_connection_lost() {
    let script = Script::new(&[Next::Agent {
        hold: Duration::from_secs(5),
    }]);
    let (session, _events) = script.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(session.connection().is_some());
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        session.request(Request::Gpus(gpubook_proto::GpusRequest {})),
    )
    .await
    .expect("the request must not hang");
    assert!(matches!(r, Err(ClientError::ConnectionLost)), "{r:?}");
    // And while down, at once.
    let r = session
        .request(Request::Gpus(gpubook_proto::GpusRequest {}))
        .await;
    assert!(matches!(r, Err(ClientError::ConnectionLost)), "{r:?}");
    assert_eq!(session.status().borrow().reason(), Some(LOST));
}
