//! The slot timer on an injected clock: a slot booked for 10:00-10:30 at 09:50 announces
//! "starts in 5 minutes" at 09:55, starts at 10:00, announces "ends in 10 minutes" at 10:20
//! and ends at 10:30: each once, in order, never early, and the booking goes confirmed →
//! active → ended.

mod common;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::{book_at, booked, list_all, next_event_within, InProcessAgent};
use gpubook_client::{Connection, Pushed};
use gpubook_core::{Booking, BookingId, BookingState};
use gpubook_proto::{Event, EventKind, ListRequest, Request, Response};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a slot event may take to arrive after the clock reaches it. Each one follows a
/// quiet check one second earlier, so even a clock jump the timer misses costs it at most a
/// one-second sleep (it sleeps until the next due instant, at most 30 s).
const SLOT_EVENT_LIMIT: Duration = common::DEADLINE;

fn t(hhmmss: &str) -> DateTime<Utc> {
    format!("2030-01-07T{hhmmss}Z").parse().unwrap()
}

/// The test's view of the agent: a client, its subscription, and a count of quiet checks.
struct Watch {
    /// Makes changes and lists.
    conn: Connection,
    /// Every event, from the first.
    rx: UnboundedReceiver<Pushed>,
    /// Quiet checks made, each with its own far-away booking.
    quiet: i64,
    /// The slowest slot event, from clock change to arrival.
    slowest: Duration,
}

impl Watch {
    /// Sets the clock and expects no slot event: a new booking far away (which also wakes the
    /// timer) must be the next event, so nothing fired early in between.
    async fn quiet_at(&mut self, agent: &InProcessAgent, now: DateTime<Utc>) {
        agent.clock().set(now);
        self.quiet += 1;
        let day = t("00:00:00") + ChronoDuration::days(30 + self.quiet);
        let probe = booked(
            self.conn
                .request(book_at(
                    &["1"],
                    day,
                    day + ChronoDuration::hours(1),
                    "probe",
                ))
                .await,
        );
        let e = next_event_within(&mut self.rx, SLOT_EVENT_LIMIT).await;
        assert_eq!(
            (e.kind, e.booking.id),
            (EventKind::BookingCreated, probe.booking.id),
            "at {now} something else happened first: {e:?}"
        );
    }

    /// Sets the clock and expects `kind` for booking `id`, with the booking in `state`.
    async fn fires_at(
        &mut self,
        agent: &InProcessAgent,
        now: DateTime<Utc>,
        id: BookingId,
        kind: EventKind,
        state: BookingState,
    ) -> Event {
        let set = Instant::now();
        agent.clock().set(now);
        let e = next_event_within(&mut self.rx, SLOT_EVENT_LIMIT).await;
        self.slowest = self.slowest.max(set.elapsed());
        assert_eq!((e.kind, e.booking.id), (kind, id), "at {now}: {e:?}");
        assert_eq!(e.at, now, "{kind:?} fired at the wrong time");
        assert_eq!(e.booking.state, state, "{kind:?}");
        assert_eq!(e.actor, None, "the timer is not a person");
        // A client listing now sees the same state.
        assert_eq!(self.listed(id).await.state, state);
        e
    }

    async fn listed(&self, id: BookingId) -> Booking {
        list_all(&self.conn)
            .await
            .into_iter()
            .find(|b| b.id == id)
            .unwrap_or_else(|| panic!("booking {id} is not listed"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_announces_starts_warns_and_ends_each_once_in_order() {
    let agent = InProcessAgent::start(2, t("09:50:00")).await;
    let conn = agent.connect().await;
    let made = booked(
        conn.request(book_at(
            &["0"],
            t("10:00:00"),
            t("10:30:00"),
            "standup demo",
        ))
        .await,
    );
    let id = made.booking.id;
    assert_eq!(made.booking.state, BookingState::Confirmed);
    let (_, mut rx) = conn.subscribe(Some(0), false).await.unwrap();
    let created = next_event_within(&mut rx, SLOT_EVENT_LIMIT).await;
    assert_eq!(
        (created.seq, created.kind),
        (made.event, EventKind::BookingCreated)
    );
    let mut w = Watch {
        conn,
        rx,
        quiet: 0,
        slowest: Duration::ZERO,
    };

    w.quiet_at(&agent, t("09:54:59")).await;
    w.fires_at(
        &agent,
        t("09:55:00"),
        id,
        EventKind::SlotStarting,
        BookingState::Confirmed,
    )
    .await;
    w.quiet_at(&agent, t("09:59:59")).await;
    w.fires_at(
        &agent,
        t("10:00:00"),
        id,
        EventKind::SlotStarted,
        BookingState::Active,
    )
    .await;
    w.quiet_at(&agent, t("10:19:59")).await;
    w.fires_at(
        &agent,
        t("10:20:00"),
        id,
        EventKind::SlotEnding,
        BookingState::Active,
    )
    .await;
    w.quiet_at(&agent, t("10:29:59")).await;
    w.fires_at(
        &agent,
        t("10:30:00"),
        id,
        EventKind::SlotEnded,
        BookingState::Ended,
    )
    .await;
    // Long after: nothing more happens to it.
    w.quiet_at(&agent, t("12:00:00")).await;

    // An ended booking leaves the default listing and stays in the history.
    let current = match w
        .conn
        .request(Request::List(ListRequest::default()))
        .await
        .unwrap()
    {
        Response::Bookings(b) => b.bookings,
        other => panic!("{other:?}"),
    };
    assert!(
        current.iter().all(|b| b.id != id),
        "an ended booking is listed as current"
    );
    assert_eq!(w.listed(id).await.state, BookingState::Ended);

    // The whole log for the booking, as a new subscriber reads it: each transition once.
    let fresh = agent.connect().await;
    let (latest, mut rx) = fresh.subscribe(Some(0), false).await.unwrap();
    let mut kinds = Vec::new();
    loop {
        let e = next_event_within(&mut rx, SLOT_EVENT_LIMIT).await;
        if e.booking.id == id {
            kinds.push(e.kind);
        }
        if e.seq == latest {
            break;
        }
    }
    assert_eq!(
        kinds,
        [
            EventKind::BookingCreated,
            EventKind::SlotStarting,
            EventKind::SlotStarted,
            EventKind::SlotEnding,
            EventKind::SlotEnded,
        ]
    );
    eprintln!(
        "slot timer: slowest slot event {:?} after the clock moved",
        w.slowest
    );
    agent.stop().await;
}
