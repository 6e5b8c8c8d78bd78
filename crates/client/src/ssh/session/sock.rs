//! The session thread's sockets, for each platform: the raw handle `poll` waits on, the
//! local socket pair (the wake socket, and a jump's transport), TCP keepalives.
//!
//! Unix: `poll(2)` on file descriptors, a Unix socket pair. Windows: `WSAPoll` on sockets, and
//! the pair is two ends of a loopback TCP connection (made here, its far end checked to be the
//! one this process connected, so no other local program can slip in).

use std::io;
use std::time::Duration;

/// A socket as `poll` takes it.
#[cfg(unix)]
pub(super) type Raw = std::os::fd::RawFd;
/// A socket as `WSAPoll` takes it.
#[cfg(windows)]
pub(super) type Raw = std::os::windows::io::RawSocket;

/// One end of a local socket pair.
#[cfg(unix)]
pub(super) type Pair = std::os::unix::net::UnixStream;
/// One end of a local socket pair.
#[cfg(windows)]
pub(super) type Pair = std::net::TcpStream;

/// A [`Pair`] end as tokio drives it.
#[cfg(unix)]
pub(super) type AsyncPair = tokio::net::UnixStream;
/// A [`Pair`] end as tokio drives it.
#[cfg(windows)]
pub(super) type AsyncPair = tokio::net::TcpStream;

/// The raw socket of `s`.
#[cfg(unix)]
pub(super) fn raw_of(s: &impl std::os::fd::AsRawFd) -> Raw {
    s.as_raw_fd()
}

/// The raw socket of `s`.
#[cfg(windows)]
pub(super) fn raw_of(s: &impl std::os::windows::io::AsRawSocket) -> Raw {
    s.as_raw_socket()
}

/// Two connected local sockets.
#[cfg(unix)]
pub(super) fn pair() -> io::Result<(Pair, Pair)> {
    Pair::pair()
}

/// Two connected local sockets: a loopback TCP connection whose accepted end is checked to be
/// the one made here.
#[cfg(windows)]
pub(super) fn pair() -> io::Result<(Pair, Pair)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let ours = Pair::connect(listener.local_addr()?)?;
    let (theirs, from) = listener.accept()?;
    if from != ours.local_addr()? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "another program connected to the session's loopback socket first",
        ));
    }
    ours.set_nodelay(true)?;
    theirs.set_nodelay(true)?;
    Ok((ours, theirs))
}

/// What [`poll`] saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The SSH socket reports an error (or is not a socket).
    pub error: bool,
    /// The SSH socket's peer hung up.
    pub hangup: bool,
    /// The wake socket has bytes to read.
    pub woken: bool,
}

/// Waits up to `timeout` until `sock` can be read (`read`) or written (`write`), or `wake`
/// has something; `wake` may be `None` (just look at `sock`). `None` when the wait failed.
#[cfg(unix)]
pub(super) fn poll(
    sock: Raw,
    read: bool,
    write: bool,
    wake: Option<Raw>,
    timeout: Duration,
) -> Option<Seen> {
    let mut events = 0;
    if read {
        events |= libc::POLLIN;
    }
    if write {
        events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd {
            fd: sock,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if wake.is_some() { 2 } else { 1 };
    // SAFETY: fds is a valid array of at least n pollfd for the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout.as_millis() as libc::c_int) };
    if r < 0 {
        return None;
    }
    Some(Seen {
        error: fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0,
        hangup: fds[0].revents & libc::POLLHUP != 0,
        woken: fds[1].revents & libc::POLLIN != 0,
    })
}

/// Waits up to `timeout` until `sock` can be read (`read`) or written (`write`), or `wake`
/// has something; `wake` may be `None` (just look at `sock`). `None` when the wait failed.
#[cfg(windows)]
pub(super) fn poll(
    sock: Raw,
    read: bool,
    write: bool,
    wake: Option<Raw>,
    timeout: Duration,
) -> Option<Seen> {
    use windows_sys::Win32::Networking::WinSock::{
        WSAPoll, POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLWRNORM, SOCKET, WSAPOLLFD,
    };
    let mut events = 0;
    if read {
        events |= POLLRDNORM;
    }
    if write {
        events |= POLLWRNORM;
    }
    let mut fds = [
        WSAPOLLFD {
            fd: sock as SOCKET,
            events,
            revents: 0,
        },
        WSAPOLLFD {
            fd: wake.unwrap_or(0) as SOCKET,
            events: POLLRDNORM,
            revents: 0,
        },
    ];
    let n = if wake.is_some() { 2 } else { 1 };
    // SAFETY: fds is a valid array of at least n WSAPOLLFD for the call.
    let r = unsafe { WSAPoll(fds.as_mut_ptr(), n, timeout.as_millis() as i32) };
    if r < 0 {
        return None;
    }
    Some(Seen {
        error: fds[0].revents & (POLLERR | POLLNVAL) != 0,
        hangup: fds[0].revents & POLLHUP != 0,
        woken: fds[1].revents & POLLRDNORM != 0,
    })
}

/// TCP keepalives on the socket (see the Unix one): Windows 10 1709 and later take the same
/// three options; an older one keeps its defaults.
#[cfg(windows)]
pub(super) fn tcp_keepalive(sock: Raw, interval: Duration) {
    use windows_sys::Win32::Networking::WinSock::{
        setsockopt, IPPROTO_TCP, SOCKET, SOL_SOCKET, SO_KEEPALIVE, TCP_KEEPCNT, TCP_KEEPIDLE,
        TCP_KEEPINTVL,
    };
    let secs = interval.as_secs().clamp(1, 3600) as i32;
    let set = |level, name, value: i32| {
        // SAFETY: a valid socket and a pointer to an int of the size given.
        unsafe {
            setsockopt(
                sock as SOCKET,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as i32,
            )
        }
    };
    set(SOL_SOCKET, SO_KEEPALIVE, 1);
    set(IPPROTO_TCP, TCP_KEEPIDLE, secs);
    set(IPPROTO_TCP, TCP_KEEPINTVL, secs);
    set(IPPROTO_TCP, TCP_KEEPCNT, 3);
}

/// TCP keepalives on the socket: SSH keepalives keep idle connections open, but libssh2 does
/// not notice when their answers stop coming (a laptop asleep, Wi-Fi gone); the kernel does,
/// after three unanswered probes, and the session then ends as lost.
#[cfg(unix)]
pub(super) fn tcp_keepalive(fd: Raw, interval: Duration) {
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
    // The idle time before the first probe: TCP_KEEPALIVE on macOS.
    #[cfg(target_os = "macos")]
    set(libc::IPPROTO_TCP, libc::TCP_KEEPALIVE, secs);
    #[cfg(not(target_os = "macos"))]
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// Acknowledges what arrives at once instead of after Linux's delayed-ACK timer: sshd does not
/// set TCP_NODELAY on sessions without a terminal, so its second small packet in a row (a
/// channel's confirmation, then its data) waits for our ACK of the first. The kernel drops
/// back to delayed ACKs on its own, so this is set again before each wait. A no-op on the
/// socket pair of a jump.
/// Linux only: elsewhere there is no such option, and nothing is done.
#[cfg(target_os = "linux")]
pub(super) fn quick_ack(fd: Raw) {
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

/// [`quick_ack`] off Linux: nothing to do.
#[cfg(not(target_os = "linux"))]
pub(super) fn quick_ack(_fd: Raw) {}
