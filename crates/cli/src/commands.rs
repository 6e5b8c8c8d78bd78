//! The one-server commands: each takes a connection and the request its arguments built.

use crate::args::Command;
use crate::print::{print_json, print_response};
use crate::{decide, jobs, output, Failure};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use gpubook_client::Connection;
use gpubook_core::{BookingId, Gpu};
use gpubook_proto::{ErrorKind, GpusRequest, ListRequest, Request, Response};

/// Runs `command` on the server behind `conn`; `request` is what its arguments built.
pub async fn one_server(
    command: &Command,
    conn: Connection,
    request: Option<Request>,
    json: bool,
) -> Result<(), Failure> {
    match (command, request) {
        (Command::Whoami, _) => {
            let w = conn.welcome();
            if json {
                print_json(w);
            } else {
                println!(
                    "{} (uid {}) is {} on {}{}",
                    w.user,
                    w.uid,
                    w.role,
                    w.server,
                    if w.simulated { " (simulated GPUs)" } else { "" }
                );
            }
        }
        (Command::Logs { id, follow }, _) => {
            jobs::logs(&conn, BookingId(*id), *follow, json).await?;
        }
        (Command::Env { id }, _) => crate::shell::env(&conn, BookingId(*id), json).await?,
        (Command::Wait { id }, _) => {
            let e = jobs::wait(&conn, BookingId(*id), false, json, false).await?;
            return finish_job(&e.booking, json);
        }
        (
            Command::Usage {
                id: Some(id),
                series: true,
                ..
            },
            _,
        ) => crate::series::show(&conn, BookingId(*id), json).await?,
        (Command::Usage { id, mine, .. }, _) => {
            crate::usage_report::usage(&conn, *id, *mine, json).await?;
        }
        (Command::Run(_), Some(req)) => {
            let resp = conn.request(req).await.map_err(anyhow::Error::from)?;
            let Response::Booking(r) = resp else {
                return Err(anyhow!("unexpected answer {resp:?}").into());
            };
            if !json {
                eprintln!("gpubook: {}", output::booking_line(&r.booking, &[]));
            }
            if r.booking.state == gpubook_core::BookingState::PendingApproval && !json {
                eprintln!("gpubook: waiting for an admin's approval");
            }
            // The job's output is streamed in --json too, as {"id", "log"} lines before the
            // booking at the end.
            // Then its saved files' place, as a {"id", "job_saved"} line in --json.
            let e = jobs::wait(&conn, r.booking.id, true, json, true).await?;
            let saved = crate::saved::report_saved(&e, json);
            finish_job(&e.booking, json)?;
            return saved;
        }
        (_, Some(mut req)) => {
            if let (Command::Extend { by: Some(_), .. }, Request::Extend(x)) = (command, &mut req) {
                let by = x.end - DateTime::<Utc>::UNIX_EPOCH;
                x.end = current_end(&conn, x.id).await? + by;
            }
            if let (Command::Move { start: None, .. }, Request::Move(m)) = (command, &mut req) {
                let b = jobs::booking(&conn, m.id).await?;
                (m.start, m.end) = (b.interval.start, b.interval.end);
            }
            decide::confirm(&conn, &mut req).await?;
            // What a booking that holds its GPUs after the request is said to be.
            let done = match &req {
                Request::Move(_) => "Moved",
                Request::Extend(_) => "Extended",
                Request::Approve(_) => "Approved",
                _ => "Booked",
            };
            let show = |known: &[Gpu], resp: &Response| print_response(resp, known, json, done);
            let resp = match req {
                // A listing may come in pages: read them all.
                Request::List(l) => conn.list_all(l).await.map(Response::Bookings),
                other => conn.request(other).await,
            }
            .map_err(anyhow::Error::from)?;
            let known = if json || matches!(resp, Response::Gpus(_)) {
                Vec::new()
            } else {
                gpus(&conn).await?
            };
            show(&known, &resp);
        }
        (_, None) => unreachable!("every command but whoami and watch builds a request"),
    }
    Ok(())
}

pub async fn current_end(conn: &Connection, id: BookingId) -> Result<DateTime<Utc>, Failure> {
    let list = conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
        .map_err(anyhow::Error::from)?;
    list.bookings
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.interval.end)
        .ok_or_else(|| Failure {
            code: 4,
            error: anyhow!("there is no booking {id} on {}", list.server),
            kind: Some(ErrorKind::NotFound),
        })
}

/// Ends `wait` and `run`: the job's status becomes gpubook's.
pub fn finish_job(b: &gpubook_core::Booking, json: bool) -> Result<(), Failure> {
    if json {
        print_json(b);
    }
    let status = jobs::job_status(b).unwrap_or(1);
    let what = b
        .run
        .as_ref()
        .and_then(|r| r.message.clone())
        .unwrap_or_else(|| format!("booking {} is {} and its job never ran", b.id, b.state));
    if status == 0 {
        if !json {
            eprintln!("gpubook: booking {}'s job: {what}", b.id);
        }
        Ok(())
    } else {
        Err(Failure {
            code: status,
            error: anyhow!("booking {}'s job: {what}", b.id),
            kind: None,
        })
    }
}

pub async fn gpus(conn: &Connection) -> Result<Vec<Gpu>, Failure> {
    match conn
        .request(Request::Gpus(GpusRequest {}))
        .await
        .map_err(anyhow::Error::from)?
    {
        Response::Gpus(g) => Ok(g.gpus),
        other => Err(anyhow!("unexpected answer {other:?}").into()),
    }
}
