//! The plan and the store behind one lock: every change is decided and written in one
//! transaction, and its events are announced only after the commit.

use crate::clock::Clock;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use gpubook_core::{
    Actor, Change, Gpu, Maintenance, MaintenanceId, Op, Outside, Plan, PlanError, Policy,
};
use gpubook_proto::{ErrorBody, ErrorKind, Event};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, Notify};

/// Everything one change needs.
#[derive(Debug)]
pub struct Inner {
    /// The plan, always equal to what the store holds.
    pub plan: Plan,
    /// The durable store.
    pub store: Store,
}

/// The agent's shared state.
#[derive(Debug)]
pub struct State {
    /// Plan and store. A plain mutex, not tokio's: it is only taken inside `spawn_blocking`
    /// or for short reads, never across an `.await`.
    inner: Mutex<Inner>,
    /// Committed events, to live subscribers. Sent while the lock is held, so in order.
    pub events: broadcast::Sender<Arc<Event>>,
    /// Woken after every change, so the slot timer looks at the plan again.
    pub changed: Notify,
    /// The clock every decision uses.
    pub clock: Arc<dyn Clock>,
    /// What holds the bookings outside the store (Slurm's reservations), if anything.
    holder: Option<Arc<dyn Holder>>,
}

/// Something outside the store that must hold what the plan holds (Slurm's reservations for
/// `--gpus slurm`): told of every decision before it is committed, so that a booking never
/// stands without its hold, or the reverse.
pub trait Holder: Send + Sync + std::fmt::Debug {
    /// Makes the outside hold what `changes` (decided at `now`, not yet committed) say; an
    /// error refuses the whole decision, and nothing is committed.
    fn hold(&self, changes: &[Change], now: DateTime<Utc>) -> Result<(), ErrorBody>;
    /// Brings the outside in line with all of `plan` (at start, after a failed decision, and
    /// from time to time); what fails is tried again next time.
    fn reconcile(&self, plan: &Plan, now: DateTime<Utc>);
    /// What holds the GPUs outside gpubook now, for the plan to book around (see
    /// [`gpubook_core::Outside`]); `None` when it cannot be read, and the plan keeps what it
    /// had.
    fn outside(&self, _plan: &Plan, _now: DateTime<Utc>) -> Option<Vec<Outside>> {
        None
    }
}

/// What a successful change returns: the events it wrote, in order.
pub type Committed = Vec<Event>;

/// A maintenance period to write in the same transaction as the booking changes it caused.
#[derive(Debug, Clone)]
pub enum PeriodWrite {
    /// Made or changed.
    Put(Maintenance),
    /// Withdrawn before it started.
    Delete(MaintenanceId),
}

impl State {
    /// State over `store`, with the plan loaded from it.
    pub fn load(
        store: Store,
        gpus: Vec<Gpu>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let plan =
            Plan::new(gpus, policy, store.bookings()?).with_maintenance(store.maintenance()?);
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Mutex::new(Inner { plan, store }),
            events,
            changed: Notify::new(),
            clock,
            holder: None,
        })
    }

    /// Has `holder` hold every booking from now on, after bringing it in line with the plan.
    pub fn set_holder(&mut self, holder: Arc<dyn Holder>) {
        holder.reconcile(&self.lock().plan, self.clock.now());
        self.holder = Some(holder);
    }

    /// Brings the holder (if any) in line with the plan; blocks on it: call it from
    /// `spawn_blocking`.
    pub fn reconcile_holds(&self) {
        if let Some(h) = &self.holder {
            let mut inner = self.lock();
            let now = self.clock.now();
            if let Some(outside) = h.outside(&inner.plan, now) {
                inner.plan.set_outside(outside);
            }
            h.reconcile(&inner.plan, now);
        }
    }

    /// Whether bookings are held outside the store (by Slurm).
    pub fn has_holder(&self) -> bool {
        self.holder.is_some()
    }

    /// The state, for reading. Never hold it across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the plan half-changed in a way the
        // store does not also reflect (see `change`), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `op` for `actor`: the plan decides inside a store transaction, the changes and
    /// their events are written in it, and only after the commit are the events announced.
    /// Blocks on the disk: call it from `spawn_blocking`.
    pub fn change(&self, actor: &Actor, op: Op) -> Result<Committed, ErrorBody> {
        let now = self.clock.now();
        let outside = self.holder.as_ref();
        self.transact(Some(&actor.user), now, |plan| {
            // What Slurm holds now, so that the plan books around it (read at most a few
            // seconds ago; when it cannot be read, what was read last).
            if let Some(o) = outside.and_then(|h| h.outside(plan, now)) {
                plan.set_outside(o);
            }
            plan.apply(actor, op, now)
        })
    }

    /// Fires whatever slot transitions are due now.
    pub fn tick(&self) -> Result<Committed, ErrorBody> {
        let now = self.clock.now();
        self.transact(None, now, |plan| Ok(plan.tick(now)))
    }

    /// Records what the agent observed about booking `id` (its job, its GPUs) as one change
    /// with its event; `Ok(empty)` when there is no such booking.
    pub fn observe(
        &self,
        id: gpubook_core::BookingId,
        kind: gpubook_core::ChangeKind,
        note: Option<gpubook_core::Note>,
        update: impl FnOnce(&mut gpubook_core::Booking),
    ) -> Result<Committed, ErrorBody> {
        let now = self.clock.now();
        self.transact(None, now, |plan| {
            Ok(plan.observe(id, kind, note, update).into_iter().collect())
        })
    }

    /// Runs `decide` on the plan as one transaction (for agent-side decisions such as
    /// releasing the rest of a slot when its job ended early).
    pub fn decide(
        &self,
        decide: impl FnOnce(&mut Plan, DateTime<Utc>) -> Vec<Change>,
    ) -> Result<Committed, ErrorBody> {
        let now = self.clock.now();
        self.transact(None, now, |plan| Ok(decide(plan, now)))
    }

    /// Runs `decide` (a maintenance decision by `actor`) as one transaction: the periods it
    /// returns are written with the booking changes and their events, or none of them is.
    pub fn decide_periods(
        &self,
        actor: Option<&str>,
        decide: impl FnOnce(
            &mut Plan,
            DateTime<Utc>,
        ) -> Result<(Vec<Change>, Vec<PeriodWrite>), PlanError>,
    ) -> Result<Committed, ErrorBody> {
        let now = self.clock.now();
        self.transact_periods(actor, now, |plan| decide(plan, now))
    }

    fn transact(
        &self,
        actor: Option<&str>,
        now: DateTime<Utc>,
        decide: impl FnOnce(&mut Plan) -> Result<Vec<Change>, PlanError>,
    ) -> Result<Committed, ErrorBody> {
        self.transact_periods(actor, now, |plan| Ok((decide(plan)?, Vec::new())))
    }

    fn transact_periods(
        &self,
        actor: Option<&str>,
        now: DateTime<Utc>,
        decide: impl FnOnce(&mut Plan) -> Result<(Vec<Change>, Vec<PeriodWrite>), PlanError>,
    ) -> Result<Committed, ErrorBody> {
        let mut guard = self.lock();
        let Inner { plan, store } = &mut *guard;
        let mut tx = store.begin().map_err(unavailable)?;
        let (changes, periods) = decide(plan)?;
        if changes.is_empty() && periods.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(h) = &self.holder {
            if let Err(refused) = h.hold(&changes, now) {
                drop(tx);
                reload(plan, store);
                h.reconcile(plan, now);
                return Err(refused);
            }
        }
        let written = periods
            .iter()
            .try_for_each(|p| match p {
                PeriodWrite::Put(m) => tx.put_maintenance(m),
                PeriodWrite::Delete(id) => tx.delete_maintenance(*id),
            })
            .and_then(|()| tx.record(&changes, actor, now))
            .and_then(|events| {
                tx.commit()?;
                Ok(events)
            });
        match written {
            Ok(events) => {
                for e in &events {
                    // No subscribers is fine: the events are in the store.
                    let _ = self.events.send(Arc::new(e.clone()));
                }
                self.changed.notify_one();
                Ok(events)
            }
            Err(e) => {
                // The plan moved ahead of the store: bring it back to what was committed.
                reload(plan, store);
                if let Some(h) = &self.holder {
                    h.reconcile(plan, now);
                }
                Err(unavailable(e))
            }
        }
    }
}

/// Brings `plan` back to what `store` has committed.
fn reload(plan: &mut Plan, store: &Store) {
    let gpus = plan.gpus().to_vec();
    let policy = plan.policy().clone();
    let outside = plan.outside().to_vec();
    if let (Ok(bookings), Ok(periods)) = (store.bookings(), store.maintenance()) {
        *plan = Plan::new(gpus, policy, bookings).with_maintenance(periods);
        plan.set_outside(outside);
    }
}

fn unavailable(e: StoreError) -> ErrorBody {
    ErrorBody::new(
        ErrorKind::Unavailable,
        format!("the agent cannot write its state now ({e}); nothing was changed"),
    )
}
