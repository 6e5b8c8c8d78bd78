//! One collection kept equal to the agent's bookings: a full reconcile, and single changes
//! through the durable queue. gpubook is the source of truth for its own events (UID
//! `<id>@<server>`); every other object in the collection is never written or deleted.

use super::dav::{Dav, Precondition, Remote, Written};
use super::state::{Known, Pending, StateFile};
use super::{CaldavError, Collection, Report};
use crate::ical::{self, CalendarContext, EventData, Status};
use crate::secrets::Secret;
use chrono::Utc;
use gpubook_core::Booking;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// How many writes a reconcile has in flight at once.
const IN_FLIGHT: usize = 4;
/// How often one write is retried when the object keeps changing under it (412).
const ATTEMPTS: usize = 4;

/// Keeps one CalDAV collection equal to the bookings of one agent.
#[derive(Debug)]
pub struct Syncer {
    /// The collection.
    dav: Arc<Dav>,
    /// The server, its GPUs, whose calendar, which bookings.
    ctx: CalendarContext,
    /// Keep cancelled and denied bookings as CANCELLED events instead of deleting them.
    keep_cancelled: bool,
    /// Queue and knowledge of the collection, on disk.
    state: StateFile,
}

/// One write a reconcile or the queue makes.
#[derive(Debug, Clone)]
enum Op {
    /// Create (no ETag) or update an event.
    Put {
        /// Its UID.
        uid: String,
        /// Where.
        href: String,
        /// The ETag it had when we looked; `None` to create.
        etag: Option<String>,
        /// What it must show.
        event: EventData,
    },
    /// Delete an event (or a duplicate of one).
    Delete {
        /// Its UID.
        uid: String,
        /// Where.
        href: String,
        /// The ETag it had when we looked.
        etag: Option<String>,
    },
}

/// What became of an op.
#[derive(Debug)]
enum Done {
    /// Written; its new ETag when the server said.
    Put(Option<String>),
    /// Deleted, or already gone.
    Deleted,
}

impl Syncer {
    /// A sync of `ctx`'s bookings to `target`, its state under `state_dir`. Reads the queue
    /// left by an earlier run; talks to nobody yet.
    pub fn open(
        target: &Collection,
        password: Secret,
        ctx: CalendarContext,
        state_dir: &Path,
    ) -> Result<Self, CaldavError> {
        let dav = Dav::new(&target.url, &target.user, password)?;
        let state = StateFile::open(state_dir, dav.url(), &target.user, &ctx.server)?;
        Ok(Self {
            dav: Arc::new(dav),
            ctx,
            keep_cancelled: target.keep_cancelled,
            state,
        })
    }

    /// The collection's URL.
    pub fn url(&self) -> &str {
        self.dav.url()
    }

    /// The context events are made in.
    pub fn context(&self) -> &CalendarContext {
        &self.ctx
    }

    /// The state file (the durable queue).
    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// How many changes wait to be sent.
    pub fn pending(&self) -> usize {
        self.state.saved.pending.len()
    }

    /// How many of this sync's conditional writes the server refused with 412 Precondition
    /// Failed (the object changed there since it was read); each was looked at again and
    /// written over.
    pub fn conflicts(&self) -> u64 {
        self.dav.conflicts()
    }

    /// Checks that the URL is a calendar collection the account may write.
    pub async fn check(&self) -> Result<(), CaldavError> {
        self.dav.check().await
    }

    /// What the collection must hold for `b`: `None` when nothing.
    fn desired(&self, b: &Booking) -> Option<EventData> {
        if !self.ctx.holds(b) {
            return None;
        }
        let e = EventData::from_booking(b, &self.ctx);
        (self.keep_cancelled || e.status != Status::Cancelled).then_some(e)
    }

    /// Where gpubook puts the event `uid`.
    fn href_for(&self, uid: &str) -> String {
        let safe: String = uid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}gpubook-{safe}.ics", self.dav.path())
    }

    /// Makes the collection hold exactly `bookings` (those in scope) as gpubook's events:
    /// missing ones created, stale ones (edited by hand, or changed while we were away)
    /// rewritten, gpubook's events without a booking deleted, duplicates of one removed, every
    /// other object left alone. The queue is settled by it.
    pub async fn reconcile(&mut self, bookings: &[Booking]) -> Result<Report, CaldavError> {
        self.dav.check().await?;
        let server = self.ctx.server.clone();
        let remote = self.dav.list().await?;
        let saved = &self.state.saved;
        let known_at: HashMap<&str, &str> = saved
            .known
            .iter()
            .map(|(uid, k)| (k.href.as_str(), uid.as_str()))
            .collect();
        // UID → every copy on the server: (href, etag, what it shows).
        let mut ours: BTreeMap<String, Vec<(String, Option<String>, EventData)>> = BTreeMap::new();
        let mut foreign: BTreeMap<String, String> = BTreeMap::new();
        let mut unknown = Vec::new();
        for r in &remote {
            let etag = r.etag.clone();
            if let Some(uid) = known_at.get(r.href.as_str()) {
                let k = &saved.known[*uid];
                if k.etag.is_some() && k.etag == etag {
                    // Unchanged since we wrote or read it.
                    ours.entry(uid.to_string()).or_default().push((
                        r.href.clone(),
                        etag,
                        k.event.clone(),
                    ));
                    continue;
                }
            }
            match (&etag, saved.foreign.get(&r.href)) {
                (Some(e), Some(f)) if e == f => {
                    foreign.insert(r.href.clone(), e.clone());
                }
                _ => unknown.push(r.href.clone()),
            }
        }
        for r in self.dav.fetch(&unknown).await? {
            match ical::parse(&r.data)
                .ok()
                .and_then(|es| es.into_iter().next())
            {
                Some(e) if ical::booking_of_uid(&e.uid, &server).is_some() => {
                    ours.entry(e.uid.clone())
                        .or_default()
                        .push((r.href, r.etag, e));
                }
                // Someone else's object, or one we cannot read: never touched.
                _ => {
                    foreign.insert(r.href, r.etag.unwrap_or_default());
                }
            }
        }
        let mut report = Report {
            foreign: foreign.len(),
            ..Report::default()
        };
        self.state.saved.foreign = foreign;
        let mut ops = Vec::new();
        let mut known = BTreeMap::new();
        let mut wanted = BTreeMap::new();
        for b in bookings {
            if let Some(e) = self.desired(b) {
                wanted.insert(e.uid.clone(), e);
            }
        }
        for (uid, event) in wanted {
            let mut copies = ours.remove(&uid).unwrap_or_default();
            let ours_at = self.href_for(&uid);
            copies.sort_by_key(|(href, ..)| *href != ours_at);
            let mut copies = copies.into_iter();
            match copies.next() {
                None => ops.push(Op::Put {
                    uid: uid.clone(),
                    href: ours_at,
                    etag: None,
                    event,
                }),
                Some((href, etag, there)) if event.same_as(&there) => {
                    report.unchanged += 1;
                    known.insert(uid.clone(), Known { href, etag, event });
                }
                Some((href, etag, _)) => ops.push(Op::Put {
                    uid: uid.clone(),
                    href,
                    etag,
                    event,
                }),
            }
            for (href, etag, _) in copies {
                ops.push(Op::Delete {
                    uid: uid.clone(),
                    href,
                    etag,
                });
            }
        }
        for (uid, copies) in ours {
            for (href, etag, _) in copies {
                ops.push(Op::Delete {
                    uid: uid.clone(),
                    href,
                    etag,
                });
            }
        }
        // What is known now is what was found unchanged, plus what the ops write.
        self.state.saved.known = known;
        let result = self.run_ops(ops, &mut report).await;
        if result.is_ok() {
            self.state.saved.pending.clear();
        }
        self.state.save()?;
        result.map(|()| report)
    }

    /// Runs `ops`, a few at a time, recording each result in the state.
    async fn run_ops(&mut self, ops: Vec<Op>, report: &mut Report) -> Result<(), CaldavError> {
        let mut ops = ops.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut failure: Option<CaldavError> = None;
        loop {
            while failure.is_none() && running.len() < IN_FLIGHT {
                let Some(op) = ops.next() else { break };
                let dav = self.dav.clone();
                let server = self.ctx.server.clone();
                running.spawn(async move {
                    let r = apply(&dav, &server, &op).await;
                    (op, r)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (op, r) = joined.expect("a sync write panicked");
            match r {
                Ok(done) => self.record(&op, done, report),
                Err(e @ CaldavError::Rejected { .. }) => report.rejected.push(e.to_string()),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Notes in the state what a successful op did.
    fn record(&mut self, op: &Op, done: Done, report: &mut Report) {
        match (op, done) {
            (
                Op::Put {
                    uid,
                    href,
                    etag,
                    event,
                },
                Done::Put(new_etag),
            ) => {
                if etag.is_none() {
                    report.created += 1;
                } else {
                    report.updated += 1;
                }
                self.state.saved.known.insert(
                    uid.clone(),
                    Known {
                        href: href.clone(),
                        etag: new_etag,
                        event: event.clone(),
                    },
                );
            }
            (Op::Delete { uid, href, .. }, _) => {
                report.deleted += 1;
                if self
                    .state
                    .saved
                    .known
                    .get(uid)
                    .is_some_and(|k| &k.href == href)
                {
                    self.state.saved.known.remove(uid);
                }
            }
            (Op::Put { .. }, Done::Deleted) => unreachable!("a put is never a delete"),
        }
    }

    /// Queues what booking `b` now asks of the collection, durably; `false` when it asks
    /// nothing new (out of scope, unchanged, or older than what is already known).
    pub fn queue(&mut self, b: &Booking) -> Result<bool, CaldavError> {
        let uid = ical::uid(b.id, &self.ctx.server);
        let saved = &self.state.saved;
        let newest = saved
            .pending
            .get(&uid)
            .map(Pending::sequence)
            .or_else(|| saved.known.get(&uid).map(|k| k.event.sequence));
        if newest.is_some_and(|n| b.revision < n) {
            return Ok(false);
        }
        let change = match self.desired(b) {
            Some(event) => {
                let same = match saved.pending.get(&uid) {
                    Some(Pending::Put { event: p }) => p == &event,
                    Some(Pending::Delete { .. }) => false,
                    None => saved.known.get(&uid).is_some_and(|k| k.event == event),
                };
                if same {
                    return Ok(false);
                }
                Pending::Put { event }
            }
            None => {
                if !saved.known.contains_key(&uid)
                    && !matches!(saved.pending.get(&uid), Some(Pending::Put { .. }))
                {
                    return Ok(false);
                }
                Pending::Delete {
                    sequence: b.revision,
                }
            }
        };
        self.state.saved.pending.insert(uid, change);
        self.state.save()?;
        Ok(true)
    }

    /// Sends the queued changes, oldest booking first; stops at the first error that says
    /// the server is away (the rest stay queued). Returns the UIDs sent and those the
    /// server refused (left for the next reconcile to settle).
    pub async fn flush(&mut self) -> Result<Flushed, CaldavError> {
        let mut out = Flushed::default();
        let pending: Vec<(String, Pending)> = self
            .state
            .saved
            .pending
            .iter()
            .map(|(u, p)| (u.clone(), p.clone()))
            .collect();
        for (uid, p) in pending {
            let known = self.state.saved.known.get(&uid);
            let (href, etag) = match known {
                Some(k) => (k.href.clone(), k.etag.clone()),
                None => (self.href_for(&uid), None),
            };
            let op = match p {
                Pending::Put { event } => Op::Put {
                    uid: uid.clone(),
                    href,
                    etag,
                    event,
                },
                Pending::Delete { .. } => Op::Delete {
                    uid: uid.clone(),
                    href,
                    etag,
                },
            };
            let mut report = Report::default();
            match apply(&self.dav, &self.ctx.server, &op).await {
                Ok(done) => {
                    self.record(&op, done, &mut report);
                    out.sent.push(uid.clone());
                }
                Err(e @ CaldavError::Rejected { .. }) => {
                    out.rejected.push((uid.clone(), e.to_string()))
                }
                Err(e) => {
                    self.state.save()?;
                    return Err(e);
                }
            }
            // Sent, or refused and left to the next reconcile: either way no longer queued.
            self.state.saved.pending.remove(&uid);
            self.state.save()?;
        }
        Ok(out)
    }
}

/// What [`Syncer::flush`] did.
#[derive(Debug, Default, Clone)]
pub struct Flushed {
    /// UIDs whose change the server now has.
    pub sent: Vec<String>,
    /// UIDs whose change the server refused, with why.
    pub rejected: Vec<(String, String)>,
}

/// Makes one write happen whatever changed on the server meanwhile: on 412 the object is
/// looked at again and, if it is still gpubook's, written over (gpubook is the source of
/// truth for its events); an object at our href that is not gpubook's is never written.
async fn apply(dav: &Dav, server: &str, op: &Op) -> Result<Done, CaldavError> {
    match op {
        Op::Put {
            href, etag, event, ..
        } => {
            let mut pre = match etag {
                Some(e) => Precondition::Unchanged(e.clone()),
                None => Precondition::Absent,
            };
            for _ in 0..ATTEMPTS {
                let body = ical::object(event, Utc::now());
                match dav.put(href, body, &pre).await? {
                    Written::Done(etag) => return Ok(Done::Put(etag)),
                    Written::Gone => unreachable!("a put is never gone"),
                    Written::Changed => pre = look_again(dav, server, href).await?,
                }
            }
            Err(kept_changing(dav, href))
        }
        Op::Delete { href, etag, .. } => {
            let mut pre = match etag {
                Some(e) => Precondition::Unchanged(e.clone()),
                None => look_again(dav, server, href).await?,
            };
            for _ in 0..ATTEMPTS {
                if matches!(pre, Precondition::Absent) {
                    return Ok(Done::Deleted);
                }
                match dav.delete(href, &pre).await? {
                    Written::Done(_) | Written::Gone => return Ok(Done::Deleted),
                    Written::Changed => pre = look_again(dav, server, href).await?,
                }
            }
            Err(kept_changing(dav, href))
        }
    }
}

/// After a 412: the precondition the next try needs, from what is at `href` now.
async fn look_again(dav: &Dav, server: &str, href: &str) -> Result<Precondition, CaldavError> {
    match dav.get(href).await? {
        None => Ok(Precondition::Absent),
        Some(Remote { etag, data, .. }) => {
            let theirs = ical::parse(&data)
                .ok()
                .and_then(|es| es.into_iter().next())
                .is_none_or(|e| ical::booking_of_uid(&e.uid, server).is_none());
            if theirs {
                return Err(CaldavError::Rejected {
                    method: "PUT".into(),
                    url: href.to_string(),
                    status: 412,
                    body: "an object that is not gpubook's is at this href; left alone".into(),
                });
            }
            Ok(etag.map_or(Precondition::None, Precondition::Unchanged))
        }
    }
}

fn kept_changing(dav: &Dav, href: &str) -> CaldavError {
    CaldavError::Protocol {
        url: format!("{}{}", dav.url(), href),
        what: format!("the object kept changing under {ATTEMPTS} writes"),
    }
}
