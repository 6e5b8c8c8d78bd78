//! The subscription feed: a read-only iCalendar URL on 127.0.0.1 for calendar apps that
//! subscribe to one (Thunderbird, GNOME Calendar, Apple Calendar), kept current from the
//! agent's event stream.
//!
//! The URL's path holds a random token (128 bits); any other path is 404, so another local
//! user who finds the port learns nothing. A feed whose token is kept in a file
//! ([`FeedServer::bind_stored`]) reads that file for every request, so a token renewed by
//! another process (`gpubook feed --new-token`, [`stored_token`]) stops the old URL at once. One request per connection, GET or HEAD, with an
//! ETag so a polling app downloads the calendar only when it changed. Requests are bounded:
//! a head of at most [`MAX_HEAD`] bytes, read within [`READ_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] at a time.

use crate::connection::Pushed;
use crate::ical::{self, CalendarContext, EventData};
use crate::live::{LiveEvent, LiveEvents};
use chrono::Utc;
use gpubook_core::{Booking, BookingId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

mod http;

use http::fnv1a;
pub use http::{
    new_token, stored_token, FeedServer, FILE_NAME, MAX_CONNECTIONS, MAX_HEAD, READ_TIMEOUT,
    TOKEN_FILE,
};

/// The calendar as served, with its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBody {
    /// The VCALENDAR.
    pub ics: String,
    /// A quoted entity tag that changes with the content.
    pub etag: String,
}

/// The bookings a feed shows, and the calendar made of them.
#[derive(Debug)]
pub struct Feed {
    /// The server, its GPUs, whose calendar.
    ctx: CalendarContext,
    /// Every booking shown, by id.
    bookings: BTreeMap<BookingId, Booking>,
    /// The current calendar, for the server's connections.
    tx: watch::Sender<Arc<FeedBody>>,
}

impl Feed {
    /// A feed of `bookings` (those `ctx` holds).
    pub fn new(ctx: CalendarContext, bookings: Vec<Booking>) -> Self {
        let (tx, _) = watch::channel(Arc::new(FeedBody {
            ics: String::new(),
            etag: String::new(),
        }));
        let mut feed = Self {
            ctx,
            bookings: BTreeMap::new(),
            tx,
        };
        feed.replace(bookings);
        feed
    }

    /// The current calendar, updated as the feed changes.
    pub fn body(&self) -> watch::Receiver<Arc<FeedBody>> {
        self.tx.subscribe()
    }

    /// Shows exactly `bookings` (after a fresh listing).
    pub fn replace(&mut self, bookings: Vec<Booking>) {
        self.bookings = bookings
            .into_iter()
            .filter(|b| self.ctx.holds(b))
            .map(|b| (b.id, b))
            .collect();
        self.render();
    }

    /// Shows `b` as it is now (from an event); an older revision than the one shown is
    /// ignored.
    pub fn apply(&mut self, b: &Booking) {
        if !self.ctx.holds(b) {
            return;
        }
        if self
            .bookings
            .get(&b.id)
            .is_some_and(|old| old.revision > b.revision)
        {
            return;
        }
        self.bookings.insert(b.id, b.clone());
        self.render();
    }

    fn render(&mut self) {
        let events: Vec<EventData> = self
            .bookings
            .values()
            .map(|b| EventData::from_booking(b, &self.ctx))
            .collect();
        self.tx
            .send_replace(Arc::new(render(&ical::calendar_name(&self.ctx), &events)));
    }
}

/// The calendar named `name` of `events`, with its ETag.
fn render(name: &str, events: &[EventData]) -> FeedBody {
    let ics = ical::calendar(name, events, Utc::now());
    // The ETag covers what the events say, not the DTSTAMP of this rendering.
    let key = serde_json::to_vec(events).unwrap_or_default();
    let etag = format!("\"{:016x}\"", fnv1a(&key));
    FeedBody { ics, etag }
}

/// Several servers' bookings as one calendar: one part per server (its context and
/// bookings, each event's UID `<id>@<server>`), rendered into one VCALENDAR whose ETag
/// covers the events of every part. Cheap to clone; the clones share the parts, so one
/// follower per server can keep its own part current.
#[derive(Debug, Clone)]
pub struct FeedSet {
    inner: Arc<std::sync::Mutex<SetInner>>,
}

#[derive(Debug)]
struct SetInner {
    /// The calendar's name.
    name: String,
    /// Per server (by the caller's key): its context and the bookings shown.
    parts: BTreeMap<String, (CalendarContext, BTreeMap<BookingId, Booking>)>,
    /// The current calendar.
    tx: watch::Sender<Arc<FeedBody>>,
}

impl SetInner {
    /// Renders the parts; publishes only when the events changed (the same ETag).
    fn render(&mut self) {
        let events: Vec<EventData> = self
            .parts
            .values()
            .flat_map(|(ctx, bookings)| {
                bookings
                    .values()
                    .map(move |b| EventData::from_booking(b, ctx))
            })
            .collect();
        let body = render(&self.name, &events);
        self.tx.send_if_modified(|old| {
            if old.etag == body.etag {
                return false;
            }
            *old = Arc::new(body);
            true
        });
    }
}

impl FeedSet {
    /// An empty calendar named `name` (no server yet).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let (tx, _) = watch::channel(Arc::new(render(&name, &[])));
        Self {
            inner: Arc::new(std::sync::Mutex::new(SetInner {
                name,
                parts: BTreeMap::new(),
                tx,
            })),
        }
    }

    /// The current calendar, updated as any part changes.
    pub fn body(&self) -> watch::Receiver<Arc<FeedBody>> {
        self.inner.lock().unwrap().tx.subscribe()
    }

    /// Server `key`'s part shows exactly `bookings` (those `ctx` holds), after a fresh
    /// listing; a new key adds a part.
    pub fn replace(&self, key: &str, ctx: CalendarContext, bookings: Vec<Booking>) {
        let bookings = bookings
            .into_iter()
            .filter(|b| ctx.holds(b))
            .map(|b| (b.id, b))
            .collect();
        let mut inner = self.inner.lock().unwrap();
        inner.parts.insert(key.to_string(), (ctx, bookings));
        inner.render();
    }

    /// Shows `b` as it is now in server `key`'s part (from an event); ignored without such a
    /// part, or when older than the revision shown.
    pub fn apply(&self, key: &str, b: &Booking) {
        let mut inner = self.inner.lock().unwrap();
        let Some((ctx, bookings)) = inner.parts.get_mut(key) else {
            return;
        };
        if !ctx.holds(b)
            || bookings
                .get(&b.id)
                .is_some_and(|old| old.revision > b.revision)
        {
            return;
        }
        bookings.insert(b.id, b.clone());
        inner.render();
    }

    /// Drops server `key`'s part (the server was removed): its events leave the calendar.
    pub fn remove(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap();
        if inner.parts.remove(key).is_some() {
            inner.render();
        }
    }

    /// The keys of the parts.
    pub fn servers(&self) -> Vec<String> {
        self.inner.lock().unwrap().parts.keys().cloned().collect()
    }
}

/// Keeps `feed` current from a live session's stream (see [`crate::live`]) until
/// `shutdown` or the session's end: the bookings are listed again at each (re)connection and
/// the events applied in between. While the agent is away the feed keeps serving what it had.
pub async fn keep_current(
    mut events: LiveEvents,
    feed: &mut Feed,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => return,
            e = events.recv() => e,
        };
        match next {
            None => return,
            Some(LiveEvent::Connected { conn, .. }) => {
                // A failed listing keeps what the feed showed; the events still apply.
                if let Ok(bookings) = feed.ctx.bookings(&conn).await {
                    feed.replace(bookings);
                }
            }
            Some(LiveEvent::Pushed(Pushed::Event(e))) => feed.apply(&e.booking),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ical::Scope;
    use gpubook_core::{BookingState, Gpu, GpuUuid, Interval};

    fn ctx(server: &str) -> CalendarContext {
        CalendarContext {
            server: server.into(),
            gpus: vec![Gpu {
                uuid: GpuUuid(format!("{server}-GPU-0")),
                index: 0,
                name: "NVIDIA H200".into(),
                memory_total: 1 << 37,
                server: server.into(),
                simulated: true,
                node: None,
            }],
            viewer: "alice".into(),
            with_commands: false,
            scope: Scope::Mine,
        }
    }

    fn booking(server: &str, id: u64, owner: &str, revision: u32) -> Booking {
        let t = chrono::DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        Booking {
            id: BookingId(id),
            owner: owner.into(),
            gpus: vec![GpuUuid(format!("{server}-GPU-0"))],
            interval: Interval::new(t, t + chrono::Duration::hours(1)).unwrap(),
            title: format!("run {id}"),
            state: BookingState::Confirmed,
            job: None,
            asap: None,
            pending_reason: None,
            created_at: t,
            revision,
            pending_since: None,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        }
    }

    fn vevents(ics: &str) -> usize {
        ics.matches("BEGIN:VEVENT").count()
    }

    #[test]
    fn a_set_renders_every_server_in_one_calendar() {
        let set = FeedSet::new("My GPU bookings");
        let body = set.body();
        let empty = body.borrow().clone();
        assert_eq!(empty.ics.matches("BEGIN:VCALENDAR").count(), 1);
        assert_eq!(vevents(&empty.ics), 0);

        set.replace(
            "a",
            ctx("lab-a"),
            vec![
                booking("lab-a", 1, "alice", 1),
                booking("lab-a", 2, "bob", 1),
            ],
        );
        set.replace("b", ctx("lab-b"), vec![booking("lab-b", 1, "alice", 1)]);
        let both = body.borrow().clone();
        assert_eq!(both.ics.matches("BEGIN:VCALENDAR").count(), 1);
        assert_eq!(vevents(&both.ics), 2, "bob's booking is not alice's");
        assert!(both.ics.contains("UID:1@lab-a"));
        assert!(both.ics.contains("UID:1@lab-b"));
        assert!(both.ics.contains("X-WR-CALNAME:My GPU bookings"));
        assert_ne!(both.etag, empty.etag);
        assert_eq!(set.servers(), ["a", "b"]);

        // The same listing again: nothing changes, not even the ETag.
        set.replace("b", ctx("lab-b"), vec![booking("lab-b", 1, "alice", 1)]);
        assert_eq!(body.borrow().etag, both.etag);

        // A change on either server changes the ETag.
        let mut moved = booking("lab-b", 1, "alice", 2);
        moved.title = "moved".into();
        set.apply("b", &moved);
        let after_b = body.borrow().clone();
        assert_ne!(after_b.etag, both.etag);
        assert!(after_b.ics.contains("moved"));
        // An older revision is ignored.
        set.apply("b", &booking("lab-b", 1, "alice", 1));
        assert_eq!(body.borrow().etag, after_b.etag);

        set.apply("a", &booking("lab-a", 3, "alice", 1));
        let after_a = body.borrow().clone();
        assert_ne!(after_a.etag, after_b.etag);
        assert!(after_a.ics.contains("UID:3@lab-a"));
        assert_eq!(vevents(&after_a.ics), 3);
        // An event for a server without a part is ignored.
        set.apply("c", &booking("lab-c", 9, "alice", 1));
        assert_eq!(body.borrow().etag, after_a.etag);

        // A removed server's events leave the calendar.
        set.remove("a");
        let without_a = body.borrow().clone();
        assert_eq!(vevents(&without_a.ics), 1);
        assert!(!without_a.ics.contains("@lab-a"));
        assert_ne!(without_a.etag, after_a.etag);
        assert_eq!(set.servers(), ["b"]);
    }
}
