//! The session thread: one `std::thread` per SSH connection owns the `ssh2::Session` and all
//! its channels. Async callers send it [`Cmd`]s over a channel and nudge it through a wake
//! socket; it connects and logs in with libssh2 blocking (with timeouts), then switches
//! libssh2 to non-blocking and serves every channel in one loop that `poll`s the SSH socket,
//! the wake socket and the keepalive timer.
//!
//! A jump host's connection is the same thing: a direct-tcpip channel on the hop, pumped into
//! one end of a local socket pair whose other end is the next session's transport.

use super::known_hosts::{self, HostKey, Verdict};
use super::{auth, Options, Output, SshError, Target};
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};

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
    wake: Arc<UnixStream>,
    /// Set by the thread when the connection dropped.
    lost: Arc<AtomicBool>,
}

impl Handle {
    fn send(&self, cmd: Cmd) -> Result<(), SshError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost_error());
        }
        self.tx.send(cmd).map_err(|_| self.lost_error())?;
        // A full wake socket already has a wake-up pending.
        let _ = (&*self.wake).write(&[1]);
        Ok(())
    }

    fn lost_error(&self) -> SshError {
        SshError::Lost {
            server: self.server.to_string(),
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
    pub async fn connect(target: &Target, opts: &Options) -> Result<Session, SshError> {
        Box::pin(connect_inner(target.clone(), opts.clone())).await
    }

    /// The server's name as given.
    pub fn server(&self) -> &str {
        &self.handle.server
    }

    /// Whether the connection dropped.
    pub fn is_lost(&self) -> bool {
        self.handle.lost.load(Ordering::Acquire)
    }

    async fn open(&self, what: Open) -> Result<(ChannelReader, ChannelWriter), SshError> {
        let (tx, rx) = oneshot::channel();
        self.handle.send(Cmd::Open(what, tx))?;
        let opened = rx.await.map_err(|_| self.handle.lost_error())??;
        Ok((
            ChannelReader {
                id: opened.id,
                handle: self.handle.clone(),
                rx: opened.rx,
                shared: opened.shared,
                pending: Vec::new(),
                at: 0,
            },
            ChannelWriter {
                id: opened.id,
                handle: self.handle.clone(),
                closed: false,
            },
        ))
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
        let lost = |_| self.handle.lost_error();
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

async fn connect_inner(target: Target, opts: Options) -> Result<Session, SshError> {
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
async fn through(hop: &Session, target: &Target, opts: &Options) -> Result<Session, SshError> {
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
    let (ours, theirs) = UnixStream::pair().map_err(|e| SshError::Protocol {
        server: target.spec.clone(),
        what: "making a socket pair for the jump".into(),
        detail: e.to_string(),
    })?;
    ours.set_nonblocking(true).ok();
    let ours = tokio::net::UnixStream::from_std(ours).map_err(|e| SshError::Protocol {
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
        Transport::Unix(theirs),
        Vec::new(),
    )
    .await
}

/// The socket the SSH session runs over.
enum Transport {
    /// Straight to the server.
    Tcp(TcpStream),
    /// Through a jump host's channel.
    Unix(UnixStream),
}

fn timeout_of(t: &Target) -> Duration {
    t.connect_timeout.unwrap_or(DEFAULT_TIMEOUT)
}

/// Opens the TCP connection, within ConnectTimeout.
fn tcp(t: &Target) -> Result<TcpStream, SshError> {
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
    target: Target,
    opts: Options,
    transport: Transport,
    hops: Vec<Session>,
) -> Result<Session, SshError> {
    let (wake_a, wake_b) = UnixStream::pair().map_err(|e| SshError::Protocol {
        server: target.spec.clone(),
        what: "making the wake socket".into(),
        detail: e.to_string(),
    })?;
    wake_a.set_nonblocking(true).ok();
    wake_b.set_nonblocking(true).ok();
    let (tx, cmds) = std_mpsc::channel();
    let lost = Arc::new(AtomicBool::new(false));
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
            Worker {
                server: target.spec.clone(),
                sess,
                fd,
                wake: wake_b,
                cmds,
                chans: HashMap::new(),
                next_id: 1,
                lost: thread_lost,
                keepalive_at: Instant::now() + keepalive,
            }
            .serve();
        })
        .map_err(|e| SshError::Protocol {
            server: server.to_string(),
            what: "starting the session thread".into(),
            detail: e.to_string(),
        })?;
    ready_rx.await.map_err(|_| SshError::Lost {
        server: server.to_string(),
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

/// Maps libssh2's error during the connection phase.
pub(crate) fn phase_error(t: &Target, what: &str, e: ssh2::Error) -> SshError {
    use ssh2::ErrorCode::Session as S;
    match e.code() {
        // LIBSSH2_ERROR_TIMEOUT, or a socket timeout
        S(-9) | S(-30) => SshError::Timeout {
            server: t.spec.clone(),
            what: what.to_string(),
            secs: timeout_of(t).as_secs(),
        },
        // banner, key exchange, socket: the far end is not (or no longer) an SSH server
        S(-2) | S(-5) | S(-7) | S(-8) | S(-13) | S(-43) => SshError::Unreachable {
            server: t.spec.clone(),
            addr: format!("{}:{}", t.host, t.port),
            detail: format!("{what}: {}", e.message()),
        },
        _ => SshError::Protocol {
            server: t.spec.clone(),
            what: what.to_string(),
            detail: e.message().to_string(),
        },
    }
}

/// Handshake, host key, login. Returns the session in non-blocking mode, its socket's fd and
/// the transport (kept open for the session's life).
fn login(
    t: &Target,
    opts: &Options,
    transport: Transport,
) -> Result<(ssh2::Session, RawFd, Box<dyn std::any::Any>), SshError> {
    let mut sess = ssh2::Session::new().map_err(|e| phase_error(t, "starting libssh2", e))?;
    let limit = timeout_of(t);
    sess.set_timeout(limit.as_millis().min(u32::MAX as u128) as u32);
    let fd;
    let keep: Box<dyn std::any::Any>;
    match transport {
        Transport::Tcp(s) => {
            fd = s.as_raw_fd();
            tcp_keepalive(fd, t.server_alive_interval.unwrap_or(DEFAULT_KEEPALIVE));
            let _ = s.set_read_timeout(Some(limit));
            keep = Box::new(s.try_clone().ok());
            sess.set_tcp_stream(s);
        }
        Transport::Unix(s) => {
            fd = s.as_raw_fd();
            keep = Box::new(s.try_clone().ok());
            sess.set_tcp_stream(s);
        }
    }
    prefer_known_host_keys(&sess, t);
    quick_ack(fd);
    sess.handshake()
        .map_err(|e| phase_error(t, "the SSH handshake", e))?;
    check_host_key(&sess, t, opts)?;
    quick_ack(fd);
    auth::authenticate(&sess, t, opts)?;
    // No read timeout on the socket from now on: the loop polls it.
    if let Some(Some(s)) = keep.downcast_ref::<Option<TcpStream>>() {
        let _ = s.set_read_timeout(None);
    }
    let interval = t.server_alive_interval.unwrap_or(DEFAULT_KEEPALIVE);
    sess.set_keepalive(true, interval.as_secs().max(1) as u32);
    sess.set_blocking(false);
    Ok((sess, fd, keep))
}

/// TCP keepalives on the socket: SSH keepalives keep idle connections open, but libssh2 does
/// not notice when their answers stop coming (a laptop asleep, Wi-Fi gone); the kernel does,
/// after three unanswered probes, and the session then ends as lost.
fn tcp_keepalive(fd: RawFd, interval: Duration) {
    let secs = interval.as_secs().clamp(1, 3600) as libc::c_int;
    let set = |level, name, value: libc::c_int| {
        // SAFETY: a valid socket and a pointer to an int of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// Acknowledges what arrives at once instead of after Linux's delayed-ACK timer: sshd does not
/// set TCP_NODELAY on sessions without a terminal, so its second small packet in a row (a
/// channel's confirmation, then its data) waits for our ACK of the first. The kernel drops
/// back to delayed ACKs on its own, so this is set again before each wait. A no-op on the
/// socket pair of a jump.
fn quick_ack(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to an int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Asks the server for the key types known_hosts holds for it first, as OpenSSH does, so a
/// known host is not refused for offering another type.
fn prefer_known_host_keys(sess: &ssh2::Session, t: &Target) {
    let known = known_hosts::known_types(t);
    if known.is_empty() {
        return;
    }
    let all = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
    ];
    let mut order: Vec<&str> = Vec::new();
    for k in &known {
        let one = [k.as_str()];
        let names: &[&str] = if k == "ssh-rsa" {
            &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        } else {
            &one
        };
        for n in names {
            if all.contains(n) && !order.contains(n) {
                order.push(n);
            }
        }
    }
    for n in all {
        if !order.contains(&n) {
            order.push(n);
        }
    }
    let _ = sess.method_pref(ssh2::MethodType::HostKey, &order.join(","));
}

fn check_host_key(sess: &ssh2::Session, t: &Target, opts: &Options) -> Result<(), SshError> {
    let Some((blob, _)) = sess.host_key() else {
        return Err(SshError::Protocol {
            server: t.spec.clone(),
            what: "reading the host key".into(),
            detail: "the server sent none".into(),
        });
    };
    let key = HostKey::from_blob(blob);
    match known_hosts::check(t, &key) {
        Verdict::Known => Ok(()),
        Verdict::Changed(file, line) => Err(SshError::ChangedHostKey {
            server: t.spec.clone(),
            host: t.known_hosts_name().into(),
            key_type: key.key_type.clone(),
            fingerprint: key.fingerprint(),
            file,
            line,
        }),
        Verdict::Unknown => {
            let accept = opts.accept_new_host_key
                || opts.prompt.as_ref().is_some_and(|p| {
                    p.confirm(&format!(
                        "The host key of {} is not known yet: {} {}. Trust it and add it to known_hosts?",
                        t.spec,
                        key.key_type,
                        key.fingerprint()
                    ))
                });
            if !accept {
                return Err(SshError::UnknownHostKey {
                    server: t.spec.clone(),
                    key_type: key.key_type.clone(),
                    fingerprint: key.fingerprint(),
                    key: Box::new(key),
                });
            }
            known_hosts::append(t, &key)?;
            Ok(())
        }
    }
}

/// A channel as the thread holds it.
struct Chan {
    /// The libssh2 channel.
    ch: ssh2::Channel,
    /// Output to the reader; `None` once the reader is gone (output is then discarded).
    out: Option<mpsc::Sender<Vec<u8>>>,
    /// A chunk the reader's queue had no room for yet.
    held: Option<Vec<u8>>,
    /// Input not yet taken by libssh2, in the chunks the writer gave.
    input: VecDeque<Vec<u8>>,
    /// How much of the first chunk libssh2 took already.
    input_at: usize,
    /// The writer said it is done.
    eof_wanted: bool,
    /// EOF sent to the server.
    eof_sent: bool,
    /// Standard output ended.
    out_done: bool,
    /// Standard error ended.
    err_done: bool,
    /// close() went out.
    close_sent: bool,
    /// Exit status and standard error for the reader.
    shared: Arc<Shared>,
}

/// The thread's state.
struct Worker {
    /// The server's name.
    server: String,
    /// The session, non-blocking.
    sess: ssh2::Session,
    /// Its socket.
    fd: RawFd,
    /// Bytes here mean "look at the command queue".
    wake: UnixStream,
    /// Commands from the async side.
    cmds: std_mpsc::Receiver<Cmd>,
    /// Open channels.
    chans: HashMap<u64, Chan>,
    /// The next channel id.
    next_id: u64,
    /// Told to the async side when the connection drops.
    lost: Arc<AtomicBool>,
    /// When the next keepalive is due.
    keepalive_at: Instant,
}

/// Whether an io error is libssh2's "try again".
fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

impl Worker {
    fn serve(mut self) {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // Commands first: the queue ends when every handle is gone.
            loop {
                match self.cmds.try_recv() {
                    Ok(cmd) => {
                        if let Err(()) = self.command(cmd) {
                            return self.die();
                        }
                    }
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        if self.chans.is_empty() {
                            self.sess.set_blocking(true);
                            self.sess.set_timeout(2000);
                            let _ = self.sess.disconnect(None, "bye", None);
                            return;
                        }
                        break;
                    }
                }
            }
            let (progress, reading) = match self.pump(&mut buf) {
                Ok(p) => p,
                Err(()) => return self.die(),
            };
            if Instant::now() >= self.keepalive_at {
                match self.sess.keepalive_send() {
                    Ok(next) => {
                        self.keepalive_at = Instant::now() + Duration::from_secs(next.max(1) as u64)
                    }
                    Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {
                        self.keepalive_at = Instant::now() + Duration::from_millis(100)
                    }
                    Err(_) => return self.die(),
                }
            }
            if progress {
                continue;
            }
            if self.wait(reading).is_err() {
                return self.die();
            }
        }
    }

    /// The connection is gone: every channel's reader sees the end, every later call "lost".
    fn die(self) {
        self.lost.store(true, Ordering::Release);
        // Dropping the channels' senders ends the readers; commands still queued fail.
        drop(self.chans);
        while let Ok(cmd) = self.cmds.try_recv() {
            if let Cmd::Open(_, reply) = cmd {
                let _ = reply.send(Err(SshError::Lost {
                    server: self.server.clone(),
                }));
            }
        }
    }

    /// Sleeps until the socket or the wake socket has something, or a timer is due.
    fn wait(&mut self, reading: bool) -> Result<(), ()> {
        quick_ack(self.fd);
        let held = self.chans.values().any(|c| c.held.is_some());
        let mut timeout = self
            .keepalive_at
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if held {
            timeout = timeout.min(Duration::from_millis(10));
        }
        let dirs = self.sess.block_directions();
        let mut events = 0;
        if reading
            || matches!(
                dirs,
                ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both
            )
        {
            events |= libc::POLLIN;
        }
        if matches!(
            dirs,
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            return Ok(());
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut sink = [0u8; 256];
            while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(());
        }
        // A hang-up: while a channel reads, its reads drain what is left and then fail;
        // with nobody reading, the connection is simply gone.
        if fds[0].revents & libc::POLLHUP != 0 && !reading {
            return Err(());
        }
        Ok(())
    }

    /// Handles one command; `Err` when the connection is gone.
    fn command(&mut self, cmd: Cmd) -> Result<(), ()> {
        match cmd {
            Cmd::Open(what, reply) => match self.open(&what) {
                Ok(ch) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let (tx, rx) = mpsc::channel(READ_QUEUE);
                    let shared = Arc::new(Shared::default());
                    self.chans.insert(
                        id,
                        Chan {
                            ch,
                            out: Some(tx),
                            held: None,
                            input: VecDeque::new(),
                            input_at: 0,
                            eof_wanted: false,
                            eof_sent: false,
                            out_done: false,
                            err_done: false,
                            close_sent: false,
                            shared: shared.clone(),
                        },
                    );
                    let _ = reply.send(Ok(Opened { id, rx, shared }));
                }
                Err(e) => {
                    let fatal = matches!(e, SshError::Lost { .. });
                    let _ = reply.send(Err(e));
                    if fatal {
                        return Err(());
                    }
                }
            },
            Cmd::Write(id, data) => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.input.push_back(data);
                }
            }
            Cmd::Eof(id) => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.eof_wanted = true;
                }
            }
            Cmd::DropReader(id) => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.out = None;
                    c.held = None;
                }
            }
        }
        Ok(())
    }

    /// Runs a libssh2 call until it stops saying "would block", waiting on the socket.
    fn retry<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&ssh2::Session) -> Result<T, ssh2::Error>,
    ) -> Result<T, SshError> {
        let until = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            match f(&self.sess) {
                Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {
                    if Instant::now() > until {
                        return Err(SshError::Timeout {
                            server: self.server.clone(),
                            what: what.to_string(),
                            secs: DEFAULT_TIMEOUT.as_secs(),
                        });
                    }
                    let _ = self.wait(true);
                }
                Err(e) => {
                    use ssh2::ErrorCode::Session as S;
                    return Err(match e.code() {
                        S(-7) | S(-13) | S(-43) => SshError::Lost {
                            server: self.server.clone(),
                        },
                        _ => SshError::Protocol {
                            server: self.server.clone(),
                            what: what.to_string(),
                            detail: e.message().to_string(),
                        },
                    });
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    fn open(&mut self, what: &Open) -> Result<ssh2::Channel, SshError> {
        match what {
            Open::Exec(command) => {
                let mut ch = self.retry("opening a channel", |s| s.channel_session())?;
                let until = Instant::now() + DEFAULT_TIMEOUT;
                loop {
                    match ch.exec(command) {
                        Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {
                            if Instant::now() > until {
                                return Err(SshError::Timeout {
                                    server: self.server.clone(),
                                    what: "starting a command".into(),
                                    secs: DEFAULT_TIMEOUT.as_secs(),
                                });
                            }
                            let _ = self.wait(true);
                        }
                        Err(e) => {
                            return Err(SshError::Protocol {
                                server: self.server.clone(),
                                what: format!("starting `{command}`"),
                                detail: e.message().to_string(),
                            })
                        }
                        Ok(()) => return Ok(ch),
                    }
                }
            }
            Open::Tcp(host, port) => self
                .retry(&format!("opening a tunnel to {host}:{port}"), |s| {
                    s.channel_direct_tcpip(host, *port, None)
                }),
            Open::Unix(path) => self.retry(&format!("opening a channel to {path}"), |s| {
                s.channel_direct_streamlocal(path, None)
            }),
        }
    }

    /// Moves bytes on every channel. Returns (whether anything moved, whether any channel
    /// wants to read), or `Err` when the connection is gone.
    fn pump(&mut self, buf: &mut [u8]) -> Result<(bool, bool), ()> {
        let mut progress = false;
        let mut reading = false;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        let mut broken = false;
        for (id, c) in self.chans.iter_mut() {
            // Input.
            while let Some(chunk) = c.input.front() {
                match c.ch.write(&chunk[c.input_at..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.input_at += n;
                        if c.input_at == chunk.len() {
                            c.input.pop_front();
                            c.input_at = 0;
                        }
                        progress = true;
                    }
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        // The channel is closed for writing (the command ended): drop input.
                        c.input.clear();
                        c.input_at = 0;
                        break;
                    }
                }
            }
            if c.input.is_empty() && c.eof_wanted && !c.eof_sent {
                match c.ch.send_eof() {
                    Ok(()) => {
                        c.eof_sent = true;
                        progress = true;
                    }
                    Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {}
                    Err(_) => c.eof_sent = true,
                }
            }
            // Nobody reads and nobody writes any more: close it rather than wait for the
            // command to end by itself.
            if c.out.is_none() && c.eof_sent && !c.out_done {
                c.out_done = true;
                c.err_done = true;
            }
            // A chunk held for a full reader queue.
            if let Some(chunk) = c.held.take() {
                match c.out.as_ref().map(|o| o.try_send(chunk)) {
                    Some(Err(mpsc::error::TrySendError::Full(chunk))) => c.held = Some(chunk),
                    Some(Err(mpsc::error::TrySendError::Closed(_))) => c.out = None,
                    _ => progress = true,
                }
            }
            // Output, while the reader has room.
            while !c.out_done && c.held.is_none() {
                reading = true;
                match c.ch.read(buf) {
                    Ok(0) => {
                        if c.ch.eof() {
                            c.out_done = true;
                            progress = true;
                        }
                        break;
                    }
                    Ok(n) => {
                        progress = true;
                        if let Some(o) = &c.out {
                            match o.try_send(buf[..n].to_vec()) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(chunk)) => c.held = Some(chunk),
                                Err(mpsc::error::TrySendError::Closed(_)) => c.out = None,
                            }
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => {
                        broken = true;
                        *c.shared.failed.lock().unwrap() = Some(e.to_string());
                        failed.push(*id);
                        break;
                    }
                }
            }
            if failed.last() == Some(id) {
                continue;
            }
            while !c.err_done {
                match c.ch.stderr().read(buf) {
                    Ok(0) => {
                        if c.ch.eof() {
                            c.err_done = true;
                            progress = true;
                        }
                        break;
                    }
                    Ok(n) => {
                        progress = true;
                        let mut e = c.shared.stderr.lock().unwrap();
                        let room = STDERR_LIMIT.saturating_sub(e.len());
                        e.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        // Standard error is only for messages: its end is not worth a failure.
                        c.err_done = true;
                        break;
                    }
                }
            }
            // Ended: close, learn the exit status, let the reader see the end.
            if c.out_done && c.err_done && c.held.is_none() {
                if !c.close_sent {
                    match c.ch.close() {
                        Ok(()) => c.close_sent = true,
                        Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => continue,
                        Err(_) => c.close_sent = true,
                    }
                }
                match c.ch.wait_close() {
                    Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => continue,
                    _ => {}
                }
                *c.shared.status.lock().unwrap() = c.ch.exit_status().ok();
                finished.push(*id);
                progress = true;
            }
        }
        for id in finished.into_iter().chain(failed) {
            self.chans.remove(&id);
        }
        // A channel failed: the transport under it may be gone.
        if broken && self.socket_gone() {
            return Err(());
        }
        Ok((progress, reading))
    }

    /// Whether the SSH socket reports a hang-up or an error.
    fn socket_gone(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }
}

/// A channel's standard output (and, once it ended, its standard error and exit status).
#[derive(Debug)]
pub struct ChannelReader {
    /// The channel's id in the thread.
    id: u64,
    /// The session.
    handle: Handle,
    /// Output chunks from the thread.
    rx: mpsc::Receiver<Vec<u8>>,
    /// Exit status and standard error.
    shared: Arc<Shared>,
    /// The chunk being read.
    pending: Vec<u8>,
    /// How far into it.
    at: usize,
}

impl ChannelReader {
    /// The command's exit status, once its output ended.
    pub fn exit_status(&self) -> Option<i32> {
        *self.shared.status.lock().unwrap()
    }

    /// What the command wrote to standard error so far (the first 64 KiB).
    pub fn stderr(&self) -> Vec<u8> {
        self.shared.stderr.lock().unwrap().clone()
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if self.at < self.pending.len() {
                let n = buf.remaining().min(self.pending.len() - self.at);
                let at = self.at;
                buf.put_slice(&self.pending[at..at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Poll::Ready(None) => {
                    if let Some(why) = self.shared.failed.lock().unwrap().clone() {
                        return Poll::Ready(Err(std::io::Error::new(
                            ErrorKind::ConnectionAborted,
                            format!("the SSH channel to {} failed: {why}", self.handle.server),
                        )));
                    }
                    return if self.handle.lost.load(Ordering::Acquire)
                        && self.shared.status.lock().unwrap().is_none()
                    {
                        Poll::Ready(Err(std::io::Error::new(
                            ErrorKind::ConnectionAborted,
                            self.handle.lost_error().to_string(),
                        )))
                    } else {
                        Poll::Ready(Ok(()))
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        let _ = self.handle.send(Cmd::DropReader(self.id));
    }
}

/// A channel's standard input. Shutting it down (or dropping it) sends EOF.
#[derive(Debug)]
pub struct ChannelWriter {
    /// The channel's id in the thread.
    id: u64,
    /// The session.
    handle: Handle,
    /// EOF already sent.
    closed: bool,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(std::io::Error::new(
                ErrorKind::BrokenPipe,
                "the channel's input was closed",
            )));
        }
        match self.handle.send(Cmd::Write(self.id, buf.to_vec())) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(std::io::Error::new(
                ErrorKind::ConnectionAborted,
                e.to_string(),
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.closed {
            self.closed = true;
            let _ = self.handle.send(Cmd::Eof(self.id));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.handle.send(Cmd::Eof(self.id));
        }
    }
}
