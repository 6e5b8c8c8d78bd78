//! Commands across several servers: `gpus` and `ls` (each server's answer, an unreachable
//! one reported and the others still shown), and `book --asap` placed where the start is
//! soonest.
//!
//! Exit status: 0 when at least one server answered (each failure is printed on stderr, and
//! in `--json` as that server's `error`); when none did, the failure of a single server as it
//! is, or 5 for several.

use crate::targets::{kind_name, Server};
use crate::{output, print_json, suggest, Failure};
use anyhow::anyhow;
use chrono::Utc;
use gpubook_client::servers::asap::{self, AsapAsk, Quote, QuoteError};
use gpubook_client::Connection;
use gpubook_core::{Booking, Gpu};
use gpubook_proto::{
    BookingsResponse, ErrorKind, GpusRequest, GpusResponse, ListRequest, Request, Response,
    SuggestRequest,
};
use serde_json::json;

/// Connects to every target at once; results in the targets' order.
pub async fn connect_all(targets: &[Server]) -> Vec<Result<Connection, Failure>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let t = t.clone();
        set.spawn(async move { (i, t.connect().await) });
    }
    let mut out: Vec<Option<Result<Connection, Failure>>> =
        (0..targets.len()).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, c) = r.expect("a connect task panicked");
        out[i] = Some(c);
    }
    out.into_iter()
        .map(|c| c.expect("every task reported"))
        .collect()
}

/// A failure as `{kind, message}` for one server's entry in `--json` output.
fn error_json(f: &Failure) -> serde_json::Value {
    json!({ "kind": kind_name(f), "message": format!("{:#}", f.error) })
}

/// Reports `f` for `server` on stderr (people) — JSON output carries it instead.
fn report(server: &str, f: &Failure, json: bool) {
    if !json {
        eprintln!("gpubook: {server}: {:#}", f.error);
    }
}

/// The overall result: fine if any server answered.
fn overall(mut failures: Vec<Failure>, answered: usize) -> Result<(), Failure> {
    if answered > 0 || failures.is_empty() {
        return Ok(());
    }
    if failures.len() == 1 {
        return Err(failures.remove(0));
    }
    Err(Failure {
        code: 5,
        error: anyhow!("none of the {} servers answered", failures.len()),
        kind: Some(ErrorKind::Unavailable),
    })
}

async fn gpus_of(conn: &Connection) -> Result<GpusResponse, Failure> {
    match conn
        .request(Request::Gpus(GpusRequest {}))
        .await
        .map_err(anyhow::Error::from)?
    {
        Response::Gpus(g) => Ok(g),
        other => Err(anyhow!("unexpected answer {other:?}").into()),
    }
}

/// `gpubook gpus` on several servers.
pub async fn gpus(targets: &[Server], json: bool) -> Result<(), Failure> {
    let conns = connect_all(targets).await;
    let mut failures = Vec::new();
    let mut answered = 0;
    let mut out = Vec::new();
    for (t, c) in targets.iter().zip(conns) {
        let r = match c {
            Ok(conn) => gpus_of(&conn).await,
            Err(f) => Err(f),
        };
        match r {
            Ok(g) => {
                answered += 1;
                if json {
                    out.push(json!({ "server": t.name, "gpus": g }));
                } else {
                    crate::print_response(&Response::Gpus(g), &[], false, "Booked");
                    println!();
                }
            }
            Err(f) => {
                report(&t.name, &f, json);
                out.push(json!({ "server": t.name, "error": error_json(&f) }));
                failures.push(f);
            }
        }
    }
    if json {
        print_json(&out);
    }
    overall(failures, answered)
}

/// `gpubook ls` on several servers: one table with a server column, by start time.
pub async fn ls(targets: &[Server], req: ListRequest, json: bool) -> Result<(), Failure> {
    let conns = connect_all(targets).await;
    let mut failures = Vec::new();
    let mut lists: Vec<(String, BookingsResponse, Vec<Gpu>)> = Vec::new();
    let mut out = Vec::new();
    for (t, c) in targets.iter().zip(conns) {
        let r = async {
            let conn = c?;
            let list = conn
                .list_all(req.clone())
                .await
                .map_err(anyhow::Error::from)?;
            let known = gpus_of(&conn).await?.gpus;
            Ok::<_, Failure>((list, known))
        }
        .await;
        match r {
            Ok((list, known)) => {
                out.push(json!({ "server": t.name, "bookings": list }));
                lists.push((t.name.clone(), list, known));
            }
            Err(f) => {
                report(&t.name, &f, json);
                out.push(json!({ "server": t.name, "error": error_json(&f) }));
                failures.push(f);
            }
        }
    }
    if json {
        print_json(&out);
    } else {
        let mut rows: Vec<(&str, &Booking, &[Gpu])> = lists
            .iter()
            .flat_map(|(name, list, known)| {
                list.bookings
                    .iter()
                    .map(move |b| (name.as_str(), b, known.as_slice()))
            })
            .collect();
        rows.sort_by_key(|(server, b, _)| (b.interval.start, *server, b.id));
        if rows.is_empty() {
            if !lists.is_empty() {
                let names: Vec<&str> = lists.iter().map(|(n, _, _)| n.as_str()).collect();
                println!("No bookings on {}.", names.join(", "));
            }
        } else {
            println!("{}", output::bookings_table_by_server(&rows));
        }
    }
    overall(failures, lists.len())
}

/// `gpubook book --asap --count N --for D` on several servers: each is quoted (see
/// [`asap`]), the best is chosen, and the request goes there; the agent there decides.
/// With `auto` (`--for auto`) each server suggests the length from the person's runs there,
/// and is quoted for that length; one with no runs of the command to go by cannot take it.
pub async fn book_asap(
    targets: &[Server],
    ask: AsapAsk,
    auto: Option<SuggestRequest>,
    mut req: Request,
    json: bool,
) -> Result<(), Failure> {
    let conns = connect_all(targets).await;
    let now = Utc::now();
    let mut quotes: Vec<Result<Quote, QuoteError>> = Vec::new();
    let mut live: Vec<Option<Connection>> = Vec::new();
    let mut failures: Vec<(String, Failure)> = Vec::new();
    let mut out = Vec::new();
    let mut refusals = Vec::new();
    if !json {
        eprintln!(
            "Earliest start for {} GPU{} on each server:",
            ask.count,
            if ask.count == 1 { "" } else { "s" }
        );
    }
    let mut lengths: Vec<Option<suggest::Suggested>> = Vec::new();
    for (t, c) in targets.iter().zip(conns) {
        match c {
            Ok(conn) => {
                let suggested = match &auto {
                    Some(a) => match suggest::suggest(&conn, &t.name, a.clone()).await {
                        Ok(s) => Some(s),
                        Err(f) => {
                            let e = format!("{:#}", f.error);
                            if !json {
                                eprintln!("  {}: cannot take it: {e}", t.name);
                            }
                            refusals.push(format!("{}: {e}", t.name));
                            out.push(json!({ "server": t.name, "error": error_json(&f) }));
                            quotes.push(Err(QuoteError::Client(
                                gpubook_client::ClientError::ConnectionLost,
                            )));
                            live.push(Some(conn));
                            lengths.push(None);
                            continue;
                        }
                    },
                    None => None,
                };
                let ask = AsapAsk {
                    duration: suggested.as_ref().map_or(ask.duration, |s| s.length),
                    ..ask
                };
                if let (Some(s), false) = (&suggested, json) {
                    eprintln!("  {}: {}", t.name, s.says);
                }
                lengths.push(suggested);
                let q = asap::quote(&conn, &ask, now).await;
                match &q {
                    Ok(q) => {
                        out.push(json!({
                            "server": t.name,
                            "start": q.interval.start,
                            "end": q.interval.end,
                            "idle": q.idle,
                            "needs_approval": q.needs_approval,
                            "length_secs": ask.duration.num_seconds(),
                        }));
                        if !json {
                            eprintln!(
                                "  {}: from {}{}, {} GPU{} left idle",
                                t.name,
                                output::when(q.interval.start),
                                if q.needs_approval {
                                    " (needs an admin's approval)"
                                } else {
                                    ""
                                },
                                q.idle,
                                if q.idle == 1 { "" } else { "s" }
                            );
                        }
                    }
                    Err(e) => {
                        refusals.push(format!("{}: {e}", t.name));
                        out.push(json!({ "server": t.name, "error": e.to_string() }));
                        if !json {
                            eprintln!("  {}: cannot take it: {e}", t.name);
                        }
                    }
                }
                quotes.push(q);
                live.push(Some(conn));
            }
            Err(f) => {
                report(&t.name, &f, json);
                out.push(json!({ "server": t.name, "error": error_json(&f) }));
                quotes.push(Err(QuoteError::Client(
                    gpubook_client::ClientError::ConnectionLost,
                )));
                live.push(None);
                lengths.push(None);
                failures.push((t.name.clone(), f));
            }
        }
    }
    let Some(i) = asap::choose(&quotes) else {
        if failures.len() == targets.len() {
            return overall(failures.into_iter().map(|(_, f)| f).collect(), 0);
        }
        if auto.is_some() && lengths.iter().all(Option::is_none) {
            return Err(crate::usage(format!(
                "--for auto: no server can suggest a length ({}); give one, e.g. --for 3h",
                refusals.join("; ")
            )));
        }
        return Err(Failure {
            code: 3,
            error: anyhow!(
                "no server can take {} GPUs for this long ({})",
                ask.count,
                refusals.join("; ")
            ),
            kind: Some(ErrorKind::Conflict),
        });
    };
    let conn = live[i].as_ref().expect("a quoted server is connected");
    let name = &targets[i].name;
    if let Some(s) = &lengths[i] {
        suggest::set_length(&mut req, s.length);
    }
    let resp = conn
        .request(req)
        .await
        .map_err(|e| Failure::from(anyhow::Error::from(e).context(format!("booking on {name}"))))?;
    let Response::Booking(r) = resp else {
        return Err(anyhow!("unexpected answer {resp:?}").into());
    };
    if json {
        print_json(&json!({ "server": name, "booking": r, "quotes": out }));
    } else {
        let known = gpus_of(conn).await.map(|g| g.gpus).unwrap_or_default();
        let verb = match r.booking.state {
            gpubook_core::BookingState::PendingApproval => "Waiting for an admin's approval",
            _ => "Booked",
        };
        println!(
            "{verb} on {name}: {}",
            output::booking_line(&r.booking, &known)
        );
    }
    Ok(())
}
