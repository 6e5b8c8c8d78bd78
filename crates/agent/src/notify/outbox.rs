//! The durable part of news while away, in the agent's own SQLite file (its own connection,
//! so the sender never waits for the plan's lock): each person's targets, and the outbox of
//! deliveries, one row per (event, target).
//!
//! Exactly once: the outbox is filled from the event log behind a cursor, and the rows and the
//! cursor are written in one transaction; `UNIQUE (event, uid, channel)` keeps an event from
//! being queued twice for a target whatever happens. A row is marked sent in its own commit as
//! soon as the receiver took it; the only repeat left is a crash in the milliseconds between a
//! receiver's "taken" and that commit, and then the mail's Message-ID and the webhook's
//! `X-Gpubook-Delivery` are the same as the first time, so a receiver can tell.
//!
//! Bounds: a person's targets are bounded by `gpubook_proto::notify::check_targets`; at most
//! [`MAX_PENDING_PER_UID`] of their deliveries wait at once (more are recorded as failed, so
//! they see it), and at most [`KEEP_DONE_PER_UID`] finished ones are kept.

use chrono::{DateTime, Utc};
use gpubook_proto::notify::describe;
use gpubook_proto::{Channel, Delivery, DeliveryState, Event, EventKind, NotifyTarget};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

/// This module's own schema number (meta key `notify_schema`), apart from the store's, so the
/// two migrate independently.
const SCHEMA: i64 = 1;
/// Most deliveries one person may have waiting; beyond it new ones fail at once, said why.
pub const MAX_PENDING_PER_UID: i64 = 200;
/// Finished (sent or failed) deliveries kept per person, newest first, for `notify show`.
pub const KEEP_DONE_PER_UID: i64 = 100;
/// Events read from the log per enqueue pass.
const BATCH: i64 = 500;

/// One delivery to make.
#[derive(Debug, Clone)]
pub struct Due {
    /// The outbox row.
    pub id: i64,
    /// Whose.
    pub uid: u32,
    /// Where to.
    pub channel: Channel,
    /// The event, as it was logged.
    pub event: Event,
    /// Tries made before this one.
    pub attempts: u32,
}

/// The outbox and the targets.
#[derive(Debug)]
pub struct Outbox {
    /// Its own connection to the agent's database.
    conn: Connection,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

impl Outbox {
    /// Opens the agent's database at `path` and creates or migrates this module's tables. On
    /// the first open the cursor starts at the newest event: history is not mailed out.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = crate::store::open_db(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS notify_targets (
                 uid INTEGER PRIMARY KEY,
                 user TEXT NOT NULL,
                 data TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS notify_targets_user ON notify_targets (user);
             CREATE TABLE IF NOT EXISTS notify_outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 event INTEGER NOT NULL,
                 uid INTEGER NOT NULL,
                 channel TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 booking INTEGER NOT NULL,
                 data TEXT NOT NULL,
                 state TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER,
                 last_error TEXT,
                 sent_at INTEGER,
                 UNIQUE (event, uid, channel));
             CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox (state, next_at);
             CREATE INDEX IF NOT EXISTS notify_outbox_uid ON notify_outbox (uid, id);",
        )?;
        let tx = conn.unchecked_transaction()?;
        let version: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'notify_schema'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if version.is_none() {
            let latest: i64 = tx
                .query_row(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('notify_schema', ?1),
                 ('notify_cursor', ?2)",
                params![SCHEMA.to_string(), latest.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(Self { conn })
    }

    /// `uid`'s targets.
    pub fn targets(&self, uid: u32) -> rusqlite::Result<Vec<NotifyTarget>> {
        let data: Option<String> = self
            .conn
            .query_row(
                "SELECT data FROM notify_targets WHERE uid = ?1",
                [uid],
                |r| r.get(0),
            )
            .optional()?;
        Ok(data
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default())
    }

    /// Replaces `uid`'s targets (none: removes them); waiting deliveries to a target that is
    /// gone are dropped.
    pub fn set_targets(
        &mut self,
        uid: u32,
        user: &str,
        targets: &[NotifyTarget],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if targets.is_empty() {
            tx.execute("DELETE FROM notify_targets WHERE uid = ?1", [uid])?;
        } else {
            tx.execute(
                "INSERT INTO notify_targets (uid, user, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT(uid) DO UPDATE SET user = ?2, data = ?3",
                params![
                    uid,
                    user,
                    serde_json::to_string(targets).unwrap_or_default()
                ],
            )?;
        }
        let keep: Vec<String> = targets.iter().map(|t| channel_key(&t.channel)).collect();
        let mut pending = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT id, channel FROM notify_outbox WHERE uid = ?1 AND state = 'pending'",
            )?;
            let rows = stmt.query_map([uid], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))?;
            for row in rows {
                let (id, ch): (i64, String) = row?;
                if !keep.contains(&ch) {
                    pending.push(id);
                }
            }
        }
        for id in pending {
            tx.execute("DELETE FROM notify_outbox WHERE id = ?1", [id])?;
        }
        tx.commit()
    }

    /// Queues a delivery for each new event in the log to each target of its booking's owner
    /// that asked for its kind (not for what the owner did themselves), and moves the cursor
    /// past them, in one transaction. Returns how many were queued.
    pub fn enqueue(&mut self, now: DateTime<Utc>) -> rusqlite::Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cursor: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'notify_cursor'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let events: Vec<(i64, String)> = {
            let mut stmt =
                tx.prepare("SELECT seq, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![cursor, BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(last) = events.last().map(|e| e.0) else {
            return Ok(0);
        };
        let mut queued = 0;
        for (seq, data) in events {
            let Ok(mut event) = serde_json::from_str::<Event>(&data) else {
                continue;
            };
            event.seq = seq as u64;
            let owner = &event.booking.owner;
            if event.actor.as_deref() == Some(owner.as_str()) {
                continue;
            }
            let found: Vec<(u32, String)> = {
                let mut stmt =
                    tx.prepare_cached("SELECT uid, data FROM notify_targets WHERE user = ?1")?;
                let rows = stmt.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (uid, data) in found {
                let targets: Vec<NotifyTarget> = serde_json::from_str(&data).unwrap_or_default();
                for t in targets.iter().filter(|t| t.kinds.contains(&event.kind)) {
                    let waiting: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM notify_outbox WHERE uid = ?1 AND state = 'pending'",
                        [uid],
                        |r| r.get(0),
                    )?;
                    let (state, error) = if waiting >= MAX_PENDING_PER_UID {
                        (
                            "failed",
                            Some(format!(
                                "not sent: {MAX_PENDING_PER_UID} of your notifications were \
                                 already waiting (is the receiver down?)"
                            )),
                        )
                    } else {
                        ("pending", None)
                    };
                    let body = serde_json::to_string(&event).unwrap_or_default();
                    queued += tx.execute(
                        "INSERT OR IGNORE INTO notify_outbox
                         (event, uid, channel, kind, booking, data, state, next_at, last_error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            seq,
                            uid,
                            channel_key(&t.channel),
                            kind_name(event.kind),
                            event.booking.id.0 as i64,
                            body,
                            state,
                            ms(now),
                            error
                        ],
                    )?;
                }
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'notify_cursor'",
            [last.to_string()],
        )?;
        tx.commit()?;
        Ok(queued)
    }

    /// Deliveries due at `now`, oldest first, at most `limit`, leaving out `busy` rows.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: &[i64],
    ) -> rusqlite::Result<Vec<Due>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, uid, channel, data, attempts FROM notify_outbox
             WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![ms(now), (limit + busy.len()) as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, uid, channel, data, attempts) = row?;
            if busy.contains(&id) || out.len() >= limit {
                continue;
            }
            let (Ok(channel), Ok(event)) =
                (serde_json::from_str(&channel), serde_json::from_str(&data))
            else {
                continue;
            };
            out.push(Due {
                id,
                uid,
                channel,
                event,
                attempts,
            });
        }
        Ok(out)
    }

    /// When the next waiting delivery is due, if any waits.
    pub fn next_due(&self) -> rusqlite::Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = self.conn.query_row(
            "SELECT MIN(next_at) FROM notify_outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(v.and_then(from_ms))
    }

    /// Records that delivery `id` was taken by its receiver at `now`.
    pub fn sent(&mut self, id: i64, now: DateTime<Utc>) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE notify_outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
             next_at = NULL, last_error = NULL WHERE id = ?1",
            params![id, ms(now)],
        )?;
        self.prune(id)
    }

    /// Records a failed try of delivery `id`: tried again at `retry_at`, or given up (`None`).
    pub fn failed(
        &mut self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE notify_outbox SET state = ?2, attempts = attempts + 1, last_error = ?3,
             next_at = ?4 WHERE id = ?1",
            params![
                id,
                if retry_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                error,
                retry_at.map(ms)
            ],
        )?;
        self.prune(id)
    }

    /// Keeps at most [`KEEP_DONE_PER_UID`] finished deliveries of the owner of row `id`.
    fn prune(&mut self, id: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "DELETE FROM notify_outbox WHERE state != 'pending'
             AND uid = (SELECT uid FROM notify_outbox WHERE id = ?1)
             AND id NOT IN (SELECT id FROM notify_outbox
                 WHERE state != 'pending' AND uid = (SELECT uid FROM notify_outbox WHERE id = ?1)
                 ORDER BY id DESC LIMIT ?2)",
            params![id, KEEP_DONE_PER_UID],
        )?;
        Ok(())
    }

    /// `uid`'s latest deliveries, newest first, at most `limit`.
    pub fn deliveries(&self, uid: u32, limit: usize) -> rusqlite::Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event, kind, booking, channel, state, attempts, last_error, next_at, sent_at
             FROM notify_outbox WHERE uid = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![uid, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, u32>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (event, kind, booking, channel, state, attempts, last_error, next_at, sent_at) =
                row?;
            let channel: Channel = match serde_json::from_str(&channel) {
                Ok(c) => c,
                Err(_) => continue,
            };
            let state = match state.as_str() {
                "sent" => DeliveryState::Sent,
                "failed" => DeliveryState::Failed,
                _ => DeliveryState::Pending,
            };
            out.push(Delivery {
                event: event as u64,
                kind: serde_json::from_value(serde_json::Value::String(kind))
                    .unwrap_or(EventKind::Unknown),
                booking: gpubook_core::BookingId(booking as u64),
                target: describe(&channel),
                state,
                attempts,
                last_error,
                next_attempt: next_at
                    .filter(|_| state == DeliveryState::Pending)
                    .and_then(from_ms),
                sent_at: sent_at.and_then(from_ms),
            });
        }
        Ok(out)
    }
}

/// A channel as stored in a row: its JSON, the same for the same channel every time.
fn channel_key(c: &Channel) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

fn kind_name(kind: EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
