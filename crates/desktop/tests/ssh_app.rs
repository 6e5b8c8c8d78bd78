//! The app's "Add server" over SSH, against a real sshd and real Unix users (the testkit's
//! fixture), through the same functions the Tauri commands call
//! (gpubook_desktop::servers): an alias of ~/.ssh/config whose host key is unknown is
//! refused with the key's fingerprint and nothing is saved; a different fingerprint is not
//! accepted; the shown one is, and the server is added: the agent put into the person's
//! account, the server connected as that person, its simulated GPUs listed, a booking's event
//! pushed through the app's pump; the same server cannot be added twice; a server that needs
//! a password fails with `auth` until the person types it (not kept anywhere without
//! consent); a restarted app reconnects to the saved list, and the server whose password was
//! not kept waits for the person to sign in (a wrong password changes nothing, the right one
//! connects it); a server whose host key changed is shown refused (the new key's
//! fingerprint), never trusted; removing a server takes it out of the list.
//!
//! The test sets this process's HOME and SSH environment as the app would find them, so it is
//! the only test in this file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use gpubook_core::time::floor_to;
use gpubook_desktop::error::{AppErrorKind, AppOnlyKind};
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    servers, EventPayload, Files, Manager, ReadingsPayload, ServerState, ServerView, Sink,
};
use gpubook_proto::{BookRequest, GpuChoice, WhenChoice};
use gpubook_testkit::sshd::{self, agent_binary, runnable_copy, ClientHome, SshAgent, Sshd, User};

/// What the app's window would have been sent.
#[derive(Debug, Default)]
struct Window {
    events: Mutex<Vec<EventPayload>>,
}

impl Sink for Window {
    fn server(&self, _: &ServerView) {}
    fn event(&self, e: &EventPayload) {
        self.events.lock().unwrap().push(e.clone());
    }
    fn readings(&self, _: &ReadingsPayload) {}
}

#[derive(Debug)]
struct Quiet;

impl Notifier for Quiet {
    fn show(&self, _: Notice, _: Option<Box<dyn FnOnce() + Send>>) {}
}

fn manager(dir: &Path, window: Arc<Window>, rt: &tokio::runtime::Runtime) -> Manager {
    Manager::new(
        Files {
            settings: dir.join("settings.json"),
            last_seen: dir.join("last-seen.json"),
        },
        window,
        Arc::new(Quiet),
        rt.handle().clone(),
        Default::default(),
    )
}

/// Waits until server `id` of `m` is connected; its view.
async fn connected(m: &Manager, id: &str) -> ServerView {
    let until = Instant::now() + sshd::DEADLINE;
    loop {
        let v = m.views().into_iter().find(|v| v.id == id);
        if let Some(v) = &v {
            if v.state == ServerState::Connected {
                return v.clone();
            }
        }
        assert!(Instant::now() < until, "{id} never connected: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn add_an_ssh_server_as_the_app_does() {
    if !sshd::available("add_an_ssh_server_as_the_app_does") {
        return;
    }
    let mut sshd = Sshd::start("");
    let user = User::fresh("gpb-ssh-app");
    let pw_user = User::fresh("gpb-ssh-apppw");
    pw_user.set_password("app password 1");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &sshd, &user.name, "");
    let agent = SshAgent::start();
    agent.add(&home.key);
    let bin = runnable_copy(&agent_binary(), home.home());
    // The person's environment as the app finds it; no D-Bus session, so no keyring: nothing
    // typed can be kept, and nothing is read from the person running the test.
    std::env::set_var("HOME", home.home());
    std::env::set_var("GPUBOOK_SSH_CONFIG", home.ssh("config"));
    std::env::set_var("SSH_AUTH_SOCK", &agent.socket);
    std::env::set_var("GPUBOOK_AGENT_BINARY", &bin);
    std::env::set_var("GPUBOOK_REMOTE_GPUS", "sim:2");
    std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
    std::env::remove_var("XDG_CONFIG_HOME");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let app_dir = tempfile::tempdir().unwrap();
    let list = app_dir.path().join("servers.toml");
    let known_hosts = home.ssh("known_hosts");
    let window = Arc::new(Window::default());
    let m = manager(app_dir.path(), window.clone(), &rt);

    let pw_id = rt.block_on(async {
        // An unknown host key: refused with its fingerprint, nothing saved or trusted.
        let e = servers::add(&m, &list, "lab1", None, false)
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            AppErrorKind::App(AppOnlyKind::HostKeyUnknown),
            "{e:?}"
        );
        assert_eq!(
            e.fingerprint.as_deref(),
            Some(sshd.fingerprint().as_str()),
            "{e:?}"
        );
        assert!(e.message.contains("lab1"), "{e:?}");
        assert!(
            !list.exists(),
            "nothing is saved before the key is accepted"
        );
        assert!(sshd::read(&known_hosts).is_empty());
        assert!(m.views().iter().all(|v| v.id != "lab1"));

        // A fingerprint other than the server's (what the person saw is not what is there).
        let e = servers::accept_host_key(&m, &list, "lab1", "SHA256:not-this-one", None, false)
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            AppErrorKind::App(AppOnlyKind::HostKeyChanged),
            "{e:?}"
        );
        assert!(sshd::read(&known_hosts).is_empty());
        assert!(!list.exists());

        // The fingerprint shown: trusted, the agent put there, the server added and saved.
        let view = servers::accept_host_key(&m, &list, "lab1", &sshd.fingerprint(), None, false)
            .await
            .unwrap();
        assert_eq!(view.id, "lab1");
        assert!(
            sshd::read(&known_hosts).contains(&format!("[127.0.0.1]:{}", sshd.port)),
            "the accepted key is remembered"
        );
        assert!(sshd::read(&list).contains("lab1"), "{}", sshd::read(&list));
        let view = connected(&m, "lab1").await;
        assert_eq!(view.user.as_deref(), Some(user.name.as_str()));
        assert!(view.simulated, "{view:?}");
        assert!(
            user.home.join(".local/share/gpubook/bin").is_dir(),
            "the agent was put into the person's account"
        );
        let gpus = m.gpus("lab1").await.unwrap();
        assert_eq!(gpus.gpus.len(), 2, "{gpus:?}");

        // A booking made in the app: in the agent, and its event pushed to the window.
        let start = floor_to(Utc::now(), ChronoDuration::minutes(15)) + ChronoDuration::days(1);
        let booked = m
            .book(
                "lab1",
                BookRequest {
                    gpus: GpuChoice::Named {
                        gpus: vec!["0".into(), "1".into()],
                    },
                    when: WhenChoice::At {
                        start,
                        end: start + ChronoDuration::hours(2),
                    },
                    title: "over ssh".into(),
                    job: None,
                },
            )
            .await
            .unwrap()
            .booking;
        assert_eq!(booked.owner, user.name);
        let until = Instant::now() + sshd::DEADLINE;
        while !window
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.server == "lab1" && e.event.booking.id == booked.id)
        {
            assert!(Instant::now() < until, "the booking's event never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The same server again: said so, the list unchanged.
        let before = sshd::read(&list);
        let e = servers::add(&m, &list, "lab1", None, false)
            .await
            .unwrap_err();
        assert!(e.message.contains("already in the list"), "{e:?}");
        assert_eq!(sshd::read(&list), before);

        // A server that needs a password: `auth` until the person types it.
        let spec = format!("{}@127.0.0.1:{}", pw_user.name, sshd.port);
        let e = servers::add(&m, &list, &spec, None, false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, AppErrorKind::App(AppOnlyKind::Auth), "{e:?}");
        assert_eq!(sshd::read(&list), before);
        let e = servers::add(&m, &list, &spec, Some("wrong".into()), false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, AppErrorKind::App(AppOnlyKind::Auth), "{e:?}");
        let view = servers::add(&m, &list, &spec, Some("app password 1".into()), false)
            .await
            .unwrap();
        let pw_id = view.id.clone();
        let view = connected(&m, &pw_id).await;
        assert_eq!(view.user.as_deref(), Some(pw_user.name.as_str()));
        let saved = sshd::read(&list);
        assert!(saved.contains(&spec), "{saved}");
        assert!(
            !saved.contains("app password"),
            "the password is not in the list"
        );
        for f in std::fs::read_dir(app_dir.path()).unwrap() {
            let text = sshd::read(&f.unwrap().path());
            assert!(!text.contains("app password"), "a password reached a file");
        }

        // This computer cannot be removed.
        assert!(servers::remove(&m, &list, "local").is_err());
        pw_id
    });

    // The app restarted: the saved servers are there again. lab1 logs in with the ssh-agent's
    // key; the password was not kept, so the other one waits for it.
    drop(m);
    let window2 = Arc::new(Window::default());
    let m2 = manager(app_dir.path(), window2, &rt);
    servers::add_saved(&m2, &list);
    rt.block_on(async {
        let ids: Vec<String> = m2.views().into_iter().map(|v| v.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        connected(&m2, "lab1").await;
        let now = Utc::now();
        let bookings = m2
            .bookings("lab1", now, now + ChronoDuration::days(3))
            .await
            .unwrap();
        assert!(
            bookings.iter().any(|b| b.title == "over ssh"),
            "{bookings:?}"
        );

        // The password was not kept: its server waits for the person to sign in, saying
        // what was tried and the ssh command that reaches it (not retried every few seconds).
        let until = Instant::now() + sshd::DEADLINE;
        let pw = loop {
            let v = m2.views().into_iter().find(|v| v.id == pw_id).unwrap();
            if v.needs_login {
                break v;
            }
            assert!(Instant::now() < until, "no login asked for: {v:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(pw.state, ServerState::Unreachable, "{pw:?}");
        let detail = pw.detail.clone().unwrap_or_default();
        assert!(detail.contains("nobody to type one"), "{detail}");
        assert!(
            detail.contains(&format!("ssh -p {} {}@127.0.0.1", sshd.port, pw_user.name)),
            "{detail}"
        );
        let e = servers::sign_in(&m2, &list, &pw_id, Some("wrong".into()), false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, AppErrorKind::App(AppOnlyKind::Auth), "{e:?}");
        assert_eq!(e.server.as_deref(), Some(pw_id.as_str()));
        assert!(m2.views().iter().any(|v| v.id == pw_id && v.needs_login));
        let v = servers::sign_in(&m2, &list, &pw_id, Some("app password 1".into()), false)
            .await
            .unwrap();
        assert_eq!(v.id, pw_id);
        let v = connected(&m2, &pw_id).await;
        assert!(!v.needs_login, "{v:?}");
        assert_eq!(v.user.as_deref(), Some(pw_user.name.as_str()));
        let ids_after: Vec<String> = m2.views().into_iter().map(|v| v.id).collect();
        assert_eq!(ids_after, ids, "signing in keeps the server in its place");

        // The server comes back with another host key: refused at once, said as such (the
        // new key's fingerprint), never trusted, and no password asked for.
        let trusted = sshd::read(&known_hosts);
        sshd.new_host_key();
        let new_key = sshd.fingerprint();
        let until = Instant::now() + sshd::DEADLINE;
        let refused = loop {
            let v = m2.views().into_iter().find(|v| v.id == "lab1").unwrap();
            if v.host_key_changed {
                break v;
            }
            assert!(Instant::now() < until, "no host key refusal: {v:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(refused.state, ServerState::Unreachable, "{refused:?}");
        assert!(!refused.needs_login, "{refused:?}");
        let detail = refused.detail.clone().unwrap_or_default();
        assert!(
            detail.contains("CHANGED") && detail.contains(&new_key),
            "{detail}"
        );
        assert_eq!(
            sshd::read(&known_hosts),
            trusted,
            "the new key was not trusted"
        );

        // Removed: out of the app and the list.
        servers::remove(&m2, &list, "lab1").unwrap();
        assert!(m2.views().iter().all(|v| v.id != "lab1"));
        assert!(!sshd::read(&list).contains("lab1"), "{}", sshd::read(&list));
    });
    drop(m2);
    drop(rt);
    user.kill_all();
    pw_user.kill_all();
}
