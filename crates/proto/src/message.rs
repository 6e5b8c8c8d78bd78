//! Every message, one struct each. Client → agent: [`ClientFrame`]; agent → client:
//! [`AgentFrame`].

use crate::error::ErrorBody;
use crate::event::Event;
use crate::job_env::{JobEnvRequest, JobEnvResponse};
use crate::maintenance::{MaintenanceRequest, MaintenanceResponse};
use crate::notify::{NotifyClearRequest, NotifyResponse, NotifySetRequest, NotifyShowRequest};
use crate::reading::Readings;
use crate::report::{ReportRequest, ReportResponse};
use crate::series::{UsageSeriesRequest, UsageSeriesResponse};
use crate::suggest::{SuggestRequest, SuggestionResponse};
use chrono::{DateTime, Utc};
use gpubook_core::{Booking, BookingId, Gpu, GpuUuid, Interval, JobSpec, Policy, Role};
use serde::{Deserialize, Serialize};

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
// Messages live for one send or receive; boxing variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame.
    Hello(Hello),
    /// A request, answered by a frame with the same id.
    Request {
        /// Chosen by the client; echoed in the answer.
        id: u64,
        /// What is asked.
        body: Request,
    },
}

/// What the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
// Messages live for one send or receive; boxing variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentFrame {
    /// The answer to [`Hello`].
    Welcome(Welcome),
    /// The answer to a request.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
    /// A refused request, or (without id) a frame the agent could not take.
    Error {
        /// The request's id, when there was one.
        #[serde(default)]
        id: Option<u64>,
        /// What went wrong.
        error: ErrorBody,
    },
    /// A durable, numbered event (after [`Request::Subscribe`]).
    Event(Event),
    /// Live GPU readings (after [`Request::Subscribe`] with `readings`).
    Readings(Readings),
    /// More of a followed job's log (after [`Request::Logs`] with `follow`; protocol 1.1).
    Log(LogPiece),
}

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Hello {
    /// Client's protocol major.
    pub major: u32,
    /// Client's protocol minor.
    pub minor: u32,
    /// Who the client is, e.g. "gpubook-cli 0.1.0", for the agent's log.
    pub client: String,
}

/// The agent's answer to [`Hello`]: who you are, as the agent sees you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Welcome {
    /// Agent's protocol major (equal to the client's).
    pub major: u32,
    /// The minor both speak: the lower of the two.
    pub minor: u32,
    /// The agent's version.
    pub agent_version: String,
    /// The server's name.
    pub server: String,
    /// The caller's user name, from the socket's peer credentials.
    pub user: String,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's role under the policy.
    pub role: Role,
    /// Whether the GPUs are simulated.
    pub simulated: bool,
    /// Slurm holds the GPUs and picks a node's devices when the job starts: book a number of
    /// GPUs of one node, not GPUs by index (older agents leave it out: false).
    #[serde(default)]
    pub slurm: bool,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
// Messages live for one send or receive; boxing variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Who am I here?
    Whoami(WhoamiRequest),
    /// The server's GPUs with their latest readings.
    Gpus(GpusRequest),
    /// Bookings.
    List(ListRequest),
    /// A new booking.
    Book(BookRequest),
    /// Withdraw a booking that has not started.
    Cancel(CancelRequest),
    /// A later end.
    Extend(ExtendRequest),
    /// Move or resize.
    Move(MoveRequest),
    /// End a started booking now.
    Release(ReleaseRequest),
    /// Grant a booking that waits for approval (admins).
    Approve(ApproveRequest),
    /// Refuse it (admins).
    Deny(DenyRequest),
    /// Events from a number on, then live; optionally live readings.
    Subscribe(SubscribeRequest),
    /// The lab's policy and where the caller stands.
    Policy(PolicyRequest),
    /// A piece of a job's log (its owner and admins only).
    Logs(LogsRequest),
    /// Protocol 1.3: how long to book a command, from the caller's past runs of it.
    Suggest(SuggestRequest),
    /// Protocol 1.3: GPU-hours per user and per GPU over a window.
    Report(ReportRequest),
    /// Protocol 1.3: the variables a started booking's job has, for its owner's shell.
    JobEnv(JobEnvRequest),
    /// Protocol 1.4: replace the caller's e-mail and webhook targets.
    NotifySet(NotifySetRequest),
    /// Protocol 1.4: the caller's targets and their recent deliveries.
    NotifyShow(NotifyShowRequest),
    /// Protocol 1.4: remove the caller's targets.
    NotifyClear(NotifyClearRequest),
    /// Protocol 1.4: create, list or end maintenance (creating and ending: admins).
    Maintenance(MaintenanceRequest),
    /// Protocol 1.4: a booking's GPU utilisation and memory over its slot (owner, admins).
    UsageSeries(UsageSeriesRequest),
}

impl Request {
    /// Every request type's name on the wire, to tell an unknown type from a malformed one.
    pub const TYPES: &'static [&'static str] = &[
        "whoami",
        "gpus",
        "list",
        "book",
        "cancel",
        "extend",
        "move",
        "release",
        "approve",
        "deny",
        "subscribe",
        "policy",
        "logs",
        "suggest",
        "report",
        "job_env",
        "notify_set",
        "notify_show",
        "notify_clear",
        "maintenance",
        "usage_series",
    ];
}

/// Asks who the caller is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct WhoamiRequest {}

/// Asks for the GPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpusRequest {}

/// Asks for bookings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ListRequest {
    /// Only bookings overlapping this window; all when absent.
    #[serde(default)]
    pub range: Option<Interval>,
    /// Only the caller's own.
    #[serde(default)]
    pub mine: bool,
    /// Include ended, cancelled and denied bookings.
    #[serde(default)]
    pub include_past: bool,
    /// Continue after this point (from a previous answer's `next`). Added in 1.0 with paging;
    /// absent means from the first booking.
    #[serde(default)]
    pub after: Option<ListCursor>,
}

/// Where a page of bookings ended: bookings are listed by (start, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ListCursor {
    /// The last listed booking's start.
    pub start: DateTime<Utc>,
    /// Its id.
    pub id: BookingId,
}

/// Which GPUs a booking asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GpuChoice {
    /// These GPUs, each by UUID or by index ("0", "3").
    Named {
        /// UUIDs or indices.
        gpus: Vec<String>,
    },
    /// Any `count` GPUs with at least `min_memory` bytes each.
    Count {
        /// How many.
        count: u32,
        /// Minimum memory per GPU, bytes.
        #[serde(default)]
        min_memory: Option<u64>,
    },
    /// Any `count` GPUs of one node of a cluster (on Slurm, what a rectangle across a node's
    /// lanes asks for). Newer than 1.4: an older agent answers `malformed`.
    OnNode {
        /// The node, as `Gpu::node` names it.
        node: String,
        /// How many.
        count: u32,
    },
}

/// When a booking asks for its GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhenChoice {
    /// From `start` to `end` (snapped to the nearest points of the policy's grid).
    At {
        /// Start, UTC.
        start: DateTime<Utc>,
        /// End, UTC; must be after start.
        end: DateTime<Utc>,
    },
    /// As soon as the GPUs are free, for this long; moved earlier when capacity frees.
    Asap {
        /// Length in seconds.
        duration_secs: i64,
    },
}

/// Asks for a new booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BookRequest {
    /// Which GPUs.
    pub gpus: GpuChoice,
    /// When.
    pub when: WhenChoice,
    /// What for; everyone sees it.
    #[serde(default)]
    pub title: String,
    /// A job to run in the slot.
    #[serde(default)]
    pub job: Option<JobSpec>,
}

/// Withdraws a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CancelRequest {
    /// Which.
    pub id: BookingId,
}

/// Extends a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ExtendRequest {
    /// Which.
    pub id: BookingId,
    /// The new end.
    pub end: DateTime<Utc>,
}

/// Moves or resizes a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct MoveRequest {
    /// Which.
    pub id: BookingId,
    /// New start.
    pub start: DateTime<Utc>,
    /// New end.
    pub end: DateTime<Utc>,
    /// New GPUs (UUIDs or indices), if they change.
    #[serde(default)]
    pub gpus: Option<Vec<String>>,
}

/// Ends a started booking now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReleaseRequest {
    /// Which.
    pub id: BookingId,
}

/// Approves a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ApproveRequest {
    /// Which.
    pub id: BookingId,
    /// The booking's revision the admin saw. A booking changed since then is refused
    /// ("it changed since you looked", with its current shape). Added in 1.2; an older client
    /// sends none, and then the approval is taken only if the booking has not changed since it
    /// became pending.
    #[serde(default)]
    pub rev: Option<u32>,
}

/// Denies a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DenyRequest {
    /// Which.
    pub id: BookingId,
    /// Why, for its owner.
    #[serde(default)]
    pub reason: Option<String>,
    /// The booking's revision the admin saw, as for [`ApproveRequest::rev`]. Added in 1.2.
    #[serde(default)]
    pub rev: Option<u32>,
}

/// Subscribes to events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SubscribeRequest {
    /// The last event number the client saw: it gets every later one, then live ones. Absent:
    /// live events only.
    #[serde(default)]
    pub after: Option<u64>,
    /// Also push live GPU readings.
    #[serde(default)]
    pub readings: bool,
}

/// Asks for a piece of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct LogsRequest {
    /// Which booking's job.
    pub id: BookingId,
    /// From this byte on (0: the beginning; a previous answer's `next` to follow it).
    #[serde(default)]
    pub offset: u64,
    /// Protocol 1.1: `Some(true)` keeps pushing [`AgentFrame::Log`] pieces of this log to
    /// this connection as it grows, from where the answer ends, until the job is over;
    /// `Some(false)` stops that; absent (what 1.0 clients send) changes nothing. One follower
    /// per booking and connection: following again starts over from the new answer's end.
    #[serde(default)]
    pub follow: Option<bool>,
}

/// A piece of a followed job's log, pushed as the job writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct LogPiece {
    /// Which booking's job.
    pub id: BookingId,
    /// Where this piece starts (the previous piece's `next`).
    pub offset: u64,
    /// The bytes from `offset`, as text (a character cut at the end waits for the next piece).
    pub data: String,
    /// Where the next piece starts.
    pub next: u64,
    /// The job is over and this is the end of its log: no more pieces come.
    pub done: bool,
}

/// A piece of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct LogsResponse {
    /// The bytes from `offset`, as text (invalid UTF-8 replaced).
    pub data: String,
    /// Where the next piece starts.
    pub next: u64,
    /// The job is over: nothing more will be written.
    pub done: bool,
}

/// Asks for the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PolicyRequest {}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
// Messages live for one send or receive; boxing variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// To [`Request::Whoami`].
    Whoami(Welcome),
    /// To [`Request::Gpus`].
    Gpus(GpusResponse),
    /// To [`Request::List`].
    Bookings(BookingsResponse),
    /// To any change: the booking afterwards, sent only after it was committed.
    Booking(BookingResponse),
    /// To [`Request::Subscribe`]: events after `after` follow, then live ones.
    Subscribed(SubscribedResponse),
    /// To [`Request::Policy`].
    Policy(PolicyResponse),
    /// To [`Request::Logs`].
    Logs(LogsResponse),
    /// To [`Request::Suggest`].
    Suggestion(SuggestionResponse),
    /// To [`Request::Report`].
    Report(ReportResponse),
    /// To [`Request::JobEnv`].
    JobEnv(JobEnvResponse),
    /// To [`Request::NotifySet`], [`Request::NotifyShow`] and [`Request::NotifyClear`]: the
    /// caller's targets afterwards.
    Notify(NotifyResponse),
    /// To [`Request::Maintenance`].
    Maintenance(MaintenanceResponse),
    /// To [`Request::UsageSeries`].
    UsageSeries(UsageSeriesResponse),
}

/// The GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpusResponse {
    /// The server's name.
    pub server: String,
    /// How they are read: "nvml", "replay", "simulated".
    pub source: String,
    /// The GPUs, in index order.
    pub gpus: Vec<Gpu>,
    /// The latest reading, if any has been made.
    #[serde(default)]
    pub readings: Option<Readings>,
    /// What holds these GPUs outside gpubook now or later (on Slurm: jobs, and reservations
    /// gpubook did not make), drawn as busy; none on a plain server or from an older agent.
    #[serde(default)]
    pub outside: Vec<OutsideHold>,
}

/// Something outside gpubook holding GPUs of the server: on Slurm a job running or expected to
/// start, or a reservation gpubook did not make. It is not in the plan; a booking over it is
/// refused by Slurm, in its words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct OutsideHold {
    /// The lanes it is drawn on: Slurm picks the devices, so a node's last ones, for display.
    pub gpus: Vec<GpuUuid>,
    /// From.
    pub start: DateTime<Utc>,
    /// To (a job's time limit).
    pub end: DateTime<Utc>,
    /// Whose: the job's user, a reservation's users.
    pub owner: String,
    /// What: "Slurm job 42: train", "Slurm reservation maint".
    pub title: String,
}

/// Bookings, in start order, one page at a time: a page stays well under the frame limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BookingsResponse {
    /// The server's name.
    pub server: String,
    /// Bookings; other people's jobs are hidden.
    pub bookings: Vec<Booking>,
    /// Where to continue when there are more: send the same request with `after` set to it.
    #[serde(default)]
    pub next: Option<ListCursor>,
}

/// A booking after a change was committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BookingResponse {
    /// The booking asked about.
    pub booking: Booking,
    /// Other bookings the change moved (queued requests moving earlier).
    #[serde(default)]
    pub also_changed: Vec<Booking>,
    /// The number of the last event this change wrote.
    pub event: u64,
}

/// A subscription is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SubscribedResponse {
    /// The latest event number now; events after `after` up to this one follow at once.
    pub latest: u64,
}

/// The policy and the caller's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PolicyResponse {
    /// The policy.
    pub policy: Policy,
    /// The caller's role.
    pub role: Role,
    /// GPU-hours the caller holds this week (Monday 00:00 UTC on).
    pub week_gpu_hours: f64,
}
