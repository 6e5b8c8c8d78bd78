//! CalDAV sync figures against a real Radicale on 127.0.0.1 and an agent in this process:
//! the first sync of 1,000 bookings (and a reconcile with nothing to do), and the delay from
//! a booking change (the agent's answer) to the CalDAV server having it (its PUT answered).
//!
//!     cargo bench -p gpubook-client --bench caldav
//!
//! Needs Radicale and Python's icalendar (scripts/calendar-services.sh).

use gpubook_client::caldav::{self, Collection, FollowOptions, SyncNote, Syncer};
use gpubook_client::ical::{CalendarContext, Scope};
use gpubook_client::secrets::Secret;
use gpubook_testkit::agent::SERVER;
use gpubook_testkit::bookings::*;
use gpubook_testkit::radicale::*;
use gpubook_testkit::{require_python, temp_dir};
use std::time::{Duration, Instant};

const BOOKINGS: usize = 1000;
const CHANGES: usize = 50;

fn main() {
    if !require_python("caldav bench", "radicale, icalendar") {
        std::process::exit(1);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let agent = calendar_agent().await;
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let conn = agent.connect().await;
    let t = Instant::now();
    let mut bookings = Vec::new();
    for i in 0..BOOKINGS {
        let (gpu, n) = ((i % 4) as u32, (i / 4) as i64);
        bookings.push(book(&conn, &[gpu], n, n + 1, &format!("run {i}")).await);
    }
    println!(
        "setup: {BOOKINGS} bookings made in the agent in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let dir = temp_dir();
    let ctx = CalendarContext::load(&conn, Scope::Mine, false)
        .await
        .unwrap();
    let target = Collection {
        url: url.clone(),
        user: USER.into(),
        keep_cancelled: false,
    };
    let mut s = Syncer::open(&target, Secret::new(PASSWORD), ctx.clone(), dir.path()).unwrap();
    let t = Instant::now();
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    let first = t.elapsed();
    assert_eq!(r[0].created, BOOKINGS, "{r:?}");
    println!(
        "first sync of {BOOKINGS} bookings: {:.2} s ({:.1} ms per event, 4 writes in flight)",
        first.as_secs_f64(),
        first.as_secs_f64() * 1000.0 / BOOKINGS as f64
    );
    let t = Instant::now();
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut s))
        .await
        .unwrap();
    assert_eq!(r[0].unchanged, BOOKINGS, "{r:?}");
    println!(
        "reconcile with nothing to do ({BOOKINGS} events): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    drop(s);
    // A cold reconcile: no state, every object fetched and compared.
    let cold_dir = temp_dir();
    let mut cold = Syncer::open(&target, Secret::new(PASSWORD), ctx, cold_dir.path()).unwrap();
    let t = Instant::now();
    let r = caldav::sync_once(&conn, std::slice::from_mut(&mut cold))
        .await
        .unwrap();
    assert_eq!(r[0].unchanged, BOOKINGS, "{r:?}");
    println!(
        "reconcile without local state ({BOOKINGS} events fetched and compared): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    drop(cold);

    // Following: a change in the agent until the server has it.
    let s = Syncer::open(
        &target,
        Secret::new(PASSWORD),
        CalendarContext::load(&conn, Scope::Mine, false)
            .await
            .unwrap(),
        dir.path(),
    )
    .unwrap();
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (session, events) = agent.live();
    let follower = tokio::spawn(async move {
        let _session = session;
        let mut syncers = vec![s];
        caldav::follow(
            events,
            &mut syncers,
            FollowOptions::default(),
            notes_tx,
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    loop {
        if let Some(SyncNote::Reconciled { .. }) = notes.recv().await {
            break;
        }
    }
    let mut delays = Vec::new();
    for (k, b) in bookings.iter().take(CHANGES).enumerate() {
        let from = 1000 + 2 * k as i64;
        let t = Instant::now();
        let moved = move_to(&conn, b.id, from, from + 1).await;
        let uid = format!("{}@{SERVER}", moved.id);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), notes.recv()).await {
                Ok(Some(SyncNote::Sent { uid: u, .. })) if u == uid => break,
                Ok(Some(_)) => {}
                other => panic!("no sent note for {uid}: {other:?}"),
            }
        }
        delays.push(t.elapsed());
    }
    let _ = stop_tx.send(());
    follower.await.unwrap().unwrap();
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "booking change to the CalDAV server having it ({CHANGES} moves): median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(delays[CHANGES / 2]),
        ms(delays[CHANGES * 95 / 100]),
        ms(delays[CHANGES - 1])
    );
    // The server has them, read back independently.
    let events = read_back(&url);
    assert_eq!(events.len(), BOOKINGS);
    assert_eq!(
        with_uid(&events, &format!("{}@{SERVER}", bookings[0].id))[0]["dtstart"],
        slot(1000).to_rfc3339()
    );
}
