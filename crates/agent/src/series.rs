//! Each started booking's GPU readings, kept per booking as a bounded series (see
//! `gpubook_core::series`) in the agent's own SQLite file, on a connection of its own so the
//! sampler never waits for the plan's lock to write.
//!
//! - Every reading adds to the open bucket of each GPU of each active booking. An open bucket
//!   is written when it closes, every [`FLUSH_EVERY`] readings, when the booking stops being
//!   active and when the agent stops: a `kill -9` loses at most those readings. A bucket met
//!   again after a restart is read back first, so it is continued, never reset.
//! - A booking keeps at most `gpubook_core::series::MAX_POINTS_PER_BOOKING` points; a slot
//!   extended past what its width holds is made coarser in one transaction.
//! - Series of bookings whose slot ended more than [`KEEP_DAYS`] days ago are removed (at
//!   open and hourly): at most one row per booked GPU-minute of that window is ever kept,
//!   whoever books.
//!
//! Schema: meta key `series_schema` ([`SCHEMA`]), apart from the store's and the outbox's, so
//! each migrates on its own. 1: tables `usage_series_info` and `usage_series`.

use crate::state::State;
use chrono::{DateTime, Duration, Utc};
use gpubook_core::series::{self, Bucket};
use gpubook_core::{BookingId, BookingState, GpuUuid, Interval};
use gpubook_proto::{GpuSeries, Readings, UsageSeriesResponse};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// This module's schema number (meta key `series_schema`).
const SCHEMA: i64 = 1;
/// An open bucket is written at least this often, in readings.
pub const FLUSH_EVERY: u32 = 10;
/// How long a series is kept after its slot ended, days: a quarter.
pub const KEEP_DAYS: i64 = 92;

/// A booking being recorded.
#[derive(Debug)]
struct Open {
    /// Where its series starts: the slot's start.
    origin: DateTime<Utc>,
    /// Bucket width, seconds.
    width: i64,
    /// Most points per GPU.
    cap: usize,
    /// Per GPU, the open bucket's index and readings.
    current: HashMap<GpuUuid, (i64, Bucket)>,
    /// Readings since the open buckets were last written.
    unflushed: u32,
    /// The slot's end as last written (it moves when the booking is extended or released).
    end: DateTime<Utc>,
}

/// The recorder: the connection and the bookings being recorded.
#[derive(Debug)]
pub struct Series {
    /// Connection and open bookings. A plain mutex: taken on blocking threads only, never
    /// across an `.await`; never held while the state's lock is wanted.
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Its own connection to the agent's database.
    conn: Connection,
    /// Active bookings seen so far.
    open: HashMap<BookingId, Open>,
    /// When old series were last removed.
    pruned_at: Option<DateTime<Utc>>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Series {
    /// Opens the agent's database at `path` and creates or migrates this module's tables.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = crate::store::open_db(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS usage_series_info (
                 booking INTEGER PRIMARY KEY,
                 origin_ms INTEGER NOT NULL,
                 width INTEGER NOT NULL,
                 end_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS usage_series_info_end ON usage_series_info (end_ms);
             CREATE TABLE IF NOT EXISTS usage_series (
                 booking INTEGER NOT NULL,
                 gpu TEXT NOT NULL,
                 bucket INTEGER NOT NULL,
                 readings INTEGER NOT NULL,
                 util_sum REAL NOT NULL,
                 util_max INTEGER NOT NULL,
                 memory_sum REAL NOT NULL,
                 memory_max INTEGER NOT NULL,
                 PRIMARY KEY (booking, gpu, bucket)) WITHOUT ROWID;",
        )?;
        // Each version only adds tables, made above; the number records it.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('series_schema', ?1)
             ON CONFLICT(key) DO UPDATE SET value = ?1 WHERE CAST(value AS INTEGER) < ?1",
            [SCHEMA.to_string()],
        )?;
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                open: HashMap::new(),
                pruned_at: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Bookkeeping only: a panic in the middle loses a bucket's readings at worst.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one reading for the bookings `state` has active now. Blocks on the disk: call it
    /// from a blocking thread. A failure to write is logged; the readings stay in memory.
    pub fn observe(&self, state: &State, r: &Readings) {
        let active = active(state);
        let now = state.clock.now();
        let mut inner = self.lock();
        if let Err(e) = inner.observe(&active, r, now) {
            eprintln!("gpubook-agent: recording GPU series: {e}");
        }
    }

    /// Writes every open bucket (the agent is stopping).
    pub fn flush(&self) {
        let mut inner = self.lock();
        let ids: Vec<BookingId> = inner.open.keys().copied().collect();
        if let Err(e) = ids.into_iter().try_for_each(|id| inner.flush(id)) {
            eprintln!("gpubook-agent: recording GPU series: {e}");
        }
    }

    /// Booking `id`'s buckets per GPU (stored, and those still open), with the width; `None`
    /// when it has none.
    pub fn read(&self, id: BookingId) -> rusqlite::Result<Option<Stored>> {
        let inner = self.lock();
        let info: Option<(i64, i64)> = inner
            .conn
            .query_row(
                "SELECT origin_ms, width FROM usage_series_info WHERE booking = ?1",
                [id.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((origin, width)) = info else {
            return Ok(None);
        };
        let mut gpus = load(&inner.conn, id, None)?;
        if let Some(open) = inner.open.get(&id) {
            for (gpu, (i, b)) in &open.current {
                gpus.entry(gpu.clone()).or_default().insert(*i, *b);
            }
        }
        Ok(Some(Stored {
            origin: DateTime::from_timestamp_millis(origin).unwrap_or_default(),
            width,
            gpus,
        }))
    }
}

/// A booking's series as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Where it starts.
    pub origin: DateTime<Utc>,
    /// Bucket width, seconds.
    pub width: i64,
    /// Per GPU, bucket index → readings.
    pub gpus: HashMap<GpuUuid, BTreeMap<i64, Bucket>>,
}

/// An active booking as the recorder needs it.
#[derive(Debug)]
struct Active {
    /// Which.
    id: BookingId,
    /// Its slot now.
    interval: Interval,
    /// Its GPUs.
    gpus: Vec<GpuUuid>,
}

/// The bookings active now, from one look at the plan.
fn active(state: &State) -> Vec<Active> {
    let now = state.clock.now();
    let st = state.lock();
    let plan = &st.plan;
    let all: Vec<GpuUuid> = plan.gpus().iter().map(|g| g.uuid.clone()).collect();
    let window = Interval {
        start: now,
        end: now + Duration::seconds(1),
    };
    let mut seen = HashSet::new();
    plan.conflicts(&all, &window, None)
        .into_iter()
        .filter(|c| seen.insert(c.booking))
        .filter_map(|c| plan.get(c.booking))
        .filter(|b| b.state == BookingState::Active)
        .map(|b| Active {
            id: b.id,
            interval: b.interval,
            gpus: b.gpus.clone(),
        })
        .collect()
}

/// Per GPU, booking `id`'s stored buckets (only bucket `only` where given).
fn load(
    conn: &Connection,
    id: BookingId,
    only: Option<(&GpuUuid, i64)>,
) -> rusqlite::Result<HashMap<GpuUuid, BTreeMap<i64, Bucket>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT gpu, bucket, readings, util_sum, util_max, memory_sum, memory_max
         FROM usage_series WHERE booking = ?1 AND (?2 IS NULL OR (gpu = ?2 AND bucket = ?3))",
    )?;
    let rows = stmt.query_map(
        params![id.0 as i64, only.map(|o| o.0 .0.clone()), only.map(|o| o.1)],
        |r| {
            Ok((
                GpuUuid(r.get(0)?),
                r.get::<_, i64>(1)?,
                Bucket {
                    readings: r.get::<_, i64>(2)?.max(0) as u64,
                    util_sum: r.get(3)?,
                    util_max: r.get::<_, i64>(4)?.clamp(0, u32::MAX.into()) as u32,
                    memory_sum: r.get(5)?,
                    memory_max: r.get::<_, i64>(6)?.max(0) as u64,
                },
            ))
        },
    )?;
    let mut out: HashMap<GpuUuid, BTreeMap<i64, Bucket>> = HashMap::new();
    for row in rows {
        let (gpu, i, b) = row?;
        out.entry(gpu).or_default().insert(i, b);
    }
    Ok(out)
}

fn put(
    conn: &Connection,
    id: BookingId,
    gpu: &GpuUuid,
    i: i64,
    b: &Bucket,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO usage_series
         (booking, gpu, bucket, readings, util_sum, util_max, memory_sum, memory_max)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.0 as i64,
        gpu.0,
        i,
        b.readings.min(i64::MAX as u64) as i64,
        b.util_sum,
        i64::from(b.util_max),
        b.memory_sum,
        b.memory_max.min(i64::MAX as u64) as i64
    ])?;
    Ok(())
}

impl Inner {
    fn observe(
        &mut self,
        active: &[Active],
        r: &Readings,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        let live: HashSet<BookingId> = active.iter().map(|a| a.id).collect();
        let over: Vec<BookingId> = self
            .open
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in over {
            self.flush(id)?;
            self.open.remove(&id);
        }
        let tx = self.conn.unchecked_transaction()?;
        for a in active {
            let open = match self.open.remove(&a.id) {
                Some(o) => o,
                None => begin(&self.conn, a)?,
            };
            let open = record(&self.conn, a, open, r)?;
            self.open.insert(a.id, open);
        }
        tx.commit()?;
        if self.pruned_at.is_none_or(|t| now - t >= Duration::hours(1)) {
            self.pruned_at = Some(now);
            prune(&self.conn, now)?;
        }
        Ok(())
    }

    /// Writes booking `id`'s open buckets.
    fn flush(&mut self, id: BookingId) -> rusqlite::Result<()> {
        let Some(open) = self.open.get_mut(&id) else {
            return Ok(());
        };
        let tx = self.conn.unchecked_transaction()?;
        for (gpu, (i, b)) in &open.current {
            put(&tx, id, gpu, *i, b)?;
        }
        tx.commit()?;
        open.unflushed = 0;
        Ok(())
    }
}

/// Starts (or, after a restart, resumes) recording booking `a`.
fn begin(conn: &Connection, a: &Active) -> rusqlite::Result<Open> {
    let stored: Option<(i64, i64)> = conn
        .query_row(
            "SELECT origin_ms, width FROM usage_series_info WHERE booking = ?1",
            [a.id.0 as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (origin, width) = match stored {
        Some((o, w)) => (
            DateTime::from_timestamp_millis(o).unwrap_or(a.interval.start),
            w,
        ),
        None => {
            let width = series::bucket_secs(a.interval.duration().num_seconds(), a.gpus.len());
            conn.execute(
                "INSERT INTO usage_series_info (booking, origin_ms, width, end_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    a.id.0 as i64,
                    ms(a.interval.start),
                    width,
                    ms(a.interval.end)
                ],
            )?;
            (a.interval.start, width)
        }
    };
    Ok(Open {
        origin,
        width,
        cap: series::points_per_gpu(a.gpus.len()),
        current: HashMap::new(),
        unflushed: 0,
        end: DateTime::<Utc>::MIN_UTC,
    })
}

/// Adds reading `r` to booking `a`'s open buckets, writing those it closes.
fn record(conn: &Connection, a: &Active, mut open: Open, r: &Readings) -> rusqlite::Result<Open> {
    let Some(mut index) = series::bucket_index(open.origin, open.width, r.at) else {
        return Ok(open);
    };
    while index >= open.cap as i64 {
        open = coarsen(conn, a.id, open)?;
        index = series::bucket_index(open.origin, open.width, r.at).unwrap_or(0);
    }
    if open.end != a.interval.end {
        conn.prepare_cached("UPDATE usage_series_info SET end_ms = ?2 WHERE booking = ?1")?
            .execute(params![a.id.0 as i64, ms(a.interval.end)])?;
        open.end = a.interval.end;
    }
    for g in r.gpus.iter().filter(|g| a.gpus.contains(&g.uuid)) {
        let slot = match open.current.remove(&g.uuid) {
            Some((i, b)) if i == index => (i, b),
            closed => {
                if let Some((i, b)) = closed {
                    put(conn, a.id, &g.uuid, i, &b)?;
                }
                // After a restart the bucket may hold readings already: go on from them.
                let before = load(conn, a.id, Some((&g.uuid, index)))?;
                let b = before
                    .get(&g.uuid)
                    .and_then(|m| m.get(&index))
                    .copied()
                    .unwrap_or_default();
                (index, b)
            }
        };
        let (i, mut b) = slot;
        b.add(g.util_gpu, g.memory_used);
        open.current.insert(g.uuid.clone(), (i, b));
    }
    open.unflushed += 1;
    if open.unflushed >= FLUSH_EVERY {
        for (gpu, (i, b)) in &open.current {
            put(conn, a.id, gpu, *i, b)?;
        }
        open.unflushed = 0;
    }
    Ok(open)
}

/// Doubles booking `id`'s bucket width, merging its stored and open buckets pairwise.
fn coarsen(conn: &Connection, id: BookingId, mut open: Open) -> rusqlite::Result<Open> {
    let mut gpus = load(conn, id, None)?;
    for (gpu, (i, b)) in open.current.drain() {
        gpus.entry(gpu).or_default().insert(i, b);
    }
    conn.execute("DELETE FROM usage_series WHERE booking = ?1", [id.0 as i64])?;
    for (gpu, buckets) in &gpus {
        for (i, b) in series::coarsen(buckets) {
            put(conn, id, gpu, i, &b)?;
        }
    }
    open.width *= 2;
    conn.execute(
        "UPDATE usage_series_info SET width = ?2 WHERE booking = ?1",
        params![id.0 as i64, open.width],
    )?;
    Ok(open)
}

/// Removes the series of slots that ended more than [`KEEP_DAYS`] before `now`.
fn prune(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let before = ms(now - Duration::days(KEEP_DAYS));
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "DELETE FROM usage_series WHERE booking IN
         (SELECT booking FROM usage_series_info WHERE end_ms < ?1)",
        [before],
    )?;
    tx.execute("DELETE FROM usage_series_info WHERE end_ms < ?1", [before])?;
    tx.commit()
}

/// The answer to `UsageSeries` for booking `b` from what is stored.
pub fn response(
    server: &str,
    b: &gpubook_core::Booking,
    inventory: &[gpubook_core::Gpu],
    stored: Option<Stored>,
) -> UsageSeriesResponse {
    let width = stored.as_ref().map_or(0, |s| s.width);
    let gpus = b
        .gpus
        .iter()
        .map(|uuid| {
            let gpu = inventory.iter().find(|g| &g.uuid == uuid);
            let points = stored
                .as_ref()
                .and_then(|s| s.gpus.get(uuid).map(|m| (s.origin, m)))
                .map(|(origin, m)| {
                    m.iter()
                        .map(|(i, bucket)| bucket.point(series::bucket_start(origin, width, *i)))
                        .collect()
                })
                .unwrap_or_default();
            GpuSeries {
                uuid: uuid.clone(),
                index: gpu.map(|g| g.index),
                memory_total: gpu.map_or(0, |g| g.memory_total),
                points,
            }
        })
        .collect();
    UsageSeriesResponse {
        id: b.id,
        server: server.to_string(),
        start: stored.as_ref().map_or(b.interval.start, |s| s.origin),
        end: b.interval.end,
        bucket_secs: width,
        gpus,
    }
}

/// Answers `UsageSeries` for booking `id`: its owner and admins only (see
/// `gpubook_proto::series`).
pub async fn answer(
    ctx: &crate::handler::Context,
    caller: &crate::handler::Caller,
    id: BookingId,
) -> Result<gpubook_proto::Response, gpubook_proto::ErrorBody> {
    use gpubook_proto::{ErrorBody, ErrorKind};
    let (booking, inventory) = {
        let st = ctx.state.lock();
        (st.plan.get(id).cloned(), st.plan.gpus().to_vec())
    };
    let b = booking.ok_or_else(|| crate::handler::no_booking(id))?;
    if caller.actor.role != gpubook_core::Role::Admin && b.owner != caller.actor.user {
        return Err(ErrorBody::new(
            ErrorKind::NotAllowed,
            format!(
                "booking {id} is {}'s: only its owner and admins see its GPU readings",
                b.owner
            ),
        ));
    }
    let series = ctx.series.clone();
    let stored = tokio::task::spawn_blocking(move || series.read(id))
        .await
        .map_err(|e| ErrorBody::new(ErrorKind::Internal, format!("reading the series: {e}")))?
        .map_err(|e| {
            ErrorBody::new(
                ErrorKind::Unavailable,
                format!("the agent cannot read its GPU series now ({e})"),
            )
        })?;
    Ok(gpubook_proto::Response::UsageSeries(response(
        &ctx.server,
        &b,
        &inventory,
        stored,
    )))
}
