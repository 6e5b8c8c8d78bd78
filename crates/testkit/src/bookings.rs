//! Bookings as a test makes them: on the 15-minute grid from tomorrow (in the future for the
//! whole run), over a real connection, or as other people straight into an agent's state.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_client::Connection;
use gpubook_core::time::floor_to;
use gpubook_core::{Booking, BookingId, GpuSelection, GpuUuid, Interval, JobSpec, Op};
use gpubook_proto::{
    BookRequest, BookingResponse, CancelRequest, GpuChoice, MoveRequest, Request, Response,
    WhenChoice,
};

use crate::agent::SERVER;

/// Points on the 15-minute grid from tomorrow: in the future for the whole run.
pub fn slot(n: i64) -> DateTime<Utc> {
    floor_to(Utc::now(), ChronoDuration::minutes(15))
        + ChronoDuration::days(1)
        + ChronoDuration::minutes(15 * n)
}

/// A booking of the simulated GPUs `gpus` from slot `from` to slot `to`.
pub async fn book(conn: &Connection, gpus: &[u32], from: i64, to: i64, title: &str) -> Booking {
    book_with(conn, gpus, from, to, title, None).await
}

/// [`book`] with a job.
pub async fn book_with(
    conn: &Connection,
    gpus: &[u32],
    from: i64,
    to: i64,
    title: &str,
    command: Option<&str>,
) -> Booking {
    answer(
        conn.request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: gpus.iter().map(|g| g.to_string()).collect(),
            },
            when: WhenChoice::At {
                start: slot(from),
                end: slot(to),
            },
            title: title.into(),
            job: command.map(job),
        }))
        .await,
    )
}

/// A job running `command`.
pub fn job(command: &str) -> JobSpec {
    JobSpec {
        command: command.into(),
        cwd: None,
        env: Default::default(),
        end_signal: None,
        grace_secs: None,
        keep_slot: false,
        ..Default::default()
    }
}

/// Moves booking `id` to slots `from`..`to`.
pub async fn move_to(conn: &Connection, id: BookingId, from: i64, to: i64) -> Booking {
    answer(
        conn.request(Request::Move(MoveRequest {
            id,
            start: slot(from),
            end: slot(to),
            gpus: None,
        }))
        .await,
    )
}

/// Cancels booking `id`.
pub async fn cancel(conn: &Connection, id: BookingId) -> Booking {
    answer(conn.request(Request::Cancel(CancelRequest { id })).await)
}

fn answer(r: Result<Response, gpubook_client::ClientError>) -> Booking {
    booked(r).booking
}

/// A booking op for other people: GPUs by index on the test server, slots `from`..`to`.
pub fn book_op(gpus: &[u32], from: i64, to: i64, title: &str, command: Option<&str>) -> Op {
    Op::Book {
        gpus: GpuSelection::Named(
            gpus.iter()
                .map(|i| GpuUuid(format!("SIM-{SERVER}-{i}")))
                .collect(),
        ),
        when: gpubook_core::When::At(Interval::new(slot(from), slot(to)).unwrap()),
        title: title.into(),
        job: command.map(job),
    }
}

/// The booking a change answered with, or a panic naming what came instead.
pub fn booked(r: Result<Response, gpubook_client::ClientError>) -> BookingResponse {
    match r {
        Ok(Response::Booking(b)) => b,
        other => panic!("expected a booking, got {other:?}"),
    }
}

/// The agent the calendar tests book on: in the test's process, four simulated GPUs, a
/// policy that sends bookings over two hours to an admin, GPUs sampled every 5 s.
pub async fn calendar_agent() -> crate::agent::InProcessAgent {
    crate::agent::InProcessAgent::builder(4)
        .policy("max_booking = \"2h\"\nover_policy = \"approval\"\n")
        .sample_every(std::time::Duration::from_secs(5))
        .start()
        .await
}
