//! How things look on a terminal: local times, GPU lists, tables.

use chrono::{DateTime, Local, Utc};
use gpubook_core::{duration::human_duration, Booking, Gpu, GpuUuid};
use gpubook_proto::{Event, EventKind, Readings};
use std::io::Write;

/// Writes to stdout (what the crate's `println!` and `print!` do).
pub fn out(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        stdout_failed(&e);
    }
}

/// Writing to stdout failed: a reader that went away (a closed pipe) ends the program as it
/// ends any Unix tool, by SIGPIPE (status 141 to a shell), without a word; anything else is
/// said once on stderr, and the program ends with status 1.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // SAFETY: restoring the default action of SIGPIPE and raising it has no memory effects.
        #[cfg(unix)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
        std::process::exit(141);
    }
    eprintln!("gpubook: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// A UTC instant in the local zone, short: "Thu 26 Nov 14:00", with the year when it is not
/// this year's ("Fri 01 Jan 2027 09:00").
pub fn when(t: DateTime<Utc>) -> String {
    when_from(t, Utc::now())
}

/// [`when`] as seen at `now`.
fn when_from(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    use chrono::Datelike;
    let (t, now) = (t.with_timezone(&Local), now.with_timezone(&Local));
    let day = if t.year() == now.year() {
        "%a %d %b"
    } else {
        "%a %d %b %Y"
    };
    let clock = if t.timestamp() % 60 == 0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    t.format(&format!("{day} {clock}")).to_string()
}

/// GPU UUIDs as indices where known ("0,1"), else the UUIDs.
pub fn gpu_list(gpus: &[GpuUuid], known: &[Gpu]) -> String {
    gpus.iter()
        .map(|u| match known.iter().find(|g| &g.uuid == u) {
            Some(g) => g.index.to_string(),
            None => u.0.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A booking in one sentence.
pub fn booking_line(b: &Booking, known: &[Gpu]) -> String {
    let mut s = format!(
        "#{} {} GPU{} {} {} → {} ({}) {}",
        b.id,
        b.owner,
        if b.gpus.len() == 1 { "" } else { "s" },
        gpu_list(&b.gpus, known),
        when(b.interval.start),
        when(b.interval.end),
        human_duration(b.interval.duration()),
        b.state,
    );
    if !b.title.is_empty() {
        s.push_str(&format!(" \"{}\"", b.title));
    }
    if let Some(r) = &b.pending_reason {
        s.push_str(&format!(" [{r}]"));
    }
    s
}

/// A booking as an admin sees it before deciding on it: who, which GPUs, when (local time),
/// its state, its revision and why it waits; one field a line.
pub fn booking_shape(b: &Booking, known: &[Gpu], server: &str) -> String {
    let mut s = format!("Booking {} on {server}, revision {}:", b.id, b.revision);
    let mut field = |name: &str, value: String| s.push_str(&format!("\n  {name:<7} {value}"));
    field("owner", b.owner.clone());
    field(
        if b.gpus.len() == 1 { "GPU" } else { "GPUs" },
        gpu_list(&b.gpus, known),
    );
    field(
        "when",
        format!(
            "{} → {} ({}, your time)",
            when(b.interval.start),
            when(b.interval.end),
            human_duration(b.interval.duration())
        ),
    );
    field("state", b.state.to_string());
    if let Some(r) = &b.pending_reason {
        field("waits", r.clone());
    }
    if !b.title.is_empty() {
        field("title", format!("\"{}\"", b.title));
    }
    if let Some(j) = &b.job {
        let cwd = j
            .cwd
            .as_deref()
            .map(|c| format!(" (in {c})"))
            .unwrap_or_default();
        field("job", format!("{}{cwd}", j.command));
    }
    s
}

/// Rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            // An empty last column leaves no trailing blanks.
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

/// The bookings table of `gpubook ls`.
pub fn bookings_table(bookings: &[Booking], known: &[Gpu]) -> String {
    let rows: Vec<Vec<String>> = bookings.iter().map(|b| booking_row(b, known)).collect();
    table(&BOOKING_COLUMNS, &rows)
}

/// The bookings table of `gpubook ls --all`: each row's server first, with that server's
/// GPUs to name them by index.
pub fn bookings_table_by_server(rows: &[(&str, &Booking, &[Gpu])]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(server, b, known)| {
            let mut r = vec![server.to_string()];
            r.extend(booking_row(b, known));
            r
        })
        .collect();
    let mut header = vec!["SERVER"];
    header.extend(BOOKING_COLUMNS);
    table(&header, &rows)
}

/// The columns of a bookings table.
const BOOKING_COLUMNS: [&str; 10] = [
    "ID", "REV", "STATE", "OWNER", "GPUS", "START", "END", "LENGTH", "JOB", "TITLE",
];

fn booking_row(b: &Booking, known: &[Gpu]) -> Vec<String> {
    let mut title = match (&b.asap, &b.pending_reason) {
        (_, Some(r)) => format!("{} [{r}]", b.title),
        (Some(_), None) => format!("{} [as soon as possible]", b.title),
        _ => b.title.clone(),
    };
    if let Some(u) = &b.usage {
        let used = u.gpu_seconds_used as f64 / b.interval.duration().num_seconds().max(1) as f64;
        title.push_str(&format!(
            " [used {used:.1} of {} GPU{}, {:.0}%]",
            b.gpus.len(),
            if b.gpus.len() == 1 { "" } else { "s" },
            u.mean_util
        ));
    }
    vec![
        b.id.to_string(),
        b.revision.to_string(),
        b.state.to_string(),
        b.owner.clone(),
        gpu_list(&b.gpus, known),
        when(b.interval.start),
        when(b.interval.end),
        human_duration(b.interval.duration()),
        job_cell(b),
        title,
    ]
}

/// A booking's job in a few words: "-", "waiting", "running (pid 42)", "exit 0", ...
fn job_cell(b: &Booking) -> String {
    use gpubook_core::JobState;
    if b.job.is_none() {
        return "-".into();
    }
    let Some(r) = &b.run else {
        // Never started: waiting for its slot, or it never will (denied, cancelled, passed).
        return if b.state.is_final() {
            "not run".into()
        } else {
            "waiting".into()
        };
    };
    let ended = match (r.exit_code, r.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "ended".into(),
    };
    match r.state {
        JobState::Starting => "starting".into(),
        JobState::Running => match (r.pid, r.message.as_deref()) {
            (Some(pid), _) => format!("running (pid {pid})"),
            // On Slurm: "Slurm job 234 running on gpunode1".
            (None, Some(m)) if m.starts_with("Slurm job ") => format!("running ({m})"),
            _ => "running".into(),
        },
        JobState::Finished => ended,
        JobState::Stopped => format!("stopped, {ended}"),
        JobState::FailedToStart => "failed to start".into(),
        JobState::Lost => "lost".into(),
    }
}

/// The GPUs table of `gpubook gpus`.
pub fn gpus_table(gpus: &[Gpu], readings: Option<&Readings>) -> String {
    let rows: Vec<Vec<String>> = gpus
        .iter()
        .map(|g| {
            let found = readings.and_then(|r| r.gpus.iter().find(|x| x.uuid == g.uuid));
            // On Slurm a lane no node agent reads says only whether Slurm gave it to a job.
            let slurm_only = found
                .filter(|r| r.memory_total == 0)
                .and_then(|r| r.allocated);
            let r = found.filter(|_| slurm_only.is_none());
            let total = found.map_or(g.memory_total, |r| r.memory_total.max(g.memory_total));
            vec![
                g.index.to_string(),
                g.name.clone(),
                if total == 0 {
                    "-".into()
                } else {
                    format!("{:.0} GiB", total as f64 / (1u64 << 30) as f64)
                },
                r.map(|r| format!("{}%", r.util_gpu)).unwrap_or("-".into()),
                r.map(|r| format!("{:.1} GiB", r.memory_used as f64 / (1u64 << 30) as f64))
                    .unwrap_or("-".into()),
                r.map(|r| format!("{}°C", r.temperature_c))
                    .unwrap_or("-".into()),
                r.map(|r| format!("{} W", r.power_mw / 1000))
                    .unwrap_or("-".into()),
                r.map(|r| {
                    r.processes
                        .iter()
                        .map(|p| format!("{}({})", p.pid, p.user.as_deref().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| match slurm_only {
                    Some(true) => "in a Slurm job".into(),
                    Some(false) => "free in Slurm".into(),
                    None => String::new(),
                }),
                g.uuid.0.clone(),
            ]
        })
        .collect();
    table(
        &[
            "GPU",
            "MODEL",
            "MEMORY",
            "UTIL",
            "USED",
            "TEMP",
            "POWER",
            "PROCESSES",
            "UUID",
        ],
        &rows,
    )
}

/// An idle-held note in words: "GPU 2 holds 8.2 GiB at 1 % for 30m"; `None` for another note.
pub fn idle_held(note: &gpubook_core::Note, known: &[Gpu]) -> Option<String> {
    let gpubook_core::Note::IdleHeld {
        gpu,
        memory_bytes,
        util_pct,
        held_secs,
        released,
    } = note
    else {
        return None;
    };
    Some(format!(
        "GPU {} holds {:.1} GiB at {util_pct} % for {}{}",
        gpu_list(std::slice::from_ref(gpu), known),
        *memory_bytes as f64 / (1u64 << 30) as f64,
        human_duration(chrono::Duration::seconds(*held_secs)),
        if *released { "; released" } else { "" }
    ))
}

/// An event in one line, for `gpubook watch`.
pub fn event_line(e: &Event, known: &[Gpu]) -> String {
    let what = match e.kind {
        EventKind::BookingCreated => "booked",
        EventKind::BookingChanged => "changed",
        EventKind::BookingCancelled => "cancelled",
        EventKind::BookingApproved => "approved",
        EventKind::BookingDenied => "denied",
        EventKind::BookingMovedEarlier => "moved earlier",
        EventKind::BookingReleased => "released",
        EventKind::SlotStarting => "starts soon",
        EventKind::SlotStarted => "started",
        EventKind::SlotEnding => "ends soon",
        EventKind::SlotEnded => "ended",
        EventKind::JobStarted => "job started",
        EventKind::JobFinished => "job finished",
        EventKind::JobStopped => "job stopped at the end of the slot",
        EventKind::JobFailed => "job failed to start",
        EventKind::JobLost => "job lost",
        EventKind::Intruder => "someone else's process is on the booked GPUs",
        EventKind::Idle => "booked GPUs idle",
        EventKind::IdleHeld => "booked GPUs hold memory but stay idle",
        EventKind::UsageRecorded => "usage recorded",
        EventKind::StageProgress => "staging data",
        EventKind::StageReady => "staged data ready",
        EventKind::StageFailed => "staging data failed",
        EventKind::JobSaved => "job results saved",
        EventKind::SaveFailed => "saving job results failed",
        EventKind::Unknown => "(unknown event)",
    };
    let by = e
        .actor
        .as_deref()
        .map(|a| format!(" by {a}"))
        .unwrap_or_default();
    let seen = match &e.note {
        Some(gpubook_core::Note::Intruder {
            gpu,
            pid,
            user,
            used_bytes,
            stopped,
        }) => format!(
            " (pid {pid} of {} on GPU {}, {:.1} GiB{})",
            user.as_deref().unwrap_or("an unknown user"),
            gpu_list(std::slice::from_ref(gpu), known),
            *used_bytes as f64 / (1u64 << 30) as f64,
            if *stopped { ", stopped" } else { "" }
        ),
        Some(gpubook_core::Note::Idle {
            idle_secs,
            released,
        }) => format!(
            " (no process for {}{})",
            human_duration(chrono::Duration::seconds(*idle_secs)),
            if *released { "; released" } else { "" }
        ),
        Some(n @ gpubook_core::Note::IdleHeld { .. }) => {
            format!(" ({})", idle_held(n, known).unwrap_or_default())
        }
        Some(gpubook_core::Note::Maintenance {
            id, reason, window, ..
        }) => format!(
            " (maintenance {id}: {reason}, {} to {})",
            when(window.start),
            when(window.end)
        ),
        Some(note) => crate::transfers::note_text(note),
        None => match (&e.kind, &e.booking.run) {
            (
                EventKind::JobStarted
                | EventKind::JobFinished
                | EventKind::JobStopped
                | EventKind::JobFailed
                | EventKind::JobLost,
                Some(r),
            ) => {
                let pid = r.pid.map(|p| format!("pid {p}")).unwrap_or_default();
                match &r.message {
                    Some(m) if !pid.is_empty() => format!(" ({pid}: {m})"),
                    Some(m) => format!(" ({m})"),
                    None if !pid.is_empty() => format!(" ({pid})"),
                    None => String::new(),
                }
            }
            _ => String::new(),
        },
    };
    format!(
        "{:>6}  {}  {what}{by}{seen}: {}",
        e.seq,
        e.at.with_timezone(&Local).format("%H:%M:%S"),
        booking_line(&e.booking, known)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_outside_this_year_shows_its_year() {
        let now: DateTime<Utc> = "2026-06-15T12:00:00Z".parse().unwrap();
        let at = |s: &str| when_from(s.parse().unwrap(), now);
        assert!(!at("2026-06-20T12:00:00Z").contains("2026"));
        assert!(
            at("2027-06-20T12:00:00Z").contains(" 2027 "),
            "{}",
            at("2027-06-20T12:00:00Z")
        );
        assert!(at("2025-06-20T12:00:30Z").contains(" 2025 "));
    }
}
