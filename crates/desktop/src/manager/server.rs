//! One server as the app knows it: its address, its connection state as the UI shows it,
//! the person's own bookings on it, and how a change of state is told.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gpubook_client::live::{LiveEvents, LiveSession};
use gpubook_client::{ssh, Connection};
use gpubook_core::{Booking, BookingId};
use gpubook_proto::Welcome;
use tokio::sync::Notify;

use super::{Address, Inner};
use crate::ipc::{ServerState, ServerView};

#[derive(Debug)]
pub(super) struct Status {
    pub(super) state: ServerState,
    pub(super) detail: Option<String>,
    pub(super) welcome: Option<Welcome>,
    /// What the server waits for the person to do, if anything.
    pub(super) waits: Waits,
}

/// What a server that is not connected waits for the person to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Waits {
    /// Nothing: it is connected or the app keeps trying.
    #[default]
    Nothing,
    /// To sign in: the last try failed to log in.
    Login,
    /// To check the server's new host key with its admin: the last try refused it.
    HostKey,
}

/// One server and what the app knows of it.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) id: String,
    pub(super) name: Mutex<String>,
    pub(super) address: Address,
    /// How SSH logs in (the app's prompt with what the person typed, the keyring).
    pub(super) ssh: ssh::Options,
    pub(super) status: Mutex<Status>,
    /// The one live session to the server's agent (`None` before it starts and once the
    /// server is removed); the event relay, the feed and CalDAV sync all follow it.
    pub(super) session: Mutex<Option<LiveSession>>,
    /// The person's own bookings that have not ended, for the tray.
    pub(super) mine: Mutex<BTreeMap<BookingId, Booking>>,
    pub(super) stop: Notify,
    /// The last dial refused the server's host key (changed or revoked); set by the dial
    /// before the live session reports the failure.
    pub(super) host_key_refused: AtomicBool,
}

impl Server {
    /// A server not connected yet.
    pub(super) fn new(id: &str, name: &str, address: Address, ssh: ssh::Options) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_string(),
            name: Mutex::new(name.to_string()),
            address,
            ssh,
            status: Mutex::new(Status {
                state: ServerState::Connecting,
                detail: None,
                welcome: None,
                waits: Waits::Nothing,
            }),
            session: Mutex::new(None),
            mine: Mutex::new(BTreeMap::new()),
            stop: Notify::new(),
            host_key_refused: AtomicBool::new(false),
        })
    }

    pub(super) fn view(&self) -> ServerView {
        let s = self.status.lock().unwrap();
        ServerView {
            id: self.id.clone(),
            name: self.name.lock().unwrap().clone(),
            state: s.state,
            detail: s.detail.clone(),
            user: s.welcome.as_ref().map(|w| w.user.clone()),
            role: s.welcome.as_ref().map(|w| w.role),
            simulated: s.welcome.as_ref().is_some_and(|w| w.simulated),
            slurm: s.welcome.as_ref().is_some_and(|w| w.slurm),
            needs_login: s.waits == Waits::Login,
            host_key_changed: s.waits == Waits::HostKey,
            follows_logs: s.welcome.as_ref().is_some_and(|w| w.minor >= 1),
        }
    }

    /// The live connection, while there is one.
    pub(super) fn connection(&self) -> Option<Arc<Connection>> {
        self.session.lock().unwrap().as_ref()?.connection()
    }

    /// A new follower of the server's live session (see [`LiveSession::subscribe`]).
    pub(super) fn subscribe(&self) -> Option<LiveEvents> {
        Some(self.session.lock().unwrap().as_ref()?.subscribe())
    }

    pub(super) fn name(&self) -> String {
        self.name.lock().unwrap().clone()
    }
}

pub(super) fn set_status(
    inner: &Inner,
    s: &Server,
    state: ServerState,
    detail: Option<String>,
    welcome: Option<Welcome>,
) {
    set_status_why(inner, s, state, detail, welcome, Waits::Nothing);
}

/// [`set_status`], saying what the server waits for the person to do.
pub(super) fn set_status_why(
    inner: &Inner,
    s: &Server,
    state: ServerState,
    detail: Option<String>,
    welcome: Option<Welcome>,
    waits: Waits,
) {
    {
        let mut st = s.status.lock().unwrap();
        let changed =
            st.state != state || st.detail != detail || welcome.is_some() || st.waits != waits;
        st.state = state;
        st.detail = detail;
        st.waits = waits;
        if let Some(w) = welcome {
            st.welcome = Some(w);
        }
        if !changed {
            return;
        }
    }
    inner.sink.server(&s.view());
    // A server that comes up (again) may hold bookings its followers have not read.
    if state == ServerState::Connected {
        let _ = inner.changes.send(s.id.clone());
    }
}
