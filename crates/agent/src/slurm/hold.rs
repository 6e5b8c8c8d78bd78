//! Every confirmed booking held by Slurm: a reservation named `gpubook-<id>` for its owner on
//! its node, from its start to its end.
//!
//! The reservation is made, moved, extended or deleted inside the booking's decision, before
//! the store commits it (see [`crate::state::Holder`]): when Slurm refuses, the booking is
//! refused with Slurm's words and nothing changes. After a crash of either side (or a failed
//! commit) [`SlurmHolder::reconcile`] brings the reservations back in line with the plan: the
//! plan is the truth, and reservations named `gpubook-<n>` that no live booking wants are
//! deleted. One gpubook agent owns the `gpubook-` names of a cluster.
//!
//! What a reservation holds depends on the Slurm version:
//! - 23.02 and later: the booked count of GPUs on the node (`TRES=gres/gpu=N`); written to
//!   Slurm's documented form, not run here (Debian 12 has 22.05).
//! - before 23.02 a reservation cannot hold GPUs by count (`TRES=gres/gpu` is refused, and a
//!   core-count reservation leaves the GPUs to anyone's `--gres=gpu` job): the whole node is
//!   held, for the booking's owner, with `Flags=OVERLAP` so that several gpubook bookings on the
//!   same node at the same time each have their reservation, and `IGNORE_JOBS` so that a job
//!   running there (another booking's, or one without GPUs) does not refuse it: Slurm's own
//!   GPU jobs are in the plan ([`super::outside::blocking`]), which books around them. gpubook's plan keeps their GPU
//!   counts within the node's GPUs, and each booking's job asks for its own count.
//!
//! A slot's end needs nothing: the reservation ends with it and Slurm removes it. A slot
//! released early has its reservation deleted; when Slurm does not let it go yet (a job still
//! in it), the next reconciliation tries again.

use super::json::reservation_fields;
use super::reader::node_of;
use super::{run, SlurmError, GRES_RESERVATION_VERSION};
use crate::state::Holder;
use chrono::{DateTime, NaiveDateTime, Utc};
use gpubook_core::{Booking, BookingId, Change, ChangeKind, Outside, Plan};
use gpubook_proto::{ErrorBody, ErrorKind};
use std::collections::BTreeMap;

/// The prefix of the reservations gpubook makes.
pub const PREFIX: &str = "gpubook-";

/// Slurm's time format, in UTC (the commands run with `TZ=UTC`).
const TIME: &str = "%Y-%m-%dT%H:%M:%S";

/// The reservation's name for booking `id`.
pub fn name(id: BookingId) -> String {
    format!("{PREFIX}{id}")
}

/// What a booking needs held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The node.
    pub node: String,
    /// The owner, the one user the reservation admits.
    pub user: String,
    /// How many GPUs.
    pub count: usize,
    /// From.
    pub start: DateTime<Utc>,
    /// Until.
    pub end: DateTime<Utc>,
}

/// What Slurm holds for a gpubook reservation now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Have {
    /// Its node(s), as Slurm writes them.
    pub nodes: String,
    /// Its users.
    pub users: String,
    /// From.
    pub start: Option<DateTime<Utc>>,
    /// Until.
    pub end: Option<DateTime<Utc>>,
    /// Whether it has started.
    pub active: bool,
}

/// What booking `b` needs held at `now`: `None` once it holds nothing (not confirmed, over,
/// or not on a Slurm node).
pub fn want(b: &Booking, now: DateTime<Utc>) -> Option<Want> {
    if !b.state.holds_gpus() || b.interval.end <= now {
        return None;
    }
    let node = node_of(b.gpus.first()?)?;
    Some(Want {
        node: node.to_string(),
        user: b.owner.clone(),
        count: b.gpus.len(),
        start: b.interval.start,
        end: b.interval.end,
    })
}

/// The decisions that change what a booking holds; the others (its slot starting, its job's
/// news) leave its reservation as it is.
fn changes_hold(kind: ChangeKind) -> bool {
    use ChangeKind::*;
    matches!(
        kind,
        Created | Changed | Cancelled | Approved | Denied | MovedEarlier | Released
    )
}

/// Holds bookings with Slurm reservations.
#[derive(Debug, Clone)]
pub struct SlurmHolder {
    /// Whether this Slurm's reservations hold GPUs by count.
    gres: bool,
}

impl SlurmHolder {
    /// For a Slurm of `version` (see [`super::check_version`]).
    pub fn new(version: (u32, u32)) -> Self {
        Self {
            gres: version >= GRES_RESERVATION_VERSION,
        }
    }

    /// Every gpubook reservation Slurm has, by booking number.
    pub fn existing(&self) -> Result<BTreeMap<BookingId, Have>, SlurmError> {
        let out = run("scontrol", &["show", "reservation", "--oneliner"])?;
        Ok(parse_reservations(&out))
    }

    /// Makes Slurm hold `want` for booking `id`, where it holds `have` now.
    pub fn apply(
        &self,
        id: BookingId,
        want: Option<&Want>,
        have: Option<&Have>,
        now: DateTime<Utc>,
    ) -> Result<(), SlurmError> {
        let name = name(id);
        match (want, have) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                run("scontrol", &["delete", &format!("ReservationName={name}")]).map(drop)
            }
            (Some(w), None) => self.create(&name, w, now),
            (Some(w), Some(h)) if h.nodes != w.node || h.users != w.user => {
                // Another node or owner (an admin moved it): made anew.
                run("scontrol", &["delete", &format!("ReservationName={name}")])?;
                self.create(&name, w, now)
            }
            (Some(w), Some(h)) => {
                let mut args = vec!["update".to_string(), format!("ReservationName={name}")];
                if !h.active && h.start != Some(w.start) && w.start > now {
                    args.push(format!("StartTime={}", w.start.format(TIME)));
                }
                if h.end != Some(w.end) {
                    args.push(format!("EndTime={}", w.end.format(TIME)));
                }
                if args.len() == 2 {
                    return Ok(());
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run("scontrol", &args).map(drop)
            }
        }
    }

    fn create(&self, name: &str, w: &Want, now: DateTime<Utc>) -> Result<(), SlurmError> {
        let start = if w.start <= now {
            "now".to_string()
        } else {
            w.start.format(TIME).to_string()
        };
        let mut args = vec![
            "create".to_string(),
            "reservation".to_string(),
            format!("ReservationName={name}"),
            format!("StartTime={start}"),
            format!("EndTime={}", w.end.format(TIME)),
            format!("Users={}", w.user),
            format!("Nodes={}", w.node),
            // OVERLAP: several gpubook bookings share a node; IGNORE_JOBS: jobs running on
            // the node do not refuse it (gpubook's own, which the plan keeps within the
            // node's GPUs, and jobs without GPUs; Slurm's GPU jobs are in the plan, which
            // books around them).
            "Flags=OVERLAP,IGNORE_JOBS".to_string(),
        ];
        if self.gres {
            args.push(format!("TRES=gres/gpu={}", w.count));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("scontrol", &args).map(drop)
    }

    /// Brings every gpubook reservation in line with `plan` at `now`; what fails is said on
    /// standard error and tried again next time.
    pub fn reconcile(&self, plan: &Plan, now: DateTime<Utc>) {
        let have = match self.existing() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("gpubook-agent: cannot read Slurm's reservations: {e}");
                return;
            }
        };
        let mut wanted: BTreeMap<BookingId, Want> = BTreeMap::new();
        for b in plan.bookings() {
            if let Some(w) = want(b, now) {
                wanted.insert(b.id, w);
            }
        }
        let ids: std::collections::BTreeSet<BookingId> =
            wanted.keys().chain(have.keys()).copied().collect();
        for id in ids {
            if let Err(e) = self.apply(id, wanted.get(&id), have.get(&id), now) {
                eprintln!(
                    "gpubook-agent: Slurm reservation {}: {e}; tried again later",
                    name(id)
                );
            }
        }
    }
}

/// The gpubook reservations in `scontrol show reservation --oneliner`'s output.
pub fn parse_reservations(out: &str) -> BTreeMap<BookingId, Have> {
    out.lines()
        .filter_map(|line| {
            let f = reservation_fields(line);
            let id = f
                .get("ReservationName")?
                .strip_prefix(PREFIX)?
                .parse()
                .ok()?;
            let time = |k: &str| {
                f.get(k)
                    .and_then(|t| NaiveDateTime::parse_from_str(t, TIME).ok())
                    .map(|t| t.and_utc())
            };
            Some((
                BookingId(id),
                Have {
                    nodes: f.get("Nodes").cloned().unwrap_or_default(),
                    users: f.get("Users").cloned().unwrap_or_default(),
                    start: time("StartTime"),
                    end: time("EndTime"),
                    active: f.get("State").is_some_and(|s| s == "ACTIVE"),
                },
            ))
        })
        .collect()
}

impl Holder for SlurmHolder {
    fn hold(&self, changes: &[Change], now: DateTime<Utc>) -> Result<(), ErrorBody> {
        // The last change of each booking is what it is now.
        let mut touched: BTreeMap<BookingId, &Booking> = BTreeMap::new();
        let mut released = std::collections::BTreeSet::new();
        for c in changes.iter().filter(|c| changes_hold(c.kind)) {
            touched.insert(c.booking.id, &c.booking);
            if c.kind == ChangeKind::Released {
                released.insert(c.booking.id);
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        let have = self.existing().map_err(refusal)?;
        for (id, b) in touched {
            match self.apply(id, want(b, now).as_ref(), have.get(&id), now) {
                Ok(()) => {}
                // A slot given back early is given back: Slurm lets go of the rest when its
                // job has left, at the next reconciliation.
                Err(e) if released.contains(&id) => {
                    eprintln!("gpubook-agent: Slurm reservation {}: {e}", name(id))
                }
                Err(e) => return Err(refusal(e)),
            }
        }
        Ok(())
    }

    fn reconcile(&self, plan: &Plan, now: DateTime<Utc>) {
        SlurmHolder::reconcile(self, plan, now)
    }

    fn outside(&self, plan: &Plan, now: DateTime<Utc>) -> Option<Vec<Outside>> {
        let booked = super::outside::booked(plan, now);
        super::outside::blocking(plan.gpus(), &booked, now, !self.gres)
            .map_err(|e| eprintln!("gpubook-agent: cannot read what Slurm holds: {e}"))
            .ok()
    }
}

/// Slurm's refusal, as gpubook's answer: nothing was changed.
fn refusal(e: SlurmError) -> ErrorBody {
    let kind = match e {
        SlurmError::Refused { .. } => ErrorKind::NotAllowed,
        _ => ErrorKind::Unavailable,
    };
    ErrorBody::new(
        kind,
        format!("Slurm could not hold this booking ({e}); nothing was changed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_gpubooks_reservations() {
        let out = "ReservationName=gpubook-12 StartTime=2026-12-04T10:00:00 \
                   EndTime=2026-12-04T12:00:00 Duration=02:00:00 Nodes=gpunode1 NodeCnt=1 \
                   Flags=OVERLAP,SPEC_NODES Users=alice State=ACTIVE\n\
                   ReservationName=maint StartTime=2026-12-05T00:00:00 \
                   EndTime=2026-12-05T02:00:00 Nodes=gpunode1 Users=root State=INACTIVE\n\
                   ReservationName=gpubook-x Users=root\n";
        let have = parse_reservations(out);
        assert_eq!(have.len(), 1);
        let h = &have[&BookingId(12)];
        assert_eq!(h.users, "alice");
        assert!(h.active);
        assert_eq!(
            h.end.unwrap().to_rfc3339(),
            "2026-12-04T12:00:00+00:00".to_string()
        );
        assert!(parse_reservations("No reservations in the system\n").is_empty());
    }
}
