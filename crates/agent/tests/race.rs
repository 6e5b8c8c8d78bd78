//! Fifty people drag-select the same GPU at the same moment: exactly one gets it.

mod common;

use common::{book_at, list_all, snapshot, AgentProcess, Grid};
use gpubook_client::ClientError;
use gpubook_core::BookingState;
use gpubook_proto::{ErrorKind, Response};
use std::sync::Arc;
use tokio::sync::Barrier;

const CLIENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_booking_one_slot_get_one_confirmation_and_49_conflicts() {
    let agent = AgentProcess::start(2).await;
    let grid = Grid::new();
    let (start, end) = (grid.at(4), grid.at(8));

    // Every client is connected before any of them asks, then they all ask at once.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut racers = Vec::new();
    for i in 0..CLIENTS {
        let conn = agent.connect().await;
        let barrier = barrier.clone();
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            conn.request(book_at(&["0"], start, end, &format!("racer {i}")))
                .await
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for r in racers {
        match r.await.expect("racer task") {
            Ok(Response::Booking(b)) => winners.push(b),
            Err(ClientError::Agent(e)) => losers.push(e),
            other => panic!("neither a booking nor a refusal: {other:?}"),
        }
    }

    assert_eq!(winners.len(), 1, "confirmed: {winners:#?}");
    let won = &winners[0].booking;
    assert_eq!(won.state, BookingState::Confirmed);
    assert_eq!(won.gpus, vec![common::sim_uuid(0)]);
    assert_eq!((won.interval.start, won.interval.end), (start, end));

    assert_eq!(losers.len(), CLIENTS - 1);
    for e in &losers {
        assert_eq!(e.kind, ErrorKind::Conflict, "{e:?}");
        // Each loser is told who won.
        assert_eq!(e.conflicts.len(), 1, "{e:?}");
        assert_eq!(e.conflicts[0].booking, won.id);
        assert_eq!(e.conflicts[0].gpus, vec![common::sim_uuid(0)]);
    }

    let conn = agent.connect().await;
    assert_eq!(list_all(&conn).await, vec![won.clone()]);
    // One change, one event.
    assert_eq!(snapshot(&agent).await.latest, winners[0].event);
}
