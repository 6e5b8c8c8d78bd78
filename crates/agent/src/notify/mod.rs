//! News while away: the agent sends each person's events about their own bookings to the
//! e-mail addresses and webhooks they chose, whether or not any app is connected.
//!
//! [`outbox`] keeps the targets and the deliveries durably (each event sent to each target
//! once, across restarts); [`send`] makes one try; this file runs the sender in the
//! background: it wakes on every committed event, queues what is due, and sends with at most
//! [`MAX_IN_FLIGHT`] tries at once (at most [`MAX_IN_FLIGHT_PER_UID`] of one person's), each
//! bounded in time, so a slow or dead receiver never holds up the agent or other people's
//! news. Failed tries are retried with back-off ([`retry_at`]) and shown to their owner by
//! `notify show`.

pub mod outbox;
pub mod send;
pub mod text;

use crate::state::State;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_core::policy::mail::MailSettings;
use gpubook_proto::{
    notify::check_targets, Channel, ErrorBody, ErrorKind, NotifyResponse, NotifyTarget, Request,
    Response,
};
use outbox::{Due, Outbox};
use send::{Mailer, Outcome};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most tries in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most tries in flight at once for one person's deliveries.
pub const MAX_IN_FLIGHT_PER_UID: usize = 2;
/// Tries before a delivery is given up: about two hours of back-off in all.
pub const MAX_ATTEMPTS: u32 = 8;
/// The first wait after a failed try; it doubles each time.
const FIRST_RETRY: ChronoDuration = ChronoDuration::seconds(30);
/// The longest wait between tries.
const LONGEST_RETRY: ChronoDuration = ChronoDuration::hours(1);
/// How often the sender looks for due retries when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// When to try a delivery again after its `attempts`-th failed try; `None`: give up.
pub fn retry_at(now: DateTime<Utc>, attempts: u32) -> Option<DateTime<Utc>> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 1i32 << attempts.saturating_sub(1).min(16);
    Some(now + (FIRST_RETRY * factor).min(LONGEST_RETRY))
}

/// The notification service.
#[derive(Debug)]
pub struct Notify {
    /// The targets and the outbox. A plain mutex: held for one short query, never across an
    /// `.await` (the sender's queries run in `spawn_blocking`).
    outbox: Mutex<Outbox>,
    /// The agent's state: its clock and its event broadcast.
    state: Arc<State>,
    /// The server's name, in every message.
    server: String,
    /// The lab's mail server, when the policy has `[mail]`.
    mailer: Option<Mailer>,
    /// The webhook client.
    http: reqwest::Client,
}

impl Notify {
    /// Opens the outbox in `db` (the agent's database) for `state`; mails go through
    /// `mail` (checked, with its credentials file read) when the admin set it up.
    pub fn open(
        db: &Path,
        state: Arc<State>,
        server: String,
        mail: Option<(MailSettings, Option<send::Login>)>,
    ) -> anyhow::Result<Self> {
        let mailer = match mail {
            Some((settings, login)) => Some(Mailer::new(&settings, login)?),
            None => None,
        };
        Ok(Self {
            outbox: Mutex::new(Outbox::open(db)?),
            state,
            server,
            mailer,
            http: send::http_client()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's targets and latest deliveries.
    pub fn show(&self, uid: u32) -> Result<NotifyResponse, ErrorBody> {
        let outbox = self.lock();
        Ok(NotifyResponse {
            targets: outbox.targets(uid).map_err(unavailable)?,
            deliveries: outbox
                .deliveries(uid, gpubook_proto::notify::MAX_LISTED_DELIVERIES)
                .map_err(unavailable)?,
            mail: self.mailer.is_some(),
        })
    }

    /// Replaces the caller's targets, after checking them.
    pub fn set(
        &self,
        uid: u32,
        user: &str,
        targets: &[NotifyTarget],
    ) -> Result<NotifyResponse, ErrorBody> {
        check_targets(targets).map_err(|m| ErrorBody::new(ErrorKind::Invalid, m))?;
        if self.mailer.is_none()
            && targets
                .iter()
                .any(|t| matches!(t.channel, Channel::Email { .. }))
        {
            return Err(ErrorBody::new(
                ErrorKind::Unavailable,
                format!(
                    "{} cannot send mail: its admin has not set up [mail] in the policy; use a \
                     webhook, or ask them",
                    self.server
                ),
            ));
        }
        self.lock()
            .set_targets(uid, user, targets)
            .map_err(unavailable)?;
        self.show(uid)
    }

    /// Sends until `shutdown` resolves; tries still in flight then get a few seconds to end.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut events = self.state.events.subscribe();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, u32, u32, Outcome)>();
        let mut busy: HashMap<i64, u32> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let me = self.clone();
            let in_flight: Vec<i64> = busy.keys().copied().collect();
            let per_uid = count_per_uid(&busy);
            let picked = tokio::task::spawn_blocking(move || me.pick(&in_flight, &per_uid))
                .await
                .unwrap_or_default();
            for d in picked {
                busy.insert(d.id, d.uid);
                let (me, done) = (self.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let outcome = me.try_once(&d).await;
                    let _ = done.send((d.id, d.uid, d.attempts, outcome));
                });
            }
            tokio::select! {
                r = events.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        break;
                    }
                }
                Some((id, _, attempts, outcome)) = done_rx.recv() => {
                    busy.remove(&id);
                    self.record(id, attempts, outcome).await;
                }
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut shutdown => break,
            }
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while !busy.is_empty() {
            match tokio::time::timeout_at(until, done_rx.recv()).await {
                Ok(Some((id, _, attempts, outcome))) => {
                    busy.remove(&id);
                    self.record(id, attempts, outcome).await;
                }
                _ => break,
            }
        }
    }

    /// Queues new events, then picks the deliveries to start now (blocking: the disk).
    fn pick(&self, in_flight: &[i64], per_uid: &HashMap<u32, usize>) -> Vec<Due> {
        let now = self.state.clock.now();
        let mut outbox = self.lock();
        if let Err(e) = outbox.enqueue(now) {
            eprintln!("gpubook-agent: notify: cannot queue notifications: {e}");
        }
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 {
            return Vec::new();
        }
        let due = match outbox.due(now, room * 4, in_flight) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("gpubook-agent: notify: cannot read the outbox: {e}");
                return Vec::new();
            }
        };
        let mut counts = per_uid.clone();
        let mut out = Vec::new();
        for d in due {
            let n = counts.entry(d.uid).or_default();
            if *n >= MAX_IN_FLIGHT_PER_UID || out.len() >= room {
                continue;
            }
            *n += 1;
            out.push(d);
        }
        out
    }

    /// One try of delivery `d`.
    async fn try_once(&self, d: &Due) -> Outcome {
        match &d.channel {
            Channel::Webhook { url, format } => {
                send::post(&self.http, url, *format, &d.event, &self.server, d.id).await
            }
            Channel::Email { address } => match &self.mailer {
                Some(m) => m.send(address, &d.event, &self.server, d.id).await,
                None => Outcome::GiveUp(
                    "this server no longer sends mail ([mail] left the policy)".into(),
                ),
            },
        }
    }

    /// Writes how a try of delivery `id` (its `attempts`-th before) went.
    async fn record(self: &Arc<Self>, id: i64, attempts: u32, outcome: Outcome) {
        let me = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let now = me.state.clock.now();
            let mut outbox = me.lock();
            match outcome {
                Outcome::Sent => outbox.sent(id, now),
                Outcome::Retry(e) => outbox.failed(id, &e, retry_at(now, attempts + 1)),
                Outcome::GiveUp(e) => outbox.failed(id, &e, None),
            }
        })
        .await;
        if let Ok(Err(e)) = written {
            eprintln!("gpubook-agent: notify: cannot record delivery {id}: {e}");
        }
    }
}

/// The answer to a notify request from `caller`: always about the caller's own targets.
pub async fn answer(
    notify: &Arc<Notify>,
    caller: &crate::handler::Caller,
    req: Request,
) -> Result<Response, ErrorBody> {
    let (n, uid, user) = (notify.clone(), caller.uid, caller.actor.user.clone());
    tokio::task::spawn_blocking(move || match req {
        Request::NotifySet(r) => n.set(uid, &user, &r.targets),
        Request::NotifyClear(_) => n.set(uid, &user, &[]),
        _ => n.show(uid),
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorKind::Internal, format!("agent task failed: {e}")))?
    .map(Response::Notify)
}

/// The policy's `[mail]` settings with their login read from the credentials file (which must
/// be root's alone), or `None` when the policy (`text`) has no `[mail]`.
pub fn mail_from_policy(
    text: Option<&str>,
) -> anyhow::Result<Option<(MailSettings, Option<send::Login>)>> {
    let Some(settings) = text
        .map(MailSettings::from_policy_toml)
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    let login = match &settings.credentials_file {
        Some(p) => Some(send::read_login(p, crate::identity::current_uid())?),
        None => None,
    };
    Ok(Some((settings, login)))
}

fn count_per_uid(busy: &HashMap<i64, u32>) -> HashMap<u32, usize> {
    let mut out = HashMap::new();
    for uid in busy.values() {
        *out.entry(*uid).or_default() += 1;
    }
    out
}

fn unavailable(e: rusqlite::Error) -> ErrorBody {
    ErrorBody::new(
        ErrorKind::Unavailable,
        format!("the agent cannot read or write its notification settings now ({e})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_an_hour_then_gives_up() {
        let now = Utc::now();
        let waits: Vec<i64> = (1..MAX_ATTEMPTS)
            .map(|a| (retry_at(now, a).unwrap() - now).num_seconds())
            .collect();
        assert_eq!(waits, vec![30, 60, 120, 240, 480, 960, 1920]);
        assert_eq!(retry_at(now, MAX_ATTEMPTS), None);
        assert_eq!(
            (retry_at(now, 7).unwrap() - now).num_seconds(),
            1920,
            "under the hour cap"
        );
    }
}
