//! Which agent events become desktop notifications, their words, and raising them with
//! notify-rust on the session's D-Bus (never from the web view).
//!
//! Rules: only the person's own bookings (the booking's owner is the user the agent
//! welcomed), except for a server going unreachable and coming back; each kind can be
//! turned off in the settings; when catching up after a restart, events older than
//! [`CATCH_UP_LIMIT`] are not notified (a "slot starts in 5 minutes" from last night helps
//! nobody), while the UI still receives them.
//!
//! What matters is said once (tests in `notify/tests.rs`):
//! - A booking with a job speaks when its job ends: one notice, "finished" (or "stopped at
//!   the slot's end", or "saved" when it saves results), or "could not start". Its slot's
//!   start is not announced, nor foretold (the job starts by itself), and its end warning
//!   only while the job still runs, when the warning can save work.
//! - A slot without a job is announced as it starts, with its end.
//! - The end warning ("ends in 10 minutes", with "Extend 1 h") comes `end_warning` before
//!   the end only for a slot at least twice `end_warning` long (the agent's plan decides,
//!   `gpubook_core::Plan::tick`); a shorter slot has it marked given at its start, and its
//!   start notice carries the end and the offer to extend instead.

use chrono::{DateTime, Duration, Local, Utc};
use gpubook_core::{Booking, BookingId, MaintenanceOutcome, Note};
use gpubook_proto::{Event, EventKind};

use crate::settings::Settings;

/// Events older than this when they arrive are not notified.
pub const CATCH_UP_LIMIT: Duration = Duration::minutes(10);

/// How much "Extend" adds.
pub const EXTEND_BY: Duration = Duration::hours(1);

/// A notification to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Its kind, as named in the settings.
    pub kind: &'static str,
    /// The title line.
    pub summary: String,
    /// The text.
    pub body: String,
    /// An "Extend 1 h" action, where it makes sense.
    pub extend: Option<ExtendOffer>,
}

/// What "Extend 1 h" asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtendOffer {
    /// The server's id in the app.
    pub server: String,
    /// The booking.
    pub id: BookingId,
    /// The new end.
    pub to: DateTime<Utc>,
}

/// Shows notices. The real one talks to the notification server; tests record.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Shows `n`; `on_extend` runs if the person clicks its "Extend 1 h" action.
    fn show(&self, n: Notice, on_extend: Option<Box<dyn FnOnce() + Send>>);
}

/// Local time, the way a person reads it: "14:00", or "Tue 14:00" on another day.
fn local_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let l = t.with_timezone(&Local);
    if l.date_naive() == now.with_timezone(&Local).date_naive() {
        l.format("%H:%M").to_string()
    } else {
        l.format("%a %H:%M").to_string()
    }
}

/// Durations read as everywhere else ("1h 5m", "3m", "42s"): the one format of gpubook-core.
pub use gpubook_core::duration::human_duration;

fn gpus(b: &Booking) -> String {
    match b.gpus.len() {
        1 => "1 GPU".to_string(),
        n => format!("{n} GPUs"),
    }
}

fn title(b: &Booking) -> String {
    if b.title.trim().is_empty() {
        format!("booking {}", b.id.0)
    } else {
        format!("\u{201c}{}\u{201d}", b.title)
    }
}

/// The notice for `ev` from server `server` (its id) shown as `name`, for the person `me`,
/// at `now`; `None` when there is nothing to show.
pub fn decide(
    ev: &Event,
    server: &str,
    name: &str,
    me: &str,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Option<Notice> {
    if now - ev.at > CATCH_UP_LIMIT {
        return None;
    }
    let b = &ev.booking;
    if b.owner != me {
        return None;
    }
    let (start, end) = (b.interval.start, b.interval.end);
    let when = format!(
        "{} on {name}, {}\u{2013}{}",
        gpus(b),
        local_time(start, now),
        local_time(end, now)
    );
    if let Some(Note::Maintenance {
        reason,
        window,
        outcome,
        ..
    }) = &ev.note
    {
        let (summary, body) = maintenance_text(b, ev, reason, window, *outcome, name, now);
        return settings.wants("maintenance").then_some(Notice {
            kind: "maintenance",
            summary,
            body,
            extend: None,
        });
    }
    let (kind, summary, body, extend) = match ev.kind {
        EventKind::SlotStarting | EventKind::SlotStarted if b.job.is_some() => return None,
        EventKind::SlotStarting => (
            "slot_starting",
            if start > now {
                format!("{} starts in {}", title(b), human_duration(start - now))
            } else {
                format!("{} starts now", title(b))
            },
            when,
            None,
        ),
        // Too short for its own end warning: the start says when it ends, and offers more
        // (shown to whoever wants either notice).
        EventKind::SlotStarted if b.warned_end => (
            if settings.wants("slot_started") {
                "slot_started"
            } else {
                "slot_ending"
            },
            format!(
                "{} has started; it ends in {}",
                title(b),
                human_duration(end - now)
            ),
            format!("{when}. Extend it by an hour if the GPUs are free then."),
            Some(ExtendOffer {
                server: server.to_string(),
                id: b.id,
                to: end + EXTEND_BY,
            }),
        ),
        EventKind::SlotStarted => (
            "slot_started",
            format!("{} has started", title(b)),
            format!("{when}. The GPUs are yours until {}.", local_time(end, now)),
            None,
        ),
        // A job that already ended has said so; the slot's end is news only to a running job.
        EventKind::SlotEnding
            if b.job.is_some() && b.run.as_ref().is_some_and(|r| r.state.is_over()) =>
        {
            return None
        }
        EventKind::SlotEnding => (
            "slot_ending",
            format!("{} ends in {}", title(b), human_duration(end - now)),
            format!("{when}. Extend it by an hour if the GPUs are free then."),
            Some(ExtendOffer {
                server: server.to_string(),
                id: b.id,
                to: end + EXTEND_BY,
            }),
        ),
        // A job that saves results is announced once, by the save's own notice, which says how
        // the job ended too (unless the person turned that notice off).
        EventKind::JobFinished | EventKind::JobStopped if saves_results(b, settings) => {
            return None
        }
        EventKind::JobFinished => {
            let how = how_it_ended(b);
            let mut body = format!("It {how} ({when}).");
            if let Some(u) = &b.usage {
                body.push_str(&format!(
                    " Mean GPU use {:.0} %, peak memory {:.1} GiB.",
                    u.mean_util,
                    u.peak_memory as f64 / (1u64 << 30) as f64
                ));
            }
            (
                "job_finished",
                format!("Job of {} finished", title(b)),
                body,
                None,
            )
        }
        EventKind::JobFailed => (
            "job_failed",
            format!("Job of {} could not start", title(b)),
            format!(
                "{} ({when}).",
                b.run
                    .as_ref()
                    .and_then(|r| r.message.as_deref())
                    .map(upper_first)
                    .unwrap_or_else(|| "No reason was given".to_string())
            ),
            None,
        ),
        EventKind::JobStopped => (
            "job_stopped",
            format!("Job of {} stopped at the slot's end", title(b)),
            format!(
                "The slot ended at {} and its job was still running ({when}).",
                local_time(end, now)
            ),
            None,
        ),
        EventKind::BookingApproved => (
            "booking_approved",
            format!("{} was approved", title(b)),
            when,
            None,
        ),
        EventKind::BookingDenied => (
            "booking_denied",
            format!("{} was denied", title(b)),
            match &ev.actor {
                Some(a) => format!("{when}. Denied by {a}."),
                None => format!("{when}."),
            },
            None,
        ),
        EventKind::BookingMovedEarlier => (
            "booking_moved_earlier",
            format!("{} moved earlier", title(b)),
            format!("It now starts at {} ({when}).", local_time(start, now)),
            None,
        ),
        EventKind::Intruder => {
            let who = match &ev.note {
                Some(Note::Intruder { user, pid, .. }) => format!(
                    "{} (process {pid})",
                    user.clone().unwrap_or_else(|| "another user".to_string())
                ),
                _ => "another user".to_string(),
            };
            (
                "intruder",
                format!("Someone else is on your GPU on {name}"),
                format!("{who} is using a GPU of {} ({when}).", title(b)),
                None,
            )
        }
        EventKind::IdleHeld => {
            let Some(Note::IdleHeld {
                memory_bytes,
                util_pct,
                held_secs,
                released,
                ..
            }) = &ev.note
            else {
                return None;
            };
            (
                "idle_held",
                format!("{} holds GPU memory but does nothing", title(b)),
                format!(
                    "Its GPUs hold {:.1} GiB at {util_pct} % or less for {}{} ({when}).",
                    *memory_bytes as f64 / (1u64 << 30) as f64,
                    human_duration(chrono::Duration::seconds(*held_secs)),
                    if *released {
                        "; the booking was released"
                    } else {
                        ""
                    }
                ),
                None,
            )
        }
        EventKind::StageProgress => {
            let Some(Note::Stage { late: true, .. }) = &ev.note else {
                return None;
            };
            (
                "stage_failed",
                format!("Data for {} will not be ready in time", title(b)),
                format!(
                    "At the pace of its copy it will not be in place when the slot starts at {}; \
                     the job waits for it ({when}).",
                    local_time(start, now)
                ),
                None,
            )
        }
        EventKind::StageFailed | EventKind::SaveFailed => {
            let reason = match &ev.note {
                Some(Note::TransferFailed { reason, attempts }) => {
                    format!("{reason} (after {attempts} tries)")
                }
                _ => "no reason was given".to_string(),
            };
            if ev.kind == EventKind::StageFailed {
                (
                    "stage_failed",
                    format!("Data for {} could not be staged", title(b)),
                    format!(
                        "{reason}. The slot starts at {} ({when}).",
                        local_time(start, now)
                    ),
                    None,
                )
            } else {
                (
                    "save_failed",
                    format!("Results of {} could not be saved", title(b)),
                    format!(
                        "The job {}. {reason}. The files stay where the job left them ({when}).",
                        how_it_ended(b)
                    ),
                    None,
                )
            }
        }
        EventKind::JobSaved => {
            let Some(Note::Saved { to, files }) = &ev.note else {
                return None;
            };
            (
                "job_saved",
                format!("Job of {} ended; results saved", title(b)),
                format!(
                    "It {}. {} file{} saved to {to}, checksums verified ({when}).",
                    how_it_ended(b),
                    files.len(),
                    if files.len() == 1 { "" } else { "s" }
                ),
                None,
            )
        }
        _ => return None,
    };
    if !settings.wants(kind) {
        return None;
    }
    Some(Notice {
        kind,
        summary,
        body,
        extend,
    })
}

/// What a booking's owner is told when maintenance moved, cancelled or cut short `b`: the
/// reason, when the GPUs are out of service, and the new time.
fn maintenance_text(
    b: &Booking,
    ev: &Event,
    reason: &str,
    window: &gpubook_core::Interval,
    outcome: MaintenanceOutcome,
    name: &str,
    now: DateTime<Utc>,
) -> (String, String) {
    let why = format!(
        "Maintenance on {name} ({reason}) from {}",
        local_time(window.start, now)
    );
    let was = ev
        .before
        .map(|i| format!(" instead of {}", local_time(i.start, now)))
        .unwrap_or_default();
    match outcome {
        MaintenanceOutcome::Moved => (
            format!("{} moved for maintenance", title(b)),
            format!(
                "{why}. It now runs {}\u{2013}{}{was}, on {}.",
                local_time(b.interval.start, now),
                local_time(b.interval.end, now),
                gpus(b)
            ),
        ),
        MaintenanceOutcome::Cancelled => (
            format!("{} cancelled for maintenance", title(b)),
            format!(
                "{why}. No {} were free for it in time; book again.",
                gpus(b)
            ),
        ),
        MaintenanceOutcome::CutShort => (
            format!("{} ends early for maintenance", title(b)),
            format!(
                "{why}. It now ends at {}: a running job gets its end signal then.",
                local_time(b.interval.end, now)
            ),
        ),
        MaintenanceOutcome::Ended => (
            format!("{} ended for maintenance", title(b)),
            format!("{why}: its GPUs went out of service now."),
        ),
    }
}

/// Whether booking `b`'s job saves results the person hears about: then the save's notice
/// (saved, or could not be saved) tells how the job ended, and the job's own is not shown.
fn saves_results(b: &Booking, settings: &Settings) -> bool {
    b.job.as_ref().is_some_and(|j| !j.save.is_empty())
        && settings.wants("job_saved")
        && settings.wants("save_failed")
}

/// How booking `b`'s job ended, for a sentence: "exited with code 0 after 2h 5m".
/// `s` with its first letter upper case: a reason read as a sentence.
fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn how_it_ended(b: &Booking) -> String {
    let run = b.run.as_ref();
    let how = match (run.and_then(|r| r.exit_code), run.and_then(|r| r.signal)) {
        (Some(0), _) => "exited with code 0".to_string(),
        (Some(c), _) => format!("failed with exit code {c}"),
        (None, Some(s)) => format!("was ended by signal {s}"),
        (None, None) if run.is_some_and(|r| r.state == gpubook_core::JobState::Stopped) => {
            "was stopped at the slot's end".to_string()
        }
        (None, None) => "ended".to_string(),
    };
    let ran = run
        .and_then(|r| Some(r.ended_at? - r.started_at?))
        .map(|d| format!(" after {}", human_duration(d)))
        .unwrap_or_default();
    format!("{how}{ran}")
}

/// "Server unreachable" (`up == false`) or "back" (`up == true`).
pub fn server_notice(
    name: &str,
    up: bool,
    detail: Option<&str>,
    settings: &Settings,
) -> Option<Notice> {
    let (kind, summary, body) = if up {
        (
            "server_back",
            format!("{name} is back"),
            "The calendar and notifications are live again.".to_string(),
        )
    } else {
        (
            "server_unreachable",
            format!("{name} cannot be reached"),
            match detail {
                Some(d) => format!("{d}. The app keeps trying."),
                None => "The app keeps trying.".to_string(),
            },
        )
    };
    settings.wants(kind).then_some(Notice {
        kind,
        summary,
        body,
        extend: None,
    })
}

/// "Refused: its host key changed": the server answered with another key than the one
/// trusted (`detail` says which, and what to do). Under the "unreachable" setting.
pub fn host_key_notice(name: &str, detail: &str, settings: &Settings) -> Option<Notice> {
    settings.wants("server_unreachable").then(|| Notice {
        kind: "server_unreachable",
        summary: format!("{name} refused: its host key changed"),
        body: format!("{detail}. gpubook does not connect to it until the key is checked."),
        extend: None,
    })
}

/// The real notifier: notify-rust on the session bus.
#[derive(Debug, Default)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn show(&self, n: Notice, on_extend: Option<Box<dyn FnOnce() + Send>>) {
        // The D-Bus calls block; never on the async runtime's threads.
        std::thread::spawn(move || {
            let mut note = notify_rust::Notification::new();
            note.appname("gpubook")
                .summary(&n.summary)
                .body(&n.body)
                .icon("gpubook");
            // Categories and action buttons are the freedesktop server's (D-Bus); macOS's and
            // Windows' backends show the notice without the Extend button.
            #[cfg(all(unix, not(target_os = "macos")))]
            let actions = {
                note.hint(notify_rust::Hint::Category(format!("gpubook.{}", n.kind)));
                let actions = on_extend.is_some()
                    && notify_rust::get_capabilities()
                        .map(|c| c.iter().any(|c| c == "actions"))
                        .unwrap_or(false);
                if actions {
                    note.action("extend", "Extend 1 h");
                }
                actions
            };
            #[cfg(not(all(unix, not(target_os = "macos"))))]
            let actions = false;
            match note.show() {
                #[cfg(all(unix, not(target_os = "macos")))]
                Ok(handle) => {
                    if let (true, Some(cb)) = (actions, on_extend) {
                        let mut cb = Some(cb);
                        handle.wait_for_action(move |action| {
                            if action == "extend" {
                                if let Some(cb) = cb.take() {
                                    cb();
                                }
                            }
                        });
                    }
                }
                #[cfg(not(all(unix, not(target_os = "macos"))))]
                Ok(_) => {
                    let _ = (actions, on_extend);
                }
                Err(e) => eprintln!("gpubook: cannot show a notification: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
