//! The session thread: one `std::thread` per SSH connection owns the `ssh2::Session` and all
//! its channels. Async callers send it [`Cmd`]s over a channel and nudge it through a wake
//! socket; it connects and logs in with libssh2 blocking (with timeouts), then switches
//! libssh2 to non-blocking and serves every channel in one loop that `poll`s the SSH socket,
//! the wake socket and the keepalive timer.
//!
//! A jump host's connection is the same thing: a direct-tcpip channel on the hop, pumped into
//! one end of a local socket pair whose other end is the next session's transport.

mod channel;
mod login;
mod sock;
mod worker;

pub use channel::{ChannelReader, ChannelWriter};
pub(crate) use login::phase_error;

use super::{Options, Output, SshError, SshHost};
use login::login;
use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use worker::Worker;

/// How long connecting and each blocking step may take without ConnectTimeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalive interval without ServerAliveInterval.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Chunks of output in flight to a reader; beyond that the channel is not read, so the SSH
/// window closes and the server waits.
const READ_QUEUE: usize = 32;
/// Standard error kept per channel, for error messages.
const STDERR_LIMIT: usize = 64 * 1024;
/// libssh2's "would block".
const EAGAIN: i32 = -37;

/// A handle to the dedicated thread that owns one `ssh2::Session` and its channels. Clones
/// share the connection; it closes when the last clone and the last channel are gone.
#[derive(Clone, Debug)]
pub struct Session {
    /// Talks to the thread.
    handle: Handle,
    /// The jump host sessions this one runs through, kept alive with it.
    _hops: Arc<Vec<Session>>,
}

/// What the async side holds: the command queue, the wake socket, the lost flag.
#[derive(Clone, Debug)]
struct Handle {
    /// The server's name, for errors.
    server: Arc<str>,
    /// Commands to the thread.
    tx: std_mpsc::Sender<Cmd>,
    /// Writing a byte wakes the thread from `poll`.
    wake: Arc<sock::Pair>,
    /// Set by the thread when the connection dropped.
    lost: Arc<LostFlag>,
}

/// Set by the session thread when the connection dropped, with why.
#[derive(Debug, Default)]
struct LostFlag {
    /// Whether it dropped.
    flag: AtomicBool,
    /// Why, for the error message.
    why: Mutex<String>,
}

impl LostFlag {
    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn set(&self, why: String) {
        *self.why.lock().unwrap() = why;
        self.flag.store(true, Ordering::Release);
    }
}

/// libssh2's error with its code, for messages (the socket errors in words: libssh2's own
/// message for them is often just "Unexpected error").
fn describe(e: &ssh2::Error) -> String {
    match e.code() {
        ssh2::ErrorCode::Session(-7) => "sending on the socket failed (libssh2 error -7)".into(),
        ssh2::ErrorCode::Session(-13) => {
            "the server closed the connection (libssh2 error -13)".into()
        }
        ssh2::ErrorCode::Session(-43) => {
            "the connection was reset or broke: receiving failed (libssh2 error -43)".into()
        }
        ssh2::ErrorCode::Session(c) => format!("{} (libssh2 error {c})", e.message()),
        ssh2::ErrorCode::SFTP(c) => format!("{} (SFTP error {c})", e.message()),
    }
}

impl Handle {
    fn send(&self, cmd: Cmd) -> Result<(), SshError> {
        if self.lost.is_set() {
            return Err(self.lost_error());
        }
        self.tx.send(cmd).map_err(|_| self.lost_error())?;
        // A full wake socket already has a wake-up pending.
        let _ = (&*self.wake).write(&[1]);
        Ok(())
    }

    fn lost_error(&self) -> SshError {
        let why = self.lost.why.lock().unwrap().clone();
        SshError::Lost {
            server: self.server.to_string(),
            reason: if why.is_empty() {
                "the session ended".into()
            } else {
                why
            },
        }
    }

    /// The error for a failed read or write on a channel: the session's loss when it is
    /// lost, else what the channel said.
    fn io_error(&self, e: std::io::Error) -> SshError {
        if self.lost.is_set() {
            self.lost_error()
        } else {
            SshError::Lost {
                server: self.server.to_string(),
                reason: e.to_string(),
            }
        }
    }
}

/// What a channel is for.
#[derive(Debug)]
enum Open {
    /// An exec channel running this command.
    Exec(String),
    /// A direct-tcpip channel to host:port, for a jump.
    Tcp(String, u16),
    /// A direct-streamlocal channel to a Unix socket on the server.
    Unix(String),
}

/// A message to the session thread.
enum Cmd {
    /// Open a channel; the answer is the channel's id and its shared state.
    Open(Open, oneshot::Sender<Result<Opened, SshError>>),
    /// Bytes for a channel's standard input.
    Write(u64, Vec<u8>),
    /// No more input for this channel.
    Eof(u64),
    /// The reader is gone: nobody wants the output any more.
    DropReader(u64),
}

/// An opened channel as the async side sees it.
struct Opened {
    /// The channel's id in the thread.
    id: u64,
    /// Its output.
    rx: mpsc::Receiver<Vec<u8>>,
    /// Its exit status and standard error.
    shared: Arc<Shared>,
}

/// What the thread tells a channel's reader besides its output.
#[derive(Debug, Default)]
struct Shared {
    /// Standard error (the first [`STDERR_LIMIT`] bytes).
    stderr: Mutex<Vec<u8>>,
    /// The exit status, once the command ended.
    status: Mutex<Option<i32>>,
    /// Why the channel failed, when it did (the session may live on).
    failed: Mutex<Option<String>>,
}

impl Session {
    /// Connects (through jump hosts), checks the host key and logs in.
    pub async fn connect(target: &SshHost, opts: &Options) -> Result<Session, SshError> {
        Box::pin(connect_inner(target.clone(), opts.clone())).await
    }

    /// The server's name as given.
    pub fn server(&self) -> &str {
        &self.handle.server
    }

    /// Whether the connection dropped.
    pub fn is_lost(&self) -> bool {
        self.handle.lost.is_set()
    }

    async fn open(&self, what: Open) -> Result<(ChannelReader, ChannelWriter), SshError> {
        let (tx, rx) = oneshot::channel();
        self.handle.send(Cmd::Open(what, tx))?;
        let opened = rx.await.map_err(|_| self.handle.lost_error())??;
        Ok(channel::pair(opened, &self.handle))
    }

    /// Runs `command` with its standard input and output as a byte stream. Its standard
    /// error and exit status are on the reader once the output ends.
    pub async fn exec_stream(
        &self,
        command: &str,
    ) -> Result<(ChannelReader, ChannelWriter), SshError> {
        self.open(Open::Exec(command.to_string())).await
    }

    /// Runs `command`, feeding it `stdin`; waits for it to end.
    pub async fn run(&self, command: &str, stdin: &[u8]) -> Result<Output, SshError> {
        let (mut rd, mut wr) = self.exec_stream(command).await?;
        let lost = |e| self.handle.io_error(e);
        if !stdin.is_empty() {
            wr.write_all(stdin).await.map_err(lost)?;
        }
        wr.shutdown().await.map_err(lost)?;
        let mut stdout = Vec::new();
        rd.read_to_end(&mut stdout).await.map_err(lost)?;
        Ok(Output {
            status: rd.exit_status().unwrap_or(-1),
            stdout,
            stderr: rd.stderr(),
        })
    }

    /// A direct-streamlocal channel to the Unix socket `path` on the server (sshd connects to
    /// it as the logged-in user). Refused where the server does not allow it
    /// (AllowStreamLocalForwarding) or nothing listens there.
    pub async fn direct_streamlocal(
        &self,
        path: &str,
    ) -> Result<(ChannelReader, ChannelWriter), SshError> {
        self.open(Open::Unix(path.to_string())).await
    }

    /// A direct-tcpip channel from the server to `host:port`.
    pub async fn direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(ChannelReader, ChannelWriter), SshError> {
        self.open(Open::Tcp(host.to_string(), port)).await
    }
}

async fn connect_inner(target: SshHost, opts: Options) -> Result<Session, SshError> {
    if target.proxy_jump.is_empty() {
        let t = target.clone();
        let transport = tokio::task::spawn_blocking(move || tcp(&t))
            .await
            .map_err(|e| SshError::Protocol {
                server: target.spec.clone(),
                what: "connecting".into(),
                detail: e.to_string(),
            })??;
        return start(target, opts, Transport::Tcp(transport), Vec::new()).await;
    }
    // The first hop with its own jumps, then each next hop through the one before.
    let mut hops: Vec<Session> = Vec::new();
    let mut prev = Session::connect(&target.proxy_jump[0], &opts).await?;
    for hop in &target.proxy_jump[1..] {
        let next = through(&prev, hop, &opts).await?;
        hops.push(prev);
        prev = next;
    }
    let session = through(&prev, &target, &opts).await;
    hops.push(prev);
    let mut s = session?;
    let mut all: Vec<Session> = hops;
    all.extend(Arc::try_unwrap(std::mem::take(&mut s._hops)).unwrap_or_default());
    s._hops = Arc::new(all);
    Ok(s)
}

/// Connects to `target` through a direct-tcpip channel on `hop`.
async fn through(hop: &Session, target: &SshHost, opts: &Options) -> Result<Session, SshError> {
    let (mut rd, mut wr) =
        hop.direct_tcpip(&target.host, target.port)
            .await
            .map_err(|e| match e {
                SshError::Protocol { detail, .. } => SshError::Unreachable {
                    server: target.spec.clone(),
                    addr: format!("{}:{} via {}", target.host, target.port, hop.server()),
                    detail,
                },
                other => other,
            })?;
    let (ours, theirs) = sock::pair().map_err(|e| SshError::Protocol {
        server: target.spec.clone(),
        what: "making a socket pair for the jump".into(),
        detail: e.to_string(),
    })?;
    ours.set_nonblocking(true).ok();
    let ours = sock::AsyncPair::from_std(ours).map_err(|e| SshError::Protocol {
        server: target.spec.clone(),
        what: "making a socket pair for the jump".into(),
        detail: e.to_string(),
    })?;
    let (mut ord, mut owr) = ours.into_split();
    tokio::spawn(async move {
        let up = async {
            let _ = tokio::io::copy(&mut ord, &mut wr).await;
            let _ = wr.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut rd, &mut owr).await;
            let _ = owr.shutdown().await;
        };
        tokio::join!(up, down);
    });
    start(
        target.clone(),
        opts.clone(),
        Transport::Pair(theirs),
        Vec::new(),
    )
    .await
}

/// The socket the SSH session runs over.
enum Transport {
    /// Straight to the server.
    Tcp(TcpStream),
    /// Through a jump host's channel: one end of a local socket pair.
    Pair(sock::Pair),
}

fn timeout_of(t: &SshHost) -> Duration {
    t.connect_timeout.unwrap_or(DEFAULT_TIMEOUT)
}

/// Opens the TCP connection, within ConnectTimeout.
fn tcp(t: &SshHost) -> Result<TcpStream, SshError> {
    let addr = format!("{}:{}", t.host, t.port);
    let addrs: Vec<_> = match (t.host.as_str(), t.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            let looks_like_alias = !t.host.contains('.') && !t.host.contains(':');
            return Err(if looks_like_alias && t.host == t.spec {
                SshError::UnknownAlias {
                    server: t.spec.clone(),
                    detail: e.to_string(),
                }
            } else {
                SshError::Unreachable {
                    server: t.spec.clone(),
                    addr,
                    detail: format!("the host name does not resolve: {e}"),
                }
            });
        }
    };
    let limit = timeout_of(t);
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, limit) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Err(SshError::Timeout {
                server: t.spec.clone(),
                what: format!("TCP connection to {addr}"),
                secs: limit.as_secs(),
            })
        }
        Some(e) => Err(SshError::Unreachable {
            server: t.spec.clone(),
            addr,
            detail: e.to_string(),
        }),
        None => Err(SshError::Unreachable {
            server: t.spec.clone(),
            addr,
            detail: "no address".into(),
        }),
    }
}

/// Starts the thread, which logs in and then serves; answers once logged in.
async fn start(
    target: SshHost,
    opts: Options,
    transport: Transport,
    hops: Vec<Session>,
) -> Result<Session, SshError> {
    let (wake_a, wake_b) = sock::pair().map_err(|e| SshError::Protocol {
        server: target.spec.clone(),
        what: "making the wake socket".into(),
        detail: e.to_string(),
    })?;
    wake_a.set_nonblocking(true).ok();
    wake_b.set_nonblocking(true).ok();
    let (tx, cmds) = std_mpsc::channel();
    let lost = Arc::new(LostFlag::default());
    let (ready_tx, ready_rx) = oneshot::channel();
    let server: Arc<str> = Arc::from(target.spec.as_str());
    let thread_lost = lost.clone();
    std::thread::Builder::new()
        .name(format!("ssh {}", target.spec))
        .spawn(move || {
            let (sess, fd, _keep) = match login(&target, &opts, transport) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let keepalive = target.server_alive_interval.unwrap_or(DEFAULT_KEEPALIVE);
            Worker::new(
                target.spec.clone(),
                sess,
                fd,
                wake_b,
                cmds,
                thread_lost,
                Instant::now() + keepalive,
            )
            .serve();
        })
        .map_err(|e| SshError::Protocol {
            server: server.to_string(),
            what: "starting the session thread".into(),
            detail: e.to_string(),
        })?;
    ready_rx.await.map_err(|_| SshError::Lost {
        server: server.to_string(),
        reason: "the session thread ended while logging in".into(),
    })??;
    Ok(Session {
        handle: Handle {
            server,
            tx,
            wake: Arc::new(wake_a),
            lost,
        },
        _hops: Arc::new(hops),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_says_why() {
        let (wake, _other) = sock::pair().unwrap();
        let (tx, _rx) = std_mpsc::channel();
        let handle = Handle {
            server: Arc::from("lab1"),
            tx,
            wake: Arc::new(wake),
            lost: Arc::new(LostFlag::default()),
        };
        let reset = ssh2::Error::from_errno(ssh2::ErrorCode::Session(-43));
        handle
            .lost
            .set(format!("opening a channel: {}", describe(&reset)));
        let e = handle.send(Cmd::Eof(1)).unwrap_err();
        assert!(
            matches!(&e, SshError::Lost { server, .. } if server == "lab1"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("lab1") && msg.contains("opening a channel") && msg.contains("reset"),
            "{msg}"
        );
        // A channel's own failure on a live session is said as it is.
        let io = std::io::Error::new(ErrorKind::ConnectionAborted, "the channel failed: x");
        let fresh = Handle {
            lost: Arc::new(LostFlag::default()),
            ..handle.clone()
        };
        assert!(fresh
            .io_error(io)
            .to_string()
            .contains("the channel failed: x"));
        // Once lost, the session's reason wins.
        let io = std::io::Error::new(ErrorKind::ConnectionAborted, "x");
        assert!(handle.io_error(io).to_string().contains("reset"));
    }
}
