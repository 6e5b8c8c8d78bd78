//! The app-only types that cross the IPC (the contract: docs/app-contract.md, declared in
//! crate::contract): servers as the UI shows them and the payloads of the pushed events.

use gpubook_core::Role;
use gpubook_proto::{BookingResponse, Event, LogPiece, Readings};
use serde::{Deserialize, Serialize};

/// Where the app stands with a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Trying to connect.
    Connecting,
    /// Connected: requests work, events arrive.
    Connected,
    /// Not reachable now; the app keeps trying.
    Unreachable,
}

/// A server as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct ServerView {
    /// Its id in the app ("local" for This computer).
    pub id: String,
    /// Its name as people see it.
    pub name: String,
    /// Connected or not.
    pub state: ServerState,
    /// Why it is unreachable, in words.
    pub detail: Option<String>,
    /// Who the agent says the person is there.
    pub user: Option<String>,
    /// Their role there.
    pub role: Option<Role>,
    /// Whether its GPUs are simulated.
    pub simulated: bool,
    /// Slurm picks a node's devices when the job starts: a selection books that many GPUs of
    /// the node, and the lanes are for display only.
    pub slurm: bool,
    /// Logging in failed (no key it accepts, no password kept): the app tries again only
    /// every few minutes (so as not to lock the account) until the person signs in.
    pub needs_login: bool,
    /// The server's host key changed (or is revoked) since it was trusted: refused, as
    /// OpenSSH refuses it; `detail` says the new key's fingerprint and what to do.
    pub host_key_changed: bool,
    /// The agent pushes a job's log as it grows (protocol 1.1): the app follows a log rather
    /// than asking for it again.
    pub follows_logs: bool,
}

/// The payload of "gpubook://event".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct EventPayload {
    /// The server's id.
    pub server: String,
    /// The agent's event.
    pub event: Event,
}

/// The payload of "gpubook://readings".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct ReadingsPayload {
    /// The server's id.
    pub server: String,
    /// The live readings.
    pub readings: Readings,
}

/// The payload of "gpubook://log": more of a job's log the app follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct LogPayload {
    /// The server's id.
    pub server: String,
    /// The piece, as the agent pushed it.
    pub piece: LogPiece,
}

/// What `asap_any` answers: the server chosen and the agent's answer there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct AsapAnyResponse {
    /// The chosen server's id.
    pub server: String,
    /// The booking as that agent made it.
    pub response: BookingResponse,
}
