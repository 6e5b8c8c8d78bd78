//! `gpubook usage`: how booked GPUs were used.

use crate::print::print_json;
use crate::{output, Failure};
use anyhow::anyhow;
use gpubook_client::Connection;
use gpubook_core::Booking;
use gpubook_proto::{ErrorKind, ListRequest};

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
    list.bookings.retain(|b| b.usage.is_some());
    if json {
        print_json(&list.bookings);
    } else {
        println!("{}", usage_table(&list.bookings));
    }
    Ok(())
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
