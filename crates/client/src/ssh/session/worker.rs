//! The session thread's loop: commands from the async side, every channel pumped without
//! blocking, `poll` on the SSH socket and the wake socket, keepalives on a timer.

use super::sock::{self, quick_ack, Pair, Raw};
use super::{
    describe, Cmd, LostFlag, Open, Opened, Shared, DEFAULT_TIMEOUT, EAGAIN, READ_QUEUE,
    STDERR_LIMIT,
};
use crate::ssh::SshError;
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
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
pub(super) struct Worker {
    /// The server's name.
    server: String,
    /// The session, non-blocking.
    sess: ssh2::Session,
    /// Its socket.
    fd: Raw,
    /// Bytes here mean "look at the command queue".
    wake: Pair,
    /// Commands from the async side.
    cmds: std_mpsc::Receiver<Cmd>,
    /// Open channels.
    chans: HashMap<u64, Chan>,
    /// The next channel id.
    next_id: u64,
    /// Told to the async side when the connection drops.
    lost: Arc<LostFlag>,
    /// When the next keepalive is due.
    keepalive_at: Instant,
}

/// Whether an io error is libssh2's "try again".
fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

impl Worker {
    /// The loop's state for a logged-in session.
    pub(super) fn new(
        server: String,
        sess: ssh2::Session,
        fd: Raw,
        wake: Pair,
        cmds: std_mpsc::Receiver<Cmd>,
        lost: Arc<LostFlag>,
        keepalive_at: Instant,
    ) -> Self {
        Self {
            server,
            sess,
            fd,
            wake,
            cmds,
            chans: HashMap::new(),
            next_id: 1,
            lost,
            keepalive_at,
        }
    }

    pub(super) fn serve(mut self) {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // Commands first: the queue ends when every handle is gone.
            loop {
                match self.cmds.try_recv() {
                    Ok(cmd) => {
                        if let Err(why) = self.command(cmd) {
                            return self.die(why);
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
                Err(why) => return self.die(why),
            };
            if Instant::now() >= self.keepalive_at {
                match self.sess.keepalive_send() {
                    Ok(next) => {
                        self.keepalive_at = Instant::now() + Duration::from_secs(next.max(1) as u64)
                    }
                    Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {
                        self.keepalive_at = Instant::now() + Duration::from_millis(100)
                    }
                    Err(e) => return self.die(format!("keepalive: {}", describe(&e))),
                }
            }
            if progress {
                continue;
            }
            if let Err(why) = self.wait(reading) {
                return self.die(why);
            }
        }
    }

    /// The connection is gone: every channel's reader sees the end, every later call "lost".
    fn die(self, why: String) {
        self.lost.set(why.clone());
        // Dropping the channels' senders ends the readers; commands still queued fail.
        drop(self.chans);
        while let Ok(cmd) = self.cmds.try_recv() {
            if let Cmd::Open(_, reply) = cmd {
                let _ = reply.send(Err(SshError::Lost {
                    server: self.server.clone(),
                    reason: why.clone(),
                }));
            }
        }
    }

    /// Sleeps until the socket or the wake socket has something, or a timer is due.
    fn wait(&mut self, reading: bool) -> Result<(), String> {
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
        let read = reading
            || matches!(
                dirs,
                ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both
            );
        let write = matches!(
            dirs,
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        let Some(seen) = sock::poll(
            self.fd,
            read,
            write,
            Some(sock::raw_of(&self.wake)),
            timeout,
        ) else {
            return Ok(());
        };
        if seen.woken {
            let mut sink = [0u8; 256];
            while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        if seen.error {
            return Err("the socket reports an error".into());
        }
        // A hang-up: while a channel reads, its reads drain what is left and then fail;
        // with nobody reading, the connection is simply gone.
        if seen.hangup && !reading {
            return Err("the server hung up".into());
        }
        Ok(())
    }

    /// Handles one command; `Err` when the connection is gone.
    fn command(&mut self, cmd: Cmd) -> Result<(), String> {
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
                    let fatal = match &e {
                        SshError::Lost { reason, .. } => Some(reason.clone()),
                        _ => None,
                    };
                    let _ = reply.send(Err(e));
                    if let Some(why) = fatal {
                        return Err(why);
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
                            reason: format!("{what}: {}", describe(&e)),
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
    fn pump(&mut self, buf: &mut [u8]) -> Result<(bool, bool), String> {
        let mut progress = false;
        let mut reading = false;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        let mut broken = None;
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
                        broken = Some(format!("reading a channel: {e}"));
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
        if let Some(why) = broken {
            if self.socket_gone() {
                return Err(why);
            }
        }
        Ok((progress, reading))
    }

    /// Whether the SSH socket reports a hang-up or an error.
    fn socket_gone(&self) -> bool {
        sock::poll(self.fd, true, false, None, Duration::ZERO)
            .is_some_and(|seen| seen.hangup || seen.error)
    }
}
