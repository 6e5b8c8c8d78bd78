//! Maintenance with the real agent binary as root, real Unix users over the real bridge, and a
//! real job: an admin takes GPUs 2 and 3 out of service; a running job on GPU 2 is warned and
//! stopped at the maintenance's start (not before), a confirmed booking moves whole to the
//! earliest free start and one that cannot fit within the policy's horizon is cancelled, each
//! owner seeing the change with the reason on their own subscription; nobody can book into it
//! and a user can neither create nor end one. A GPU that the (simulated) reader reports lost is
//! taken out of service by the agent itself until an admin ends that period.
//!
//! Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_client::{ClientError, Pushed};
use gpubook_core::{BookingState, MaintenanceCause, MaintenanceOutcome, Note};
use gpubook_proto::{
    ErrorKind, EventKind, MaintenanceRequest, MaintenanceResponse, Request, Response,
};
use jobs_support::{
    book, booked, ensure_user, job, read_when_there, require_root, secs, slot_start, Events, Lab,
    DEADLINE, JOBBER, OTHER,
};
use std::time::Duration;

/// Traps SIGTERM (writing when it came) and otherwise waits.
const TRAPPER: &str = r#"#!/bin/bash
out="$1"
trap 'date +%s.%N > "$out/term.tmp"; mv "$out/term.tmp" "$out/term"; exit 0' TERM
touch "$out/ready"
while :; do sleep 0.1; done
"#;

fn maintenance(r: Result<Response, ClientError>) -> MaintenanceResponse {
    match r {
        Ok(Response::Maintenance(m)) => m,
        other => panic!("expected a maintenance answer, got {other:?}"),
    }
}

fn refused(r: Result<Response, ClientError>) -> ErrorKind {
    match r {
        Err(ClientError::Agent(e)) => e.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_moves_or_cancels_confirmed_bookings_and_stops_a_running_job_at_its_start() {
    if !require_root(
        "maintenance_moves_or_cancels_confirmed_bookings_and_stops_a_running_job_at_its_start",
    ) {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(4);
    lab.policy("max_ahead = \"10m\"\nend_warning = \"4s\"\n");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let admin = lab.root().await;
    let runner = lab.connect_as(&jobber).await;
    let owner = lab.connect_as(&other).await;
    // The other user's own subscription: what their app would notify them from.
    let (_, mut told) = owner.conn.subscribe(Some(0), false).await.unwrap();

    let t = slot_start(2);
    let out = lab.out_dir("out", &jobber);
    let script = lab.script("trapper.sh", TRAPPER);
    let mut spec = job(&format!("{} {}", script.display(), out.display()));
    spec.grace_secs = Some(3);
    let running = booked(
        runner
            .conn
            .request(book(&["2"], t, t + secs(600), "long run", Some(spec)))
            .await,
    )
    .booking;
    // GPUs 0 and 1 are busy until t + 60 s: a booking moved off GPU 3 must wait for them.
    booked(
        admin
            .request(book(&["0", "1"], t, t + secs(60), "admin's", None))
            .await,
    );
    let movable = booked(
        owner
            .conn
            .request(book(&["3"], t + secs(15), t + secs(45), "movable", None))
            .await,
    )
    .booking;
    let too_big = booked(
        owner
            .conn
            .request(book(
                &["0", "1", "3"],
                t + secs(70),
                t + secs(370),
                "big",
                None,
            ))
            .await,
    )
    .booking;
    events
        .wait_for(running.id, EventKind::JobStarted, DEADLINE)
        .await;
    read_when_there(&out.join("ready"), DEADLINE).await;

    // A user can neither make maintenance nor end it; nothing is stored.
    let start = t + secs(12);
    let create = |reason: &str| {
        Request::Maintenance(MaintenanceRequest::Create {
            gpus: Some(vec!["2".into(), "3".into()]),
            start,
            end: start + secs(660),
            reason: reason.into(),
        })
    };
    assert_eq!(
        refused(runner.conn.request(create("mine")).await),
        ErrorKind::NotAllowed
    );
    let listed = maintenance(
        admin
            .request(Request::Maintenance(MaintenanceRequest::List {
                include_past: true,
            }))
            .await,
    );
    assert!(listed.maintenance.is_empty(), "{listed:?}");

    let made = maintenance(admin.request(create("driver 570")).await);
    let m = made.maintenance[0].clone();
    assert_eq!(m.interval.start, start);
    assert_eq!(m.cause, MaintenanceCause::Admin);
    assert_eq!(
        refused(
            runner
                .conn
                .request(Request::Maintenance(MaintenanceRequest::End { id: m.id }))
                .await
        ),
        ErrorKind::NotAllowed
    );

    // The confirmed booking moved whole to the earliest free start: GPUs 0/1 free at t + 60.
    let moved = made.changed.iter().find(|b| b.id == movable.id).unwrap();
    assert_eq!(moved.state, BookingState::Confirmed);
    assert_eq!(moved.interval.start, t + secs(60), "{moved:?}");
    assert_eq!(moved.interval.duration(), movable.interval.duration());
    assert_eq!(moved.gpus.len(), 1);
    // Three GPUs are never free outside the maintenance within the 10-minute horizon.
    let cancelled = made.changed.iter().find(|b| b.id == too_big.id).unwrap();
    assert_eq!(cancelled.state, BookingState::Cancelled);
    // The running one now ends at the maintenance's start.
    let cut = made.changed.iter().find(|b| b.id == running.id).unwrap();
    assert_eq!(cut.state, BookingState::Active);
    assert_eq!(cut.interval.end, start);

    // Each owner is told on their own subscription, with the reason and the new time.
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + DEADLINE;
    while !(seen
        .iter()
        .any(|e: &gpubook_proto::Event| e.booking.id == movable.id)
        && seen.iter().any(|e| e.booking.id == too_big.id))
    {
        match tokio::time::timeout_at(until, told.recv()).await {
            Ok(Some(Pushed::Event(e))) if e.note.is_some() && e.booking.owner == OTHER => {
                seen.push(e)
            }
            Ok(Some(_)) => {}
            other => panic!("the owner was not told: {other:?}; seen {seen:?}"),
        }
    }
    for e in &seen {
        let Some(Note::Maintenance {
            reason, outcome, ..
        }) = &e.note
        else {
            panic!("no maintenance note: {e:?}")
        };
        assert_eq!(reason, "driver 570");
        assert_eq!(e.actor.as_deref(), Some("root"));
        if e.booking.id == movable.id {
            assert_eq!(e.kind, EventKind::BookingChanged);
            assert_eq!(*outcome, MaintenanceOutcome::Moved);
            assert_eq!(e.before, Some(movable.interval));
            assert_eq!(e.booking.interval.start, t + secs(60));
        } else {
            assert_eq!(e.kind, EventKind::BookingCancelled);
            assert_eq!(*outcome, MaintenanceOutcome::Cancelled);
        }
    }

    // Nobody can book into it, not even an admin.
    for conn in [&owner.conn, &admin] {
        let r = conn
            .request(book(&["3"], t + secs(30), t + secs(40), "into", None))
            .await;
        assert_eq!(refused(r), ErrorKind::Maintenance);
    }

    // The running job: warned before the start, still running until it, stopped at it.
    let warned = events
        .wait_for(running.id, EventKind::SlotEnding, DEADLINE)
        .await;
    assert!(warned.at < start, "warned at {}", warned.at);
    assert!(!out.join("term").exists(), "stopped before the maintenance");
    let term: f64 = read_when_there(&out.join("term"), DEADLINE)
        .await
        .trim()
        .parse()
        .unwrap();
    let late = term - start.timestamp() as f64;
    println!("end signal {late:.3} s after the maintenance's start");
    assert!((0.0..2.0).contains(&late), "end signal {late:.3} s after");
    events
        .wait_for(running.id, EventKind::SlotEnded, DEADLINE)
        .await;

    // It survives a restart.
    drop(admin);
    lab.kill();
    lab.start().await;
    let admin = lab.root().await;
    let listed = maintenance(
        admin
            .request(Request::Maintenance(MaintenanceRequest::List {
                include_past: false,
            }))
            .await,
    );
    assert_eq!(listed.maintenance, vec![m]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_reported_lost_is_taken_out_of_service_until_an_admin_puts_it_back() {
    if !require_root("a_gpu_reported_lost_is_taken_out_of_service_until_an_admin_puts_it_back") {
        return;
    }
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(2);
    lab.serve_args(&["--sample-secs", "0.2"]);
    lab.start().await;
    let admin = lab.root().await;
    let owner = lab.connect_as(&other).await;
    let t = slot_start(30);
    let b = booked(
        owner
            .conn
            .request(book(&["1"], t, t + secs(60), "on GPU 1", None))
            .await,
    )
    .booking;
    let mut events = Events::subscribe(&lab).await;

    // The simulated reader reports GPU 1 lost, as NVML reports a GPU off the bus.
    let file = lab.state_dir().join("sim-processes.json");
    std::fs::write(
        file.with_extension("tmp"),
        r#"[{"gpu": 1, "fault": "lost"}]"#,
    )
    .unwrap();
    std::fs::rename(file.with_extension("tmp"), &file).unwrap();
    let e = events
        .wait_for(b.id, EventKind::BookingChanged, DEADLINE)
        .await;
    assert_eq!(
        e.booking.gpus,
        vec![gpubook_core::GpuUuid(jobs_support::sim_uuid(0))]
    );
    let Some(Note::Maintenance { reason, .. }) = &e.note else {
        panic!("{e:?}")
    };
    assert!(reason.contains("lost"), "{reason}");
    let list = || async {
        maintenance(
            admin
                .request(Request::Maintenance(MaintenanceRequest::List {
                    include_past: false,
                }))
                .await,
        )
        .maintenance
    };
    // A 1.3 client cannot parse a maintenance note: it gets the change without it.
    let (mut to_agent, mut from_agent, _bridge) = lab.raw_as(&other);
    let hello = gpubook_proto::ClientFrame::Hello(gpubook_proto::Hello {
        major: 1,
        minor: 3,
        client: "old".into(),
    });
    gpubook_proto::write_frame(&mut to_agent, &hello)
        .await
        .unwrap();
    let subscribe = gpubook_proto::ClientFrame::Request {
        id: 1,
        body: Request::Subscribe(gpubook_proto::SubscribeRequest {
            after: Some(0),
            readings: false,
        }),
    };
    gpubook_proto::write_frame(&mut to_agent, &subscribe)
        .await
        .unwrap();
    let old_view = loop {
        let frame = tokio::time::timeout(DEADLINE, gpubook_proto::read_frame(&mut from_agent))
            .await
            .expect("a frame in time")
            .unwrap()
            .expect("the agent keeps the connection");
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        if v["type"] == "event" && v["kind"] == "booking_changed" && v["booking"]["id"] == b.id.0 {
            break v;
        }
    };
    assert!(old_view["note"].is_null(), "{old_view}");

    let open = list().await;
    assert_eq!(open.len(), 1, "one period, however often the fault is read");
    assert_eq!(open[0].cause, MaintenanceCause::Fault);
    assert_eq!(
        refused(
            owner
                .conn
                .request(book(&["1"], t, t + secs(10), "into", None))
                .await
        ),
        ErrorKind::Maintenance
    );
    // Fixed: the file no longer says so, and an admin puts it back.
    std::fs::write(file.with_extension("tmp"), "[]").unwrap();
    std::fs::rename(file.with_extension("tmp"), &file).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    maintenance(
        admin
            .request(Request::Maintenance(MaintenanceRequest::End {
                id: open[0].id,
            }))
            .await,
    );
    let back = owner
        .conn
        .request(book(&["1"], t, t + secs(10), "back", None))
        .await;
    booked(back);
}
