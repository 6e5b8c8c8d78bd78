//! Connecting and logging in, on the session's thread with libssh2 blocking: the socket's
//! options, the handshake, the host key against known_hosts, authentication.

use super::sock::{self, quick_ack, Raw};
use super::{timeout_of, Transport, DEFAULT_KEEPALIVE};
use crate::ssh::known_hosts::{self, HostKey, Verdict};
use crate::ssh::{auth, Options, SshError, SshHost};
use std::net::TcpStream;

/// Maps libssh2's error during the connection phase.
pub(crate) fn phase_error(t: &SshHost, what: &str, e: ssh2::Error) -> SshError {
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
pub(super) fn login(
    t: &SshHost,
    opts: &Options,
    transport: Transport,
) -> Result<(ssh2::Session, Raw, Box<dyn std::any::Any>), SshError> {
    let mut sess = ssh2::Session::new().map_err(|e| phase_error(t, "starting libssh2", e))?;
    let limit = timeout_of(t);
    sess.set_timeout(limit.as_millis().min(u32::MAX as u128) as u32);
    let fd;
    let keep: Box<dyn std::any::Any>;
    match transport {
        Transport::Tcp(s) => {
            fd = sock::raw_of(&s);
            sock::tcp_keepalive(fd, t.server_alive_interval.unwrap_or(DEFAULT_KEEPALIVE));
            let _ = s.set_read_timeout(Some(limit));
            keep = Box::new(s.try_clone().ok());
            sess.set_tcp_stream(s);
        }
        Transport::Pair(s) => {
            fd = sock::raw_of(&s);
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

/// Asks the server for the key types known_hosts holds for it first, as OpenSSH does, so a
/// known host is not refused for offering another type.
fn prefer_known_host_keys(sess: &ssh2::Session, t: &SshHost) {
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

fn check_host_key(sess: &ssh2::Session, t: &SshHost, opts: &Options) -> Result<(), SshError> {
    let Some((blob, _)) = sess.host_key() else {
        return Err(SshError::Protocol {
            server: t.spec.clone(),
            what: "reading the host key".into(),
            detail: "the server sent none".into(),
        });
    };
    let key = HostKey::from_blob(blob);
    // Revoked anywhere wins over known anywhere, and is said as such.
    if let Some((file, line)) = known_hosts::revoked(t, &key) {
        return Err(SshError::RevokedHostKey {
            server: t.spec.clone(),
            key_type: key.key_type.clone(),
            fingerprint: key.fingerprint(),
            file,
            line,
        });
    }
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
