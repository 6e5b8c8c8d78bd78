//! Bookings as iCalendar events (RFC 5545), for the person's own calendar: one VEVENT per
//! booking, shared by the exported file (`gpubook ics`), the subscription feed and CalDAV sync.
//!
//! - UID `<booking id>@<server>`: stable for the booking's life, and how gpubook tells its own
//!   events from everything else in a calendar (see [`booking_of_uid`]).
//! - SEQUENCE is the booking's revision, raised by the agent on every change.
//! - DTSTART and DTEND in UTC; STATUS CONFIRMED, TENTATIVE (waiting for approval, or "as soon
//!   as possible" and not started yet: it may still move) or CANCELLED.
//! - Other people's commands never appear; one's own only with
//!   [`CalendarContext::with_commands`] (admins are sent everyone's commands by the agent, so
//!   the owner is checked here, not only what the agent left out).
//!
//! Line folding and text escaping are the `icalendar` crate's; text is cleaned of control
//! characters first, which RFC 5545 does not allow in TEXT values.

use crate::connection::{ClientError, Connection};
use chrono::{DateTime, Utc};
use gpubook_core::{Booking, BookingId, BookingState, Gpu};
use gpubook_proto::{GpusRequest, ListRequest, Request, Response};
use icalendar::{Component, EventLike, EventStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The PRODID of everything gpubook writes.
pub const PRODID: &str = "-//gpubook//gpubook calendar//EN";

/// The property that marks an event as gpubook's, with the booking's server as its value (the
/// UID already says so; this helps a person reading the raw event).
pub const X_SERVER: &str = "X-GPUBOOK-SERVER";

/// Which bookings a calendar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The person's own bookings.
    Mine,
    /// Every booking on the server (the lab's calendar).
    All,
}

/// What an event says beyond the booking itself: where, which GPUs, and who is looking.
#[derive(Debug, Clone)]
pub struct CalendarContext {
    /// The server's name: the UID's domain and the LOCATION.
    pub server: String,
    /// The server's GPUs, for their models and indices.
    pub gpus: Vec<Gpu>,
    /// Whose calendar it is (the agent's name for the caller): only their commands may show.
    pub viewer: String,
    /// Show the viewer's own commands in DESCRIPTION.
    pub with_commands: bool,
    /// Which bookings: the viewer's, or the lab's (then SUMMARY names each booking's owner).
    pub scope: Scope,
}

impl CalendarContext {
    /// The context for the person on `conn`: the server's name and GPUs from the agent.
    pub async fn load(
        conn: &Connection,
        scope: Scope,
        with_commands: bool,
    ) -> Result<Self, ClientError> {
        let gpus = match conn.request(Request::Gpus(GpusRequest {})).await? {
            Response::Gpus(g) => g.gpus,
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected the GPUs, got {other:?}"
                )))
            }
        };
        let w = conn.welcome();
        Ok(Self {
            server: w.server.clone(),
            gpus,
            viewer: w.user.clone(),
            with_commands,
            scope,
        })
    }

    /// Whether the calendar holds `b` at all (its scope; cancelled ones are still held, with
    /// STATUS CANCELLED).
    pub fn holds(&self, b: &Booking) -> bool {
        self.scope == Scope::All || b.owner == self.viewer
    }

    /// Every booking on `conn` that the calendar holds, past ones included.
    pub async fn bookings(&self, conn: &Connection) -> Result<Vec<Booking>, ClientError> {
        let list = conn
            .list_all(ListRequest {
                mine: self.scope == Scope::Mine,
                include_past: true,
                ..ListRequest::default()
            })
            .await?;
        Ok(list
            .bookings
            .into_iter()
            .filter(|b| self.holds(b))
            .collect())
    }
}

/// An event's STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Confirmed, started or over.
    Confirmed,
    /// Waiting for an admin, or queued and liable to move.
    Tentative,
    /// Cancelled or denied.
    Cancelled,
}

impl Status {
    /// How a booking in `state` shows; `asap` when it came as "as soon as possible".
    pub fn of(state: BookingState, asap: bool) -> Self {
        match state {
            BookingState::PendingApproval => Status::Tentative,
            BookingState::Confirmed if asap => Status::Tentative,
            BookingState::Confirmed | BookingState::Active | BookingState::Ended => {
                Status::Confirmed
            }
            BookingState::Cancelled | BookingState::Denied => Status::Cancelled,
        }
    }

    fn as_ical(self) -> EventStatus {
        match self {
            Status::Confirmed => EventStatus::Confirmed,
            Status::Tentative => EventStatus::Tentative,
            Status::Cancelled => EventStatus::Cancelled,
        }
    }

    fn from_ical(s: EventStatus) -> Self {
        match s {
            EventStatus::Confirmed => Status::Confirmed,
            EventStatus::Tentative => Status::Tentative,
            EventStatus::Cancelled => Status::Cancelled,
        }
    }
}

/// One booking as an event: every field gpubook writes except DTSTAMP, so two can be compared
/// to tell whether a calendar's copy is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// `<booking id>@<server>`.
    pub uid: String,
    /// E.g. "2× H200 on lab1 — yolov8 defects".
    pub summary: String,
    /// The GPUs, the server, the state (and the command, when allowed).
    pub description: String,
    /// The server.
    pub location: String,
    /// DTSTART, UTC.
    pub start: DateTime<Utc>,
    /// DTEND, UTC.
    pub end: DateTime<Utc>,
    /// STATUS.
    pub status: Status,
    /// SEQUENCE: the booking's revision.
    pub sequence: u32,
}

impl EventData {
    /// The event for booking `b`.
    pub fn from_booking(b: &Booking, ctx: &CalendarContext) -> Self {
        Self {
            uid: uid(b.id, &ctx.server),
            summary: summary(b, ctx),
            description: description(b, ctx),
            location: clean(&ctx.server),
            start: b.interval.start,
            end: b.interval.end,
            status: Status::of(b.state, b.asap.is_some()),
            sequence: b.revision,
        }
    }

    /// The VEVENT, stamped `dtstamp`.
    pub fn to_event(&self, dtstamp: DateTime<Utc>) -> icalendar::Event {
        let server = self.location.clone();
        icalendar::Event::new()
            .uid(&self.uid)
            .timestamp(dtstamp)
            .sequence(self.sequence)
            .starts(self.start)
            .ends(self.end)
            .status(self.status.as_ical())
            .summary(&self.summary)
            .description(&self.description)
            .location(&self.location)
            .add_property(X_SERVER, server)
            .done()
    }

    /// The fields gpubook writes, read back from an event (a calendar's copy, perhaps edited
    /// by hand); `None` for an event without a UID.
    pub fn from_event(e: &icalendar::Event) -> Option<Self> {
        let utc = |d: Option<icalendar::DatePerhapsTime>| match d {
            Some(icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(t))) => t,
            // A local or all-day time (a calendar app's edit): never equal to ours.
            _ => DateTime::<Utc>::UNIX_EPOCH,
        };
        Some(Self {
            uid: e.get_uid()?.to_string(),
            summary: e.get_summary().unwrap_or_default().to_string(),
            description: e.get_description().unwrap_or_default().to_string(),
            location: e.get_location().unwrap_or_default().to_string(),
            start: utc(e.get_start()),
            end: utc(e.get_end()),
            status: e
                .get_status()
                .map(Status::from_ical)
                .unwrap_or(Status::Confirmed),
            sequence: e.get_sequence().unwrap_or(0),
        })
    }

    /// Whether a calendar's copy shows what this event does (line endings and trailing space
    /// in text aside, which servers rewrite).
    pub fn same_as(&self, copy: &EventData) -> bool {
        let norm = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
        self.uid == copy.uid
            && norm(&self.summary) == norm(&copy.summary)
            && norm(&self.description) == norm(&copy.description)
            && norm(&self.location) == norm(&copy.location)
            && self.start == copy.start
            && self.end == copy.end
            && self.status == copy.status
            && self.sequence == copy.sequence
    }
}

/// A booking's UID: `<booking id>@<server>`.
pub fn uid(id: BookingId, server: &str) -> String {
    format!("{id}@{}", clean(server))
}

/// The booking a UID names, when it is one of gpubook's for `server`; `None` for any other
/// event, which gpubook never touches.
pub fn booking_of_uid(uid: &str, server: &str) -> Option<BookingId> {
    let (id, domain) = uid.split_once('@')?;
    if domain != clean(server) || id.is_empty() || !id.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().map(BookingId)
}

/// A VCALENDAR to publish (a file or a feed): `METHOD:PUBLISH`, one VEVENT per event.
pub fn calendar<'a>(
    name: &str,
    events: impl IntoIterator<Item = &'a EventData>,
    dtstamp: DateTime<Utc>,
) -> String {
    let mut cal = header();
    cal.append_property(("METHOD", "PUBLISH"));
    cal.append_property(("X-WR-CALNAME", clean(name).as_str()));
    for e in events {
        cal.push(e.to_event(dtstamp));
    }
    cal.to_string()
}

/// One calendar object resource for CalDAV: a VCALENDAR holding one VEVENT and no METHOD
/// (RFC 4791, 4.1).
pub fn object(event: &EventData, dtstamp: DateTime<Utc>) -> String {
    let mut cal = header();
    cal.push(event.to_event(dtstamp));
    cal.to_string()
}

/// The events of every VEVENT in `text` (a calendar object or a whole calendar).
pub fn parse(text: &str) -> Result<Vec<EventData>, String> {
    let cal: icalendar::Calendar = text.parse()?;
    Ok(cal.events().filter_map(EventData::from_event).collect())
}

/// The calendar for `conn`'s person, as `gpubook ics` writes it.
pub async fn export(
    conn: &Connection,
    scope: Scope,
    with_commands: bool,
) -> Result<String, ClientError> {
    let ctx = CalendarContext::load(conn, scope, with_commands).await?;
    let events: Vec<EventData> = ctx
        .bookings(conn)
        .await?
        .iter()
        .map(|b| EventData::from_booking(b, &ctx))
        .collect();
    Ok(calendar(&calendar_name(&ctx), &events, Utc::now()))
}

/// The name a calendar app shows for the calendar.
pub fn calendar_name(ctx: &CalendarContext) -> String {
    match ctx.scope {
        Scope::Mine => format!("GPU bookings on {} ({})", ctx.server, ctx.viewer),
        Scope::All => format!("GPU bookings on {}", ctx.server),
    }
}

fn header() -> icalendar::Calendar {
    let mut cal = icalendar::Calendar::empty();
    cal.append_property(("VERSION", "2.0"));
    cal.append_property(("PRODID", PRODID));
    cal.append_property(("CALSCALE", "GREGORIAN"));
    cal
}

/// "2× H200 on lab1 — yolov8 defects" (and the owner's name in the lab's calendar).
fn summary(b: &Booking, ctx: &CalendarContext) -> String {
    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    for u in &b.gpus {
        *models
            .entry(model(ctx.gpus.iter().find(|g| &g.uuid == u)))
            .or_default() += 1;
    }
    let gpus = if models.is_empty() {
        "GPUs".to_string()
    } else {
        models
            .iter()
            .map(|(m, n)| format!("{n}× {m}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mut s = format!("{gpus} on {}", ctx.server);
    if !b.title.trim().is_empty() {
        s.push_str(" — ");
        s.push_str(b.title.trim());
    }
    if ctx.scope == Scope::All {
        s.push_str(&format!(" ({})", b.owner));
    }
    clean(&s)
}

/// A GPU's model for people: "H200" for "NVIDIA H200", "simulated GPU" for a simulated one.
fn model(g: Option<&Gpu>) -> String {
    match g {
        None => "GPU".into(),
        Some(g) if g.simulated => "simulated GPU".into(),
        Some(g) => {
            let n = g.name.trim();
            let n = n.strip_prefix("NVIDIA ").unwrap_or(n).trim();
            if n.is_empty() {
                "GPU".into()
            } else {
                n.to_string()
            }
        }
    }
}

fn description(b: &Booking, ctx: &CalendarContext) -> String {
    let mut lines = vec![
        format!(
            "Booking {} on {}, {}.",
            b.id,
            ctx.server,
            b.state.as_str().replace('_', " ")
        ),
        format!("Held by {}.", b.owner),
        "GPUs:".to_string(),
    ];
    for u in &b.gpus {
        match ctx.gpus.iter().find(|g| &g.uuid == u) {
            Some(g) => lines.push(format!("  {} {} ({})", g.index, g.name, g.uuid)),
            None => lines.push(format!("  {u}")),
        }
    }
    if let Some(r) = &b.pending_reason {
        lines.push(format!("Waiting for an admin's approval: {r}."));
    }
    if b.asap.is_some() && b.state == BookingState::Confirmed {
        lines.push("Queued as soon as possible: it moves earlier when GPUs free up.".into());
    }
    if ctx.with_commands && b.owner == ctx.viewer {
        if let Some(job) = b.job.as_ref().filter(|j| !j.command.is_empty()) {
            lines.push(format!("Command: {}", job.command));
        }
    }
    lines.push(format!("Server: {}", ctx.server));
    clean(&lines.join("\n"))
}

/// Text as RFC 5545 allows it: no control characters but the line breaks that escaping
/// turns into `\n`.
fn clean(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubook_core::{GpuUuid, Interval, JobSpec};

    fn ctx(scope: Scope, with_commands: bool) -> CalendarContext {
        let gpu = |i: u32| Gpu {
            uuid: GpuUuid(format!("GPU-{i}")),
            index: i,
            name: "NVIDIA H200".into(),
            memory_total: 1 << 37,
            server: "lab1".into(),
            simulated: false,
            node: None,
        };
        CalendarContext {
            server: "lab1".into(),
            gpus: vec![gpu(0), gpu(1)],
            viewer: "alice".into(),
            with_commands,
            scope,
        }
    }

    fn booking(owner: &str, state: BookingState) -> Booking {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        Booking {
            id: BookingId(12),
            owner: owner.into(),
            gpus: vec![GpuUuid("GPU-0".into()), GpuUuid("GPU-1".into())],
            interval: Interval::new(t, t + chrono::Duration::hours(4)).unwrap(),
            title: "yolov8 defects".into(),
            state,
            job: Some(JobSpec {
                command: "python train.py --lr 0.1".into(),
                cwd: None,
                env: Default::default(),
                end_signal: None,
                grace_secs: None,
                keep_slot: false,
                ..Default::default()
            }),
            asap: None,
            pending_reason: None,
            created_at: t,
            revision: 3,
            pending_since: None,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        }
    }

    #[test]
    fn summary_names_the_gpus_the_server_and_the_title() {
        let e = EventData::from_booking(
            &booking("alice", BookingState::Confirmed),
            &ctx(Scope::Mine, false),
        );
        assert_eq!(e.summary, "2× H200 on lab1 — yolov8 defects");
        assert_eq!(e.uid, "12@lab1");
        assert_eq!(e.sequence, 3);
        assert_eq!(e.status, Status::Confirmed);
        let all = EventData::from_booking(
            &booking("bob", BookingState::Confirmed),
            &ctx(Scope::All, true),
        );
        assert_eq!(all.summary, "2× H200 on lab1 — yolov8 defects (bob)");
    }

    #[test]
    fn commands_show_only_for_the_viewer_and_only_when_asked() {
        let own = booking("alice", BookingState::Confirmed);
        let other = booking("bob", BookingState::Confirmed);
        assert!(!EventData::from_booking(&own, &ctx(Scope::Mine, false))
            .description
            .contains("train.py"));
        assert!(EventData::from_booking(&own, &ctx(Scope::Mine, true))
            .description
            .contains("train.py"));
        assert!(!EventData::from_booking(&other, &ctx(Scope::All, true))
            .description
            .contains("train.py"));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            Status::of(BookingState::PendingApproval, false),
            Status::Tentative
        );
        assert_eq!(Status::of(BookingState::Confirmed, true), Status::Tentative);
        assert_eq!(Status::of(BookingState::Active, true), Status::Confirmed);
        assert_eq!(Status::of(BookingState::Ended, false), Status::Confirmed);
        assert_eq!(Status::of(BookingState::Denied, false), Status::Cancelled);
        assert_eq!(
            Status::of(BookingState::Cancelled, false),
            Status::Cancelled
        );
    }

    #[test]
    fn an_object_round_trips_through_the_parser() {
        let mut b = booking("alice", BookingState::Confirmed);
        b.title =
            "a, b; c\\d\nline two\r and a long title that has to be folded ×××××××××××".into();
        let e = EventData::from_booking(&b, &ctx(Scope::Mine, true));
        let text = object(&e, Utc::now());
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        assert!(!text.contains("METHOD"));
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 1);
        assert!(e.same_as(&back[0]), "{e:?}\n{:?}", back[0]);
    }

    #[test]
    fn only_gpubook_uids_for_the_server_are_ours() {
        assert_eq!(booking_of_uid("12@lab1", "lab1"), Some(BookingId(12)));
        assert_eq!(booking_of_uid("12@lab2", "lab1"), None);
        assert_eq!(booking_of_uid("x12@lab1", "lab1"), None);
        assert_eq!(
            booking_of_uid("040000008200E00074C5B7101A82E008", "lab1"),
            None
        );
    }
}
