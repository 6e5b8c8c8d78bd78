//! The abuse suite: the real agent binary running as root with a shared socket (as
//! `install --system` runs it), attacked by real non-root Unix users the way a hostile lab
//! member would. Each test shows one attack failing, and then that the agent still answers an
//! ordinary client. SECURITY.md names the test behind each promise.
//!
//! Needs root (users, jobs as them, a tmpfs); see `jobs_support`.

mod jobs_support;

use chrono::Utc;
use gpubook_client::ClientError;
use gpubook_core::{BookingState, JobState};
use gpubook_proto::{
    ApproveRequest, ClientFrame, ErrorBody, ErrorKind, EventKind, Hello, MoveRequest, Request,
    WhoamiRequest,
};
use jobs_support::{
    book, booked, ensure_user, gone, job, listed, read_when_there, require_root, secs, slot_start,
    wait_until_within, Events, Lab, DEADLINE, JOBBER, OTHER,
};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn refused(r: Result<gpubook_proto::Response, ClientError>) -> ErrorBody {
    match r {
        Err(ClientError::Agent(e)) => e,
        other => panic!("expected the agent to refuse, got {other:?}"),
    }
}

/// An ordinary user still gets answers: who they are, and the calendar.
async fn still_answers(lab: &Lab) {
    let other = ensure_user(OTHER);
    let user = lab.connect_as(&other).await;
    let me = user
        .conn
        .request(Request::Whoami(WhoamiRequest {}))
        .await
        .expect("whoami");
    assert!(matches!(me, gpubook_proto::Response::Whoami(w) if w.user == OTHER));
    user.conn
        .list_all(gpubook_proto::ListRequest::default())
        .await
        .expect("the calendar");
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    gpubook_agent::procs::status_kib(pid, "VmRSS:").expect("the agent's VmRSS")
}

/// One frame as bytes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A hello frame of this client's protocol.
fn hello() -> Vec<u8> {
    let h = ClientFrame::Hello(Hello {
        major: gpubook_proto::PROTOCOL_MAJOR,
        minor: gpubook_proto::PROTOCOL_MINOR,
        client: "abuse-test".into(),
    });
    frame(&serde_json::to_vec(&h).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_directory_is_entered_as_the_owner_never_as_root() {
    if !require_root("a_working_directory_is_entered_as_the_owner_never_as_root") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    // Root's private directory, with a readable directory and file inside: the jobber cannot
    // reach them in their own shell.
    let private = lab.path().join("p");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inner = private.join("o");
    std::fs::create_dir(&inner).unwrap();
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(inner.join("f"), "s3cret\n").unwrap();
    std::fs::set_permissions(inner.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;

    let mut messages = Vec::new();
    for dir in [inner.clone(), private.join("no-such-dir")] {
        let mut spec = job("cat f; echo ran");
        spec.cwd = Some(dir.display().to_string());
        let start = slot_start(2);
        let b = booked(
            user.conn
                .request(book(&["0"], start, start + secs(60), "peek", Some(spec)))
                .await,
        )
        .booking;
        let failed = events.wait_for(b.id, EventKind::JobFailed, DEADLINE).await;
        let run = failed.booking.run.expect("a run");
        assert_eq!(run.state, JobState::FailedToStart);
        let message = run.message.unwrap_or_default();
        assert!(
            message.contains("cannot enter the working directory"),
            "{message}"
        );
        messages.push(message.replace(&dir.display().to_string(), "DIR"));
        let log =
            std::fs::read_to_string(lab.state_dir().join(format!("logs/booking-{}.log", b.id)))
                .unwrap_or_default();
        assert!(!log.contains("s3cret") && !log.contains("ran"), "{log}");
        // Its slot went back: the next one can start.
        events
            .wait_for(b.id, EventKind::BookingReleased, DEADLINE)
            .await;
    }
    // Whether the directory exists for root is not told.
    assert_eq!(messages[0], messages[1]);
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_working_directory_and_the_agent_s_variables_are_refused_when_booking() {
    if !require_root(
        "a_relative_working_directory_and_the_agent_s_variables_are_refused_when_booking",
    ) {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(600);
    let mut relative = job("pwd");
    relative.cwd = Some(".".into());
    let e = refused(
        user.conn
            .request(book(&["0"], start, start + secs(60), "rel", Some(relative)))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::Invalid, "{e:?}");
    assert!(e.message.contains("absolute"), "{}", e.message);
    for name in [
        "GPUBOOK_JOB_KEY",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "GPUBOOK_GPUS",
    ] {
        let mut spec = job("env");
        spec.env.insert(name.into(), "0,1".into());
        let e = refused(
            user.conn
                .request(book(&["0"], start, start + secs(60), "env", Some(spec)))
                .await,
        );
        assert_eq!(e.kind, ErrorKind::Invalid, "{name}: {e:?}");
        assert!(e.message.contains(name), "{name}: {}", e.message);
    }
    assert!(
        user.conn
            .list_all(gpubook_proto::ListRequest::default())
            .await
            .unwrap()
            .bookings
            .is_empty(),
        "nothing was stored"
    );
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_the_agent_stays_small() {
    if !require_root("a_client_that_never_reads_is_disconnected_and_the_agent_stays_small") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    still_answers(&lab).await;
    let pid = lab.agent_pid();
    let before = rss_kib(pid);

    // Three connections, each sending 100 one-megabyte requests of an unknown type, reading
    // nothing: the answers do not echo the type, so they stay small. (Echoed, as they were,
    // these 300 MiB of requests grew the agent by about as much.)
    let mut bridges = Vec::new();
    let huge = format!(
        r#"{{"type":"{}","id":1}}"#,
        "x".repeat(gpubook_proto::MAX_FRAME - 64)
    );
    let huge = frame(huge.as_bytes());
    for _ in 0..3 {
        let (mut to, from, bridge) = lab.raw_as(&jobber);
        to.write_all(&hello()).await.unwrap();
        for _ in 0..100 {
            if to.write_all(&huge).await.is_err() {
                break;
            }
        }
        bridges.push((to, from, bridge));
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "the agent grew by {grown} KiB on requests it answered with a few bytes"
    );

    // One connection asking for answers without reading them: cut off once its queue is full.
    let (mut to, _from, mut bridge) = lab.raw_as(&jobber);
    to.write_all(&hello()).await.unwrap();
    let whoami = frame(br#"{"type":"request","id":7,"body":{"type":"whoami"}}"#);
    // Cut off, the bridge stops taking what this client writes: stop writing then.
    for _ in 0..60_000 {
        let wrote = tokio::time::timeout(Duration::from_secs(2), to.write_all(&whoami)).await;
        if !matches!(wrote, Ok(Ok(()))) {
            break;
        }
    }
    wait_until_within("the agent to cut the client off", DEADLINE, || {
        lab.log().contains("pile up unread; disconnected")
    })
    .await;
    let _ = bridge.kill().await;
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 48 * 1024, "the agent grew by {grown} KiB");
    drop(bridges);
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hold_every_connection_and_silent_ones_are_closed() {
    if !require_root("one_user_cannot_hold_every_connection_and_silent_ones_are_closed") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.serve_args(&["--max-connections-per-uid", "4", "--idle-timeout-secs", "3"]);
    lab.start().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(lab.connect_as(&jobber).await);
    }
    // The fifth is refused, saying why.
    let (mut to, mut from, _bridge) = lab.raw_as(&jobber);
    let _ = to.write_all(&hello()).await;
    let answer = tokio::time::timeout(DEADLINE, gpubook_proto::read_frame(&mut from))
        .await
        .expect("an answer")
        .expect("a frame")
        .expect("not closed before it");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("too many connections"), "{text}");
    // Others are not held back by it.
    still_answers(&lab).await;
    lab.root().await;

    // The held ones said nothing since: closed after the idle time; a subscriber stays.
    let other = ensure_user(OTHER);
    let subscriber = lab.connect_as(&other).await;
    let (_, pushed) = subscriber.conn.subscribe(None, false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let closed = held[0]
        .conn
        .request(Request::Whoami(WhoamiRequest {}))
        .await;
    assert!(
        matches!(closed, Err(ClientError::ConnectionLost)),
        "a silent connection stayed open: {closed:?}"
    );
    subscriber
        .conn
        .request(Request::Whoami(WhoamiRequest {}))
        .await
        .expect("the subscriber is still connected");
    assert!(!pushed.is_closed(), "the subscription was closed");
    drop(held);
    // Places come back when connections close.
    lab.connect_as(&jobber).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_directory_is_private_even_for_a_shared_agent() {
    if !require_root("the_state_directory_is_private_even_for_a_shared_agent") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(1);
    // Left loose by an older agent.
    let state = lab.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    lab.with_state(|_| ());
    std::fs::set_permissions(
        state.join("agent.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let mut spec = job("sleep 1");
    spec.env.insert("WANDB_API_KEY".into(), "k-9f8e7d".into());
    let start = slot_start(600);
    booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "train", Some(spec)))
            .await,
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(lab.log().contains("made it 0700"), "{}", lab.log());
    // Another user cannot read the key from the database, its journal or the directory.
    for name in ["agent.db", "agent.db-wal"] {
        let (code, out, _) = jobs_support::run_as(
            &other,
            std::process::Command::new("cat").arg(state.join(name)),
        );
        assert_ne!(code, Some(0), "{name} is readable by {}", other.name);
        assert!(!out.contains("k-9f8e7d"));
    }
    // Nor through the agent.
    let seen = lab
        .connect_as(&other)
        .await
        .conn
        .list_all(gpubook_proto::ListRequest::default())
        .await
        .unwrap();
    assert!(seen.bookings[0]
        .job
        .as_ref()
        .is_some_and(|j| j.env.is_empty()));
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_lands_at_the_end_when_someone_follows_on_the_gpu() {
    if !require_root("the_kill_lands_at_the_end_when_someone_follows_on_the_gpu") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(1);
    lab.policy("max_grace = \"10s\"\n");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let next = lab.connect_as(&other).await;

    // More grace than the policy allows: refused when booking, naming the limit.
    let start = slot_start(3);
    let mut greedy = job("sleep 600");
    greedy.grace_secs = Some(3600);
    let e = refused(
        user.conn
            .request(book(
                &["0"],
                start,
                start + secs(60),
                "greedy",
                Some(greedy),
            ))
            .await,
    );
    assert!(e.message.contains("grace"), "{e:?}");

    // A job that ignores SIGTERM, with 4 s of grace, and someone booked 2 s after its end:
    // within the grace, so the kill must land at their start, not 4 s after the end.
    let mut stubborn = job("trap '' TERM; while true; do sleep 1; done");
    stubborn.grace_secs = Some(4);
    let end = start + secs(10);
    let next_start = end + secs(2);
    let b = booked(
        user.conn
            .request(book(&["0"], start, end, "stubborn", Some(stubborn)))
            .await,
    )
    .booking;
    let after = booked(
        next.conn
            .request(book(
                &["0"],
                next_start,
                next_start + secs(30),
                "next",
                None,
            ))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    let pid = started.booking.run.and_then(|r| r.pid).expect("a pid");
    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    let run = stopped.booking.run.expect("a run");
    let ended = run.ended_at.expect("when it ended");
    assert!(
        ended <= next_start + secs(1),
        "killed at {ended}, the next booking started at {next_start}"
    );
    assert!(gone(pid), "the job still runs");
    let message = run.message.unwrap_or_default();
    assert!(
        message.contains(&format!("booking {}", after.id)) && message.contains("SIGKILL"),
        "{message}"
    );
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_for_an_older_revision_is_refused() {
    if !require_root("an_approval_for_an_older_revision_is_refused") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(4);
    lab.policy("max_gpus_at_once = 1\nover_policy = \"approval\"\n");
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let admin = lab.root().await;
    let start = slot_start(600);
    let end = start + secs(3600);
    let asked = booked(
        user.conn
            .request(book(&["0", "1"], start, end, "two", None))
            .await,
    )
    .booking;
    assert_eq!(asked.state, BookingState::PendingApproval);
    let seen = asked.revision;
    // The owner makes it four GPUs while the admin looks at two.
    booked(
        user.conn
            .request(Request::Move(MoveRequest {
                id: asked.id,
                start,
                end,
                gpus: Some(vec!["0".into(), "1".into(), "2".into(), "3".into()]),
            }))
            .await,
    );
    let approve = |rev| Request::Approve(ApproveRequest { id: asked.id, rev });
    let e = refused(admin.request(approve(Some(seen))).await);
    assert_eq!(e.kind, ErrorKind::Changed, "{e:?}");
    assert!(
        e.message.contains("changed since you looked"),
        "{}",
        e.message
    );
    // An older client's approval, with no revision, is not taken either: it changed.
    let e = refused(admin.request(approve(None)).await);
    assert_eq!(e.kind, ErrorKind::Changed, "{e:?}");
    let now = listed(&admin, asked.id).await;
    assert_eq!(now.state, BookingState::PendingApproval);
    assert_eq!(now.gpus.len(), 4);
    // Approved as the admin sees it now.
    let ok = booked(admin.request(approve(Some(now.revision))).await).booking;
    assert_eq!(ok.state, BookingState::Confirmed);
    assert_eq!(ok.gpus.len(), 4);
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_carrying_a_job_s_key_is_left_alone() {
    if !require_root("a_process_of_another_user_carrying_a_job_s_key_is_left_alone") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    let mut spec = job("sleep 600");
    spec.grace_secs = Some(1);
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(6), "mine", Some(spec)))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    let pid = started.booking.run.and_then(|r| r.pid).expect("a pid");
    // The key, as another user who learnt it would carry it. (The environment is the job's
    // once its exec is done: look until it is there.)
    let read_key = || {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"GPUBOOK_JOB_KEY="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    wait_until_within("the job's exec", DEADLINE, || read_key().is_some()).await;
    let key = read_key().expect("the job's key");
    assert!(
        key.split('-').count() >= 3,
        "the key carries an unguessable part: {key}"
    );
    let mut impostor = std::process::Command::new("sleep");
    use std::os::unix::process::CommandExt;
    let mut impostor = impostor
        .arg("600")
        .env("GPUBOOK_JOB_KEY", &key)
        .uid(other.uid)
        .gid(other.gid)
        .spawn()
        .unwrap();
    events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    assert!(gone(pid));
    assert!(
        impostor.try_wait().unwrap().is_none(),
        "another user's process was signalled for the job"
    );
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_gets_the_system_s_limits_and_mask_not_the_agent_s() {
    if !require_root("a_job_gets_the_system_s_limits_and_mask_not_the_agent_s") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let agent = lab.agent_pid();
    // As a unit would: its own open-files limit (the soft one: raising a hard limit back
    // needs CAP_SYS_RESOURCE, which a container may lack), and an OOM score of its own (a
    // unit's OOMScoreAdjust; a container may forbid going below 0, so the test goes above).
    limit_files(agent, 4242);
    std::fs::write(format!("/proc/{agent}/oom_score_adj"), "500").unwrap();
    let out = lab.out_dir("limits", &jobber);
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    let spec = job(&format!(
        "echo \"$(ulimit -Sn) $(umask) $(cat /proc/self/oom_score_adj)\" > {}/seen",
        out.display()
    ));
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(30), "limits", Some(spec)))
            .await,
    )
    .booking;
    let seen = read_when_there(&out.join("seen"), DEADLINE).await;
    events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    // What a login gets: pid 1's, at most 1024 (systemd's default for every service).
    let system_soft: u64 = std::fs::read_to_string("/proc/1/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    let system_soft = system_soft.min(1024);
    assert_eq!(
        seen.trim(),
        format!("{system_soft} 0022 0"),
        "ulimit -Sn, umask, oom_score_adj"
    );
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_cut_at_the_policy_s_limit() {
    if !require_root("a_log_is_cut_at_the_policy_s_limit") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.policy("max_log = \"64K\"\n");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    // 8 MiB of output over about 4 s, then done.
    let spec = job("for i in $(seq 1 32); do head -c 262144 /dev/zero | tr '\\0' x; sleep 0.12; done; echo; echo the-end");
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "chatty", Some(spec)))
            .await,
    )
    .booking;
    events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    let path = lab.state_dir().join(format!("logs/booking-{}.log", b.id));
    // The last look after the job's end cuts what it wrote since the previous one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = std::fs::read(&path).unwrap();
    assert!(
        log.len() <= 64 * 1024 + 200,
        "the log is {} bytes, over the 64 KiB limit",
        log.len()
    );
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("size limit (max_log)"),
        "no line saying it was cut"
    );
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_others_see_of_a_failed_job_holds_no_paths() {
    if !require_root("what_others_see_of_a_failed_job_holds_no_paths") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    let mut spec = job("true");
    spec.cwd = Some("/srv/secret-project-x".into());
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "x", Some(spec)))
            .await,
    )
    .booking;
    events.wait_for(b.id, EventKind::JobFailed, DEADLINE).await;
    let mine = listed(&user.conn, b.id).await;
    assert!(mine
        .run
        .and_then(|r| r.message)
        .is_some_and(|m| m.contains("secret-project-x")));
    let theirs = listed(&lab.connect_as(&other).await.conn, b.id).await;
    let run = theirs.run.expect("the job's state shows");
    assert_eq!(run.state, JobState::FailedToStart);
    assert_eq!(run.message, None);
    still_answers(&lab).await;
}

/// A tmpfs mounted on a path, unmounted when dropped (also when the test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", path.display());
        Self(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_does_not_stop_the_agent_from_ending_slots() {
    if !require_root("a_full_disk_does_not_stop_the_agent_from_ending_slots") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    let disk = Tmpfs::mount(&lab.state_dir(), "4m");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    let end = start + secs(8);
    let mut spec = job("sleep 600");
    spec.grace_secs = Some(1);
    let b = booked(
        user.conn
            .request(book(&["0"], start, end, "on a full disk", Some(spec)))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    let pid = started.booking.run.and_then(|r| r.pid).expect("a pid");
    // Fill the disk.
    let fill = lab.state_dir().join("fill");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", fill.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // The slot still ends on time, from memory.
    let until = end + secs(6);
    while !gone(pid) {
        assert!(
            Utc::now() < until,
            "the job outlived its slot on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until_within("the agent to say why it cannot write", DEADLINE, || {
        lab.log()
            .contains("jobs are still stopped at their slots' ends")
    })
    .await;
    // Room again: what happened is recorded, and the agent goes on.
    std::fs::remove_file(&fill).unwrap();
    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    assert_eq!(
        stopped.booking.run.map(|r| r.state),
        Some(JobState::Stopped)
    );
    still_answers(&lab).await;
    drop(lab);
    drop(disk);
}

/// Sets the soft limit on open files of process `pid`, keeping its hard limit.
fn limit_files(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with valid structs, reading then writing one process's limit.
    unsafe {
        assert_eq!(
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                std::ptr::null(),
                &mut old
            ),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &new,
                std::ptr::null_mut()
            ),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_a_job_is_never_recorded_stopped_while_it_runs() {
    if !require_root("out_of_file_descriptors_a_job_is_never_recorded_stopped_while_it_runs") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(2);
    let end = start + secs(5);
    // A child that leaves the job's session and ignores SIGTERM: only its key (read from
    // /proc) finds it.
    let out = lab.out_dir("fd", &jobber);
    let mut spec = job(&format!(
        "setsid sh -c 'trap \"\" TERM; echo $$ > {}/escaped; exec sleep 600' & sleep 600",
        out.display()
    ));
    spec.grace_secs = Some(1);
    let b = booked(
        user.conn
            .request(book(&["0"], start, end, "fd", Some(spec)))
            .await,
    )
    .booking;
    events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    let escaped: u32 = read_when_there(&out.join("escaped"), DEADLINE)
        .await
        .trim()
        .parse()
        .unwrap();
    // The agent cannot open one more file from now on.
    let agent = lab.agent_pid();
    let open = std::fs::read_dir(format!("/proc/{agent}/fd"))
        .unwrap()
        .count() as u64;
    limit_files(agent, open.saturating_sub(1));
    // Past the end, the grace and the ten seconds the stop waits to see everything gone.
    let until = end + secs(14);
    while Utc::now() < until {
        assert_eq!(
            events.count(b.id, EventKind::JobStopped),
            0,
            "recorded as stopped while pid {escaped} still runs"
        );
        events.drain(Duration::from_millis(500)).await;
    }
    assert!(
        !gone(escaped),
        "the escaped child is gone without the agent seeing it"
    );
    // Descriptors again: the stop is tried again and finds it.
    limit_files(agent, 65536);
    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    if !gone(escaped) {
        let ps = std::process::Command::new("ps")
            .args([
                "-o",
                "pid,ppid,pgid,sid,stat,uid,cmd",
                "-p",
                &escaped.to_string(),
            ])
            .output()
            .unwrap();
        let env = std::fs::read(format!("/proc/{escaped}/environ")).unwrap_or_default();
        let key: Vec<String> = env
            .split(|b| *b == 0)
            .filter(|v| v.starts_with(b"GPUBOOK"))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        panic!(
            "stopped, but pid {escaped} still runs; {:?}\n{}\n{key:?}\n{}",
            stopped.booking.run,
            String::from_utf8_lossy(&ps.stdout),
            lab.log()
        );
    }
    assert_eq!(
        stopped.booking.run.map(|r| r.state),
        Some(JobState::Stopped)
    );
    assert!(lab.log().contains("cannot confirm"), "{}", lab.log());
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_agent_s_state_is_private_too() {
    if !require_root("a_personal_agent_s_state_is_private_too") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::personal(1, &jobber);
    lab.start().await;
    let state = lab.state_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    lab.root().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_keeps_its_owner_s_supplementary_groups_when_it_enters_its_directory() {
    if !require_root("a_job_keeps_its_owner_s_supplementary_groups_when_it_enters_its_directory") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    // A team directory the jobber reaches only through a supplementary group.
    let _ = std::process::Command::new("groupadd")
        .arg("gpb-team")
        .output()
        .unwrap();
    let added = std::process::Command::new("usermod")
        .args(["-aG", "gpb-team", JOBBER])
        .status()
        .unwrap();
    assert!(added.success(), "usermod -aG gpb-team {JOBBER}");
    let gid: u32 = String::from_utf8_lossy(
        &std::process::Command::new("getent")
            .args(["group", "gpb-team"])
            .output()
            .unwrap()
            .stdout,
    )
    .split(':')
    .nth(2)
    .and_then(|g| g.trim().parse().ok())
    .expect("the group's gid");
    assert_ne!(gid, jobber.gid);
    let mut lab = Lab::new(1);
    let team = lab.path().join("team");
    std::fs::create_dir(&team).unwrap();
    std::os::unix::fs::chown(&team, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o770)).unwrap();
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let mut spec = job("id -G > seen; pwd >> seen");
    spec.cwd = Some(team.display().to_string());
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "team", Some(spec)))
            .await,
    )
    .booking;
    let done = events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    assert_eq!(done.booking.run.and_then(|r| r.exit_code), Some(0));
    let seen = read_when_there(&team.join("seen"), DEADLINE).await;
    let mut lines = seen.lines();
    let groups: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    assert!(
        groups.contains(&gid),
        "groups {groups:?} lack gpb-team ({gid})"
    );
    assert!(
        !groups.contains(&0),
        "the job kept root's group: {groups:?}"
    );
    assert_eq!(lines.next(), Some(team.display().to_string().as_str()));
    still_answers(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_name_a_user_makes_up_is_refused_and_never_stored() {
    if !require_root("a_node_name_a_user_makes_up_is_refused_and_never_stored") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(600);
    // A path, and a name as long as a frame allows: neither is a node of this server, neither
    // is echoed back whole, and nothing is stored (the agent reads no path of it either).
    for node in ["../../../etc/shadow".to_string(), "n".repeat(900_000)] {
        let ask = Request::Book(gpubook_proto::BookRequest {
            gpus: gpubook_proto::GpuChoice::OnNode {
                node: node.clone(),
                count: 1,
            },
            when: gpubook_proto::WhenChoice::Asap {
                duration_secs: 3600,
            },
            title: "nowhere".into(),
            job: None,
        });
        let e = refused(user.conn.request(ask).await);
        assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
        assert!(e.message.len() < 200, "{} bytes said back", e.message.len());
    }
    let at = Request::Book(gpubook_proto::BookRequest {
        gpus: gpubook_proto::GpuChoice::OnNode {
            node: "../../../etc/shadow".into(),
            count: 1,
        },
        when: gpubook_proto::WhenChoice::At {
            start,
            end: start + secs(3600),
        },
        title: "nowhere".into(),
        job: None,
    });
    assert_eq!(
        refused(user.conn.request(at).await).kind,
        ErrorKind::NotFound
    );
    let all = user
        .conn
        .list_all(gpubook_proto::ListRequest::default())
        .await
        .expect("the calendar");
    assert!(all.bookings.is_empty(), "stored: {:?}", all.bookings);
    still_answers(&lab).await;
}
