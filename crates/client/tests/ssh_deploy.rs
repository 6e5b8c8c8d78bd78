//! The agent over SSH, against a real sshd and real Unix users: deployed into a fresh
//! account on first connect, reused, upgraded by a newer client (the old one stopped, the
//! bookings kept, a running job handed over alive), but used as it is by an older client or
//! another build of the same version, reported when it speaks a newer protocol major,
//! replaced when it does not answer; repaired after an interrupted upload or a corrupt
//! binary; refused clearly without a writable home, over something that is not ours, and
//! without NVML; the build for the server's architecture uploaded, and a server of an
//! architecture without a build named; and a system-style agent (run by root, shared socket; reached through a
//! direct-streamlocal channel, or the bridge where sshd forbids that) where two users see
//! each other's bookings and are themselves.

use gpubook_testkit::sshd;

use gpubook_client::deploy::{self, DeployOptions, Reached};
use gpubook_client::ssh::{Options, Session, SshError, SshHost};
use gpubook_client::Connection;
use gpubook_proto::{BookRequest, GpuChoice, ListRequest, Request, Response, WhenChoice};
use sshd::{ClientHome, Sshd, User};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn session(spec: &str, opts: &Options) -> Session {
    let t = SshHost::resolve_with(spec, &opts.env).unwrap();
    Session::connect(&t, opts).await.expect("log in")
}

/// A system agent's socket that is never there: a system agent on the machine running the
/// tests (another test's, an admin's) must not be taken for the personal one.
const NO_SYSTEM: &str = "/nonexistent/gpubook-test/agent.sock";

fn sim(binary: &Path) -> DeployOptions {
    DeployOptions {
        binary: Some(binary.to_path_buf()),
        gpus: Some("sim:2".into()),
        system_socket: Some(NO_SYSTEM.into()),
        ..DeployOptions::default()
    }
}

/// [`sim`] for a client that claims crate version `version` for the binary it carries.
fn sim_as(binary: &Path, version: &str) -> DeployOptions {
    DeployOptions {
        version: Some(version.into()),
        ..sim(binary)
    }
}

/// This build's crate version with its patch raised by `by`: a newer client's.
fn newer(by: u64) -> String {
    let v = env!("CARGO_PKG_VERSION");
    let core = v.split(['-', '+']).next().unwrap();
    let mut n: Vec<u64> = core.split('.').map(|x| x.parse().unwrap()).collect();
    n[2] += by;
    format!("{}.{}.{}", n[0], n[1], n[2])
}

/// A copy of `binary` with `tag` appended: another build (another checksum) that still runs.
fn other_build(binary: &Path, dir: &Path, tag: &str) -> PathBuf {
    let path = dir.join(format!("gpubook-agent-{tag}"));
    let mut bytes = std::fs::read(binary).unwrap();
    bytes.extend_from_slice(format!("\0gpubook test build {tag}").as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The agent binaries installed in the user's account, by file name.
fn installed(user: &User) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(bin_dir(user))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gpubook-agent-"))
        .collect();
    v.sort();
    v
}

async fn book(conn: &Connection, title: &str) -> u64 {
    match conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec!["0".into()],
            },
            when: WhenChoice::Asap {
                duration_secs: 3600,
            },
            title: title.into(),
            job: None,
        }))
        .await
    {
        Ok(Response::Booking(b)) => b.booking.id.0,
        other => panic!("expected a booking, got {other:?}"),
    }
}

async fn titles(conn: &Connection) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = conn
        .list_all(ListRequest::default())
        .await
        .unwrap()
        .bookings
        .into_iter()
        .map(|b| (b.owner, b.title))
        .collect();
    v.sort();
    v
}

/// The pid recorded by the start script, and the version beside it.
fn recorded(user: &User) -> (u32, String) {
    let text = sshd::read(&user.home.join(".local/state/gpubook/personal-agent.pid"));
    let mut f = text.split_whitespace();
    (
        f.next().expect("a pid").parse().unwrap(),
        f.next().expect("a version").to_string(),
    )
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn bin_dir(user: &User) -> PathBuf {
    user.home.join(".local/share/gpubook/bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_into_a_fresh_account_reused_upgraded_and_repaired() {
    if !sshd::available("ssh deploy") {
        return;
    }
    let server = Sshd::start("");
    let user = User::fresh("gpb-ssh-deploy");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    home.trust(&server);
    let opts = home.options(None);
    let work = tempfile::tempdir().unwrap();
    let v1 = sshd::runnable_copy(&sshd::agent_binary(), work.path());

    // First connect, twice at once (the app and the CLI): one agent is started, uploaded,
    // reached as the user who logged in; the other connect finds it.
    let s = session("lab1", &opts).await;
    let deploy = sim(&v1);
    let (a, b) = tokio::join!(
        deploy::agent_over(&s, &deploy, "test"),
        deploy::connect_agent_with("lab1", &opts, &deploy, "test")
    );
    let ((conn, reached), (other, other_reached)) = (a.unwrap(), b.unwrap());
    // Exactly one of them started the agent; the other found it running.
    let both = [reached, other_reached];
    let started: Vec<_> = both
        .iter()
        .filter(|r| matches!(r, Reached::Started { replaced: None, .. }))
        .collect();
    assert_eq!(started.len(), 1, "{both:?}");
    assert!(both.contains(&Reached::Running), "{both:?}");
    assert_eq!(other.welcome().uid, conn.welcome().uid);
    drop(other);
    assert_eq!(conn.welcome().user, user.name);
    assert_eq!(conn.welcome().uid, user.uid);
    assert!(conn.welcome().simulated);
    let first = book(&conn, "before the upgrade").await;
    let (pid1, version1) = recorded(&user);
    assert!(alive(pid1));
    let installed = bin_dir(&user).join(format!("gpubook-agent-{version1}"));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&v1).unwrap()
    );
    let meta = std::fs::metadata(&installed).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user.uid);
    drop(conn);

    // Second connect (a new SSH session too): the running agent is used as it is.
    let (conn, reached) = deploy::connect_agent_with("lab1", &opts, &sim(&v1), "test")
        .await
        .unwrap();
    assert_eq!(reached, Reached::Running);
    assert_eq!(recorded(&user).0, pid1);
    drop(conn);
    // A client that carries no agent binary still uses the running one.
    let none = DeployOptions {
        binary: Some(work.path().join("no-such-binary")),
        ..sim(&v1)
    };
    let (conn, reached) = deploy::connect_agent_with("lab1", &opts, &none, "test")
        .await
        .unwrap();
    assert_eq!(reached, Reached::Running);
    drop(conn);

    // A newer client (a newer crate version, another binary): uploaded, the old agent
    // stopped, the new one started on the same state (the booking is still there).
    let v2 = other_build(&v1, work.path(), "v2");
    let bytes = std::fs::read(&v2).unwrap();
    let (conn, reached) = deploy::agent_over(&s, &sim_as(&v2, &newer(1)), "test")
        .await
        .unwrap();
    assert_eq!(
        reached,
        Reached::Started {
            uploaded: true,
            replaced: Some(version1.clone())
        }
    );
    let (pid2, version2) = recorded(&user);
    assert_ne!(version1, version2);
    assert!(
        version2.starts_with(&format!("{}-", newer(1))),
        "{version2}"
    );
    assert_ne!(pid1, pid2);
    sshd::wait_until("the old agent to stop", || !alive(pid1));
    assert_eq!(
        titles(&conn).await,
        vec![(user.name.clone(), "before the upgrade".to_string())]
    );
    let _ = first;
    drop(conn);

    // A corrupt binary (same name, other bytes) and what an interrupted upload leaves: the
    // next connect uploads again, and works.
    user.kill_all();
    sshd::wait_until("the user's agent to stop", || !alive(pid2));
    let installed2 = bin_dir(&user).join(format!("gpubook-agent-{version2}"));
    std::fs::write(&installed2, b"#!/bin/sh\necho not an agent\n").unwrap();
    let leftover = bin_dir(&user).join(format!(".upload-{version2}-12345"));
    std::fs::write(&leftover, &bytes[..bytes.len() / 2]).unwrap();
    std::process::Command::new("touch")
        .args(["-d", "30 minutes ago"])
        .arg(&leftover)
        .status()
        .unwrap();
    let s = session("lab1", &opts).await;
    let (conn, reached) = deploy::agent_over(&s, &sim_as(&v2, &newer(1)), "test")
        .await
        .unwrap();
    assert!(
        matches!(reached, Reached::Started { uploaded: true, .. }),
        "{reached:?}"
    );
    assert_eq!(std::fs::read(&installed2).unwrap(), bytes);
    assert!(!leftover.exists(), "the interrupted upload was cleaned up");
    assert_eq!(titles(&conn).await.len(), 1);
    drop(conn);

    // Something at the agent's place that is not a file gpubook made: refused, clearly.
    let (pid3, _) = recorded(&user);
    // SAFETY: a pid the start script recorded for this test's user.
    unsafe { libc::kill(pid3 as i32, libc::SIGKILL) };
    sshd::wait_until("the agent to stop", || !alive(pid3));
    std::fs::remove_file(&installed2).unwrap();
    std::fs::create_dir(&installed2).unwrap();
    let e = deploy::agent_over(&s, &sim_as(&v2, &newer(1)), "test")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("lab1") && msg.contains("remove it"), "{msg}");
    std::fs::remove_dir(&installed2).unwrap();
    user.kill_all();
}

/// The running agent's bookings with a job that has started: (pid of the job, its state).
async fn job_run(conn: &Connection, id: u64) -> Option<(Option<u32>, gpubook_core::JobState)> {
    conn.list_all(ListRequest::default())
        .await
        .unwrap()
        .bookings
        .into_iter()
        .find(|b| b.id.0 == id)
        .and_then(|b| b.run)
        .map(|r| (r.pid, r.state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_older_or_silent_agent_is_replaced_and_its_running_job_is_handed_over() {
    if !sshd::available("ssh deploy versions") {
        return;
    }
    let server = Sshd::start("");
    let user = User::fresh("gpb-ssh-agentver");
    // userdel keeps the home while the last run's processes are still dying.
    let _ = std::fs::remove_dir_all(user.home.join(".local"));
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    home.trust(&server);
    let opts = home.options(None);
    let work = tempfile::tempdir().unwrap();
    let current = sshd::runnable_copy(&sshd::agent_binary(), work.path());

    // A newer client deploys first.
    let new_a = other_build(&current, work.path(), "new-a");
    let (conn, reached) =
        deploy::connect_agent_with("lab1", &opts, &sim_as(&new_a, &newer(1)), "test")
            .await
            .unwrap();
    assert_eq!(
        reached,
        Reached::Started {
            uploaded: true,
            replaced: None
        }
    );
    book(&conn, "kept").await;
    drop(conn);
    let (pid, version) = recorded(&user);
    let only = vec![format!("gpubook-agent-{version}")];
    assert_eq!(installed(&user), only);

    // An older client (this build's own crate version, another binary): uses the newer
    // agent as it is; nothing uploaded, nothing stopped.
    let s = session("lab1", &opts).await;
    let (conn, reached) = deploy::agent_over(&s, &sim(&current), "test")
        .await
        .unwrap();
    assert_eq!(reached, Reached::Running);
    assert_eq!(conn.welcome().user, user.name);
    assert_eq!(
        titles(&conn).await,
        vec![(user.name.clone(), "kept".into())]
    );
    drop(conn);
    assert_eq!(recorded(&user), (pid, version.clone()));
    assert_eq!(installed(&user), only);

    // Two builds of the same crate version (the app and the CLI, two laptops) take turns on
    // the one agent, neither replacing the other.
    let new_b = other_build(&current, work.path(), "new-b");
    for (round, bin) in [&new_b, &new_a, &new_b, &new_a].into_iter().enumerate() {
        let (conn, reached) = deploy::agent_over(&s, &sim_as(bin, &newer(1)), "test")
            .await
            .unwrap();
        assert_eq!(reached, Reached::Running, "round {round}");
        assert_eq!(titles(&conn).await.len(), 1);
        drop(conn);
        assert_eq!(recorded(&user), (pid, version.clone()), "round {round}");
        assert_eq!(installed(&user), only, "round {round}");
    }

    // An agent of a newer protocol major: reported ("update gpubook"), left running.
    let pidf = user.home.join(".local/state/gpubook/personal-agent.pid");
    let record = sshd::read(&pidf);
    std::fs::write(
        &pidf,
        format!("{pid} {version} {}\n", gpubook_proto::PROTOCOL_MAJOR + 1),
    )
    .unwrap();
    let e = deploy::agent_over(&s, &sim_as(&new_b, &newer(2)), "test")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), gpubook_proto::ErrorKind::Incompatible, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("lab1") && msg.contains("update gpubook"),
        "{msg}"
    );
    assert!(alive(pid));
    assert_eq!(installed(&user), only);
    std::fs::write(&pidf, record).unwrap();

    // A job that runs (`sleep 30`, started now) while an even newer client replaces the
    // agent: the job's process lives on and the new agent reports it running.
    let (conn, _) = deploy::agent_over(&s, &sim_as(&new_a, &newer(1)), "test")
        .await
        .unwrap();
    let job = match conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec!["1".into()],
            },
            // As soon as possible: now (a start given by time is put on the slot grid).
            when: WhenChoice::Asap {
                duration_secs: 3600,
            },
            title: "a running job".into(),
            job: Some(gpubook_core::JobSpec {
                command: "sleep 30".into(),
                cwd: None,
                env: Default::default(),
                end_signal: None,
                grace_secs: None,
                keep_slot: false,
                ..Default::default()
            }),
        }))
        .await
    {
        Ok(Response::Booking(b)) => b.booking.id.0,
        other => panic!("expected a booking, got {other:?}"),
    };
    let mut job_pid = None;
    let mut last = None;
    for _ in 0..600 {
        last = job_run(&conn, job).await;
        if let Some((Some(p), gpubook_core::JobState::Running)) = last {
            job_pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job_pid = job_pid.unwrap_or_else(|| {
        panic!(
            "the job did not start: {last:?}; agent log:\n{}",
            sshd::read(&user.home.join(".local/state/gpubook/agent.log"))
        )
    });
    assert!(alive(job_pid));
    drop(conn);
    let newest = other_build(&current, work.path(), "newest");
    let (conn, reached) = deploy::agent_over(&s, &sim_as(&newest, &newer(2)), "test")
        .await
        .unwrap();
    assert_eq!(
        reached,
        Reached::Started {
            uploaded: true,
            replaced: Some(version.clone())
        }
    );
    sshd::wait_until("the old agent to stop", || !alive(pid));
    assert!(alive(job_pid), "the job outlived its old agent");
    let mut seen = None;
    for _ in 0..200 {
        seen = job_run(&conn, job).await;
        if seen == Some((Some(job_pid), gpubook_core::JobState::Running)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some((Some(job_pid), gpubook_core::JobState::Running)));
    assert_eq!(titles(&conn).await.len(), 2);
    drop(conn);

    // An agent that does not answer (its binary now something else; the process runs on):
    // replaced even by a client of its own version, and the bookings are still there.
    let (pid, version) = recorded(&user);
    let running_bin = bin_dir(&user).join(format!("gpubook-agent-{version}"));
    std::fs::remove_file(&running_bin).unwrap();
    std::fs::write(&running_bin, b"#!/bin/sh\necho not an agent\n").unwrap();
    std::fs::set_permissions(&running_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (conn, reached) = deploy::agent_over(&s, &sim_as(&newest, &newer(2)), "test")
        .await
        .unwrap();
    assert_eq!(
        reached,
        Reached::Started {
            uploaded: true,
            replaced: Some(version.clone())
        }
    );
    sshd::wait_until("the silent agent to stop", || !alive(pid));
    assert_eq!(recorded(&user).1, version);
    assert_eq!(titles(&conn).await.len(), 2);
    drop(conn);
    user.kill_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writable_home_and_no_nvml_are_reported() {
    if !sshd::available("ssh deploy refusals") {
        return;
    }
    let server = Sshd::start("");
    let home = ClientHome::new();
    home.trust(&server);
    let work = tempfile::tempdir().unwrap();
    let bin = sshd::runnable_copy(&sshd::agent_binary(), work.path());

    // A home the user cannot write in.
    let stuck = User::fresh("gpb-ssh-nohome");
    stuck.authorize(&home.key.with_extension("pub"));
    std::os::unix::fs::chown(&stuck.home, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&stuck.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    home.host("stuck", &server, &stuck.name, "");
    let e = deploy::connect_agent_with("stuck", &home.options(None), &sim(&bin), "test")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            deploy::DeployError::Ssh(SshError::NoWritableHome { .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("stuck"), "{e}");

    // No NVML on this machine: the personal agent cannot start with --gpus nvml; the message
    // says so and how to try simulated GPUs.
    let user = User::fresh("gpb-ssh-nonvml");
    user.authorize(&home.key.with_extension("pub"));
    home.host("plain", &server, &user.name, "");
    let nvml = DeployOptions {
        gpus: Some("nvml".into()),
        ..sim(&bin)
    };
    match deploy::connect_agent_with("plain", &home.options(None), &nvml, "test").await {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("plain"), "{msg}");
            assert!(msg.contains("GPUBOOK_REMOTE_GPUS=sim:2"), "{msg}");
        }
        // A machine with an NVIDIA driver: the agent reads the real GPUs.
        Ok((conn, _)) => assert!(!conn.welcome().simulated),
    }
    user.kill_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_for_the_servers_architecture_is_uploaded_and_one_without_is_named() {
    if !sshd::available("ssh deploy per architecture") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Builds per architecture as the desktop package lays them out: this machine's is the
    // real agent, the other one another file (another checksum).
    let agents = work.path().join("agents");
    let here = std::env::consts::ARCH;
    let other = if here == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    for arch in [here, other] {
        std::fs::create_dir_all(agents.join(arch)).unwrap();
    }
    let matching = sshd::runnable_copy(&sshd::agent_binary(), &agents.join(here));
    let foreign = other_build(&matching, &agents.join(other), "foreign");
    std::fs::rename(&foreign, agents.join(other).join("gpubook-agent")).unwrap();
    let per_arch = DeployOptions {
        binary: None,
        agents_dir: Some(agents.clone()),
        ..sim(&matching)
    };

    let server = Sshd::start("");
    let home = ClientHome::new();
    home.trust(&server);
    let user = User::fresh("gpb-ssh-arch");
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    let (conn, reached) =
        deploy::connect_agent_with("lab1", &home.options(None), &per_arch, "test")
            .await
            .unwrap();
    assert!(
        matches!(reached, Reached::Started { uploaded: true, .. }),
        "{reached:?}"
    );
    let (_, version) = recorded(&user);
    assert_eq!(
        std::fs::read(bin_dir(&user).join(format!("gpubook-agent-{version}"))).unwrap(),
        std::fs::read(&matching).unwrap(),
        "the {here} build was uploaded to the {here} server"
    );
    assert_eq!(installed(&user).len(), 1, "{:?}", installed(&user));
    drop(conn);
    user.kill_all();

    // A server whose `uname -m` says ppc64le (a `uname` first on the PATH sshd gives it):
    // nothing is uploaded or started, and the message names the architecture and what to do.
    let fake = work.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("uname"),
        "#!/bin/sh\nif [ \"$1\" = -m ]; then echo ppc64le; exit 0; fi\nexec /usr/bin/uname \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(fake.join("uname"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ppc = Sshd::start(&format!(
        "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin",
        fake.display()
    ));
    home.trust(&ppc);
    let user = User::fresh("gpb-ssh-ppc");
    user.authorize(&home.key.with_extension("pub"));
    home.host("power", &ppc, &user.name, "");
    for deploy in [per_arch.clone(), sim(&matching)] {
        let e = deploy::connect_agent_with("power", &home.options(None), &deploy, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, deploy::DeployError::Ssh(SshError::NoAgentBuild { arch, .. }) if arch == "ppc64le"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("power is a ppc64le machine"), "{msg}");
        assert!(
            msg.contains(here) && msg.contains("gpubook-agent package"),
            "{msg}"
        );
        assert_eq!(
            e.ssh_kind(),
            Some(gpubook_client::ssh::SshErrorKind::Deploy)
        );
    }
    assert!(
        !bin_dir(&user).exists() || installed(&user).is_empty(),
        "{:?}",
        installed(&user)
    );
    user.kill_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_one_system_agent_see_each_other_and_are_themselves() {
    if !sshd::available("ssh system agent") {
        return;
    }
    // A system-style agent: run by root, socket every user may reach.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = sshd::runnable_copy(&sshd::agent_binary(), dir.path());
    let socket = dir.path().join("run/agent.sock");
    let config = gpubook_agent::AgentConfig {
        state_dir: dir.path().join("state"),
        socket: socket.clone(),
        gpus: "sim:2".parse().unwrap(),
        policy: None,
        server_name: "lab-system".into(),
        shared: true,
        sample_interval: Duration::from_secs(1),
    };
    let agent = gpubook_agent::server::bind(
        config,
        std::sync::Arc::new(gpubook_agent::clock::SystemClock),
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));

    // Alice's sshd lets a direct-streamlocal channel reach the socket; Bob's does not, so
    // his client runs the system's `gpubook-agent bridge` on an exec channel instead.
    let open = Sshd::start("");
    let closed = Sshd::start("AllowStreamLocalForwarding no\n");
    let home = ClientHome::new();
    home.trust(&open);
    home.trust(&closed);
    let alice = User::ensure("gpb-ssh-alice");
    let bob = User::ensure("gpb-ssh-bob");
    let system = DeployOptions {
        system_socket: Some(socket.display().to_string()),
        system_binary: Some(bin.display().to_string()),
        // Nothing may be uploaded: a binary that does not exist proves it.
        binary: Some(dir.path().join("no-such-binary")),
        ..DeployOptions::default()
    };
    let mut conns = Vec::new();
    for (u, server, streamlocal) in [(&alice, &open, true), (&bob, &closed, false)] {
        u.authorize(&home.key.with_extension("pub"));
        home.host(&u.name, server, &u.name, "");
        let (conn, reached) =
            deploy::connect_agent_with(&u.name, &home.options(None), &system, "test")
                .await
                .unwrap();
        assert_eq!(reached, Reached::System { streamlocal });
        assert_eq!(conn.welcome().user, u.name);
        assert_eq!(conn.welcome().uid, u.uid);
        assert_eq!(conn.welcome().server, "lab-system");
        conns.push(conn);
    }
    book(&conns[0], "alice's run").await;
    book(&conns[1], "bob's run").await;
    let expected = vec![
        (alice.name.clone(), "alice's run".to_string()),
        (bob.name.clone(), "bob's run".to_string()),
    ];
    for c in &conns {
        assert_eq!(titles(c).await, expected);
    }
    assert!(!alice.home.join(".local/share/gpubook").exists());
    drop(conns);
    let _ = stop.send(());
    let _ = running.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_halfway_is_repaired_by_the_next_connect() {
    if !sshd::available("ssh interrupted upload") {
        return;
    }
    let mut server = Sshd::start("");
    let user = User::fresh("gpb-ssh-cut");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    home.trust(&server);
    let opts = home.options(None);
    let work = tempfile::tempdir().unwrap();
    let bin = sshd::runnable_copy(&sshd::agent_binary(), work.path());
    let full = std::fs::metadata(&bin).unwrap().len();
    let dir = bin_dir(&user);
    let deploy = sim(&bin);
    let first = {
        let (opts, deploy) = (opts.clone(), deploy.clone());
        tokio::spawn(
            async move { deploy::connect_agent_with("lab1", &opts, &deploy, "test").await },
        )
    };
    // Cut the connection once part of the binary arrived.
    let partial = |d: &Path| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with(".upload-")
                    && e.metadata().is_ok_and(|m| m.len() > 0 && m.len() < full)
            })
    };
    sshd::wait_until("part of the upload", || partial(&dir));
    server.stop();
    let e = first.await.unwrap().unwrap_err();
    assert_eq!(
        e.ssh_kind(),
        Some(gpubook_client::ssh::SshErrorKind::Unreachable),
        "{e}"
    );
    assert!(e.to_string().contains("lab1"), "{e}");
    // Nothing half-written carries the agent's name.
    let named: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("gpubook-agent-")
        })
        .collect();
    assert!(named.is_empty(), "{named:?}");

    server.restart();
    let (conn, reached) = deploy::connect_agent_with("lab1", &opts, &deploy, "test")
        .await
        .expect("the next connect repairs");
    assert!(
        matches!(reached, Reached::Started { uploaded: true, .. }),
        "{reached:?}"
    );
    assert_eq!(conn.welcome().user, user.name);
    let (_, version) = recorded(&user);
    assert_eq!(
        std::fs::read(dir.join(format!("gpubook-agent-{version}"))).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    drop(conn);
    user.kill_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_agent_of_another_major_is_reported_not_replaced() {
    if !sshd::available("ssh system agent of another major") {
        return;
    }
    // A "system agent" that refuses every hello as a future major would.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = gpubook_proto::read_frame(&mut s).await;
                let refusal = gpubook_proto::AgentFrame::Error {
                    id: None,
                    error: gpubook_proto::ErrorBody::new(
                        gpubook_proto::ErrorKind::Incompatible,
                        "this agent speaks protocol 99; upgrade gpubook",
                    ),
                };
                let _ = gpubook_proto::write_frame(&mut s, &refusal).await;
            });
        }
    });
    let server = Sshd::start("");
    let home = ClientHome::new();
    home.trust(&server);
    let user = User::ensure("gpb-ssh-alice");
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &server, &user.name, "");
    let system = DeployOptions {
        system_socket: Some(socket.display().to_string()),
        binary: Some(dir.path().join("no-such-binary")),
        ..DeployOptions::default()
    };
    for exec_only in [false, true] {
        let opts = DeployOptions {
            exec_only,
            system_binary: Some(
                sshd::runnable_copy(&sshd::agent_binary(), dir.path())
                    .display()
                    .to_string(),
            ),
            ..system.clone()
        };
        let e = deploy::connect_agent_with("lab1", &home.options(None), &opts, "test")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), gpubook_proto::ErrorKind::Incompatible, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("lab1") && msg.contains("protocol 99"), "{msg}");
    }
    // Nothing of the person's own was put there.
    assert!(!user.home.join(".local/share/gpubook").exists());
}
