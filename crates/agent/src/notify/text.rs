//! What a notification says: an event about a person's booking as a subject and a body of
//! plain text (for mail and chat), and as JSON (for a plain webhook). Times are UTC: the agent
//! does not know the reader's time zone.

use gpubook_core::duration::human_duration;
use gpubook_core::{Booking, JobState, Note};
use gpubook_proto::{Event, EventKind};

/// The subject line and body text of `ev` from server `server`.
pub fn render(ev: &Event, server: &str) -> (String, String) {
    let b = &ev.booking;
    let t = title(b);
    let subject = match ev.kind {
        EventKind::JobFinished => format!("Job of {t} finished: {}", how_it_ended(b)),
        EventKind::JobStopped => format!("Job of {t} stopped at the slot's end"),
        EventKind::JobFailed => format!("Job of {t} could not be started"),
        EventKind::JobLost => format!("Job of {t} was lost"),
        // On Slurm a job is first submitted (starting), then runs when Slurm starts it.
        EventKind::JobStarted
            if b.run
                .as_ref()
                .is_some_and(|r| r.state == JobState::Starting) =>
        {
            format!("Job of {t} was submitted")
        }
        EventKind::JobStarted => format!("Job of {t} started"),
        EventKind::JobSaved => format!("Job of {t} ended; results saved"),
        EventKind::SaveFailed => format!("Results of {t} could not be saved"),
        EventKind::StageFailed => format!("Data for {t} could not be staged"),
        EventKind::StageReady => format!("Data for {t} is in place"),
        EventKind::StageProgress => format!("Data for {t} is being staged"),
        EventKind::SlotStarting => format!("{t} starts soon"),
        EventKind::SlotStarted => format!("{t} has started"),
        EventKind::SlotEnding => format!("{t} ends soon"),
        EventKind::SlotEnded => format!("{t} has ended"),
        EventKind::BookingCreated => format!("{t} was booked"),
        EventKind::BookingChanged => format!("{t} was changed"),
        EventKind::BookingCancelled => format!("{t} was cancelled"),
        EventKind::BookingApproved => format!("{t} was approved"),
        EventKind::BookingDenied => format!("{t} was denied"),
        EventKind::BookingMovedEarlier => format!("{t} moved earlier"),
        EventKind::BookingReleased => format!("{t} was released"),
        EventKind::Intruder => format!("Someone else is on your GPU on {server}"),
        EventKind::Idle => format!("{t} has been idle"),
        EventKind::IdleHeld => format!("{t} holds GPU memory but does nothing"),
        EventKind::UsageRecorded => format!("Usage of {t} was recorded"),
        EventKind::Unknown => format!("News about {t}"),
    };
    let mut body = format!(
        "{subject}.\n\nServer: {server}\nBooking: {} ({}), {} GPU{}, {} to {} UTC\n",
        b.id.0,
        b.title,
        b.gpus.len(),
        if b.gpus.len() == 1 { "" } else { "s" },
        b.interval.start.format("%Y-%m-%d %H:%M"),
        b.interval.end.format("%Y-%m-%d %H:%M"),
    );
    if let Some(run) = &b.run {
        if let Some(code) = run.exit_code {
            body.push_str(&format!("Exit status: {code}\n"));
        }
        if let Some(sig) = run.signal {
            body.push_str(&format!("Ended by signal: {sig}\n"));
        }
        if let Some(m) = &run.message {
            body.push_str(&format!("Agent says: {m}\n"));
        }
    }
    if let Some(a) = &ev.actor {
        body.push_str(&format!("By: {a}\n"));
    }
    match &ev.note {
        Some(Note::Intruder { user, pid, .. }) => body.push_str(&format!(
            "Process {pid} of {} is on the booking's GPUs.\n",
            user.as_deref().unwrap_or("another user")
        )),
        Some(Note::TransferFailed { reason, attempts }) => {
            body.push_str(&format!("Why: {reason} (after {attempts} tries)\n"))
        }
        Some(Note::Saved { to, files }) => {
            body.push_str(&format!("{} file(s) saved to {to}\n", files.len()))
        }
        _ => {}
    }
    body.push_str(&format!(
        "\nEvent {} at {} UTC. Change what you receive with `gpubook notify set`.\n",
        ev.seq,
        ev.at.format("%Y-%m-%d %H:%M:%S")
    ));
    (subject, body)
}

/// The booking's title in quotes, or its number.
fn title(b: &Booking) -> String {
    if b.title.trim().is_empty() {
        format!("booking {}", b.id.0)
    } else {
        format!("\u{201c}{}\u{201d}", b.title.trim())
    }
}

/// "exit 0 after 3h 12m", "signal 9", "stopped".
fn how_it_ended(b: &Booking) -> String {
    let run = b.run.as_ref();
    let how = match (run.and_then(|r| r.exit_code), run.and_then(|r| r.signal)) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) if run.is_some_and(|r| r.state == JobState::Stopped) => "stopped".into(),
        (None, None) => "ended".into(),
    };
    let ran = run
        .and_then(|r| Some(r.ended_at? - r.started_at?))
        .map(|d| format!(" after {}", human_duration(d)))
        .unwrap_or_default();
    format!("{how}{ran}")
}
