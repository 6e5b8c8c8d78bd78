//! The socket server: binds the agent's Unix socket, establishes who each peer is from the
//! socket (`SO_PEERCRED`), runs the handshake, reads frames into typed requests, answers them,
//! and streams events to subscribers.

mod bounds;
mod roles;
mod state_dir;
mod streams;

pub use bounds::{Limits, IDLE_TIMEOUT, MAX_CONNECTIONS_PER_UID, MAX_ERROR_MESSAGE, OUTBOX_BYTES};
use bounds::{Outbox, PerUid};
use roles::Roles;
use state_dir::{bind_socket, lock_state_dir, tighten_state_dir};
use streams::{follow_log, subscribe};

use crate::clock::Clock;
use crate::gpu::{self, GpuReader, Source};
use crate::handler::{Caller, Context};
use crate::identity::{self, Identity};
use crate::request::parse_request;
use crate::state::State;
use crate::store::Store;
use anyhow::Context as _;
use gpubook_core::{Actor, BookingId, Policy};
use gpubook_proto::{
    read_frame, write_frame, AgentFrame, ClientFrame, ErrorBody, ErrorKind, FrameError, Readings,
    Request, Response, Welcome, PROTOCOL_MAJOR,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

/// Most connections at once; more wait for a free place.
const MAX_CONNECTIONS: usize = 1024;
/// How long a closing connection waits for its last frames to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection refused for its uid's cap waits for the hello, so the refusal is
/// its answer: short, so refused connections cannot hold the shared places.
const REFUSAL_WAIT: Duration = Duration::from_millis(100);
/// How long a new connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Bounds on what clients may hold.
    limits: Limits,
    /// Watches the readings: history, usage, intruders, idleness.
    watcher: Arc<crate::watch::Watch>,
    /// Stages data before slots and saves results after jobs.
    transfers: Arc<crate::transfer::Transfers>,
    /// Held for the agent's life: one agent per state directory.
    _lock: std::fs::File,
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
    // Everything the agent writes from here on is its own alone (bookings hold commands and
    // their environment); jobs get the usual mask back when they start.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "cannot create state directory {}",
            config.state_dir.display()
        )
    })?;
    let lock = lock_state_dir(&config.state_dir)?;
    tighten_state_dir(&config.state_dir)?;
    let policy_text = match &config.policy {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read policy file {}", p.display()))?,
        ),
        None => None,
    };
    let policy = match (&config.policy, &policy_text) {
        (Some(p), Some(text)) => {
            Policy::from_toml(text).with_context(|| format!("policy file {}", p.display()))?
        }
        _ => Policy::default(),
    };
    let mail = crate::notify::mail_from_policy(policy_text.as_deref()).with_context(|| {
        format!(
            "policy file {}",
            config.policy.clone().unwrap_or_default().display()
        )
    })?;
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
    let secret = store.job_secret()?;
    let mut state = State::load(store, gpus, policy.clone(), clock)?;
    crate::slurm::hold_in_slurm(&mut state, &config.gpus)?;
    let state = Arc::new(state);
    let watcher = Arc::new(crate::watch::Watch::new(
        state.clone(),
        config.sample_interval,
        crate::watch::may_stop_processes(source),
    ));
    let jobs = Arc::new(crate::jobs::Jobs::new(
        state.clone(),
        instance,
        secret,
        &config.state_dir,
    ));
    let transfers = Arc::new(crate::transfer::Transfers::new(
        state.clone(),
        config.server_name.clone(),
        &config.state_dir,
        jobs.stages(),
    ));
    let notify = Arc::new(crate::notify::Notify::open(
        &config.state_dir.join("agent.db"),
        state.clone(),
        config.server_name.clone(),
        mail,
    )?);
    let series = Arc::new(crate::series::Series::open(
        &config.state_dir.join("agent.db"),
    )?);
    let listener = bind_socket(&config.socket, config.shared).await?;
    let (readings_tx, readings) = watch::channel(None);
    Ok(Agent {
        ctx: Arc::new(Context {
            state,
            server: config.server_name.clone(),
            source,
            readings,
            jobs,
            measuring: Default::default(),
            notify,
            series,
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
        limits: Limits::default(),
        watcher,
        transfers,
        _lock: lock,
    })
}

impl Agent {
    /// Sets the bounds on connections (tests and the benchmark use smaller ones).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

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
        let state = &self.ctx.state;
        let timer = tokio::spawn(crate::timer::run(state.clone(), stopped(&stop_tx)));
        let holds = tokio::spawn(crate::slurm::keep_holds(state.clone(), stopped(&stop_tx)));
        let jobs = if self.ctx.source == "slurm" {
            // Slurm runs the jobs: gpubook submits and follows them.
            let follow = crate::slurm::runner::follow(state.clone(), stopped(&stop_tx));
            tokio::spawn(follow)
        } else {
            tokio::spawn(self.ctx.jobs.clone().run(stopped(&stop_tx)))
        };
        let transfers = tokio::spawn(self.transfers.clone().run(stopped(&stop_tx)));
        let sampler = tokio::spawn(crate::sampler::run(
            self.reader.clone(),
            self.sample_interval,
            self.readings_tx,
            (self.watcher.clone(), self.ctx.series.clone()),
            state.clone(),
            stopped(&stop_tx),
        ));
        let watcher = tokio::spawn(crate::watch::run(self.watcher.clone(), stopped(&stop_tx)));
        let notify = tokio::spawn(self.ctx.notify.clone().run(stopped(&stop_tx)));
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let per_uid = Arc::new(PerUid::default());
        let mut last_accept_error: Option<std::time::Instant> = None;
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
                        // Out of descriptors, say: said once a minute, not twenty times a
                        // second, while the connection waits in the backlog.
                        if last_accept_error.is_none_or(|t: std::time::Instant| {
                            t.elapsed() >= Duration::from_secs(60)
                        }) {
                            eprintln!("gpubook-agent: accept failed: {e}");
                            last_accept_error = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let ctx = self.ctx.clone();
            let roles = self.roles.clone();
            let stop = stopped(&stop_tx);
            let (limits, per_uid) = (self.limits, per_uid.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection(ctx, roles, limits, per_uid, stream) => {}
                    _ = stop => {}
                }
                drop(permit);
            });
        }
        let _ = stop_tx.send(());
        let _ = tokio::join!(timer, holds, sampler, jobs, watcher, transfers, notify);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client connection, from handshake to close.
async fn connection(
    ctx: Arc<Context>,
    roles: Arc<Roles>,
    limits: Limits,
    per_uid: Arc<PerUid>,
    stream: UnixStream,
) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            eprintln!("gpubook-agent: cannot read peer credentials: {e}");
            return;
        }
    };
    let Some(_place) = per_uid.enter(uid, limits.per_uid) else {
        let mut stream = stream;
        let refusal = error(
            None,
            ErrorKind::Unavailable,
            format!(
                "too many connections from uid {uid}: at most {} at once; close some and try \
                 again",
                limits.per_uid
            ),
        );
        // Said as the answer to the hello, so the client shows it rather than a lost line.
        let _ = tokio::time::timeout(REFUSAL_WAIT, read_frame(&mut stream)).await;
        let _ = tokio::time::timeout(HELLO_TIMEOUT, write_frame(&mut stream, &refusal)).await;
        return;
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
    let (out, mut rx) = Outbox::new(limits.outbox_bytes);
    let freed = out.freed.clone();
    let mut writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some((bytes, room)) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
            drop(room);
            freed.notify_waiters();
        }
    });
    // Waits for what is queued to be written, but not for a client that does not read.
    let close = |writer: tokio::task::JoinHandle<()>, out: Outbox| async move {
        drop(out);
        let abort = writer.abort_handle();
        if tokio::time::timeout(FLUSH_TIMEOUT, writer).await.is_err() {
            abort.abort();
        }
    };

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
            slurm: ctx.source == "slurm",
        }),
        Ok((Err(error), _)) => {
            let _ = out.push(&AgentFrame::Error { id: None, error });
            None
        }
        Err(Some(frame)) => {
            let _ = out.push(&frame);
            None
        }
        Err(None) => None,
    };
    let Some(welcome) = welcome else {
        return close(writer, out).await;
    };
    if out.push(&AgentFrame::Welcome(welcome.clone())).is_err() {
        return close(writer, out).await;
    }
    // Frames are read by a task of their own, so that waiting for one can be given up
    // (behind, idle) without cutting a frame in half: `read_frame` is not cancel-safe.
    let (frames_tx, mut frames) = mpsc::channel(1);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut rd).await;
            let last = !matches!(r, Ok(Some(_)));
            if frames_tx.send(r).await.is_err() || last {
                return;
            }
        }
    });

    let mut subscription: Option<tokio::task::JoinHandle<()>> = None;
    // The job logs this connection follows: one task per booking.
    let mut followers: HashMap<BookingId, tokio::task::JoinHandle<()>> = HashMap::new();
    let behind = out.behind.clone();
    let mut writer_ended = false;
    // Silence is counted from the last request, and looked at again when it has lasted
    // `idle`: a connection that followed something then (a log that has since ended) but
    // follows nothing now is closed then.
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let idle = tokio::time::sleep_until(quiet_since + limits.idle);
        let read = tokio::select! {
            r = frames.recv() => r.unwrap_or(Ok(None)),
            _ = behind.notified() => {
                eprintln!(
                    "gpubook-agent: {} (uid {uid}) let more than {} bytes of answers pile up \
                     unread; disconnected",
                    caller.actor.user, limits.outbox_bytes
                );
                writer.abort();
                break;
            }
            _ = idle => {
                followers.retain(|_, f| !f.is_finished());
                let follows_nothing =
                    subscription.as_ref().is_none_or(|s| s.is_finished()) && followers.is_empty();
                if !follows_nothing {
                    quiet_since = tokio::time::Instant::now();
                    continue;
                }
                let _ = out.push(&error(
                    None,
                    ErrorKind::Unavailable,
                    format!(
                        "closed: no request for {} s and nothing followed",
                        limits.idle.as_secs()
                    ),
                ));
                break;
            }
            _ = &mut writer => {
                writer_ended = true;
                break;
            }
        };
        quiet_since = tokio::time::Instant::now();
        let body = match read {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(FrameError::Truncated) | Err(FrameError::Io(_)) => break,
            Err(e) => {
                // The stream cannot be trusted past a bad length: say why, then close.
                let _ = out.push(&frame_error(&e));
                break;
            }
        };
        let (id, req) = match parse_request(&body) {
            Ok(x) => x,
            Err((id, e)) => {
                if out.push(&AgentFrame::Error { id, error: e }).is_err() {
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
                    welcome.minor,
                    id,
                    s,
                    out.clone(),
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
                    followers.insert(
                        booking,
                        tokio::spawn(follow_log(ctx.clone(), booking, piece.next, out.clone())),
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
        if out.push(&frame).is_err() {
            continue;
        }
    }
    if let Some(s) = subscription {
        s.abort();
    }
    for f in followers.into_values() {
        f.abort();
    }
    reader.abort();
    if !writer_ended {
        close(writer, out).await;
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
    serve_limited(config, reader, Limits::default(), clock).await
}

/// [`serve_with`], with bounds on connections other than the defaults.
pub async fn serve_limited(
    config: AgentConfig,
    reader: gpu::ReaderOptions,
    limits: Limits,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let mut agent = bind_with(config.clone(), reader, clock).await?;
    agent.set_limits(limits);
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
