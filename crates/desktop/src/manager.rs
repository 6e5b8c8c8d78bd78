//! The servers the app shows and their connections: adding, signing in, removing, the
//! settings, and the live connection requests go over. The event relay (one live session per server) is in [`events`],
//! one server's state in [`server`], the requests in [`requests`].

mod away;
mod events;
mod names;
mod requests;
mod server;

pub use names::name_for;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gpubook_client::endpoint::{dial, DialError};
use gpubook_client::live::LiveEvents;
use gpubook_client::{ssh, Connection};
use gpubook_core::Booking;
use gpubook_proto::{Request, Response};
use tokio::sync::broadcast;

use crate::error::AppError;
use crate::ipc::{EventPayload, LogPayload, ReadingsPayload, ServerView};
use crate::last_seen::LastSeen;
use crate::notify::Notifier;
use crate::settings::Settings;
use events::relay_events;
use server::Server;

/// The name the app gives itself in the handshake.
pub const CLIENT_NAME: &str = concat!("gpubook-app/", env!("CARGO_PKG_VERSION"));

/// How long a server may be gone before "unreachable" is notified (an agent restart is not
/// worth a notification), and how long after a refused login the app tries again by itself:
/// the live session's rules.
pub use gpubook_client::live::{LOGIN_RETRY, UNREACHABLE_AFTER};

/// Where the web view's pushed events go (the Tauri shell emits them).
pub trait Sink: Send + Sync + std::fmt::Debug + 'static {
    /// A server's state changed.
    fn server(&self, view: &ServerView);
    /// An agent event.
    fn event(&self, payload: &EventPayload);
    /// Live readings.
    fn readings(&self, payload: &ReadingsPayload);
    /// More of a job's log the app follows ([`Manager::job_logs`] with `follow`).
    fn log(&self, _payload: &LogPayload) {}
}

/// How to reach a server's agent: a socket or SSH.
pub type Address = gpubook_client::Endpoint;

async fn connect(address: &Address, ssh: &ssh::Options) -> Result<Connection, DialError> {
    dial(address, ssh, CLIENT_NAME).await
}

#[derive(Debug)]
struct Inner {
    servers: Mutex<Vec<Arc<Server>>>,
    sink: Arc<dyn Sink>,
    notifier: Arc<dyn Notifier>,
    last_seen: LastSeen,
    settings: Mutex<Settings>,
    settings_path: PathBuf,
    rt: tokio::runtime::Handle,
    ssh: ssh::Options,
    caldav: crate::caldav::Caldav,
    /// The id of a server whose bookings just changed ([`ALL_SERVERS`]: every server's view
    /// changed, e.g. a setting), for followers such as the calendar feed.
    changes: broadcast::Sender<String>,
}

/// Sent on [`Manager::changes`] when every server's bookings should be read again.
pub const ALL_SERVERS: &str = "*";

/// The servers and their live sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

/// Where the manager keeps its files.
#[derive(Debug, Clone)]
pub struct Files {
    /// The settings (JSON).
    pub settings: PathBuf,
    /// The last event per server (JSON).
    pub last_seen: PathBuf,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            settings: Settings::path(),
            last_seen: LastSeen::default_path(),
        }
    }
}

impl Manager {
    /// A manager with no servers yet; its live sessions run on `rt`, SSH servers are reached with `ssh`.
    pub fn new(
        files: Files,
        sink: Arc<dyn Sink>,
        notifier: Arc<dyn Notifier>,
        rt: tokio::runtime::Handle,
        ssh: ssh::Options,
    ) -> Self {
        let settings = Settings::load(&files.settings).unwrap_or_else(|e| {
            eprintln!("gpubook: {e} Using the defaults.");
            Settings::default()
        });
        let caldav = crate::caldav::Caldav::new(
            rt.clone(),
            settings.caldav.clone(),
            settings.show_own_command_in_calendar,
        );
        caldav.resume();
        Self {
            inner: Arc::new(Inner {
                caldav,
                servers: Mutex::new(Vec::new()),
                sink,
                notifier,
                last_seen: LastSeen::open(&files.last_seen),
                settings: Mutex::new(settings),
                settings_path: files.settings,
                rt,
                ssh,
                changes: broadcast::channel(256).0,
            }),
        }
    }

    /// Ids of servers whose bookings changed (an event arrived, the server came back), from
    /// now on; [`ALL_SERVERS`] stands for all of them. A receiver that lags should treat it
    /// as a change of every server.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.inner.changes.subscribe()
    }

    /// Adds a server and starts its live session. Its view is emitted as it changes.
    pub fn add(&self, id: &str, name: &str, address: Address) -> ServerView {
        let ssh = self.inner.ssh.clone();
        self.add_with(id, name, address, ssh)
    }

    /// [`Manager::add`] with its own SSH options (a password typed in the app).
    pub fn add_with(
        &self,
        id: &str,
        name: &str,
        address: Address,
        ssh: ssh::Options,
    ) -> ServerView {
        let server = Server::new(id, name, address, ssh);
        self.inner.servers.lock().unwrap().push(server.clone());
        self.start(server)
    }

    /// Logs in to server `id` again with `ssh` (what the person just typed, for a server
    /// whose login was refused): one connection checks it first, then the server's
    /// connection starts over with these options, in its place in the list. A refusal
    /// leaves the server as it was.
    pub async fn sign_in(&self, id: &str, ssh: ssh::Options) -> Result<ServerView, AppError> {
        let old = self.server(id)?;
        self.probe(&old.name(), &old.address, false, &ssh)
            .await
            .map_err(|mut e| {
                e.server = Some(id.to_string());
                e
            })?;
        let server = Server::new(id, &old.name(), old.address.clone(), ssh);
        {
            let mut servers = self.inner.servers.lock().unwrap();
            let i = servers
                .iter()
                .position(|s| Arc::ptr_eq(s, &old))
                .ok_or_else(|| AppError::no_server(id))?;
            servers[i] = server.clone();
        }
        self.stop(&old);
        Ok(self.start(server))
    }

    /// Starts the live session of a server in the list, its event relay and its CalDAV
    /// follower (which follows the same session).
    fn start(&self, server: Arc<Server>) -> ServerView {
        let (session, events) = events::start_session(&self.inner, &server);
        let status = session.status();
        *server.session.lock().unwrap() = Some(session);
        let weak = Arc::downgrade(&server);
        self.inner
            .caldav
            .server_added(&server.id, Arc::new(move || weak.upgrade()?.subscribe()));
        let inner = self.inner.clone();
        let view = server.view();
        self.inner.rt.spawn(async move {
            let stop = server.clone();
            tokio::select! {
                _ = relay_events(inner, server, events, status) => {}
                _ = stop.stop.notified() => {}
            }
        });
        view
    }

    /// Removes a server and stops its live session.
    pub fn remove(&self, id: &str) -> Result<(), AppError> {
        let mut servers = self.inner.servers.lock().unwrap();
        let i = servers
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| AppError::no_server(id))?;
        let s = servers.remove(i);
        self.stop(&s);
        Ok(())
    }

    /// Stops the event relay and the CalDAV follower of a server taken out of the list, and
    /// its live session (which closes its connection).
    fn stop(&self, s: &Server) {
        s.stop.notify_one();
        self.inner.caldav.server_removed(&s.id);
        s.session.lock().unwrap().take();
    }

    /// Connects once to `address` to check it (SSH host key, login) before it is added;
    /// `accept_new_host_key` trusts a host key not seen before.
    pub async fn probe(
        &self,
        name: &str,
        address: &Address,
        accept_new_host_key: bool,
        ssh: &ssh::Options,
    ) -> Result<(), AppError> {
        let mut opts = ssh.clone();
        opts.accept_new_host_key = accept_new_host_key;
        dial(address, &opts, CLIENT_NAME)
            .await
            .map(drop)
            .map_err(|e| AppError::from_dial(e, name, name))
    }

    /// Every server as the UI shows it.
    pub fn views(&self) -> Vec<ServerView> {
        self.inner
            .servers
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.view())
            .collect()
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.inner.settings.lock().unwrap().clone()
    }

    /// Saves new settings.
    pub fn set_settings(&self, mut s: Settings) -> Result<(), AppError> {
        // The CalDAV account changes only by signing in or out.
        s.caldav = self.inner.settings.lock().unwrap().caldav.clone();
        s.save(&self.inner.settings_path)
            .map_err(AppError::internal)?;
        self.inner
            .caldav
            .set_with_commands(s.show_own_command_in_calendar);
        *self.inner.settings.lock().unwrap() = s;
        let _ = self.inner.changes.send(ALL_SERVERS.to_string());
        Ok(())
    }

    /// The CalDAV sync.
    pub(crate) fn caldav(&self) -> &crate::caldav::Caldav {
        &self.inner.caldav
    }

    /// Saves the CalDAV account (or its absence) in the settings file.
    pub(crate) fn save_caldav_account(
        &self,
        account: Option<crate::caldav::CaldavAccount>,
    ) -> Result<(), AppError> {
        let mut s = self.inner.settings.lock().unwrap();
        let mut next = s.clone();
        next.caldav = account;
        next.save(&self.inner.settings_path)
            .map_err(AppError::internal)?;
        *s = next;
        Ok(())
    }

    /// The SSH options servers get by default.
    pub fn ssh_options(&self) -> ssh::Options {
        self.inner.ssh.clone()
    }

    /// The live connection to `id`, and the server's name.
    pub fn connection(&self, id: &str) -> Result<(Arc<Connection>, String), AppError> {
        let s = self.server(id)?;
        match s.connection() {
            Some(c) => Ok((c, s.name())),
            None => {
                let detail = s.status.lock().unwrap().detail.clone();
                Err(AppError::unreachable(id, &s.name(), detail.as_deref()))
            }
        }
    }

    /// A new follower of server `id`'s live session (the calendar feed, CalDAV sync): its
    /// events from now on, after a `Connected` if it is up.
    pub(crate) fn live_events(&self, id: &str) -> Result<LiveEvents, AppError> {
        self.server(id)?
            .subscribe()
            .ok_or_else(|| AppError::no_server(id))
    }

    /// Server `id`'s live connection, if it is up.
    pub(crate) fn live_connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.server(id).ok()?.connection()
    }

    fn server(&self, id: &str) -> Result<Arc<Server>, AppError> {
        self.inner
            .servers
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| AppError::no_server(id))
    }

    /// Sends `req` to server `id`.
    pub async fn request(&self, id: &str, req: Request) -> Result<Response, AppError> {
        let (conn, name) = self.connection(id)?;
        conn.request(req)
            .await
            .map_err(|e| AppError::from_client(e, id, &name))
    }

    /// The person's own bookings that have not ended, on every server, with the server's
    /// name: for the tray.
    pub fn my_bookings(&self) -> Vec<(String, Booking)> {
        let servers = self.inner.servers.lock().unwrap().clone();
        let mut out = Vec::new();
        for s in servers {
            let name = s.name();
            for b in s.mine.lock().unwrap().values() {
                out.push((name.clone(), b.clone()));
            }
        }
        out
    }

    /// The connections of every connected server, with their ids and names.
    pub fn connections(&self) -> Vec<(String, String, Arc<Connection>)> {
        let servers = self.inner.servers.lock().unwrap().clone();
        servers
            .iter()
            .filter_map(|s| {
                let c = s.connection()?;
                Some((s.id.clone(), s.name(), c))
            })
            .collect()
    }
}
