//! The wire protocol between gpubook clients (the CLI, the desktop app) and `gpubook-agent`.
//!
//! # Framing
//! A stream (a Unix socket, or SSH stdio joined to one by `gpubook-agent bridge`) carries
//! frames: a 4-byte big-endian length `n`, then `n` bytes of UTF-8 JSON, one object. `n` is at
//! most [`MAX_FRAME`] (1 MiB); a reader refuses a longer frame before reading its body and
//! closes the stream, since it cannot find the next frame boundary it would trust.
//!
//! # Handshake and versions
//! The client's first frame is [`Hello`] with its protocol `major.minor`; the agent answers
//! [`Welcome`] or an error of kind `incompatible` and closes. A different major is refused
//! outright (never just warned about). Minors are negotiated: both sides speak the lower of the
//! two, and fields added in a later minor are `#[serde(default)]`, so an older peer that
//! omits them is still understood.
//!
//! # Messages
//! After the handshake the client sends [`ClientFrame::Request`]s, each with an id it chose;
//! the agent answers each with a [`AgentFrame::Response`] or [`AgentFrame::Error`] carrying
//! that id, in any order. After a [`Request::Subscribe`] the agent also pushes
//! [`AgentFrame::Event`]s (durable, numbered) and [`AgentFrame::Readings`] (live, not stored).
//!
//! # Unknown messages
//! - The agent answers a request whose `type` it does not know with an error of kind
//!   `unknown_request` (and the id), and a request it cannot parse with `invalid`; the
//!   connection stays open. A frame that is not JSON gets `malformed` and stays open too.
//! - A client ignores frames of a `type` it does not know and passes events of an unknown
//!   kind on as [`EventKind::Unknown`], so a newer agent does not break an older client.
//!
//! # Trust boundary
//! Nothing in a request says who is asking. The agent takes the caller's identity from the
//! socket (the peer's uid through `SO_PEERCRED`); over SSH the bridge runs as the person who
//! logged in, so that uid is theirs. Every frame from a client is untrusted input: lengths are
//! bounded, JSON is parsed into typed messages, and every change is decided by the plan.

pub mod error;
pub mod event;
pub mod frame;
pub mod job_env;
pub mod maintenance;
pub mod message;
pub mod notify;
pub mod paths;
pub mod reading;
pub mod report;
pub mod series;
pub mod suggest;

pub use error::{ErrorBody, ErrorKind};
pub use event::{Event, EventKind};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use job_env::{JobEnvRequest, JobEnvResponse};
pub use maintenance::{MaintenanceRequest, MaintenanceResponse};
pub use message::*;
pub use notify::{
    Channel, Delivery, DeliveryState, NotifyClearRequest, NotifyResponse, NotifySetRequest,
    NotifyShowRequest, NotifyTarget, WebhookFormat,
};
pub use reading::{GpuProcess, GpuReading, Readings};
pub use report::{ReportRequest, ReportResponse};
pub use series::{GpuSeries, UsageSeriesRequest, UsageSeriesResponse};
pub use suggest::{SuggestRequest, SuggestionResponse};

/// The protocol's major version: peers with different majors do not talk.
pub const PROTOCOL_MAJOR: u32 = 1;
/// The protocol's minor version: the lower of the two peers' is spoken.
///
/// - 1.0: the first.
/// - 1.1: a job's log can be followed: [`LogsRequest::follow`] makes the agent push
///   [`AgentFrame::Log`] pieces as the log grows. A 1.0 agent ignores the field and answers
///   one piece; a client checks the welcome's minor before it waits for pushes.
/// - 1.2: approvals and denials carry the revision the admin saw ([`ApproveRequest::rev`],
///   [`DenyRequest::rev`]); a booking changed since is refused with the error kind `changed`.
///   A 1.1 agent ignores the field.
/// - 1.3: [`Request::Suggest`] asks how long to book a command, from the caller's past runs
///   of it; [`Request::JobEnv`] gives a started booking's job variables to its owner, refused
///   with the error kinds `not_started` and `ended` outside the slot; [`Request::Report`]:
///   GPU-hours booked, used, idle-held and released early per user and per GPU over a window
///   (a user sees their own line, admins everyone's). A client checks the welcome's minor
///   before it asks; a 1.2 agent refuses these request types as unknown.
/// - 1.4: news while away: [`Request::NotifySet`], [`Request::NotifyShow`] and
///   [`Request::NotifyClear`] keep the caller's own e-mail and webhook targets, which the
///   agent sends their events to itself (see [`notify`]). A 1.3 agent refuses them as unknown.
///   Also in 1.4, [`Request::Maintenance`]: an admin takes GPUs or the whole server out of service
///   for a period, lists and ends periods; bookings in the way are moved, cancelled or cut
///   short with a `maintenance` note on their events; booking into maintenance is refused
///   with the error kind `maintenance`; a GPU reading may carry a `fault` (lost, in error),
///   and the agent then takes that GPU out of service itself. A 1.3 agent refuses the
///   request type as unknown. Added later in 1.4, [`Request::UsageSeries`]: a booking's GPU
///   utilisation and memory over its slot, for its owner and admins; an agent from before it
///   refuses the type as unknown, which the client reports as such.
pub const PROTOCOL_MINOR: u32 = 4;

/// The minor version both sides speak when the client offers `major.minor`, or the error that
/// refuses the connection when the majors differ.
pub fn negotiate(major: u32, minor: u32) -> Result<u32, ErrorBody> {
    if major != PROTOCOL_MAJOR {
        return Err(ErrorBody::new(
            ErrorKind::Incompatible,
            format!(
                "this agent speaks protocol {PROTOCOL_MAJOR}.{PROTOCOL_MINOR} and the client \
                 speaks {major}.{minor}: install matching major versions of gpubook and \
                 gpubook-agent"
            ),
        ));
    }
    Ok(minor.min(PROTOCOL_MINOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_must_match_minors_negotiate() {
        assert_eq!(
            negotiate(PROTOCOL_MAJOR, PROTOCOL_MINOR + 5).unwrap(),
            PROTOCOL_MINOR
        );
        // A 1.0 peer is spoken to in 1.0.
        assert_eq!(negotiate(PROTOCOL_MAJOR, 0).unwrap(), 0);
        let e = negotiate(PROTOCOL_MAJOR + 1, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Incompatible);
        assert!(e.message.contains("protocol"), "{}", e.message);
    }
}
