//! Events: a subscriber that gives the last number it saw gets exactly what came after it,
//! then live events; one that disconnects and comes back misses nothing and sees nothing
//! twice. Another person's job is never shown, in events or listings.

mod common;

use common::{book_at, booked, next_event, AgentProcess, Grid};
use gpubook_agent::clock::ManualClock;
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::handler::{visible, Caller, Context};
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_core::{Actor, Booking, GpuSelection, Interval, JobSpec, Op, Policy, Role, When};
use gpubook_proto::{
    CancelRequest, Event, EventKind, ExtendRequest, ListRequest, Request, Response,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn cancel(id: gpubook_core::BookingId) -> Request {
    Request::Cancel(CancelRequest { id })
}

#[tokio::test]
async fn subscribing_after_n_gives_the_events_after_n_then_live_ones() {
    let agent = AgentProcess::start(4).await;
    let grid = Grid::new();
    let conn = agent.connect().await;
    let mut made = Vec::new();
    for gpu in ["0", "1", "2"] {
        made.push(booked(
            conn.request(book_at(&[gpu], grid.at(0), grid.at(4), gpu))
                .await,
        ));
    }
    let n = made[0].event;

    let watcher = agent.connect().await;
    let (latest, mut rx) = watcher.subscribe(Some(n), false).await.unwrap();
    assert_eq!(latest, made[2].event);
    // Exactly the two events after n, in order, as the changes reported them.
    for m in &made[1..] {
        let e = next_event(&mut rx).await;
        assert_eq!(e.seq, m.event);
        assert_eq!(e.kind, EventKind::BookingCreated);
        assert_eq!(e.booking, m.booking);
        assert_eq!(e.actor.as_deref(), Some(conn.welcome().user.as_str()));
    }
    // Then live ones, as they happen.
    let live = booked(
        conn.request(book_at(&["3"], grid.at(0), grid.at(4), "3"))
            .await,
    );
    let e = next_event(&mut rx).await;
    assert_eq!((e.seq, e.kind), (live.event, EventKind::BookingCreated));
    assert_eq!(e.booking, live.booking);
    let gone = booked(conn.request(cancel(made[0].booking.id)).await);
    let e = next_event(&mut rx).await;
    assert_eq!((e.seq, e.kind), (gone.event, EventKind::BookingCancelled));
    assert_eq!(e.booking.id, made[0].booking.id);
    // Subscribing after the latest gives only what comes next.
    let late = agent.connect().await;
    let (latest, mut late_rx) = late.subscribe(Some(gone.event), false).await.unwrap();
    assert_eq!(latest, gone.event);
    let next = booked(
        conn.request(book_at(&["0"], grid.at(8), grid.at(9), "next"))
            .await,
    );
    assert_eq!(next_event(&mut late_rx).await.seq, next.event);
    // Without a number: live events only.
    let live_only = agent.connect().await;
    let (_, mut live_rx) = live_only.subscribe(None, false).await.unwrap();
    let after = booked(
        conn.request(book_at(&["1"], grid.at(8), grid.at(9), "after"))
            .await,
    );
    assert_eq!(next_event(&mut live_rx).await.seq, after.event);
    // The first subscriber got those two next, and nothing in between: nothing twice.
    assert_eq!(next_event(&mut rx).await.seq, next.event);
    assert_eq!(next_event(&mut rx).await.seq, after.event);
}

#[tokio::test]
async fn a_subscriber_that_reconnects_with_its_last_number_misses_nothing_and_repeats_nothing() {
    let agent = AgentProcess::start(4).await;
    let grid = Grid::new();
    let conn = agent.connect().await;
    let first = booked(
        conn.request(book_at(&["0"], grid.at(0), grid.at(4), "a"))
            .await,
    );

    let watcher = agent.connect().await;
    let (_, mut rx) = watcher.subscribe(Some(0), false).await.unwrap();
    let seen = next_event(&mut rx).await;
    assert_eq!(seen.seq, first.event);
    let last_seen = seen.seq;
    drop(rx);
    drop(watcher);

    // While away: a booking, an extension, a cancellation.
    let b = booked(
        conn.request(book_at(&["1"], grid.at(0), grid.at(4), "b"))
            .await,
    );
    let extended = booked(
        conn.request(Request::Extend(ExtendRequest {
            id: b.booking.id,
            end: grid.at(6),
        }))
        .await,
    );
    let cancelled = booked(conn.request(cancel(first.booking.id)).await);
    let missed = [
        (b.event, EventKind::BookingCreated, b.booking.clone()),
        (
            extended.event,
            EventKind::BookingChanged,
            extended.booking.clone(),
        ),
        (
            cancelled.event,
            EventKind::BookingCancelled,
            cancelled.booking.clone(),
        ),
    ];

    let watcher = agent.connect().await;
    let (latest, mut rx) = watcher.subscribe(Some(last_seen), false).await.unwrap();
    assert_eq!(latest, cancelled.event);
    for (seq, kind, booking) in &missed {
        let e = next_event(&mut rx).await;
        assert_eq!((e.seq, e.kind), (*seq, *kind));
        assert_eq!(&e.booking, booking);
    }
    let e_ext = &missed[1];
    assert_eq!(e_ext.2.interval.end, grid.at(6));
    // The next event is the next change: nothing from before came again.
    let sentinel = booked(
        conn.request(book_at(&["2"], grid.at(0), grid.at(1), "s"))
            .await,
    );
    let e = next_event(&mut rx).await;
    assert_eq!((e.seq, e.kind), (sentinel.event, EventKind::BookingCreated));
}

/// Alice's booking carries a job with a secret in it.
const SECRET: &str = "hunter2-token";

fn alice_job() -> JobSpec {
    JobSpec {
        command: format!("python train.py --token {SECRET}"),
        cwd: Some("/home/alice/private".into()),
        env: BTreeMap::from([("WANDB_API_KEY".to_string(), SECRET.to_string())]),
        end_signal: Some("SIGUSR1".into()),
        grace_secs: Some(60),
        keep_slot: false,
        ..Default::default()
    }
}

fn shows_job(b: &Booking) -> bool {
    serde_json::to_string(b).unwrap().contains(SECRET)
}

#[tokio::test]
async fn another_persons_job_is_hidden_in_events_and_listings() {
    let dir = tempfile::tempdir().unwrap();
    let now = "2030-01-07T08:00:00Z".parse().unwrap();
    let state = Arc::new(
        State::load(
            Store::open(&dir.path().join("agent.db")).unwrap(),
            SimReader::new(2, "lab").inventory(),
            Policy::default(),
            Arc::new(ManualClock::new(now)),
        )
        .unwrap(),
    );
    let person = |user: &str, role| Actor {
        user: user.into(),
        role,
    };
    let (alice, bob, carol, root) = (
        person("alice", Role::User),
        person("bob", Role::User),
        person("carol", Role::Guest),
        person("root", Role::Admin),
    );
    let mut live = state.events.subscribe();
    let committed = state
        .change(
            &alice,
            Op::Book {
                gpus: GpuSelection::Count {
                    count: 1,
                    min_memory: None,
                },
                when: When::At(Interval::new(now, now + chrono::Duration::hours(2)).unwrap()),
                title: "alice trains".into(),
                job: Some(alice_job()),
            },
        )
        .unwrap();
    let stored: Vec<Event> = state.lock().store.events_after(0, 10).unwrap();
    let announced = live.try_recv().expect("the change was announced");
    assert_eq!(stored, committed);
    assert_eq!(*announced, committed[0]);
    // What the agent holds has the job; it is redacted per viewer when it goes out.
    assert!(shows_job(&stored[0].booking));
    for event_booking in [&stored[0].booking, &announced.booking] {
        for viewer in [&bob, &carol] {
            let seen = visible(viewer, event_booking.clone());
            assert!(
                !shows_job(&seen),
                "{} sees alice's job: {seen:?}",
                viewer.user
            );
            // They still see that there is a job, and everything else about the booking.
            assert_eq!(seen.job.as_ref().map(|j| j.command.as_str()), Some(""));
            assert_eq!(seen.title, "alice trains");
            assert_eq!(seen.owner, "alice");
            assert_eq!(seen.interval, event_booking.interval);
            assert_eq!(seen.gpus, event_booking.gpus);
        }
        for viewer in [&alice, &root] {
            let seen = visible(viewer, event_booking.clone());
            assert_eq!(
                seen.job,
                Some(alice_job()),
                "{} must see the job",
                viewer.user
            );
        }
    }

    // The listing, through the request handler.
    let ctx = Context {
        state: state.clone(),
        server: "lab".into(),
        source: "simulated",
        readings: tokio::sync::watch::channel(None).1,
        jobs: std::sync::Arc::new(gpubook_agent::jobs::Jobs::new(
            state.clone(),
            "events-test".into(),
            "events-secret".into(),
            dir.path(),
        )),
        measuring: Default::default(),
        notify: std::sync::Arc::new(
            gpubook_agent::notify::Notify::open(
                &dir.path().join("agent.db"),
                state.clone(),
                "lab".into(),
                None,
            )
            .unwrap(),
        ),
        series: std::sync::Arc::new(
            gpubook_agent::series::Series::open(&dir.path().join("agent.db")).unwrap(),
        ),
    };
    let list = |actor: &Actor| {
        let caller = Caller {
            actor: actor.clone(),
            uid: 1000,
        };
        let ctx = &ctx;
        async move {
            match ctx
                .handle(&caller, Request::List(ListRequest::default()))
                .await
                .unwrap()
            {
                Response::Bookings(b) => b.bookings,
                other => panic!("{other:?}"),
            }
        }
    };
    for viewer in [&bob, &carol] {
        let seen = list(viewer).await;
        assert_eq!(seen.len(), 1);
        assert!(!shows_job(&seen[0]), "{} sees alice's job", viewer.user);
        assert_eq!(seen[0].title, "alice trains");
    }
    for viewer in [&alice, &root] {
        assert_eq!(list(viewer).await[0].job, Some(alice_job()));
    }

    // Bob's own job stays visible to bob while alice's stays hidden.
    let bobs = ctx
        .handle(
            &Caller {
                actor: bob.clone(),
                uid: 1001,
            },
            Request::Book(gpubook_proto::BookRequest {
                gpus: gpubook_proto::GpuChoice::Count {
                    count: 1,
                    min_memory: None,
                },
                when: gpubook_proto::WhenChoice::At {
                    start: now,
                    end: now + chrono::Duration::hours(1),
                },
                title: "bob's".into(),
                job: Some(JobSpec {
                    command: "make bob".into(),
                    cwd: None,
                    env: BTreeMap::new(),
                    end_signal: None,
                    grace_secs: None,
                    keep_slot: false,
                    ..Default::default()
                }),
            }),
        )
        .await
        .unwrap();
    let Response::Booking(bobs) = bobs else {
        panic!("{bobs:?}")
    };
    assert_eq!(bobs.booking.job.as_ref().unwrap().command, "make bob");
    let seen = list(&bob).await;
    assert_eq!(seen.len(), 2);
    for b in &seen {
        let shown = b.job.as_ref().unwrap();
        match b.owner.as_str() {
            "bob" => assert_eq!(shown.command, "make bob"),
            _ => assert!(shown.command.is_empty() && !shows_job(b), "{b:?}"),
        }
    }
}
