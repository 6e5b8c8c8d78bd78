//! The event pump against a real agent (in this process, simulated GPUs): the person's own
//! events become notifications, once, also across a restart of the app; other people's do
//! not; a kind turned off in the settings is not shown; the web view gets every event; an
//! approval of a booking that changed since it was shown comes back as `changed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use gpubook_core::time::floor_to;
use gpubook_core::{Actor, BookingId, Op, Role};
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    Address, EventPayload, Files, Manager, ReadingsPayload, ServerState, ServerView, Settings, Sink,
};
use gpubook_testkit::agent::InProcessAgent;
use gpubook_testkit::{wait_until as until, wait_until_within};
use tempfile::TempDir;

#[derive(Debug, Default)]
struct Recorder {
    servers: Mutex<Vec<ServerView>>,
    events: Mutex<Vec<EventPayload>>,
    readings: Mutex<usize>,
    notices: Mutex<Vec<Notice>>,
}

impl Sink for Recorder {
    fn server(&self, view: &ServerView) {
        self.servers.lock().unwrap().push(view.clone());
    }
    fn event(&self, payload: &EventPayload) {
        self.events.lock().unwrap().push(payload.clone());
    }
    fn readings(&self, _: &ReadingsPayload) {
        *self.readings.lock().unwrap() += 1;
    }
}

impl Notifier for Recorder {
    fn show(&self, n: Notice, _on_extend: Option<Box<dyn FnOnce() + Send>>) {
        self.notices.lock().unwrap().push(n);
    }
}

/// The agent the app talks to: in this process, four simulated GPUs, bookings over two
/// hours wait for an admin, GPUs sampled every 200 ms.
async fn agent() -> InProcessAgent {
    agent_in(tempfile::tempdir().unwrap()).await
}

/// [`agent`] in `dir` (the app may be pointed at its socket before it runs).
async fn agent_in(dir: TempDir) -> InProcessAgent {
    InProcessAgent::builder(4)
        .in_dir(dir)
        .policy("max_booking = \"2h\"\nover_policy = \"approval\"\n")
        .sample_every(Duration::from_millis(200))
        .start()
        .await
}

/// What the tests ask of the agent beyond the testkit's.
trait Approvals {
    /// A 3-hour booking (over the 2-hour policy: waits for approval) of the test's user,
    /// made as an ordinary user (the test may run as root, whom the agent makes admin).
    async fn book_pending(&self, n: i64) -> BookingId;
    /// An admin approves booking `id`.
    async fn approve(&self, id: BookingId);
}

impl Approvals for InProcessAgent {
    async fn book_pending(&self, n: i64) -> BookingId {
        let me = self.connect().await.welcome().user.clone();
        let start = floor_to(Utc::now(), ChronoDuration::minutes(15)) + ChronoDuration::days(1 + n);
        let op = Op::Book {
            gpus: gpubook_core::GpuSelection::Count {
                count: 1,
                min_memory: None,
            },
            when: gpubook_core::When::At(
                gpubook_core::Interval::new(start, start + ChronoDuration::hours(3)).unwrap(),
            ),
            title: format!("long run {n}"),
            job: None,
        };
        let booking = self.as_user(&me, Role::User, op).await;
        assert_eq!(booking.state, gpubook_core::BookingState::PendingApproval);
        booking.id
    }

    async fn approve(&self, id: BookingId) {
        self.as_user("boss", Role::Admin, Op::Approve { id, rev: None })
            .await;
    }
}

fn manager(files: &Files, rec: &Arc<Recorder>, agent: &InProcessAgent) -> Manager {
    let m = Manager::new(
        files.clone(),
        rec.clone(),
        rec.clone(),
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.add("lab", "Lab test", Address::Unix(agent.socket()));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_events_are_notified_once_also_across_a_restart() {
    let agent = agent().await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let id = agent.book_pending(0).await;

    let rec = Arc::new(Recorder::default());
    let m = manager(&files, &rec, &agent);
    until("connected", || m.views()[0].state == ServerState::Connected).await;
    let v = &m.views()[0];
    assert!(v.simulated && v.user.is_some(), "{v:?}");
    until("readings", || *rec.readings.lock().unwrap() > 0).await;
    // The pending booking is the person's next one, for the tray.
    assert_eq!(m.my_bookings().len(), 1);

    agent.approve(id).await;
    until("the approval notice", || {
        rec.notices.lock().unwrap().len() == 1
    })
    .await;
    let n = rec.notices.lock().unwrap()[0].clone();
    assert_eq!(n.kind, "booking_approved");
    assert!(n.summary.contains("long run 0"), "{n:?}");
    assert!(rec
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.server == "lab" && e.event.booking.id == id));
    m.remove("lab").unwrap();

    // The app restarts: the approval is not shown again; a new one is shown once.
    let id2 = agent.book_pending(1).await;
    let rec2 = Arc::new(Recorder::default());
    let m2 = manager(&files, &rec2, &agent);
    until("connected again", || {
        m2.views()[0].state == ServerState::Connected
    })
    .await;
    // The booking made while the app was away arrives as an event (no notice: not approved yet).
    until("the missed event", || {
        rec2.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.event.booking.id == id2)
    })
    .await;
    assert!(
        !rec2
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.event.booking.id == id
                && e.event.kind == gpubook_proto::EventKind::BookingApproved),
        "an event handled before the restart came again"
    );
    agent.approve(id2).await;
    until("the second approval", || {
        !rec2.notices.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = rec2.notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].summary.contains("long run 1"));
}

/// The panel decides on a booking as it showed it: an approval or denial naming an older
/// revision comes back typed as `changed`, with the revision now, and decides nothing; the
/// revision now is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_an_older_revision_comes_back_as_changed_with_the_revision_now() {
    let agent = agent().await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let id = agent.book_pending(2).await;
    let rec = Arc::new(Recorder::default());
    let m = manager(&files, &rec, &agent);
    until("connected", || m.views()[0].state == ServerState::Connected).await;
    if m.views()[0].role != Some(Role::Admin) {
        eprintln!("SKIPPED: the agent makes the test's user admin only when it runs as root");
        return;
    }
    until("the pending booking", || {
        m.my_bookings().iter().any(|(_, b)| b.id == id)
    })
    .await;
    let seen = m
        .my_bookings()
        .into_iter()
        .find(|(_, b)| b.id == id)
        .unwrap()
        .1;

    // Its owner, as an ordinary user, gives it half an hour more while the admin looks at it:
    // still pending, a new revision. (An admin's own change would not wait.)
    let (state, owner, end) = (
        agent.state.clone(),
        seen.owner.clone(),
        seen.interval.end + ChronoDuration::minutes(30),
    );
    let now = tokio::task::spawn_blocking(move || {
        state.change(
            &Actor {
                user: owner,
                role: Role::User,
            },
            Op::Extend { id, end },
        )
    })
    .await
    .unwrap()
    .unwrap()[0]
        .booking
        .clone();
    assert_eq!(now.state, gpubook_core::BookingState::PendingApproval);
    assert!(now.revision > seen.revision, "{now:?}");

    let approve = m.approve("lab", id.0, Some(seen.revision)).await;
    let deny = m.deny("lab", id.0, None, Some(seen.revision)).await;
    for e in [approve.unwrap_err(), deny.unwrap_err()] {
        assert_eq!(
            e.kind,
            gpubook_desktop::error::AppErrorKind::Agent(gpubook_proto::ErrorKind::Changed),
            "{e:?}"
        );
        assert_eq!(e.revision, Some(now.revision), "{e:?}");
        assert!(
            e.message
                .contains(&format!("booking {id} changed since you looked")),
            "{e:?}"
        );
    }
    let ok = m
        .approve("lab", id.0, Some(now.revision))
        .await
        .unwrap()
        .booking;
    assert_eq!(ok.state, gpubook_core::BookingState::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_peoples_events_and_kinds_turned_off_are_not_notified() {
    let agent = agent().await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let mut s = Settings::default();
    s.notify.insert("booking_denied".into(), false);
    s.save(&files.settings).unwrap();
    let rec = Arc::new(Recorder::default());
    let m = manager(&files, &rec, &agent);
    until("connected", || m.views()[0].state == ServerState::Connected).await;
    // Someone else's booking, approved: an event for the web view, no notice.
    let state = agent.state.clone();
    let start = floor_to(Utc::now(), ChronoDuration::minutes(15)) + ChronoDuration::days(3);
    let other = tokio::task::spawn_blocking(move || {
        let actor = Actor {
            user: "carol".into(),
            role: Role::User,
        };
        state
            .change(
                &actor,
                Op::Book {
                    gpus: gpubook_core::GpuSelection::Count {
                        count: 1,
                        min_memory: None,
                    },
                    when: gpubook_core::When::At(
                        gpubook_core::Interval::new(start, start + ChronoDuration::hours(3))
                            .unwrap(),
                    ),
                    title: "carol's".into(),
                    job: None,
                },
            )
            .unwrap()[0]
            .booking
            .id
    })
    .await
    .unwrap();
    agent.approve(other).await;
    // Mine, denied, with denials turned off.
    let mine = agent.book_pending(4).await;
    let state = agent.state.clone();
    tokio::task::spawn_blocking(move || {
        state.change(
            &Actor {
                user: "boss".into(),
                role: Role::Admin,
            },
            Op::Deny {
                id: mine,
                reason: None,
                rev: None,
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    until("the events", || {
        let ev = rec.events.lock().unwrap();
        ev.iter().any(|e| {
            e.event.booking.id == other && e.event.kind == gpubook_proto::EventKind::BookingApproved
        }) && ev.iter().any(|e| {
            e.event.booking.id == mine && e.event.kind == gpubook_proto::EventKind::BookingDenied
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rec.notices.lock().unwrap().is_empty(),
        "{:?}",
        rec.notices.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_unreachable_with_a_sentence() {
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let rec = Arc::new(Recorder::default());
    let m = Manager::new(
        files,
        rec.clone(),
        rec.clone(),
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.add(
        "gone",
        "Gone",
        Address::Unix(app.path().join("nothing.sock")),
    );
    until("unreachable", || {
        m.views()[0].state == ServerState::Unreachable
    })
    .await;
    let e = m.gpus("gone").await.unwrap_err();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["kind"], "unreachable");
    assert!(
        e.message.starts_with("Gone cannot be reached"),
        "{}",
        e.message
    );
    let e = m.gpus("nope").await.unwrap_err();
    assert!(e.message.contains("no server \"nope\""), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_notified_unreachable_then_back() {
    let agent = agent().await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let rec = Arc::new(Recorder::default());
    let m = manager(&files, &rec, &agent);
    until("connected", || m.views()[0].state == ServerState::Connected).await;
    // The agent stops; its socket file stays, but nobody answers.
    let dir = agent.stop_keeping_dir().await;
    wait_until_within("the unreachable notice", Duration::from_secs(30), || {
        rec.notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.kind == "server_unreachable")
    })
    .await;
    assert_eq!(m.views()[0].state, ServerState::Unreachable);
    let n = rec.notices.lock().unwrap().last().unwrap().clone();
    assert_eq!(n.summary, "Lab test cannot be reached");
    // It comes back: "back", once.
    let _ = std::fs::remove_file(dir.path().join("agent.sock"));
    let _agent = agent_in(dir).await;
    until("back", || {
        rec.notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.kind == "server_back")
    })
    .await;
    until("connected again", || {
        m.views()[0].state == ServerState::Connected
    })
    .await;
    let kinds: Vec<&str> = rec.notices.lock().unwrap().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, ["server_unreachable", "server_back"]);
}
