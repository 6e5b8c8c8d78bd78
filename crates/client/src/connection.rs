//! One connection to an agent: handshake, requests matched to answers by id, pushed frames.
//!
//! Trust: a local socket is talked to only when root (the system agent) or this very user
//! serves it, as the kernel says of the connected socket (`SO_PEERCRED`), which a process that
//! listens in the agent's place cannot fake; anyone else's socket is refused before a byte is
//! sent ([`ForeignAgent`]). A socket in a `/tmp/gpubook-UID` fallback is also refused unless
//! that directory is UID's own with mode 0700.

use gpubook_proto::{
    read_frame, write_frame, AgentFrame, BookingsResponse, ClientFrame, ErrorBody, ErrorKind,
    Event, FrameError, Hello, ListRequest, LogPiece, Readings, Request, Response, SubscribeRequest,
    Welcome, PROTOCOL_MAJOR, PROTOCOL_MINOR,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

/// Why a request got no answer from the agent, or the agent's refusal.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The agent's socket could not be reached, or was refused before anything was sent to
    /// it: served by someone else ([`ClientError::foreign_agent`]), or in a directory
    /// another user could have made (`error` is of kind `PermissionDenied` then).
    #[error("{}", unreachable_message(path, error))]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(ErrorBody),
    /// The connection dropped before the answer came.
    #[error("connection to the agent lost before it answered; the request may or may not have been applied, check with `gpubook ls`")]
    ConnectionLost,
    /// The agent sent something this client cannot read.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An agent's socket served by a uid that is neither root nor this user's: someone may be
/// posing as the agent (having made the socket's directory first, or set `GPUBOOK_SOCKET`),
/// so nothing was sent to it. Carried by [`ClientError::Unreachable`]; see
/// [`ClientError::foreign_agent`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("refusing the gpubook agent at {}: its socket is served by uid {uid}, not by root (the system agent) or by you (uid {me}); another user may be posing as the agent, so nothing was sent to it. Remove that socket (or its directory) and start your agent again", path.display())]
pub struct ForeignAgent {
    /// The socket.
    pub path: PathBuf,
    /// The uid serving it, as the kernel reports the peer of the connected socket.
    pub uid: u32,
    /// This client's (effective) uid.
    pub me: u32,
}

fn unreachable_message(path: &Path, error: &std::io::Error) -> String {
    // A refusal says what to do itself; "is it running" would send the person the wrong way.
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        return format!(
            "cannot use the gpubook agent at {}: {error}",
            path.display()
        );
    }
    format!(
        "cannot reach the gpubook agent at {}: {error}. Is it running? Start one with `gpubook-agent serve --gpus sim:4`",
        path.display()
    )
}

impl ClientError {
    /// The socket's server this client refused to talk to, if that is why it failed.
    pub fn foreign_agent(&self) -> Option<&ForeignAgent> {
        match self {
            ClientError::Unreachable { error, .. } => error
                .get_ref()
                .and_then(|e| e.downcast_ref::<ForeignAgent>()),
            _ => None,
        }
    }

    /// The error as `{kind, message}`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Unreachable { error, .. }
                if error.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::NotAllowed
            }
            ClientError::Unreachable { .. } => ErrorKind::Unavailable,
            ClientError::Agent(e) => e.kind,
            ClientError::ConnectionLost => ErrorKind::ConnectionLost,
            ClientError::Protocol(_) => ErrorKind::Malformed,
        }
    }
}

/// A frame the agent pushed, not an answer.
// Each lives for one hand-over from the reader to the consumer; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Pushed {
    /// A durable event.
    Event(Event),
    /// Live readings.
    Readings(Readings),
    /// The agent reported a problem with the connection.
    Error(ErrorBody),
    /// More of a job's log this connection follows (protocol 1.1).
    Log(LogPiece),
}

/// Requests waiting for their answer; `None` once the connection is gone, so a request made
/// after that fails at once instead of waiting forever.
type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Response, ClientError>>>>>>;

/// A live connection. Cheap to share by reference; requests may run concurrently.
#[derive(Debug)]
pub struct Connection {
    /// What the agent said in the handshake: server, user, role.
    welcome: Welcome,
    /// Frames to the writer task.
    out: mpsc::Sender<ClientFrame>,
    /// Requests waiting for their answer. A plain mutex: never held across an await.
    waiters: Waiters,
    /// The next request id.
    next_id: AtomicU64,
    /// Pushed frames, taken once by [`Connection::subscribe`].
    pushed: Mutex<Option<mpsc::UnboundedReceiver<Pushed>>>,
}

impl Connection {
    /// Connects to the agent's Unix socket at `path` and says hello, once the kernel says root
    /// or this user serves it (see the module's trust rule).
    pub async fn unix(path: &Path, client: &str) -> Result<Self, ClientError> {
        Self::unix_checked(path, client, None).await
    }

    /// [`Connection::unix`] to an agent known to run as `agent_uid`, which is trusted besides
    /// root and this user: root looking at a person's own agent, say.
    pub async fn unix_served_by(
        path: &Path,
        client: &str,
        agent_uid: u32,
    ) -> Result<Self, ClientError> {
        Self::unix_checked(path, client, Some(agent_uid)).await
    }

    async fn unix_checked(
        path: &Path,
        client: &str,
        also: Option<u32>,
    ) -> Result<Self, ClientError> {
        let unreachable = |error| ClientError::Unreachable {
            path: path.to_path_buf(),
            error,
        };
        #[cfg(not(unix))]
        {
            let _ = (client, also);
            Err(unreachable(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "an agent's local socket exists on Linux (and other Unix systems) only; \
                 reach the agent over SSH instead (gpubook --server NAME)",
            )))
        }
        #[cfg(unix)]
        {
            match gpubook_proto::paths::check_socket_dir(path) {
                // No directory, no socket: connecting says so in the usual words.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(unreachable(e)),
                _ => {}
            }
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(unreachable)?;
            let uid = stream.peer_cred().map_err(unreachable)?.uid();
            check_agent_uid(path, uid, effective_uid(), also).map_err(|f| {
                unreachable(std::io::Error::new(std::io::ErrorKind::PermissionDenied, f))
            })?;
            let (rd, wr) = stream.into_split();
            Self::over(rd, wr, client).await
        }
    }

    /// Says hello over any byte stream (a socket, SSH stdio) and starts the reader.
    pub async fn over<R, W>(mut rd: R, mut wr: W, client: &str) -> Result<Self, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let hello = ClientFrame::Hello(Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            client: client.to_string(),
        });
        write_frame(&mut wr, &hello).await.map_err(lost)?;
        let body = read_frame(&mut rd)
            .await
            .map_err(lost)?
            .ok_or(ClientError::ConnectionLost)?;
        let welcome = match serde_json::from_slice::<AgentFrame>(&body) {
            Ok(AgentFrame::Welcome(w)) => w,
            Ok(AgentFrame::Error { error, .. }) => return Err(ClientError::Agent(error)),
            Ok(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )))
            }
            Err(e) => return Err(ClientError::Protocol(format!("unreadable welcome: {e}"))),
        };
        let (out, mut out_rx) = mpsc::channel::<ClientFrame>(256);
        tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                if write_frame(&mut wr, &f).await.is_err() {
                    return;
                }
            }
        });
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(rd, waiters.clone(), push_tx));
        Ok(Self {
            welcome,
            out,
            waiters,
            next_id: AtomicU64::new(1),
            pushed: Mutex::new(Some(push_rx)),
        })
    }

    /// Who the agent says we are, and where.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends `req` and waits for its answer.
    pub async fn request(&self, req: Request) -> Result<Response, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().unwrap().as_mut() {
            Some(w) => w.insert(id, tx),
            None => return Err(ClientError::ConnectionLost),
        };
        if self
            .out
            .send(ClientFrame::Request { id, body: req })
            .await
            .is_err()
        {
            if let Some(w) = self.waiters.lock().unwrap().as_mut() {
                w.remove(&id);
            }
            return Err(ClientError::ConnectionLost);
        }
        rx.await.unwrap_or(Err(ClientError::ConnectionLost))
    }

    /// Every booking `req` matches, following the agent's pages.
    pub async fn list_all(&self, mut req: ListRequest) -> Result<BookingsResponse, ClientError> {
        let mut all: Option<BookingsResponse> = None;
        loop {
            let page = match self.request(Request::List(req.clone())).await? {
                Response::Bookings(b) => b,
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected bookings, got {other:?}"
                    )))
                }
            };
            let next = page.next;
            match &mut all {
                None => all = Some(page),
                Some(a) => a.bookings.extend(page.bookings),
            }
            match next {
                Some(cursor) => req.after = Some(cursor),
                None => break,
            }
        }
        let mut all = all.expect("at least one page was read");
        all.next = None;
        Ok(all)
    }

    /// Subscribes to events after `after` (all missed ones, then live ones) and, if asked,
    /// live readings. Returns the agent's latest event number and the stream.
    pub async fn subscribe(
        &self,
        after: Option<u64>,
        readings: bool,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Pushed>), ClientError> {
        let rx = self
            .pushed
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| ClientError::Protocol("already subscribed".into()))?;
        match self
            .request(Request::Subscribe(SubscribeRequest { after, readings }))
            .await?
        {
            Response::Subscribed(s) => Ok((s.latest, rx)),
            other => Err(ClientError::Protocol(format!(
                "expected subscribed, got {other:?}"
            ))),
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    waiters: Waiters,
    pushed: mpsc::UnboundedSender<Pushed>,
) {
    loop {
        let body = match read_frame(&mut rd).await {
            Ok(Some(b)) => b,
            _ => break,
        };
        let frame: AgentFrame = match serde_json::from_slice(&body) {
            Ok(f) => f,
            // A frame type from a newer agent: ignore it (see the protocol's rules).
            Err(_) => continue,
        };
        match frame {
            AgentFrame::Response { id, body } => answer(&waiters, id, Ok(body)),
            AgentFrame::Error {
                id: Some(id),
                error,
            } => answer(&waiters, id, Err(ClientError::Agent(error))),
            AgentFrame::Error { id: None, error } => {
                let _ = pushed.send(Pushed::Error(error));
            }
            AgentFrame::Event(e) => {
                let _ = pushed.send(Pushed::Event(e));
            }
            AgentFrame::Readings(r) => {
                let _ = pushed.send(Pushed::Readings(r));
            }
            AgentFrame::Log(l) => {
                let _ = pushed.send(Pushed::Log(l));
            }
            AgentFrame::Welcome(_) => {}
        }
    }
    // Everyone still waiting learns the connection is gone; dropping the senders says so.
    waiters.lock().unwrap().take();
}

fn answer(waiters: &Waiters, id: u64, r: Result<Response, ClientError>) {
    let tx = waiters.lock().unwrap().as_mut().and_then(|w| w.remove(&id));
    if let Some(tx) = tx {
        let _ = tx.send(r);
    }
}

/// This process's effective uid: the one an agent sees on the socket.
#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the agent serving `path` as `uid` may be talked to by `me`: root's, one's own, or
/// `also` (an agent the caller named); else the [`ForeignAgent`] refusal.
pub fn check_agent_uid(
    path: &Path,
    uid: u32,
    me: u32,
    also: Option<u32>,
) -> Result<(), ForeignAgent> {
    if gpubook_proto::paths::trusted_agent_uid(uid, me) || also == Some(uid) {
        return Ok(());
    }
    Err(ForeignAgent {
        path: path.to_path_buf(),
        uid,
        me,
    })
}

fn lost(e: FrameError) -> ClientError {
    match e {
        FrameError::Io(_) | FrameError::Truncated => ClientError::ConnectionLost,
        other => ClientError::Protocol(other.to_string()),
    }
}
