//! `gpubook usage`: how booked GPUs were used, and which bookings held GPU memory while
//! doing nothing ("idle but held", the agent's `idle_held` events).
//!
//! Idle-held stretches are read from the server's event history (a subscription from the
//! first event up to the latest one): every event reaches every subscriber, so admins (and
//! everyone, as in `gpubook watch`) see every such booking; `--mine` keeps one's own. A
//! booking still on shows with its idle-held stretches before its usage is recorded.

use crate::print::print_json;
use crate::{output, Failure};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use gpubook_client::{ClientError, Connection, Pushed};
use gpubook_core::{Booking, BookingId, Gpu, Note};
use gpubook_proto::{ErrorKind, EventKind, ListRequest};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long reading the event history may take before `usage` gives up on it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);

/// One idle-held stretch of a booking, as its event told it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Held {
    /// When it was announced.
    pub at: DateTime<Utc>,
    /// What the agent saw.
    pub note: Note,
}

/// `gpubook usage [ID] [--mine]` on the server behind `conn`.
pub async fn usage(
    conn: &Connection,
    id: Option<u64>,
    mine: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut list = conn
        .list_all(ListRequest {
            include_past: true,
            mine,
            ..ListRequest::default()
        })
        .await
        .map_err(anyhow::Error::from)?;
    if let Some(id) = id {
        list.bookings.retain(|b| b.id.0 == id);
        if list.bookings.is_empty() {
            return Err(Failure {
                code: 4,
                error: anyhow!("there is no booking {id} on {}", list.server),
                kind: Some(ErrorKind::NotFound),
            });
        }
    }
    let held = idle_held(conn).await?;
    list.bookings
        .retain(|b| b.usage.is_some() || held.contains_key(&b.id));
    if json {
        // Each booking as listed, with its idle-held stretches added.
        let out: Vec<serde_json::Value> = list
            .bookings
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                v["idle_held"] = serde_json::to_value(held.get(&b.id).cloned().unwrap_or_default())
                    .unwrap_or_default();
                v
            })
            .collect();
        print_json(&out);
    } else {
        println!("{}", usage_table(&list.bookings));
        let known = if held.is_empty() {
            Vec::new()
        } else {
            crate::commands::gpus(conn).await?
        };
        let lines = held_lines(&list.bookings, &held, &known);
        if !lines.is_empty() {
            println!("\nIdle but held (GPU memory held while the GPUs do nothing):\n{lines}");
        }
    }
    Ok(())
}

/// Every `idle_held` event on the server so far, by booking.
async fn idle_held(conn: &Connection) -> Result<BTreeMap<BookingId, Vec<Held>>, Failure> {
    let read = async {
        let (latest, mut events) = conn.subscribe(Some(0), false).await?;
        let mut held: BTreeMap<BookingId, Vec<Held>> = BTreeMap::new();
        let mut seen = 0;
        while seen < latest {
            match events.recv().await {
                Some(Pushed::Event(e)) => {
                    seen = e.seq;
                    if let (EventKind::IdleHeld, Some(note)) = (e.kind, e.note) {
                        held.entry(e.booking.id)
                            .or_default()
                            .push(Held { at: e.at, note });
                    }
                }
                Some(Pushed::Error(e)) => return Err(ClientError::Agent(e)),
                Some(_) => {}
                None => return Err(ClientError::ConnectionLost),
            }
        }
        Ok(held)
    };
    match tokio::time::timeout(HISTORY_TIMEOUT, read).await {
        Ok(r) => r.map_err(|e| anyhow::Error::from(e).into()),
        Err(_) => Err(anyhow!(
            "the server's events did not all come within {} s",
            HISTORY_TIMEOUT.as_secs()
        )
        .into()),
    }
}

/// One line per idle-held stretch of the shown bookings.
fn held_lines(
    bookings: &[Booking],
    held: &BTreeMap<BookingId, Vec<Held>>,
    known: &[Gpu],
) -> String {
    let mut lines = Vec::new();
    for b in bookings {
        for h in held.get(&b.id).into_iter().flatten() {
            if let Some(words) = output::idle_held(&h.note, known) {
                lines.push(format!(
                    "  {}  {}  {words} (seen {})",
                    b.id,
                    b.owner,
                    output::when(h.at)
                ));
            }
        }
    }
    lines.join("\n")
}

/// The usage table of `gpubook usage`.
pub fn usage_table(bookings: &[Booking]) -> String {
    let rows: Vec<Vec<String>> = bookings
        .iter()
        .filter_map(|b| {
            let u = b.usage?;
            Some(vec![
                b.id.to_string(),
                b.owner.clone(),
                format!("{:.1}", u.gpu_seconds_booked as f64 / 3600.0),
                format!("{:.1}", u.gpu_seconds_used as f64 / 3600.0),
                format!("{:.0}%", u.mean_util),
                format!("{:.1} GiB", u.peak_memory as f64 / (1u64 << 30) as f64),
                format!(
                    "{:.1} of {}",
                    u.gpu_seconds_used as f64 / b.interval.duration().num_seconds().max(1) as f64,
                    b.gpus.len(),
                ),
                b.title.clone(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return "No usage recorded yet: it is recorded when a slot ends.".into();
    }
    output::table(
        &[
            "ID",
            "OWNER",
            "BOOKED GPU-H",
            "USED GPU-H",
            "MEAN UTIL",
            "PEAK MEM",
            "GPUS USED OF BOOKED",
            "TITLE",
        ],
        &rows,
    )
}
