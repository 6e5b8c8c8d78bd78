//! The agent's durable state: bookings and the numbered event log, in SQLite (WAL,
//! `synchronous=FULL`), so that an answer of "confirmed" survives `kill -9` and a power cut.
//!
//! Every change is one transaction: the caller opens it with [`Store::begin`] before the plan
//! decides (so the check runs inside it), writes the changed bookings and their events with
//! [`Tx::record`], and commits. Event numbers come from `AUTOINCREMENT`, so a number is never
//! reused, even after the newest event's row is gone.

use chrono::{DateTime, Utc};
use gpubook_core::{Booking, Change, ChangeKind, Maintenance, MaintenanceId};
use gpubook_proto::{Event, EventKind};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::Path;
use thiserror::Error;

/// The schema version this build writes; older ones are migrated on open.
///
/// - 1: bookings and events.
/// - 2: maintenance periods (table `maintenance`, one JSON row each).
const SCHEMA_VERSION: i64 = 2;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be read back.
    #[error("state database holds a row this agent cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The system's random source could not be read.
    #[error("cannot read /dev/urandom: {0}")]
    Random(std::io::Error),
    /// The database was written by a newer agent.
    #[error("state database has schema {0}; this agent knows up to {SCHEMA_VERSION}: upgrade gpubook-agent")]
    TooNew(i64),
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    /// The one connection; the agent serialises writers itself.
    conn: Connection,
}

/// One open transaction.
#[derive(Debug)]
pub struct Tx<'a> {
    /// The SQLite transaction; rolled back if dropped uncommitted.
    tx: Transaction<'a>,
}

/// A connection to the agent's database at `path` as every part of the agent opens it (the
/// store, the notify outbox, the usage series): WAL, synchronous=FULL, a 5 s busy timeout.
pub fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_db(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS bookings (
                 id INTEGER PRIMARY KEY,
                 owner TEXT NOT NULL,
                 state TEXT NOT NULL,
                 start TEXT NOT NULL,
                 end TEXT NOT NULL,
                 data TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 at TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 booking INTEGER NOT NULL,
                 data TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS maintenance (
                 id INTEGER PRIMARY KEY,
                 data TEXT NOT NULL);",
        )?;
        let version: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .and_then(|v| v.parse().ok());
        match version {
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew(v)),
            // Each migration only adds a table, made above; the version records it.
            Some(v) if v < SCHEMA_VERSION => {
                conn.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema'",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
        }
        Ok(Self { conn })
    }

    /// This agent's identity, made once and kept: it marks the agent's jobs (in their
    /// environment) so they are told apart from another agent's on the same machine.
    pub fn instance_id(&self) -> Result<String, StoreError> {
        self.random_meta("instance", 8)
    }

    /// The secret behind each job's key (see `jobs`), made once and kept. Jobs see their own
    /// key, never this, so none can make another booking's.
    pub fn job_secret(&self) -> Result<String, StoreError> {
        self.random_meta("job_secret", 32)
    }

    /// The meta value `key`, made of `n` random bytes (hex) the first time it is asked for.
    fn random_meta(&self, key: &str, n: usize) -> Result<String, StoreError> {
        let existing: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if let Some(v) = existing {
            return Ok(v);
        }
        let mut bytes = vec![0u8; n];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| {
                use std::io::Read;
                f.read_exact(&mut bytes)
            })
            .map_err(StoreError::Random)?;
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            [key, value.as_str()],
        )?;
        Ok(value)
    }

    /// Every booking stored.
    pub fn bookings(&self) -> Result<Vec<Booking>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT data FROM bookings ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        Ok(out)
    }

    /// Every maintenance period stored.
    pub fn maintenance(&self) -> Result<Vec<Maintenance>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT data FROM maintenance ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        Ok(out)
    }

    /// Events with numbers above `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, data) = row?;
            let mut event: Event = serde_json::from_str(&data)?;
            event.seq = seq as u64;
            out.push(event);
        }
        Ok(out)
    }

    /// The newest event's number, 0 when there is none.
    pub fn latest_seq(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Opens a write transaction, taking the write lock at once.
    pub fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        // A transaction whose rollback failed (a full disk) may still be open: end it, or
        // every later change would fail with "within a transaction" after the disk has room.
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(Tx {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        })
    }
}

impl Tx<'_> {
    /// Writes each changed booking and appends one event per change; returns the events.
    pub fn record(
        &mut self,
        changes: &[Change],
        actor: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::with_capacity(changes.len());
        for c in changes {
            let b = &c.booking;
            self.tx.execute(
                "INSERT INTO bookings (id, owner, state, start, end, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET owner = ?2, state = ?3, start = ?4, end = ?5,
                 data = ?6",
                params![
                    b.id.0 as i64,
                    b.owner,
                    b.state.as_str(),
                    b.interval.start.to_rfc3339(),
                    b.interval.end.to_rfc3339(),
                    serde_json::to_string(b)?,
                ],
            )?;
            let kind = event_kind(c.kind);
            let person = matches!(
                c.kind,
                ChangeKind::Created
                    | ChangeKind::Changed
                    | ChangeKind::Cancelled
                    | ChangeKind::Approved
                    | ChangeKind::Denied
                    | ChangeKind::Released
            );
            let mut event = Event {
                seq: 0,
                at,
                kind,
                booking: b.clone(),
                before: c.before,
                note: c.note.clone(),
                actor: actor.filter(|_| person).map(str::to_string),
            };
            // The number is the row's, known only after the insert: the stored body leaves it
            // out (0) and reading puts it back from the row, so each event is one write.
            self.tx.execute(
                "INSERT INTO events (at, kind, booking, data) VALUES (?1, ?2, ?3, ?4)",
                params![
                    at.to_rfc3339(),
                    kind_name(kind),
                    b.id.0 as i64,
                    serde_json::to_string(&event)?
                ],
            )?;
            event.seq = self.tx.last_insert_rowid() as u64;
            events.push(event);
        }
        Ok(events)
    }

    /// Writes maintenance period `m` as it is now.
    pub fn put_maintenance(&mut self, m: &Maintenance) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO maintenance (id, data) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET data = ?2",
            params![m.id.0 as i64, serde_json::to_string(m)?],
        )?;
        Ok(())
    }

    /// Forgets maintenance period `id` (withdrawn before it started).
    pub fn delete_maintenance(&mut self, id: MaintenanceId) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM maintenance WHERE id = ?1", [id.0 as i64])?;
        Ok(())
    }

    /// Makes the transaction durable (fsync under `synchronous=FULL`).
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit()?;
        Ok(())
    }
}

/// The wire event for a plan change.
pub fn event_kind(kind: ChangeKind) -> EventKind {
    match kind {
        ChangeKind::Created => EventKind::BookingCreated,
        ChangeKind::Changed => EventKind::BookingChanged,
        ChangeKind::Cancelled => EventKind::BookingCancelled,
        ChangeKind::Approved => EventKind::BookingApproved,
        ChangeKind::Denied => EventKind::BookingDenied,
        ChangeKind::MovedEarlier => EventKind::BookingMovedEarlier,
        ChangeKind::Released => EventKind::BookingReleased,
        ChangeKind::SlotStarting => EventKind::SlotStarting,
        ChangeKind::Started => EventKind::SlotStarted,
        ChangeKind::SlotEnding => EventKind::SlotEnding,
        ChangeKind::Ended => EventKind::SlotEnded,
        ChangeKind::JobStarted => EventKind::JobStarted,
        ChangeKind::JobFinished => EventKind::JobFinished,
        ChangeKind::JobStopped => EventKind::JobStopped,
        ChangeKind::JobFailed => EventKind::JobFailed,
        ChangeKind::JobLost => EventKind::JobLost,
        ChangeKind::Intruder => EventKind::Intruder,
        ChangeKind::Idle => EventKind::Idle,
        ChangeKind::IdleHeld => EventKind::IdleHeld,
        ChangeKind::UsageRecorded => EventKind::UsageRecorded,
        ChangeKind::StageProgress => EventKind::StageProgress,
        ChangeKind::StageReady => EventKind::StageReady,
        ChangeKind::StageFailed => EventKind::StageFailed,
        ChangeKind::JobSaved => EventKind::JobSaved,
        ChangeKind::SaveFailed => EventKind::SaveFailed,
    }
}

fn kind_name(kind: EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
