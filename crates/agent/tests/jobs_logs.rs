//! Following a job's log (protocol 1.1): the owner asks for the log with `follow`, and the
//! agent pushes the rest as the job writes it, piece after piece, each starting where the
//! last ended, the last one saying the log is done; a character is never cut in two; another
//! user may not follow it; `follow: false` stops the pushes while the job still writes.
//!
//! Real agent binary, real non-root users. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_client::{ClientError, Connection, Pushed};
use gpubook_core::BookingId;
use gpubook_proto::{ErrorKind, LogPiece, LogsRequest, LogsResponse, Request, Response};
use jobs_support::{
    book_asap, booked, ensure_user, job, require_root, Lab, DEADLINE, JOBBER, OTHER,
};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

async fn logs(conn: &Connection, id: BookingId, follow: Option<bool>) -> LogsResponse {
    match conn
        .request(Request::Logs(LogsRequest {
            id,
            offset: 0,
            follow,
        }))
        .await
    {
        Ok(Response::Logs(l)) => l,
        other => panic!("expected the log, got {other:?}"),
    }
}

/// The next log piece pushed on `rx` (events in between are skipped); `None` after `limit`.
async fn next_piece(rx: &mut UnboundedReceiver<Pushed>, limit: Duration) -> Option<LogPiece> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(Pushed::Log(p))) => return Some(p),
            Ok(Some(Pushed::Error(e))) => panic!("the agent pushed an error: {e:?}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the connection ended"),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_is_pushed_as_the_job_writes_it() {
    if !require_root("a_followed_log_is_pushed_as_the_job_writes_it") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    assert!(
        user.conn.welcome().minor >= 1,
        "the agent speaks 1.1 or later"
    );
    let (_, mut rx) = user.conn.subscribe(None, false).await.unwrap();

    let ticker =
        job("for i in 1 2 3 4 5; do echo \"tick $i\"; sleep 0.3; done; printf 'fin \u{1f680}\\n'");
    let b = booked(
        user.conn
            .request(book_asap(&["0"], 600, "ticker", Some(ticker)))
            .await,
    )
    .booking;
    let first = logs(&user.conn, b.id, Some(true)).await;
    let (mut text, mut next, mut pieces) = (first.data.clone(), first.next, 0);
    loop {
        let p = next_piece(&mut rx, DEADLINE)
            .await
            .unwrap_or_else(|| panic!("no more of the log after {text:?}"));
        assert_eq!(p.id, b.id);
        assert_eq!(p.offset, next, "each piece starts where the last ended");
        assert!(!p.data.contains('\u{fffd}'), "a broken character: {p:?}");
        text.push_str(&p.data);
        next = p.next;
        pieces += 1;
        if p.done {
            break;
        }
    }
    assert_eq!(
        text,
        "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\nfin \u{1f680}\n"
    );
    assert!(
        pieces >= 3,
        "the log came in {pieces} pushed pieces: it should come as it is written"
    );
    assert!(
        next_piece(&mut rx, Duration::from_millis(800))
            .await
            .is_none(),
        "nothing is pushed after the last piece"
    );

    // Someone else may not follow it.
    let stranger = lab.connect_as(&other).await;
    match stranger
        .conn
        .request(Request::Logs(LogsRequest {
            id: b.id,
            offset: 0,
            follow: Some(true),
        }))
        .await
    {
        Err(ClientError::Agent(e)) => assert_eq!(e.kind, ErrorKind::NotAllowed, "{e:?}"),
        other => panic!("another user followed the log: {other:?}"),
    }

    // Stopped: no more pieces while the job still writes.
    let chatty = job("for i in $(seq 1 40); do echo \"line $i\"; sleep 0.1; done");
    let c = booked(
        user.conn
            .request(book_asap(&["1"], 600, "chatty", Some(chatty)))
            .await,
    )
    .booking;
    logs(&user.conn, c.id, Some(true)).await;
    let p = next_piece(&mut rx, DEADLINE).await.expect("a piece");
    assert_eq!(p.id, c.id);
    let stopped = logs(&user.conn, c.id, Some(false)).await;
    assert!(!stopped.done, "the job still runs");
    // A piece already on its way may still come; then nothing.
    let _ = next_piece(&mut rx, Duration::from_millis(300)).await;
    assert!(
        next_piece(&mut rx, Duration::from_millis(1500))
            .await
            .is_none(),
        "pieces kept coming after follow: false"
    );
}
