//! The servers the app shows, their connections, and the event pump: per server one task
//! that connects (again and again, with a back-off), subscribes to the event stream after
//! the last event it handled (remembered across restarts) with live readings, and hands
//! every event to the web view, to the notifications and to the tray's list of the
//! person's own bookings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gpubook_client::endpoint::{dial, DialError};
use gpubook_client::{ssh, ClientError, Connection, Pushed};
use gpubook_core::{Booking, BookingId};
use gpubook_proto::{
    ApproveRequest, BookRequest, BookingResponse, CancelRequest, DenyRequest, Event, ExtendRequest,
    GpusRequest, GpusResponse, ListRequest, LogsRequest, LogsResponse, MoveRequest, PolicyRequest,
    PolicyResponse, ReleaseRequest, Request, Response, Welcome,
};
use tokio::sync::{broadcast, Notify};

use crate::error::AppError;
use crate::ipc::AsapAnyResponse;
use crate::ipc::{EventPayload, LogPayload, ReadingsPayload, ServerState, ServerView};
use crate::memory::Memory;
use crate::notify::{self, Notifier};
use crate::settings::Settings;
use gpubook_client::servers::asap::{self, AsapAsk};
use gpubook_proto::{GpuChoice, WhenChoice};

/// The name the app gives itself in the handshake.
pub const CLIENT_NAME: &str = concat!("gpubook-app/", env!("CARGO_PKG_VERSION"));

/// How long a server may be gone before "unreachable" is notified (an agent restart is not
/// worth a notification).
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(10);

/// How long after a refused login the app tries again by itself.
pub const LOGIN_RETRY: Duration = Duration::from_secs(300);

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
struct Status {
    state: ServerState,
    detail: Option<String>,
    welcome: Option<Welcome>,
    /// The last try failed to log in.
    needs_login: bool,
}

/// One server and what the app knows of it.
#[derive(Debug)]
struct Server {
    id: String,
    name: Mutex<String>,
    address: Address,
    /// How SSH logs in (the app's prompt with what the person typed, the keyring).
    ssh: ssh::Options,
    status: Mutex<Status>,
    conn: Mutex<Option<Arc<Connection>>>,
    /// The person's own bookings that have not ended, for the tray.
    mine: Mutex<BTreeMap<BookingId, Booking>>,
    stop: Notify,
}

impl Server {
    /// A server not connected yet.
    fn new(id: &str, name: &str, address: Address, ssh: ssh::Options) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_string(),
            name: Mutex::new(name.to_string()),
            address,
            ssh,
            status: Mutex::new(Status {
                state: ServerState::Connecting,
                detail: None,
                welcome: None,
                needs_login: false,
            }),
            conn: Mutex::new(None),
            mine: Mutex::new(BTreeMap::new()),
            stop: Notify::new(),
        })
    }

    fn view(&self) -> ServerView {
        let s = self.status.lock().unwrap();
        ServerView {
            id: self.id.clone(),
            name: self.name.lock().unwrap().clone(),
            state: s.state,
            detail: s.detail.clone(),
            user: s.welcome.as_ref().map(|w| w.user.clone()),
            role: s.welcome.as_ref().map(|w| w.role),
            simulated: s.welcome.as_ref().is_some_and(|w| w.simulated),
            needs_login: s.needs_login,
            follows_logs: s.welcome.as_ref().is_some_and(|w| w.minor >= 1),
        }
    }

    fn name(&self) -> String {
        self.name.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct Inner {
    servers: Mutex<Vec<Arc<Server>>>,
    sink: Arc<dyn Sink>,
    notifier: Arc<dyn Notifier>,
    memory: Memory,
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

/// The servers and their pumps. Cheap to clone.
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
    pub memory: PathBuf,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            settings: Settings::path(),
            memory: Memory::default_path(),
        }
    }
}

impl Manager {
    /// A manager with no servers yet; its pumps run on `rt`, SSH servers are reached with `ssh`.
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
                memory: Memory::open(&files.memory),
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

    /// Adds a server and starts its pump. Its view is emitted as it changes.
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

    /// Starts the pump (and the CalDAV follower) of a server in the list.
    fn start(&self, server: Arc<Server>) -> ServerView {
        self.inner
            .caldav
            .server_added(&server.id, server.address.clone(), server.ssh.clone());
        let inner = self.inner.clone();
        let view = server.view();
        self.inner.rt.spawn(async move {
            let stop = server.clone();
            tokio::select! {
                _ = pump(inner, server) => {}
                _ = stop.stop.notified() => {}
            }
        });
        view
    }

    /// Removes a server and stops its pump.
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

    /// Stops the pump and the CalDAV follower of a server taken out of the list, and drops its
    /// connection.
    fn stop(&self, s: &Server) {
        s.stop.notify_one();
        self.inner.caldav.server_removed(&s.id);
        s.conn.lock().unwrap().take();
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
        let conn = s.conn.lock().unwrap().clone();
        match conn {
            Some(c) => Ok((c, s.name())),
            None => {
                let detail = s.status.lock().unwrap().detail.clone();
                Err(AppError::unreachable(id, &s.name(), detail.as_deref()))
            }
        }
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

    async fn booking(&self, id: &str, req: Request) -> Result<BookingResponse, AppError> {
        match self.request(id, req).await? {
            Response::Booking(b) => Ok(b),
            other => Err(unexpected(id, "a booking", &other)),
        }
    }

    /// The GPUs of server `id`.
    pub async fn gpus(&self, id: &str) -> Result<GpusResponse, AppError> {
        match self.request(id, Request::Gpus(GpusRequest {})).await? {
            Response::Gpus(g) => Ok(g),
            other => Err(unexpected(id, "the GPUs", &other)),
        }
    }

    /// The bookings of server `id` that overlap `from..to` (all pages).
    pub async fn bookings(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Booking>, AppError> {
        let range = gpubook_core::Interval::new(from, to).ok_or_else(|| {
            AppError::internal("The calendar asked for a range that ends before it starts.")
        })?;
        let (conn, name) = self.connection(id)?;
        let all = conn
            .list_all(ListRequest {
                range: Some(range),
                mine: false,
                include_past: true,
                after: None,
            })
            .await
            .map_err(|e| AppError::from_client(e, id, &name))?;
        Ok(all.bookings)
    }

    /// The policy of server `id`.
    pub async fn policy(&self, id: &str) -> Result<PolicyResponse, AppError> {
        match self.request(id, Request::Policy(PolicyRequest {})).await? {
            Response::Policy(p) => Ok(p),
            other => Err(unexpected(id, "the policy", &other)),
        }
    }

    /// Books on server `id`.
    pub async fn book(&self, id: &str, req: BookRequest) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Book(req)).await
    }

    /// Books "as soon as possible" on whichever connected server would start it soonest:
    /// each is quoted from its own plan (gpubook_client::servers::asap), then the request
    /// goes to the chosen one, whose agent decides. `req` must ask for a count of GPUs
    /// "as soon as possible".
    pub async fn asap_any(&self, req: BookRequest) -> Result<AsapAnyResponse, AppError> {
        let (count, min_memory) =
            match &req.gpus {
                GpuChoice::Count { count, min_memory } => (*count, *min_memory),
                GpuChoice::Named { .. } => return Err(AppError::internal(
                    "\"As soon as possible\" on any server needs a number of GPUs, not named ones.",
                )
                .with_kind_invalid()),
            };
        let duration_secs = match &req.when {
            WhenChoice::Asap { duration_secs } => *duration_secs,
            WhenChoice::At { .. } => {
                return Err(AppError::internal(
                    "\"As soon as possible\" on any server needs a duration, not a time.",
                )
                .with_kind_invalid())
            }
        };
        let ask = AsapAsk {
            count,
            min_memory,
            duration: chrono::Duration::seconds(duration_secs),
        };
        let conns = self.connections();
        if conns.is_empty() {
            return Err(AppError::app(
                crate::error::AppOnlyKind::Unreachable,
                "No server is connected right now, so none can be asked.",
                None,
            ));
        }
        let now = Utc::now();
        let mut quotes = Vec::new();
        for (_, _, c) in &conns {
            quotes.push(asap::quote(c, &ask, now).await);
        }
        let Some(i) = asap::choose(&quotes) else {
            let why: Vec<String> = conns
                .iter()
                .zip(&quotes)
                .filter_map(|((_, name, _), q)| q.as_ref().err().map(|e| format!("{name}: {e}")))
                .collect();
            return Err(AppError::internal(format!(
                "No server can take {count} GPU{} for {}: {}.",
                if count == 1 { "" } else { "s" },
                crate::notify::human_duration(ask.duration),
                why.join("; ")
            ))
            .with_kind_invalid());
        };
        let server = conns[i].0.clone();
        let response = self.book(&server, req).await?;
        Ok(AsapAnyResponse { server, response })
    }

    /// Cancels booking `b` on server `id`.
    pub async fn cancel(&self, id: &str, b: u64) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Cancel(CancelRequest { id: BookingId(b) }))
            .await
    }

    /// Extends booking `b` to `end`.
    pub async fn extend(
        &self,
        id: &str,
        b: u64,
        end: DateTime<Utc>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Extend(ExtendRequest {
                id: BookingId(b),
                end,
            }),
        )
        .await
    }

    /// Moves booking `b` to `start..end`.
    pub async fn move_booking(
        &self,
        id: &str,
        b: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Move(MoveRequest {
                id: BookingId(b),
                start,
                end,
                gpus: None,
            }),
        )
        .await
    }

    /// Releases the rest of booking `b`'s slot.
    pub async fn release(&self, id: &str, b: u64) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Release(ReleaseRequest { id: BookingId(b) }))
            .await
    }

    /// Approves booking `b` (admins) as it was at revision `rev`, the one the admin saw.
    pub async fn approve(
        &self,
        id: &str,
        b: u64,
        rev: Option<u32>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Approve(ApproveRequest {
                id: BookingId(b),
                rev,
            }),
        )
        .await
    }

    /// Denies booking `b` (admins) as it was at revision `rev`.
    pub async fn deny(
        &self,
        id: &str,
        b: u64,
        reason: Option<String>,
        rev: Option<u32>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Deny(DenyRequest {
                id: BookingId(b),
                reason,
                rev,
            }),
        )
        .await
    }

    /// The log of booking `b`'s job from byte `offset` on (0: from the start), as far as it
    /// goes now (at most about 1 MiB at a time); `next` is where the following call goes on.
    /// `follow`: `Some(true)` has the agent push the rest as it is written (to [`Sink::log`],
    /// from the answer's `next` on; where the server's view says `follows_logs`),
    /// `Some(false)` stops that, `None` leaves it as it is.
    pub async fn job_logs(
        &self,
        id: &str,
        b: u64,
        offset: u64,
        follow: Option<bool>,
    ) -> Result<LogsResponse, AppError> {
        let mut all = LogsResponse {
            data: String::new(),
            next: offset,
            done: false,
        };
        loop {
            let page = self.log_page(id, b, all.next, None).await?;
            let empty = page.data.is_empty();
            all.data.push_str(&page.data);
            all.next = page.next;
            all.done = page.done;
            if empty || page.done || all.data.len() > 1 << 20 {
                break;
            }
        }
        if follow.is_some() {
            // Followed from where this answer ends, with whatever came in meanwhile.
            let last = self.log_page(id, b, all.next, follow).await?;
            all.data.push_str(&last.data);
            all.next = last.next;
            all.done = last.done;
        }
        Ok(all)
    }

    /// One piece of booking `b`'s job log from `offset` (see [`Manager::job_logs`]).
    async fn log_page(
        &self,
        id: &str,
        b: u64,
        offset: u64,
        follow: Option<bool>,
    ) -> Result<LogsResponse, AppError> {
        let req = Request::Logs(LogsRequest {
            id: BookingId(b),
            offset,
            follow,
        });
        match self.request(id, req).await? {
            Response::Logs(l) => Ok(l),
            other => Err(unexpected(id, "the job's log", &other)),
        }
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
                let c = s.conn.lock().unwrap().clone()?;
                Some((s.id.clone(), s.name(), c))
            })
            .collect()
    }
}

fn unexpected(id: &str, what: &str, got: &Response) -> AppError {
    AppError::internal(format!(
        "Server {id} answered something else than {what} ({got:?}); are the app and the agent compatible?"
    ))
}

fn set_status(
    inner: &Inner,
    s: &Server,
    state: ServerState,
    detail: Option<String>,
    welcome: Option<Welcome>,
) {
    set_status_login(inner, s, state, detail, welcome, false);
}

/// [`set_status`], saying whether the try failed to log in.
fn set_status_login(
    inner: &Inner,
    s: &Server,
    state: ServerState,
    detail: Option<String>,
    welcome: Option<Welcome>,
    login_failed: bool,
) {
    {
        let mut st = s.status.lock().unwrap();
        let changed = st.state != state
            || st.detail != detail
            || welcome.is_some()
            || st.needs_login != login_failed;
        st.state = state;
        st.detail = detail;
        st.needs_login = login_failed;
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

/// Keeps server `s` connected and its events flowing, until the task is dropped.
async fn pump(inner: Arc<Inner>, s: Arc<Server>) {
    let mut backoff = Duration::from_millis(250);
    // When the server was last known to be up or the pump started, and whether
    // "unreachable" has been notified for the current outage.
    let mut down_since = Instant::now();
    let mut notified_down = false;
    let mut ever_up = false;
    loop {
        let login_failed = match session(&inner, &s, &mut notified_down, &mut ever_up).await {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                down_since = Instant::now();
                set_status(
                    &inner,
                    &s,
                    ServerState::Connecting,
                    Some("The connection was lost; reconnecting.".into()),
                    None,
                );
                false
            }
            Err(e) => {
                let login_failed = matches!(
                    &e,
                    DialError::Deploy(d) if d.ssh_kind() == Some(ssh::SshErrorKind::Auth)
                );
                let detail = e.to_string();
                let state = if down_since.elapsed() >= UNREACHABLE_AFTER || !ever_up || login_failed
                {
                    ServerState::Unreachable
                } else {
                    ServerState::Connecting
                };
                set_status_login(&inner, &s, state, Some(detail.clone()), None, login_failed);
                if ever_up && !notified_down && down_since.elapsed() >= UNREACHABLE_AFTER {
                    notified_down = true;
                    let settings = inner.settings.lock().unwrap().clone();
                    if let Some(n) =
                        notify::server_notice(&s.name(), false, Some(&detail), &settings)
                    {
                        inner.notifier.show(n, None);
                    }
                }
                login_failed
            }
        };
        // A refused login is not retried every few seconds: sshd (and fail2ban) count the
        // failures against the account; the person signs in (Manager::sign_in) instead.
        tokio::time::sleep(if login_failed { LOGIN_RETRY } else { backoff }).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: Ok when it ended after having been up.
async fn session(
    inner: &Arc<Inner>,
    s: &Arc<Server>,
    notified_down: &mut bool,
    ever_up: &mut bool,
) -> Result<(), DialError> {
    let conn = Arc::new(connect(&s.address, &s.ssh).await?);
    let welcome = conn.welcome().clone();
    let me = welcome.user.clone();
    let key = format!("{}|{}|{}", s.address, welcome.server, s.id);
    // The person's own bookings that have not ended, for the tray.
    let mine = conn
        .list_all(ListRequest {
            range: None,
            mine: true,
            include_past: false,
            after: None,
        })
        .await
        .map_err(DialError::from)?;
    let remembered = inner.memory.last_event(&key);
    let (latest, mut rx) = conn
        .subscribe(remembered, true)
        .await
        .map_err(DialError::from)?;
    if remembered.is_some_and(|r| r > latest) {
        // Another agent at the same address (its store was reset): start from now.
        inner.memory.forget(&key);
        return Err(ClientError::Protocol(
            "the agent's event numbers went back; subscribing again from now".into(),
        )
        .into());
    }
    if remembered.is_none() {
        inner.memory.set_last_event(&key, latest);
    }
    {
        let mut m = s.mine.lock().unwrap();
        m.clear();
        for b in mine.bookings {
            m.insert(b.id, b);
        }
    }
    *s.conn.lock().unwrap() = Some(conn.clone());
    *ever_up = true;
    set_status(inner, s, ServerState::Connected, None, Some(welcome));
    if *notified_down {
        *notified_down = false;
        let settings = inner.settings.lock().unwrap().clone();
        if let Some(n) = notify::server_notice(&s.name(), true, None, &settings) {
            inner.notifier.show(n, None);
        }
    }
    while let Some(p) = rx.recv().await {
        match p {
            Pushed::Event(ev) => handle_event(inner, s, &me, &key, ev),
            Pushed::Readings(r) => inner.sink.readings(&ReadingsPayload {
                server: s.id.clone(),
                readings: r,
            }),
            Pushed::Log(piece) => inner.sink.log(&LogPayload {
                server: s.id.clone(),
                piece,
            }),
            Pushed::Error(e) => eprintln!("gpubook: {}: {}", s.name(), e.message),
        }
    }
    s.conn.lock().unwrap().take();
    Ok(())
}

fn handle_event(inner: &Arc<Inner>, s: &Arc<Server>, me: &str, key: &str, ev: Event) {
    if ev.booking.owner == me {
        let mut m = s.mine.lock().unwrap();
        if ev.booking.state.is_final() {
            m.remove(&ev.booking.id);
        } else {
            m.insert(ev.booking.id, ev.booking.clone());
        }
    }
    inner.sink.event(&EventPayload {
        server: s.id.clone(),
        event: ev.clone(),
    });
    // No receiver (no feed) is fine.
    let _ = inner.changes.send(s.id.clone());
    let settings = inner.settings.lock().unwrap().clone();
    if let Some(n) = notify::decide(&ev, &s.id, &s.name(), me, Utc::now(), &settings) {
        let on_extend = n.extend.clone().map(|offer| {
            let s = s.clone();
            let inner = inner.clone();
            Box::new(move || {
                let rt = inner.rt.clone();
                rt.spawn(async move {
                    let conn = s.conn.lock().unwrap().clone();
                    let Some(conn) = conn else { return };
                    let r = conn
                        .request(Request::Extend(ExtendRequest {
                            id: offer.id,
                            end: offer.to,
                        }))
                        .await;
                    if let Err(e) = r {
                        inner.notifier.show(
                            notify::Notice {
                                kind: "slot_ending",
                                summary: "The booking could not be extended".into(),
                                body: AppError::from_client(e, &s.id, &s.name()).message,
                                extend: None,
                            },
                            None,
                        );
                    }
                });
            }) as Box<dyn FnOnce() + Send>
        });
        inner.notifier.show(n, on_extend);
    }
    // Remembered after the notification was handed over: a crash in between shows it
    // again rather than never.
    inner.memory.set_last_event(key, ev.seq);
}

/// A name for a server added as `spec`, usable in servers.toml (letters, digits, '-', '_',
/// '.') and unlike every name in `taken`: the SSH host ("alice@lab1:2222" → "lab1"), or the
/// socket's file name ("unix:/run/x/lab2.sock" → "lab2"), with "-2", "-3"... if needed.
pub fn name_for(spec: &str, taken: &[String]) -> String {
    let spec = spec.trim();
    let base = if let Some(path) = spec.strip_prefix("unix:") {
        std::path::Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        let rest = spec.strip_prefix("ssh://").unwrap_or(spec);
        let rest = rest.trim_end_matches('/');
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = if let Some(h) = host.strip_prefix('[') {
            h.split(']').next().unwrap_or(h)
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        host.to_string()
    };
    let mut base: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if base.is_empty() || ["local", "any", "all"].contains(&base.as_str()) {
        base = format!("server-{base}");
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t == &name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::name_for;

    #[test]
    fn names_for_added_servers() {
        let none: Vec<String> = vec![];
        assert_eq!(name_for("lab1", &none), "lab1");
        assert_eq!(
            name_for("alice@lab1.example.org:2222", &none),
            "lab1.example.org"
        );
        assert_eq!(name_for("ssh://bob@gpu7/", &none), "gpu7");
        assert_eq!(name_for("alice@[::1]:22", &none), "--1");
        assert_eq!(name_for("unix:/run/x/lab2.sock", &none), "lab2");
        assert_eq!(
            name_for("lab1", &["lab1".into(), "lab1-2".into()]),
            "lab1-3"
        );
        assert_eq!(name_for("unix:/tmp/local.sock", &none), "server-local");
    }
}
