//! One SSH connection against a real sshd on 127.0.0.1: each way of logging in, host keys
//! (unknown reported with its fingerprint, accepted and appended, changed refused), commands
//! and streams on exec channels, and bad input (unknown alias, unreachable, wrong password).

use gpubook_testkit::sshd;

use gpubook_client::ssh::{Options, Prompt, Session, SshError, SshErrorKind, SshHost};
use sshd::{ClientHome, SshAgent, Sshd, User};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers secrets from a list, says yes or no to confirmations, and records the questions.
#[derive(Debug, Default)]
struct Scripted {
    /// Answers, in order.
    answers: Mutex<Vec<String>>,
    /// What confirm() says.
    yes: bool,
    /// The questions asked.
    asked: Mutex<Vec<String>>,
}

impl Prompt for Scripted {
    fn secret(&self, _server: &str, question: &str) -> Option<String> {
        self.asked.lock().unwrap().push(question.to_string());
        let mut a = self.answers.lock().unwrap();
        (!a.is_empty()).then(|| a.remove(0))
    }

    fn confirm(&self, question: &str) -> bool {
        self.asked.lock().unwrap().push(question.to_string());
        self.yes
    }
}

fn scripted(answers: &[&str], yes: bool) -> Arc<Scripted> {
    Arc::new(Scripted {
        answers: Mutex::new(answers.iter().map(|s| s.to_string()).collect()),
        yes,
        asked: Mutex::new(Vec::new()),
    })
}

async fn connect(spec: &str, opts: &Options) -> Result<Session, SshError> {
    let t = SshHost::resolve_with(spec, &opts.env)?;
    Session::connect(&t, opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_through_a_real_ssh_agent_and_commands_on_channels() {
    if !sshd::available("ssh agent auth") {
        return;
    }
    let server = Sshd::start("");
    let user = User::ensure("gpb-ssh-alice");
    let home = ClientHome::new();
    // The agent holds a key the home does not have on disk.
    let agent_key = sshd::keygen(&home.dir.path().join("agent_key"), "");
    user.authorize(&agent_key.with_extension("pub"));
    std::fs::remove_file(&home.key).unwrap();
    let agent = SshAgent::start();
    agent.add(&agent_key);
    home.host("lab1", &server, &user.name, "");
    home.trust(&server);
    let opts = home.options(Some(&agent));
    let t = SshHost::resolve_with("lab1", &opts.env).unwrap();
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", server.port));
    assert_eq!(t.user, user.name);
    assert_eq!(t.connect_timeout, Some(Duration::from_secs(5)));
    let s = Session::connect(&t, &opts)
        .await
        .expect("log in with the agent's key");

    let out = s.run("id -un; echo oops >&2; exit 3", b"").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user.name);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "oops");
    assert_eq!(out.status, 3);
    let out = s.run("wc -c", &vec![b'x'; 300_000]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000");

    // Several streams at once on one session, each answered in turn.
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(s.exec_stream("cat").await.unwrap());
    }
    for round in 0..20 {
        for (i, (rd, wr)) in streams.iter_mut().enumerate() {
            let msg = format!("stream {i} round {round}\n");
            wr.write_all(msg.as_bytes()).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            rd.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg.as_bytes());
        }
    }
    for (mut rd, mut wr) in streams {
        wr.shutdown().await.unwrap();
        let mut rest = Vec::new();
        rd.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(rd.exit_status(), Some(0));
    }
    // A command that never ends is closed when its reader and writer are dropped.
    let (rd, wr) = s.exec_stream("sleep 600").await.unwrap();
    drop((rd, wr));
    let out = s.run("true", b"").await.unwrap();
    assert!(out.success());

    // IdentitiesOnly without a matching IdentityFile: the agent's key is not offered.
    let only = ClientHome::new();
    only.host(
        "lab1",
        &server,
        &user.name,
        &format!(
            "  IdentitiesOnly yes\n  IdentityFile {}\n",
            only.key.display()
        ),
    );
    only.trust(&server);
    let e = connect("lab1", &only.options(Some(&agent)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), SshErrorKind::Auth, "{e}");
    assert!(
        e.to_string().contains("0 keys allowed by IdentitiesOnly"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_passwords_and_keyboard_interactive() {
    if !sshd::available("ssh key files and passwords") {
        return;
    }
    let server = Sshd::start("");
    let user = User::ensure("gpb-ssh-bob");
    user.set_password("bob's password");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    home.trust(&server);
    let spec_pw = format!("{}@127.0.0.1:{}", user.name, server.port);

    // A plain key file from ~/.ssh (the default IdentityFile).
    let s = connect("lab1", &home.options(None))
        .await
        .expect("key file");
    assert!(s.run("true", b"").await.unwrap().success());

    // A passphrase-protected key: asked for, wrong once, then right.
    let locked = sshd::keygen(&home.ssh("locked"), "open sesame");
    user.authorize(&locked.with_extension("pub"));
    let other = ClientHome::new();
    std::fs::copy(&locked, other.ssh("id_ed25519")).unwrap();
    std::fs::copy(locked.with_extension("pub"), other.ssh("id_ed25519.pub")).unwrap();
    other.host("lab1", &server, &user.name, "");
    other.trust(&server);
    let mut opts = other.options(None);
    let e = connect("lab1", &opts).await.unwrap_err();
    assert!(
        matches!(e, SshError::WrongPassphrase { missing: true, .. }),
        "{e:?}"
    );
    let prompt = scripted(&["not it", "open sesame"], false);
    opts.prompt = Some(prompt.clone());
    let s = connect("lab1", &opts).await.expect("the passphrase works");
    assert!(s.run("true", b"").await.unwrap().success());
    assert_eq!(
        prompt
            .asked
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.contains("Passphrase"))
            .count(),
        2
    );
    let prompt = scripted(&["wrong", "wrong", "wrong"], false);
    opts.prompt = Some(prompt);
    let e = connect("lab1", &opts).await.unwrap_err();
    assert!(
        matches!(e, SshError::WrongPassphrase { missing: false, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("lab1"), "{e}");

    // Password (keyboard-interactive off, so plain password auth answers).
    let pw_only = Sshd::start("KbdInteractiveAuthentication no\n");
    let nokeys = ClientHome::new();
    std::fs::remove_file(&nokeys.key).unwrap();
    std::fs::write(nokeys.ssh("known_hosts"), pw_only.known_hosts_line()).unwrap();
    let mut opts = nokeys.options(None);
    let spec = format!("{}@127.0.0.1:{}", user.name, pw_only.port);
    opts.prompt = Some(scripted(&["bob's password"], false));
    let s = connect(&spec, &opts).await.expect("password");
    assert!(s.run("true", b"").await.unwrap().success());
    opts.prompt = Some(scripted(&["nope", "nope", "nope"], false));
    let e = connect(&spec, &opts).await.unwrap_err();
    assert_eq!(e.kind(), SshErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("password"), "{e}");
    assert!(e.to_string().contains(&user.name), "{e}");

    // Keyboard-interactive through PAM: the prompt's question is the server's.
    std::fs::write(nokeys.ssh("known_hosts"), server.known_hosts_line()).unwrap();
    let prompt = scripted(&["bob's password"], false);
    opts.prompt = Some(prompt.clone());
    let s = connect(&spec_pw, &opts)
        .await
        .expect("keyboard-interactive");
    assert!(s.run("true", b"").await.unwrap().success());
    let asked = prompt.asked.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q.to_lowercase().contains("password")),
        "{asked:?}"
    );
    // No prompt and nothing else: a clear refusal naming what was tried.
    let e = connect(&spec_pw, &nokeys.options(None)).await.unwrap_err();
    assert_eq!(e.kind(), SshErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("nobody to type one"), "{e}");
    // The command it suggests is one OpenSSH runs (no port after a colon).
    assert!(
        e.to_string()
            .contains(&format!("`ssh -p {} {}@127.0.0.1`", server.port, user.name)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_unknown_accepted_and_changed() {
    if !sshd::available("ssh host keys") {
        return;
    }
    let mut server = Sshd::start("");
    let user = User::ensure("gpb-ssh-hostkey");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");

    // Unknown: the typed error carries what `ssh-keygen -lf` says.
    let e = connect("lab1", &home.options(None)).await.unwrap_err();
    match &e {
        SshError::UnknownHostKey {
            key_type,
            fingerprint,
            ..
        } => {
            assert_eq!(key_type, "ssh-ed25519");
            assert_eq!(fingerprint, &server.fingerprint());
        }
        other => panic!("expected an unknown host key, got {other:?}"),
    }
    assert_eq!(e.fingerprint(), Some(server.fingerprint().as_str()));
    assert!(e.to_string().contains("lab1"), "{e}");
    // Declined at the prompt: still unknown.
    let mut opts = home.options(None);
    opts.prompt = Some(scripted(&[], false));
    assert!(matches!(
        connect("lab1", &opts).await,
        Err(SshError::UnknownHostKey { .. })
    ));
    // Accepted at the prompt, which was shown the fingerprint.
    let asking = ClientHome::new();
    user.authorize(&asking.key.with_extension("pub"));
    asking.host("lab1", &server, &user.name, "");
    let mut yes = asking.options(None);
    let prompt = scripted(&[], true);
    yes.prompt = Some(prompt.clone());
    connect("lab1", &yes).await.expect("accepted at the prompt");
    assert!(prompt.asked.lock().unwrap()[0].contains(&server.fingerprint()));
    assert_eq!(
        sshd::read(&asking.ssh("known_hosts")),
        server.known_hosts_line()
    );

    // Accepted: appended in OpenSSH's format, which OpenSSH itself then accepts.
    opts.accept_new_host_key = true;
    connect("lab1", &opts).await.expect("accepted");
    let known = sshd::read(&home.ssh("known_hosts"));
    assert_eq!(known, server.known_hosts_line());
    let check = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", server.port))
        .arg("-f")
        .arg(home.ssh("known_hosts"))
        .output()
        .unwrap();
    assert!(check.status.success(), "ssh-keygen -F finds the line");
    opts.accept_new_host_key = false;
    connect("lab1", &opts).await.expect("known now");

    // A hashed entry (ssh-keygen -H) is understood too.
    std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(home.ssh("known_hosts"))
        .output()
        .unwrap();
    assert!(sshd::read(&home.ssh("known_hosts")).starts_with("|1|"));
    connect("lab1", &opts)
        .await
        .expect("a hashed entry matches");

    // Changed: refused, with the new fingerprint and the line to fix, even when accepting.
    std::fs::write(
        home.ssh("known_hosts"),
        format!("# comment\nnot a valid line\n{}", server.known_hosts_line()),
    )
    .unwrap();
    server.new_host_key();
    opts.accept_new_host_key = true;
    let e = connect("lab1", &opts).await.unwrap_err();
    match &e {
        SshError::ChangedHostKey {
            fingerprint,
            file,
            line,
            ..
        } => {
            assert_eq!(fingerprint, &server.fingerprint());
            assert_eq!(file, &home.ssh("known_hosts"));
            assert_eq!(*line, 3);
        }
        other => panic!("expected a changed host key, got {other:?}"),
    }
    assert_eq!(e.kind(), SshErrorKind::HostKeyChanged);
    assert!(e.to_string().contains(":3"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unreachable_hosts_fail_fast_and_clearly() {
    if !sshd::available("ssh bad input") {
        return;
    }
    let home = ClientHome::new();
    let opts = home.options(None);
    // Not a Host and not resolvable.
    let e = connect("no-such-lab-host", &opts).await.unwrap_err();
    assert!(matches!(e, SshError::UnknownAlias { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-lab-host"), "{e}");
    assert!(matches!(
        SshHost::resolve_with("alice@", &opts.env),
        Err(SshError::BadSpec { .. })
    ));
    // Nobody listens: refused at once.
    let port = sshd::free_port();
    let e = connect(&format!("x@127.0.0.1:{port}"), &opts)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), SshErrorKind::Unreachable, "{e}");
    // Something listens but never speaks SSH: a timeout (ConnectTimeout 1), not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    home.config(&format!(
        "Host silent\n  HostName 127.0.0.1\n  Port {}\n  ConnectTimeout 1\n",
        silent.local_addr().unwrap().port()
    ));
    let started = Instant::now();
    let e = connect("silent", &opts).await.unwrap_err();
    assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("silent"), "{e}");
    // A ProxyJump loop is found before any connection.
    home.config("Host loop-a\n  ProxyJump loop-b\nHost loop-b\n  ProxyJump loop-a\n");
    let e = SshHost::resolve_with("loop-a", &opts.env).unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reported_not_a_hang() {
    if !sshd::available("ssh lost connection") {
        return;
    }
    let mut server = Sshd::start("");
    let user = User::ensure("gpb-ssh-lost");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "  ServerAliveInterval 1\n");
    home.trust(&server);
    let s = connect("lab1", &home.options(None)).await.unwrap();
    let (mut rd, mut wr) = s.exec_stream("cat").await.unwrap();
    wr.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    rd.read_exact(&mut one).await.unwrap();
    // An idle session next to it, with no channel: it must notice too.
    let idle = connect("lab1", &home.options(None)).await.unwrap();
    server.stop();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut rest))
        .await
        .expect("the reader learns within seconds");
    assert!(
        r.is_err(),
        "a lost connection is an error, not an end: {r:?}"
    );
    let e = s.run("true", b"").await.unwrap_err();
    assert!(matches!(e, SshError::Lost { .. }), "{e:?}");
    assert!(e.to_string().contains("lab1"), "{e}");
    let until = Instant::now() + Duration::from_secs(10);
    while !idle.is_lost() {
        assert!(Instant::now() < until, "the idle session did not notice");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_are_sent_on_a_timer() {
    if !sshd::available("ssh keepalives") {
        return;
    }
    let server = Sshd::start("LogLevel DEBUG1\n");
    let user = User::ensure("gpb-ssh-lost");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "  ServerAliveInterval 1\n");
    home.trust(&server);
    let s = connect("lab1", &home.options(None)).await.unwrap();
    // An idle session: nothing but keepalives goes over it.
    sshd::wait_until("three keepalives in sshd's log", || {
        server.log().matches("keepalive@libssh2.org").count() >= 3
    });
    assert!(!s.is_lost());
    assert!(s.run("true", b"").await.unwrap().success());
}
