//! A server with a long history: a lab of ten people booking twice a day fills a year with
//! thousands of bookings. `gpubook ls --all` (a list with `include_past`) must still answer,
//! even when the answer is larger than one frame may be.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{list_all, AgentProcess};
use gpubook_agent::store::Store;
use gpubook_core::{Booking, BookingId, BookingState, Change, ChangeKind, Interval};
use gpubook_proto::{ListRequest, Request, Response, MAX_FRAME};

/// Past bookings written straight into a new state directory, in one transaction.
fn seed_history(state_dir: &std::path::Path, n: u64) -> Vec<Booking> {
    std::fs::create_dir_all(state_dir).unwrap();
    let mut store = Store::open(&state_dir.join("agent.db")).unwrap();
    let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let bookings: Vec<Booking> = (0..n)
        .map(|i| {
            let start = t0 + Duration::hours(i as i64);
            Booking {
                id: BookingId(i + 1),
                owner: format!("user{}", i % 10),
                gpus: vec![common::sim_uuid((i % 4) as u32)],
                interval: Interval::new(start, start + Duration::hours(1)).unwrap(),
                title: format!("{i:05} sweep of the learning-rate grid for the ablation table"),
                state: BookingState::Ended,
                job: None,
                asap: None,
                pending_reason: None,
                created_at: start - Duration::days(1),
                revision: 3,
                pending_since: None,
                warned_start: true,
                warned_end: true,
                run: None,
                usage: None,
            }
        })
        .collect();
    let changes: Vec<Change> = bookings
        .iter()
        .map(|b| Change {
            kind: ChangeKind::Created,
            booking: b.clone(),
            before: None,
            note: None,
        })
        .collect();
    let mut tx = store.begin().unwrap();
    tx.record(&changes, None, t0).unwrap();
    tx.commit().unwrap();
    bookings
}

#[tokio::test]
async fn a_history_larger_than_one_frame_is_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let history = seed_history(&dir.path().join("state"), 4000);
    let encoded = serde_json::to_vec(&history).unwrap().len();
    assert!(
        encoded > MAX_FRAME,
        "the history must not fit one frame ({encoded} bytes)"
    );
    let agent = AgentProcess::start_in(dir, 4).await;
    let conn = agent.connect().await;

    // Current bookings: none, a small answer.
    match conn.request(Request::List(ListRequest::default())).await {
        Ok(Response::Bookings(b)) => assert!(b.bookings.is_empty()),
        other => panic!("{other:?}"),
    }
    // One request answers with a page that fits a frame and says where to go on.
    let first = conn
        .request(Request::List(ListRequest {
            include_past: true,
            ..ListRequest::default()
        }))
        .await;
    let Ok(Response::Bookings(first)) = first else {
        panic!(
            "the first page failed: {first:?}\nagent log:\n{}",
            agent.log()
        )
    };
    assert!(
        first.next.is_some(),
        "a history over 1 MiB needs more than one page"
    );
    assert!(!first.bookings.is_empty());
    assert_eq!(first.bookings[..], history[..first.bookings.len()]);
    // Following the pages gives the whole history, each booking once, in order.
    let all = conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "listing {} past bookings ({encoded} bytes of JSON) failed: {e}\nagent log:\n{}",
                history.len(),
                agent.log()
            )
        });
    assert_eq!(all.bookings, history);
    // The connection still answers afterwards.
    assert_eq!(list_all(&conn).await.len(), history.len());
}
