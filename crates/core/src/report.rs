//! Who used how much: GPU-hours booked, used, held idle and given back, per user and per GPU,
//! over a window. Pure: the agent hands in the bookings and the few facts only its events
//! know (when a booking was cancelled, what a release cut off, what the watch saw).
//!
//! # What each figure means (all clipped to the window, in whole GPU-seconds)
//! - **booked**: the GPU-seconds a confirmed, active or ended booking reserved, as it stood
//!   before any release (GPUs × length). Pending, cancelled and denied bookings reserve nothing.
//! - **used**: the booking's recorded `usage.gpu_seconds_used` (seconds in which a booked GPU
//!   had a process or load), spread evenly over the part of the slot it held, so the share
//!   inside the window counts. A slot still running has no usage yet and counts 0.
//! - **idle_held**: for each idle-held note, the stretch it reports (`held_secs` up to the
//!   note) × the booking's GPUs: while held, every booked GPU was nearly idle. The agent
//!   announces a stretch once, when it reaches the policy's threshold, so this is a lower
//!   bound when the stretch went on unreleased.
//! - **released_early**: booked minus held after a release (by the owner, an admin, or the
//!   agent's idle policy): (end before release − release time) × GPUs.
//! - **cancelled_late**: bookings cancelled less than [`LATE_CANCEL_HOURS`] before their start,
//!   counted when the start lies in the window.
//! - **never_used**: ended bookings whose recorded usage saw no process at all (readings were
//!   made, `gpu_seconds_used` is 0), counted when the start lies in the window.
//! - **intruder_events**: intruder notes on the user's bookings; **intrusions_caused**:
//!   intruder notes naming the user as the process's owner on someone else's booking.
//! - Per GPU, **used** is a booking's used share split evenly over its GPUs (the remainder to
//!   the first ones, so the GPUs add up to the users). **maintenance** (seconds of the
//!   window, up to now, the GPU spent in maintenance) is filled in by the agent, which holds
//!   the periods; [`compute`] leaves it 0.

use crate::booking::{Booking, BookingId, BookingState, Note};
use crate::gpu::{Gpu, GpuUuid};
use crate::time::Interval;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A booking cancelled less than this many hours before its start was cancelled late: too
/// late for someone else to plan on the GPUs (a working day's notice).
pub const LATE_CANCEL_HOURS: i64 = 24;

/// The longest window a report covers, in days (a year, leap day included).
pub const MAX_REPORT_DAYS: i64 = 366;

/// Something only the events know about a booking.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// The booking.
    pub booking: BookingId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub what: FactKind,
}

/// What a [`Fact`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum FactKind {
    /// The booking was cancelled.
    Cancelled,
    /// The rest of its slot was given back; `before` is its interval before the release.
    Released {
        /// The interval before the release.
        before: Interval,
    },
    /// The watch saw something (an intruder, idleness).
    Note(Note),
}

/// One user's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct UserLine {
    /// The user name.
    pub user: String,
    /// Bookings overlapping the window that reserved GPUs.
    pub bookings: u32,
    /// GPU-seconds booked.
    pub booked_gpu_secs: i64,
    /// GPU-seconds in which a booked GPU had a process or load.
    pub used_gpu_secs: i64,
    /// GPU-seconds held with memory while nearly idle.
    pub idle_held_gpu_secs: i64,
    /// GPU-seconds given back by releases.
    pub released_early_gpu_secs: i64,
    /// Bookings cancelled late.
    pub cancelled_late: u32,
    /// Started bookings that saw no process.
    pub never_used: u32,
    /// Intruder events on this user's bookings.
    pub intruder_events: u32,
    /// Intruder events where this user's process was the intruder.
    pub intrusions_caused: u32,
}

/// One GPU's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpuLine {
    /// The GPU.
    pub uuid: GpuUuid,
    /// Its index now.
    pub index: u32,
    /// Its model name.
    pub name: String,
    /// GPU-seconds booked (seconds: one GPU).
    pub booked_secs: i64,
    /// Seconds it had a process or load (its share of its bookings' use).
    pub used_secs: i64,
    /// Seconds out of service for maintenance (filled in by the agent from its periods).
    pub maintenance_secs: i64,
}

/// A report over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Report {
    /// The window, half-open.
    pub window: Interval,
    /// Hours before a start under which a cancellation is late.
    pub late_cancel_hours: i64,
    /// Per user, by name; only those with something to report.
    pub users: Vec<UserLine>,
    /// Per GPU, in index order; every GPU of the server.
    pub gpus: Vec<GpuLine>,
}

/// Why a window cannot be reported on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// `to` is not after `from`.
    #[error("the report's end ({to}) must be after its start ({from})")]
    Empty {
        /// Start.
        from: DateTime<Utc>,
        /// End.
        to: DateTime<Utc>,
    },
    /// Longer than [`MAX_REPORT_DAYS`].
    #[error("a report covers at most {MAX_REPORT_DAYS} days; this window has {days}: ask for a shorter one (or several)")]
    TooLong {
        /// The window's length in whole days.
        days: i64,
    },
}

/// The window `[from, to)`, if a report may cover it.
pub fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Interval, ReportError> {
    let w = Interval::new(from, to).ok_or(ReportError::Empty { from, to })?;
    if w.duration() > Duration::days(MAX_REPORT_DAYS) {
        return Err(ReportError::TooLong {
            days: w.duration().num_days(),
        });
    }
    Ok(w)
}

/// Seconds of `i` inside `w`.
fn secs_within(i: &Interval, w: &Interval) -> i64 {
    i.intersection(w).map_or(0, |x| x.duration().num_seconds())
}

/// `total` × `part` / `whole`, exactly, rounded down; `total` when `whole` is not positive.
fn share(total: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 || part >= whole {
        return total;
    }
    (i128::from(total) * i128::from(part.max(0)) / i128::from(whole)) as i64
}

/// The facts about each booking, gathered once.
#[derive(Default)]
struct Known<'a> {
    cancelled_at: HashMap<BookingId, DateTime<Utc>>,
    before_release: HashMap<BookingId, Interval>,
    notes: Vec<(&'a Fact, &'a Note)>,
}

fn gather(facts: &[Fact]) -> Known<'_> {
    let mut k = Known::default();
    for f in facts {
        match &f.what {
            FactKind::Cancelled => {
                k.cancelled_at.insert(f.booking, f.at);
            }
            FactKind::Released { before } => {
                // The first release's `before` is the slot as booked.
                k.before_release.entry(f.booking).or_insert(*before);
            }
            FactKind::Note(n) => k.notes.push((f, n)),
        }
    }
    k
}

/// The report over `window` from every booking and the facts about them. With `only` set to a
/// user name, the report covers that user alone: their line, and the GPUs' figures from their
/// bookings only (what a user who is not an admin may see).
pub fn compute(
    bookings: &[Booking],
    facts: &[Fact],
    gpus: &[Gpu],
    window: Interval,
    only: Option<&str>,
) -> Report {
    let known = gather(facts);
    let mut users: BTreeMap<String, UserLine> = BTreeMap::new();
    let mut per_gpu: HashMap<&GpuUuid, (i64, i64)> = HashMap::new();
    let by_id: HashMap<BookingId, &Booking> = bookings.iter().map(|b| (b.id, b)).collect();
    for b in bookings {
        let n = b.gpus.len() as i64;
        if b.state == BookingState::Cancelled {
            let late = known
                .cancelled_at
                .get(&b.id)
                .is_some_and(|at| b.interval.start - *at < Duration::hours(LATE_CANCEL_HOURS));
            if late && window.contains(b.interval.start) {
                entry(&mut users, &b.owner).cancelled_late += 1;
            }
            continue;
        }
        if !b.state.holds_gpus() && b.state != BookingState::Ended {
            continue;
        }
        let reserved = known
            .before_release
            .get(&b.id)
            .copied()
            .unwrap_or(b.interval);
        let booked_secs = secs_within(&reserved, &window);
        if booked_secs == 0 {
            continue;
        }
        let held_secs = secs_within(&b.interval, &window);
        let used = b.usage.map_or(0, |u| {
            share(
                u.gpu_seconds_used,
                held_secs,
                b.interval.duration().num_seconds(),
            )
        });
        let u = entry(&mut users, &b.owner);
        u.bookings += 1;
        u.booked_gpu_secs += booked_secs * n;
        u.used_gpu_secs += used;
        u.released_early_gpu_secs += (booked_secs - held_secs) * n;
        let unused = b
            .usage
            .is_some_and(|u| u.samples > 0 && u.gpu_seconds_used == 0);
        if b.state == BookingState::Ended && unused && window.contains(b.interval.start) {
            u.never_used += 1;
        }
        if only.is_some_and(|o| o != b.owner) {
            continue;
        }
        for (i, g) in b.gpus.iter().enumerate() {
            let e = per_gpu.entry(g).or_default();
            e.0 += booked_secs;
            // Split evenly; the remainder goes to the first GPUs.
            e.1 += used / n + i64::from((i as i64) < used % n);
        }
    }
    for (f, note) in &known.notes {
        let Some(b) = by_id.get(&f.booking) else {
            continue;
        };
        match note {
            Note::Intruder { user, .. } if window.contains(f.at) => {
                entry(&mut users, &b.owner).intruder_events += 1;
                if let Some(who) = user.as_deref().filter(|w| *w != b.owner) {
                    entry(&mut users, who).intrusions_caused += 1;
                }
            }
            Note::IdleHeld { held_secs, .. } => {
                let start = f.at - Duration::seconds((*held_secs).max(0));
                let stretch = Interval { start, end: f.at };
                let secs = secs_within(&stretch, &window);
                if secs > 0 {
                    entry(&mut users, &b.owner).idle_held_gpu_secs += secs * b.gpus.len() as i64;
                }
            }
            _ => {}
        }
    }
    let gpus = gpus
        .iter()
        .map(|g| {
            let (booked_secs, used_secs) = per_gpu.get(&g.uuid).copied().unwrap_or_default();
            GpuLine {
                uuid: g.uuid.clone(),
                index: g.index,
                name: g.name.clone(),
                booked_secs,
                used_secs,
                maintenance_secs: 0,
            }
        })
        .collect();
    Report {
        window,
        late_cancel_hours: LATE_CANCEL_HOURS,
        users: users
            .into_values()
            .filter(|l| only.is_none_or(|o| o == l.user))
            .collect(),
        gpus,
    }
}

/// `user`'s line, made on first use.
fn entry<'a>(users: &'a mut BTreeMap<String, UserLine>, user: &str) -> &'a mut UserLine {
    users.entry(user.to_string()).or_insert_with(|| UserLine {
        user: user.to_string(),
        ..UserLine::default()
    })
}
