//! Typed request → answer: turns each request into a plan operation or a read, for one
//! caller whose identity the server established from the socket.

use crate::state::State;
use gpubook_core::{
    time::week_start, Actor, Booking, BookingId, BookingState, GpuSelection, GpuUuid, Interval, Op,
    Plan, Role, When,
};
use gpubook_proto::{
    BookRequest, BookingResponse, BookingsResponse, ErrorBody, ErrorKind, GpuChoice, GpusResponse,
    JobEnvResponse, ListCursor, ListRequest, LogsResponse, PolicyResponse, Readings, Request,
    Response, WhenChoice,
};
use std::sync::Arc;

/// Most bytes of bookings in one page of a listing: well under the 1 MiB frame limit.
const PAGE_BYTES: usize = 512 * 1024;

/// Who is asking and where: fixed for a connection.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Name and role.
    pub actor: Actor,
    /// Their uid.
    pub uid: u32,
}

/// What the handler needs besides the state.
#[derive(Debug)]
pub struct Context {
    /// The shared state.
    pub state: Arc<State>,
    /// The server's name.
    pub server: String,
    /// "nvml", "replay", "simulated" or "slurm".
    pub source: &'static str,
    /// The latest GPU reading.
    pub readings: tokio::sync::watch::Receiver<Option<Readings>>,
    /// The job runner.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// Data sizes being counted for length suggestions, bounded per person.
    pub measuring: crate::suggest::Measuring,
    /// News while away: the caller's e-mail and webhook targets, and the sender.
    pub notify: Arc<crate::notify::Notify>,
    /// Each started booking's GPU readings over its slot.
    pub series: Arc<crate::series::Series>,
}

impl Context {
    /// Answers `req` for `caller`. Subscriptions are the server's; this answers the rest.
    pub async fn handle(&self, caller: &Caller, req: Request) -> Result<Response, ErrorBody> {
        let op = match req {
            Request::Gpus(_) => {
                let gpus = self.state.lock().plan.gpus().to_vec();
                return Ok(Response::Gpus(GpusResponse {
                    server: self.server.clone(),
                    source: self.source.to_string(),
                    outside: self.outside(caller, &gpus).await,
                    gpus,
                    readings: self.readings.borrow().clone(),
                }));
            }
            Request::List(l) => return Ok(self.list(caller, &l)),
            Request::Policy(_) => {
                let inner = self.state.lock();
                let now = self.state.clock.now();
                let week = Interval {
                    start: week_start(now),
                    end: week_start(now) + chrono::Duration::days(7),
                };
                let used = inner.plan.gpu_seconds(&caller.actor.user, &week, None);
                return Ok(Response::Policy(PolicyResponse {
                    policy: inner.plan.policy().clone(),
                    role: caller.actor.role,
                    week_gpu_hours: used as f64 / 3600.0,
                }));
            }
            Request::Whoami(_) | Request::Subscribe(_) => {
                return Err(ErrorBody::new(
                    ErrorKind::Internal,
                    "whoami and subscribe are answered by the connection",
                ))
            }
            Request::Logs(l) => return self.logs(caller, l.id, l.offset).await,
            Request::Suggest(mut r) => {
                let user = &caller.actor.user;
                crate::suggest::measure(&self.measuring, user, &mut r).await?;
                let inner = self.state.lock();
                let history = crate::suggest::past_runs(inner.plan.bookings(), &caller.actor.user);
                return Ok(Response::Suggestion(crate::suggest::answer(&history, &r)));
            }
            Request::Report(r) => return crate::report::answer(self, caller, r).await,
            Request::JobEnv(r) => return self.job_env(caller, r.id),
            Request::UsageSeries(r) => return crate::series::answer(self, caller, r.id).await,
            r @ (Request::NotifySet(_) | Request::NotifyShow(_) | Request::NotifyClear(_)) => {
                return crate::notify::answer(&self.notify, caller, r).await
            }
            Request::Maintenance(r) => return crate::maintenance::answer(self, caller, r).await,
            Request::Book(b) => {
                if b.job.is_some() && !self.jobs.system_mode() && caller.uid != self.jobs.own_uid()
                {
                    return Err(ErrorBody::new(
                        ErrorKind::NotAllowed,
                        format!(
                            "this agent runs in personal mode (as uid {}), so it can run jobs \
                             only for that user; book without a command, or ask an admin to \
                             install the system agent",
                            self.jobs.own_uid()
                        ),
                    ));
                }
                self.book_op(b)?
            }
            Request::Cancel(r) => Op::Cancel { id: r.id },
            Request::Extend(r) => Op::Extend {
                id: r.id,
                end: r.end,
            },
            Request::Move(r) => {
                let interval = Interval::new(r.start, r.end).ok_or_else(end_after_start)?;
                let gpus = match r.gpus {
                    Some(_) if self.source == "slurm" => return Err(slurm_chooses()),
                    Some(refs) => Some(self.resolve(&refs)?),
                    None => None,
                };
                Op::Move {
                    id: r.id,
                    interval,
                    gpus,
                }
            }
            Request::Release(r) => Op::Release { id: r.id },
            Request::Approve(r) => Op::Approve {
                id: r.id,
                rev: r.rev,
            },
            Request::Deny(r) => Op::Deny {
                id: r.id,
                reason: r.reason,
                rev: r.rev,
            },
        };
        let target = match &op {
            Op::Book { .. } => None,
            Op::Move { id, .. }
            | Op::Extend { id, .. }
            | Op::Release { id }
            | Op::Cancel { id }
            | Op::Approve { id, .. }
            | Op::Deny { id, .. } => Some(*id),
        };
        let state = self.state.clone();
        let actor = caller.actor.clone();
        let events = tokio::task::spawn_blocking(move || state.change(&actor, op))
            .await
            .map_err(|e| {
                ErrorBody::new(ErrorKind::Internal, format!("agent task failed: {e}"))
            })??;
        let Some(first) = events.first() else {
            return Err(ErrorBody::new(
                ErrorKind::Internal,
                "the change changed nothing",
            ));
        };
        let main_id = target.unwrap_or(first.booking.id);
        let last = events.last().map(|e| e.seq).unwrap_or(0);
        let mut booking = None;
        let mut also = Vec::new();
        for e in events {
            if e.booking.id == main_id {
                booking = Some(e.booking);
            } else {
                also.retain(|b: &Booking| b.id != e.booking.id);
                also.push(e.booking);
            }
        }
        let view = |b: Booking| visible(&caller.actor, b);
        Ok(Response::Booking(BookingResponse {
            booking: view(booking.ok_or_else(|| {
                ErrorBody::new(ErrorKind::Internal, "the change did not report its booking")
            })?),
            also_changed: also.into_iter().map(view).collect(),
            event: last,
        }))
    }

    /// Whose booking `id`'s job log is, and whether the job is over (nothing more will be
    /// written); an error when there is no such booking or it has no job.
    pub fn log_state(&self, id: BookingId) -> Result<(String, bool), ErrorBody> {
        let inner = self.state.lock();
        let b = inner.plan.get(id).ok_or_else(|| no_booking(id))?;
        if b.job.is_none() {
            return Err(ErrorBody::new(
                ErrorKind::NotFound,
                format!("booking {id} has no job, so it has no log"),
            ));
        }
        let done = b.run.as_ref().is_some_and(|r| r.state.is_over())
            || (b.run.is_none() && b.state.is_final());
        Ok((b.owner.clone(), done))
    }

    /// Where booking `id`'s job log is, as its run records it.
    fn log_of(&self, id: BookingId) -> Option<String> {
        let inner = self.state.lock();
        inner.plan.get(id)?.run.as_ref()?.log.clone()
    }

    /// The variables booking `id`'s job has, for its owner's own shell while the slot is on
    /// (see `gpubook_proto::job_env`).
    fn job_env(&self, caller: &Caller, id: BookingId) -> Result<Response, ErrorBody> {
        let inner = self.state.lock();
        let b = inner.plan.get(id).ok_or_else(|| no_booking(id))?;
        if b.owner != caller.actor.user {
            return Err(ErrorBody::new(
                ErrorKind::NotAllowed,
                format!(
                    "booking {id} is {}'s: only its owner gets its GPUs in a shell",
                    b.owner
                ),
            ));
        }
        let refused = |kind, why: String| Err(ErrorBody::new(kind, why));
        match b.state {
            BookingState::Active => {}
            BookingState::Confirmed | BookingState::PendingApproval => {
                return refused(
                    ErrorKind::NotStarted,
                    format!(
                        "booking {id} has not started yet: its slot starts at {} (UTC)",
                        b.interval.start.format("%Y-%m-%d %H:%M")
                    ),
                )
            }
            s => {
                return refused(
                    ErrorKind::Ended,
                    format!("booking {id} is over ({s}): its GPUs are no longer yours"),
                )
            }
        }
        if self.source == "slurm" {
            // Slurm gives the devices to a job, not to a shell outside it.
            return refused(
                ErrorKind::Invalid,
                format!(
                    "on Slurm the GPUs come with a job in the booking's reservation: run \
                     `srun --reservation={} --gres=gpu:{} --pty $SHELL` for a shell on them",
                    crate::slurm::hold::name(id),
                    b.gpus.len()
                ),
            );
        }
        let vars = crate::jobs::job_vars(b)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Ok(Response::JobEnv(JobEnvResponse {
            id,
            server: self.server.clone(),
            vars,
        }))
    }

    async fn logs(
        &self,
        caller: &Caller,
        id: BookingId,
        offset: u64,
    ) -> Result<Response, ErrorBody> {
        let (owner, done) = self.log_state(id)?;
        if caller.actor.user != owner && caller.actor.role != Role::Admin {
            return Err(ErrorBody::new(
                ErrorKind::NotAllowed,
                format!("the log of booking {id} is {owner}'s; only they and admins can read it"),
            ));
        }
        let (data, next, _) = self.read_log(id, &owner, offset, done).await.map_err(|e| {
            ErrorBody::new(ErrorKind::Unavailable, format!("cannot read the log: {e}"))
        })?;
        Ok(Response::Logs(LogsResponse { data, next, done }))
    }

    /// What holds `gpus` outside gpubook: on Slurm its jobs and other reservations (read now;
    /// what cannot be read is logged and left out), as `caller` may see them (Slurm's
    /// PrivateData), elsewhere nothing.
    async fn outside(
        &self,
        caller: &Caller,
        gpus: &[gpubook_core::Gpu],
    ) -> Vec<gpubook_proto::OutsideHold> {
        if self.source != "slurm" {
            return Vec::new();
        }
        let gpus = gpus.to_vec();
        let now = self.state.clock.now();
        let booked = crate::slurm::outside::booked(&self.state.lock().plan, now);
        let viewer = (caller.actor.role != Role::Admin).then(|| caller.actor.user.clone());
        let read = tokio::task::spawn_blocking(move || {
            crate::slurm::outside::read(&gpus, &booked, now, viewer.as_deref())
        })
        .await;
        match read {
            Ok(Ok(holds)) => holds,
            Ok(Err(e)) => {
                eprintln!("gpubook-agent: cannot read what Slurm holds: {e}");
                Vec::new()
            }
            Err(e) => {
                eprintln!("gpubook-agent: cannot read what Slurm holds: {e}");
                Vec::new()
            }
        }
    }

    /// Up to [`LOG_CHUNK`] of booking `id`'s log from `offset` (see [`read_from`]), wherever
    /// its runner keeps it: the agent's jobs directory, or on Slurm the file Slurm wrote where
    /// the owner's job runs, read as the owner.
    pub(crate) async fn read_log(
        &self,
        id: BookingId,
        owner: &str,
        offset: u64,
        done: bool,
    ) -> std::io::Result<(String, u64, bool)> {
        if self.source == "slurm" {
            let path = self.log_of(id);
            return crate::slurm::runner::read_log(owner, path.as_deref(), offset, LOG_CHUNK)
                .await
                .map(|buf| chunk(buf, offset, done));
        }
        let path = self.jobs.log_path(id);
        tokio::task::spawn_blocking(move || read_from(&path, offset, done))
            .await
            .map_err(std::io::Error::other)?
    }

    fn book_op(&self, b: BookRequest) -> Result<Op, ErrorBody> {
        let gpus = match b.gpus {
            GpuChoice::Named { .. } if self.source == "slurm" => return Err(slurm_chooses()),
            GpuChoice::Named { gpus } => GpuSelection::Named(self.resolve(&gpus)?),
            GpuChoice::Count { count, min_memory } => GpuSelection::Count { count, min_memory },
            GpuChoice::OnNode { node, count } => GpuSelection::OnNode { node, count },
        };
        let when = match b.when {
            WhenChoice::At { start, end } => {
                When::At(Interval::new(start, end).ok_or_else(end_after_start)?)
            }
            WhenChoice::Asap { duration_secs } => {
                if duration_secs <= 0 || duration_secs > 366 * 86_400 {
                    return Err(ErrorBody::new(
                        ErrorKind::Invalid,
                        "the duration must be more than zero and at most a year",
                    ));
                }
                When::Asap(chrono::Duration::seconds(duration_secs))
            }
        };
        Ok(Op::Book {
            gpus,
            when,
            title: b.title,
            job: b.job,
        })
    }

    /// GPU references (UUIDs or indices) → UUIDs, refusing unknown ones.
    pub(crate) fn resolve(&self, refs: &[String]) -> Result<Vec<GpuUuid>, ErrorBody> {
        let inner = self.state.lock();
        refs.iter().map(|r| resolve_one(&inner.plan, r)).collect()
    }

    fn list(&self, caller: &Caller, l: &ListRequest) -> Response {
        let inner = self.state.lock();
        let mut matching: Vec<&Booking> = inner
            .plan
            .bookings()
            .filter(|b| !l.mine || b.owner == caller.actor.user)
            .filter(|b| l.include_past || !b.state.is_final())
            .filter(|b| l.range.is_none_or(|r| r.overlaps(&b.interval)))
            .filter(|b| {
                l.after
                    .is_none_or(|c| (b.interval.start, b.id) > (c.start, c.id))
            })
            .collect();
        matching.sort_by_key(|b| (b.interval.start, b.id));
        let mut bookings = Vec::new();
        let mut size = 0;
        let mut next = None;
        for b in matching {
            let b = visible(&caller.actor, b.clone());
            let len = serde_json::to_vec(&b).map(|v| v.len()).unwrap_or(0) + 1;
            if size + len > PAGE_BYTES && !bookings.is_empty() {
                next = bookings.last().map(|last: &Booking| ListCursor {
                    start: last.interval.start,
                    id: last.id,
                });
                break;
            }
            size += len;
            bookings.push(b);
        }
        Response::Bookings(BookingsResponse {
            server: self.server.clone(),
            bookings,
            next,
        })
    }
}

/// Most bytes of a log sent in one answer.
const LOG_CHUNK: u64 = 256 * 1024;

/// Up to [`LOG_CHUNK`] bytes of `path` from `offset`; a log not yet written reads as empty.
/// A UTF-8 character cut at the end of the piece (by the chunk size, or because the job is
/// writing it right now) is left for the next piece, so a client following the log never
/// shows a character broken in two; only once the job is over (`done`) and the end of the
/// file is reached is everything sent as it is. Also says whether the piece reaches the end
/// of the file as it is now.
pub fn read_from(
    path: &std::path::Path,
    offset: u64,
    done: bool,
) -> std::io::Result<(String, u64, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((String::new(), offset, true))
        }
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(LOG_CHUNK).read_to_end(&mut buf)?;
    Ok(chunk(buf, offset, done))
}

/// A read of up to [`LOG_CHUNK`] bytes at `offset` as the answer: the text, where the next
/// read starts, and whether this was the end.
fn chunk(mut buf: Vec<u8>, offset: u64, done: bool) -> (String, u64, bool) {
    let at_end = (buf.len() as u64) < LOG_CHUNK;
    if !(done && at_end) {
        buf.truncate(whole_chars(&buf));
    }
    let next = offset + buf.len() as u64;
    (String::from_utf8_lossy(&buf).into_owned(), next, at_end)
}

/// The length of `buf` without an incomplete UTF-8 character at its end (bytes that are not
/// UTF-8 at all are left in, to be shown replaced).
fn whole_chars(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=n.min(4) {
        let b = buf[n - back];
        if b & 0xC0 == 0x80 {
            // A continuation byte: look further back for the character's first byte.
            continue;
        }
        let need = match b {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if need > back { n - back } else { n };
    }
    n
}

fn resolve_one(plan: &Plan, r: &str) -> Result<GpuUuid, ErrorBody> {
    let r = r.trim();
    let found = if !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()) {
        r.parse::<u32>()
            .ok()
            .and_then(|i| plan.gpus().iter().find(|g| g.index == i))
    } else {
        plan.gpus().iter().find(|g| g.uuid.0 == r)
    };
    found.map(|g| g.uuid.clone()).ok_or_else(|| {
        ErrorBody::new(
            ErrorKind::NotFound,
            format!(
                "there is no GPU {r:?} on this server (it has {}; name GPUs by index or UUID)",
                plan.gpus()
                    .iter()
                    .map(|g| g.index.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// The booking as `viewer` may see it: other people's jobs hidden.
pub fn visible(viewer: &Actor, b: Booking) -> Booking {
    if viewer.role == Role::Admin || viewer.user == b.owner {
        b
    } else {
        let mut b = b.redacted();
        // The job's state shows; its words do not: they may hold paths and the log's last
        // line (a failed start says which directory and what the shell said).
        if let Some(run) = b.run.as_mut() {
            run.message = None;
        }
        b
    }
}

pub(crate) fn no_booking(id: BookingId) -> ErrorBody {
    ErrorBody::new(
        ErrorKind::NotFound,
        format!("there is no booking {id} on this server"),
    )
}

/// On Slurm the devices are Slurm's to pick when the job starts.
fn slurm_chooses() -> ErrorBody {
    ErrorBody::new(
        ErrorKind::Invalid,
        "on a Slurm cluster Slurm picks a node's GPUs when the job starts: book a number of \
         GPUs (`gpubook book --count 2`), not GPUs by index or UUID",
    )
}

fn end_after_start() -> ErrorBody {
    ErrorBody::new(ErrorKind::Invalid, "the end must be after the start")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_at_the_end_waits_for_the_next_piece() {
        let e_acute = "é".as_bytes(); // 2 bytes
        let gpu = "🚀".as_bytes(); // 4 bytes
        assert_eq!(whole_chars(b"loss 0.1\n"), 9);
        assert_eq!(whole_chars(&[b'a', e_acute[0]]), 1);
        assert_eq!(whole_chars(&[b'a', e_acute[0], e_acute[1]]), 3);
        assert_eq!(whole_chars(&[b'a', gpu[0], gpu[1], gpu[2]]), 1);
        assert_eq!(whole_chars(gpu), 4);
        assert_eq!(whole_chars(b""), 0);
        // Not UTF-8 at all: left in, shown replaced.
        assert_eq!(whole_chars(&[b'a', 0x80, 0x80, 0x80, 0x80]), 5);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, [b"epoch 1 ".as_slice(), &gpu[..2]].concat()).unwrap();
        // The job is writing: the half rocket waits.
        let (data, next, at_end) = read_from(&path, 0, false).unwrap();
        assert_eq!((data.as_str(), next, at_end), ("epoch 1 ", 8, true));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &gpu[2..]).unwrap();
        let (data, next, _) = read_from(&path, next, false).unwrap();
        assert_eq!((data.as_str(), next), ("🚀", 12));
        // The job is over: the rest as it is, even a broken end.
        std::io::Write::write_all(&mut f, &e_acute[..1]).unwrap();
        let (data, next, _) = read_from(&path, next, true).unwrap();
        assert_eq!((data.as_str(), next), ("\u{fffd}", 13));
    }
}
