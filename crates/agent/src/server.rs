//! The socket server: binds the agent's Unix socket, establishes who each peer is from the
//! socket (`SO_PEERCRED`), runs the handshake, reads frames into typed requests, answers them,
//! and streams events to subscribers.

use crate::clock::Clock;
use crate::gpu::{self, GpuReader, Source};
use crate::handler::{visible, Caller, Context};
use crate::identity::{self, Identity};
use crate::state::State;
use crate::store::Store;
use anyhow::Context as _;
use gpubook_core::{Actor, BookingId, Policy, Role};
use gpubook_proto::{
    read_frame, write_frame, AgentFrame, ClientFrame, ErrorBody, ErrorKind, FrameError, LogPiece,
    Readings, Request, Response, SubscribeRequest, SubscribedResponse, Welcome, PROTOCOL_MAJOR,
};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

/// Most connections at once; more wait for a free place.
const MAX_CONNECTIONS: usize = 1024;
/// How long a new connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read from the store per batch when a subscriber catches up.
const BACKLOG_BATCH: usize = 500;

/// How to run an agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the database and lock live.
    pub state_dir: PathBuf,
    /// The socket to listen on.
    pub socket: PathBuf,
    /// How to read the GPUs.
    pub gpus: Source,
    /// The policy file, if any. Without one: no limits, and the agent's own user is admin.
    pub policy: Option<PathBuf>,
    /// The server's name, shown to people.
    pub server_name: String,
    /// Let every local user connect (system mode); otherwise only the agent's own user.
    pub shared: bool,
    /// How often the GPUs are read.
    pub sample_interval: Duration,
}

/// A bound agent, ready to [`Agent::run`].
#[derive(Debug)]
pub struct Agent {
    /// Shared with every connection.
    ctx: Arc<Context>,
    /// The policy and how roles are given.
    roles: Arc<Roles>,
    /// The listening socket.
    listener: UnixListener,
    /// Its path, removed on shutdown.
    socket: PathBuf,
    /// The GPU reader, for the sampler.
    reader: Arc<Mutex<Box<dyn GpuReader>>>,
    /// The sampler's output.
    readings_tx: watch::Sender<Option<Readings>>,
    /// The sampling interval.
    sample_interval: Duration,
    /// Watches the readings: history, usage, intruders, idleness.
    watcher: Arc<crate::watch::Watch>,
    /// Held for the agent's life: one agent per state directory.
    _lock: std::fs::File,
}

/// How roles are given.
#[derive(Debug)]
struct Roles {
    /// The policy.
    policy: Policy,
    /// Whether an admin wrote a policy file; without one the agent's own user is admin.
    from_file: bool,
    /// The agent's own uid.
    own_uid: u32,
}

impl Roles {
    fn role_of(&self, id: &Identity) -> Role {
        if id.uid == 0 || (!self.from_file && id.uid == self.own_uid) {
            return Role::Admin;
        }
        self.policy.role_of(&id.user, &id.groups)
    }
}

/// Opens the state, the GPU reader and the socket.
pub async fn bind(config: AgentConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Agent> {
    bind_with(config, gpu::ReaderOptions::default(), clock).await
}

/// [`bind`], with options for the GPU reader. Simulated GPUs watch
/// `<state-dir>/sim-processes.json` unless `reader.sim_processes` names another file.
pub async fn bind_with(
    config: AgentConfig,
    reader: gpu::ReaderOptions,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Agent> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "cannot create state directory {}",
            config.state_dir.display()
        )
    })?;
    let lock = lock_state_dir(&config.state_dir)?;
    let policy = match &config.policy {
        Some(p) => Policy::from_toml(
            &std::fs::read_to_string(p)
                .with_context(|| format!("cannot read policy file {}", p.display()))?,
        )
        .with_context(|| format!("policy file {}", p.display()))?,
        None => Policy::default(),
    };
    let reader = gpu::ReaderOptions {
        sim_processes: reader
            .sim_processes
            .or_else(|| Some(config.state_dir.join(gpu::sim::SIM_PROCESSES_FILE))),
        ..reader
    };
    let reader = gpu::open_with(&config.gpus, &config.server_name, &reader)?;
    let gpus = reader.inventory();
    let source = reader.source();
    let store = Store::open(&config.state_dir.join("agent.db"))?;
    let instance = store.instance_id()?;
    let state = Arc::new(State::load(store, gpus, policy.clone(), clock)?);
    let watcher = Arc::new(crate::watch::Watch::new(
        state.clone(),
        config.sample_interval,
        crate::watch::may_stop_processes(source),
    ));
    let jobs = Arc::new(crate::jobs::Jobs::new(
        state.clone(),
        instance,
        &config.state_dir,
    ));
    let listener = bind_socket(&config.socket, config.shared).await?;
    let (readings_tx, readings) = watch::channel(None);
    Ok(Agent {
        ctx: Arc::new(Context {
            state,
            server: config.server_name.clone(),
            source,
            readings,
            jobs,
        }),
        roles: Arc::new(Roles {
            policy,
            from_file: config.policy.is_some(),
            own_uid: identity::current_uid(),
        }),
        listener,
        socket: config.socket.clone(),
        reader: Arc::new(Mutex::new(reader)),
        readings_tx,
        sample_interval: config.sample_interval,
        watcher,
        _lock: lock,
    })
}

impl Agent {
    /// The shared state (for tests and the benchmark).
    pub fn state(&self) -> Arc<State> {
        self.ctx.state.clone()
    }

    /// The GPU watch: the readings' history (for tests and the benchmark).
    pub fn watcher(&self) -> Arc<crate::watch::Watch> {
        self.watcher.clone()
    }

    /// Serves until `shutdown` resolves, then removes the socket.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let (stop_tx, _) = broadcast::channel::<()>(1);
        let stopped = |tx: &broadcast::Sender<()>| {
            let mut rx = tx.subscribe();
            async move {
                let _ = rx.recv().await;
            }
        };
        let timer = tokio::spawn(crate::timer::run(self.ctx.state.clone(), stopped(&stop_tx)));
        let jobs = tokio::spawn(self.ctx.jobs.clone().run(stopped(&stop_tx)));
        let sampler = tokio::spawn(crate::sampler::run(
            self.reader.clone(),
            self.sample_interval,
            self.readings_tx,
            self.watcher.clone(),
            stopped(&stop_tx),
        ));
        let watcher = tokio::spawn(crate::watch::run(self.watcher.clone(), stopped(&stop_tx)));
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => p.expect("never closed"),
                _ = &mut shutdown => break,
            };
            let stream = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        eprintln!("gpubook-agent: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let ctx = self.ctx.clone();
            let roles = self.roles.clone();
            let stop = stopped(&stop_tx);
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection(ctx, roles, stream) => {}
                    _ = stop => {}
                }
                drop(permit);
            });
        }
        let _ = stop_tx.send(());
        let _ = tokio::join!(timer, sampler, jobs, watcher);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!(
            "another gpubook-agent is running with the state directory {}",
            dir.display()
        );
    }
    Ok(f)
}

async fn bind_socket(path: &std::path::Path, shared: bool) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create socket directory {}", dir.display()))?;
            let mode = if shared { 0o755 } else { 0o700 };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("another gpubook-agent is listening on {}", path.display());
        }
        // A socket left by an agent that died: nobody listens on it.
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Anyone may connect to a shared socket: who they are comes from the kernel, not from
    // what they send.
    let mode = if shared { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// One client connection, from handshake to close.
async fn connection(ctx: Arc<Context>, roles: Arc<Roles>, stream: UnixStream) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            eprintln!("gpubook-agent: cannot read peer credentials: {e}");
            return;
        }
    };
    let id = tokio::task::spawn_blocking(move || identity::lookup(uid))
        .await
        .unwrap_or(Identity {
            uid,
            user: format!("uid:{uid}"),
            groups: Vec::new(),
        });
    let caller = Caller {
        actor: Actor {
            user: id.user.clone(),
            role: roles.role_of(&id),
        },
        uid,
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<AgentFrame>(1024);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let result = match write_frame(&mut wr, &frame).await {
                // An answer too large for one frame: say so, typed, and keep the connection.
                Err(FrameError::TooLarge(n)) => {
                    let id = match &frame {
                        AgentFrame::Response { id, .. } => Some(*id),
                        _ => None,
                    };
                    let msg = format!(
                        "the answer ({n} bytes) is over the frame limit; ask for less \
                         (a narrower range, or page through with the cursor)"
                    );
                    write_frame(&mut wr, &error(id, ErrorKind::TooLarge, msg)).await
                }
                other => other,
            };
            if let Err(e) = result {
                if !matches!(e, FrameError::Io(_)) {
                    eprintln!("gpubook-agent: cannot send a frame: {e}");
                }
                return;
            }
        }
    });

    // The handshake.
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut rd)).await {
        Ok(Ok(Some(body))) => match serde_json::from_slice::<ClientFrame>(&body) {
            Ok(ClientFrame::Hello(h)) => Ok(h),
            _ => Err(Some(error(
                None,
                ErrorKind::Malformed,
                "the first frame must be a hello with the protocol version",
            ))),
        },
        Ok(Ok(None)) => Err(None),
        Ok(Err(e)) => Err(Some(frame_error(&e))),
        Err(_) => Err(Some(error(
            None,
            ErrorKind::Malformed,
            format!("no hello within {} s", HELLO_TIMEOUT.as_secs()),
        ))),
    };
    let welcome = match hello.map(|h| (gpubook_proto::negotiate(h.major, h.minor), h)) {
        Ok((Ok(minor), _)) => Some(Welcome {
            major: PROTOCOL_MAJOR,
            minor,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            server: ctx.server.clone(),
            user: caller.actor.user.clone(),
            uid,
            role: caller.actor.role,
            simulated: ctx.source == "simulated",
        }),
        Ok((Err(error), _)) => {
            let _ = tx.send(AgentFrame::Error { id: None, error }).await;
            None
        }
        Err(Some(frame)) => {
            let _ = tx.send(frame).await;
            None
        }
        Err(None) => None,
    };
    let Some(welcome) = welcome else {
        drop(tx);
        let _ = writer.await;
        return;
    };
    if tx.send(AgentFrame::Welcome(welcome.clone())).await.is_err() {
        return;
    }

    let mut subscription: Option<tokio::task::JoinHandle<()>> = None;
    // The job logs this connection follows: one task per booking.
    let mut followers: HashMap<BookingId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let body = match read_frame(&mut rd).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(FrameError::Truncated) | Err(FrameError::Io(_)) => break,
            Err(e) => {
                // The stream cannot be trusted past a bad length: say why, then close.
                let _ = tx.send(frame_error(&e)).await;
                break;
            }
        };
        let (id, req) = match parse_request(&body) {
            Ok(x) => x,
            Err((id, e)) => {
                if tx.send(AgentFrame::Error { id, error: e }).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let answer = match req {
            Request::Whoami(_) => Ok(Response::Whoami(welcome.clone())),
            Request::Subscribe(s) => {
                if let Some(old) = subscription.take() {
                    old.abort();
                }
                subscription = Some(tokio::spawn(subscribe(
                    ctx.clone(),
                    caller.clone(),
                    id,
                    s,
                    tx.clone(),
                )));
                continue;
            }
            Request::Logs(l) if l.follow.is_some() => {
                let (booking, follow) = (l.id, l.follow == Some(true));
                if let Some(old) = followers.remove(&booking) {
                    old.abort();
                }
                let answer = ctx.handle(&caller, Request::Logs(l)).await;
                if let (true, Ok(Response::Logs(piece))) = (follow, &answer) {
                    followers.retain(|_, f| !f.is_finished());
                    followers.insert(
                        booking,
                        tokio::spawn(follow_log(ctx.clone(), booking, piece.next, tx.clone())),
                    );
                }
                answer
            }
            other => ctx.handle(&caller, other).await,
        };
        let frame = match answer {
            Ok(body) => AgentFrame::Response { id, body },
            Err(error) => AgentFrame::Error {
                id: Some(id),
                error,
            },
        };
        if tx.send(frame).await.is_err() {
            break;
        }
    }
    if let Some(s) = subscription {
        s.abort();
    }
    for f in followers.into_values() {
        f.abort();
    }
    drop(tx);
    let _ = writer.await;
}

/// A frame's body → (request id, request), or the error to answer with.
fn parse_request(body: &[u8]) -> Result<(u64, Request), (Option<u64>, ErrorBody)> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            ErrorBody::new(ErrorKind::Malformed, format!("the frame is not JSON: {e}")),
        )
    })?;
    let id = v.get("id").and_then(|i| i.as_u64());
    match v.get("type").and_then(|t| t.as_str()) {
        Some("request") => {}
        Some("hello") => {
            return Err((
                id,
                ErrorBody::new(
                    ErrorKind::Invalid,
                    "hello was already said on this connection",
                ),
            ))
        }
        Some(t) => {
            return Err((
                id,
                ErrorBody::new(
                    ErrorKind::UnknownRequest,
                    format!("unknown frame type {t:?}"),
                ),
            ))
        }
        None => {
            return Err((
                id,
                ErrorBody::new(ErrorKind::Malformed, "the frame has no \"type\""),
            ))
        }
    }
    let Some(id) = id else {
        return Err((
            None,
            ErrorBody::new(ErrorKind::Malformed, "a request needs a numeric \"id\""),
        ));
    };
    let kind = v
        .get("body")
        .and_then(|b| b.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    if !Request::TYPES.contains(&kind.as_str()) {
        return Err((
            Some(id),
            ErrorBody::new(
                ErrorKind::UnknownRequest,
                format!(
                    "this agent does not know the request {kind:?}; it knows: {}",
                    Request::TYPES.join(", ")
                ),
            ),
        ));
    }
    match serde_json::from_value::<ClientFrame>(v) {
        Ok(ClientFrame::Request { id, body }) => Ok((id, body)),
        Ok(ClientFrame::Hello(_)) => unreachable!("type was checked to be request"),
        Err(e) => Err((
            Some(id),
            ErrorBody::new(ErrorKind::Invalid, format!("bad {kind} request: {e}")),
        )),
    }
}

/// How often a followed log is looked at for more, besides on every event.
const LOG_POLL: Duration = Duration::from_millis(250);

/// Pushes booking `id`'s job log from byte `next` on to `tx` as it is written, until the job
/// is over and its log read to the end (the last piece says `done`), the booking is gone, or
/// the client. The caller was allowed to read the log when the follow began.
async fn follow_log(ctx: Arc<Context>, id: BookingId, mut next: u64, tx: mpsc::Sender<AgentFrame>) {
    let mut events = ctx.state.events.subscribe();
    let path = ctx.jobs.log_path(id);
    loop {
        let Ok((_, done)) = ctx.log_state(id) else {
            return;
        };
        let p = path.clone();
        let read =
            tokio::task::spawn_blocking(move || crate::handler::read_from(&p, next, done)).await;
        let Ok(Ok((data, to, at_end))) = read else {
            return;
        };
        let finished = done && at_end;
        if !data.is_empty() || finished {
            let piece = LogPiece {
                id,
                offset: next,
                data,
                next: to,
                done: finished,
            };
            if tx.send(AgentFrame::Log(piece)).await.is_err() {
                return;
            }
        }
        next = to;
        if finished {
            return;
        }
        if !at_end {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(LOG_POLL) => {}
            // Any event: look again now (a job's end comes as one).
            r = events.recv() => {
                if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
        }
    }
}

/// Events after `s.after` from the store, then live ones, each exactly once, in order.
async fn subscribe(
    ctx: Arc<Context>,
    caller: Caller,
    id: u64,
    s: SubscribeRequest,
    tx: mpsc::Sender<AgentFrame>,
) {
    // Listen before reading the backlog, so nothing committed in between is missed.
    let mut live = ctx.state.events.subscribe();
    let latest = {
        let inner = ctx.state.lock();
        inner.store.latest_seq().unwrap_or(0)
    };
    let answer = AgentFrame::Response {
        id,
        body: Response::Subscribed(SubscribedResponse { latest }),
    };
    if tx.send(answer).await.is_err() {
        return;
    }
    let mut last = s.after.unwrap_or(latest);
    let mut readings = ctx.readings.clone();
    loop {
        if !catch_up(&ctx, &caller, &tx, &mut last).await {
            return;
        }
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(e) => {
                        if e.seq <= last {
                            continue;
                        }
                        if e.seq > last + 1 {
                            // A gap: read it from the store.
                            break;
                        }
                        last = e.seq;
                        let frame = AgentFrame::Event(gpubook_proto::Event {
                            booking: visible(&caller.actor, e.booking.clone()),
                            ..(*e).clone()
                        });
                        if tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = readings.changed(), if s.readings => {
                    if changed.is_err() {
                        return;
                    }
                    let r = readings.borrow_and_update().clone();
                    if let Some(r) = r {
                        if tx.send(AgentFrame::Readings(r)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Sends stored events after `last`; false when the client is gone.
async fn catch_up(
    ctx: &Arc<Context>,
    caller: &Caller,
    tx: &mpsc::Sender<AgentFrame>,
    last: &mut u64,
) -> bool {
    loop {
        let batch = {
            let inner = ctx.state.lock();
            inner.store.events_after(*last, BACKLOG_BATCH)
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let _ = tx
                    .send(error(
                        None,
                        ErrorKind::Unavailable,
                        format!("cannot read events: {e}"),
                    ))
                    .await;
                return false;
            }
        };
        if batch.is_empty() {
            return true;
        }
        for mut e in batch {
            *last = e.seq;
            e.booking = visible(&caller.actor, e.booking);
            if tx.send(AgentFrame::Event(e)).await.is_err() {
                return false;
            }
        }
    }
}

fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> AgentFrame {
    AgentFrame::Error {
        id,
        error: ErrorBody::new(kind, message),
    }
}

fn frame_error(e: &FrameError) -> AgentFrame {
    let kind = match e {
        FrameError::TooLarge(_) => ErrorKind::TooLarge,
        _ => ErrorKind::Malformed,
    };
    error(None, kind, e.to_string())
}

/// Runs an agent with `config` until SIGTERM or SIGINT.
pub async fn serve(config: AgentConfig, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    serve_with(config, gpu::ReaderOptions::default(), clock).await
}

/// [`serve`], with options for the GPU reader (see [`bind_with`]).
pub async fn serve_with(
    config: AgentConfig,
    reader: gpu::ReaderOptions,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let agent = bind_with(config.clone(), reader, clock).await?;
    eprintln!(
        "gpubook-agent {}: serving {} ({}) on {}",
        env!("CARGO_PKG_VERSION"),
        config.server_name,
        agent.ctx.source,
        config.socket.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    agent
        .run(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await;
    eprintln!("gpubook-agent: stopped");
    Ok(())
}
