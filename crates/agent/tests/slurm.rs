//! The agent on a real Slurm cluster (`--gpus slurm`): Debian's slurmctld and slurmds with
//! munge, node `gpunode1` with 4 `gres/gpu` and `gpunode2` with 2 (in a network namespace of
//! its own), started by `scripts/slurm-services.sh`.
//!
//! - A booking is a reservation `gpubook-<id>` for its owner (read back with `scontrol show
//!   reservation`); moving, extending and cancelling it change or delete the reservation.
//! - Another user's `sbatch --gres=gpu:4` waits while a booking holds the node, and runs after.
//! - gpubook books around Slurm's running GPU jobs (refused as busy at their time, "as soon as
//!   possible" after them), not around jobs without GPUs; Slurm's own refusal (its controller
//!   down) refuses the booking with Slurm's words; nothing refused is stored.
//! - An agent killed with SIGKILL while a reservation was deleted by hand, and a stray
//!   `gpubook-` reservation made: the restarted agent puts back the one and deletes the other.
//! - A booking's job runs through `sbatch` as its owner inside its reservation (its uid,
//!   `SLURM_JOB_ID`, Slurm's `CUDA_VISIBLE_DEVICES`, its log written as the owner and read
//!   through `logs`), confined by Slurm's device cgroup to the GPUs it was given, which are
//!   recorded with its run; its exit status reaches gpubook and the rest of the slot goes back.
//! - Readings written by a gpubook agent on the node show on the node's lanes.
//! - With bob's job on gpunode1, a booking goes to gpunode2 and its job runs there.
//! - A job still running at the slot's end is stopped (`job_stopped`), and an agent killed
//!   mid-slot follows the job it submitted instead of submitting it again.
//!
//! The tests share the one cluster, so they take turns. Needs root and the Slurm services
//! (with GPUBOOK_REQUIRE_SERVICES set they fail, not skip, when either is missing).

mod jobs_support;

use chrono::{DateTime, Utc};
use gpubook_agent::slurm::json::{reservation_fields, JobsReply};
use gpubook_client::{ClientError, Pushed};
use gpubook_core::BookingId;
use gpubook_core::JobState;
use gpubook_proto::{
    BookRequest, CancelRequest, ErrorKind, EventKind, ExtendRequest, GpuChoice, LogsRequest,
    MoveRequest, Request, Response, WhenChoice,
};
use gpubook_testkit::require::{missing, Need};
use jobs_support::{booked, ensure_user, job, secs, slot_start, Events, Lab, User, DEADLINE};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The owner of the bookings.
const ALICE: &str = "gpb-slurm-alice";
/// Someone who uses Slurm directly.
const BOB: &str = "gpb-slurm-bob";

/// One test at a time on the one cluster.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a Slurm command (as root, in UTC); its output, or its words when it fails.
fn slurm(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A test's turn on the cluster (tests take turns): the cluster cleaned, alice, and a started
/// Slurm agent; `None` where the cluster is not there (the test then says so and passes, or
/// fails where it is required).
async fn turn(test: &str) -> Option<(tokio::sync::MutexGuard<'static, ()>, User, Lab)> {
    if !gpubook_testkit::require_slurm(test) {
        return None;
    }
    let guard = CLUSTER.lock().await;
    clean_cluster();
    let (alice, _) = users();
    let mut lab = Lab::slurm();
    lab.start().await;
    Some((guard, alice, lab))
}

/// `sbatch` run by bob on gpunode1 with `args`: his job's number, or Slurm's words.
fn bob_sbatch(args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "-u",
        BOB,
        "--",
        "sbatch",
        "--parsable",
        "--output=/dev/null",
        "--nodelist=gpunode1",
    ];
    all.extend_from_slice(args);
    slurm("runuser", &all).map(|out| out.trim().to_string())
}

/// Bob's job with `args` on gpunode1, once Slurm runs it: its number.
async fn bob_running(args: &[&str]) -> String {
    let job = bob_sbatch(args).expect("bob's sbatch");
    until("bob's job running", Duration::from_secs(20), || {
        job_state(&job) == "RUNNING"
    })
    .await;
    job
}

/// No gpubook reservation and no job of the test users: each test starts from a clean cluster.
fn clean_cluster() {
    for user in [ALICE, BOB] {
        let _ = slurm("scancel", &["--user", user]);
    }
    if let Ok(out) = slurm("scontrol", &["show", "reservation", "--oneliner"]) {
        for line in out.lines() {
            if let Some(name) = reservation_fields(line).get("ReservationName") {
                if name.starts_with("gpubook-") {
                    let _ = slurm("scontrol", &["delete", &format!("ReservationName={name}")]);
                }
            }
        }
    }
}

/// Booking `id`'s reservation as `scontrol show reservation` reads it, if there is one.
fn reservation(id: BookingId) -> Option<BTreeMap<String, String>> {
    let out = slurm(
        "scontrol",
        &[
            "show",
            "reservation",
            &format!("gpubook-{id}"),
            "--oneliner",
        ],
    )
    .ok()?;
    let f = reservation_fields(out.lines().next()?);
    (f.get("ReservationName")? == &format!("gpubook-{id}")).then_some(f)
}

/// Slurm's time format, as the reservation shows it (UTC).
fn slurm_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `count` GPUs from `start` to `end`.
fn book_count(count: u32, start: DateTime<Utc>, end: DateTime<Utc>, title: &str) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Count {
            count,
            min_memory: None,
        },
        when: WhenChoice::At { start, end },
        title: title.into(),
        job: None,
    })
}

/// Job `id`'s state in `squeue --json`.
fn job_state(id: &str) -> String {
    let out = slurm("squeue", &["--json", "--states=all"]).expect("squeue --json");
    let reply: JobsReply = serde_json::from_str(&out).expect("squeue's JSON");
    reply
        .jobs
        .iter()
        .find(|j| j.job_id.to_string() == id)
        .map(|j| j.job_state.clone())
        .unwrap_or_default()
}

/// The test cluster's directory (its configuration, device files).
fn cluster_dir() -> std::path::PathBuf {
    std::env::var_os("SLURM_CONF")
        .map(std::path::PathBuf::from)
        .and_then(|c| c.parent().map(|d| d.to_path_buf()))
        .unwrap_or_else(|| "/var/lib/gpubook-test-slurm".into())
}

/// Whether the test cluster confines jobs to their GPUs (Slurm's device cgroup, where
/// `scripts/slurm-services.sh` found the host lets Slurm make cgroups); says so where not.
fn confined(test: &str) -> bool {
    cluster_dir().join("cgroup.conf").exists()
        || missing(
            test,
            Need::Service,
            "the test cluster runs without Slurm's device cgroup (this host gives no cgroup \
             v1 devices controller), so confinement was not checked",
            "run `. scripts/slurm-services.sh` on a host with /sys/fs/cgroup/devices",
        )
}

/// Stops slurmctld (the cluster's controller) and waits until it is gone.
async fn stop_slurmctld() {
    let _ = slurm("pkill", &["-x", "slurmctld"]);
    until("slurmctld gone", Duration::from_secs(20), || {
        slurm("pgrep", &["-x", "slurmctld"]).is_err()
    })
    .await;
}

/// Starts slurmctld again from its saved state and waits until it answers.
async fn start_slurmctld() {
    let conf = std::env::var("SLURM_CONF").expect("SLURM_CONF");
    slurm("slurmctld", &["-f", &conf]).expect("slurmctld started again");
    until("slurmctld answers", Duration::from_secs(30), || {
        slurm("scontrol", &["ping"]).is_ok_and(|o| o.contains("UP"))
    })
    .await;
}

/// Booking `id`'s job log, as `gpubook logs` reads it for `conn`.
async fn log_of(conn: &gpubook_client::Connection, id: BookingId) -> String {
    let logs = conn
        .request(Request::Logs(LogsRequest {
            id,
            offset: 0,
            follow: None,
        }))
        .await
        .expect("logs");
    let Response::Logs(logs) = logs else {
        panic!("{logs:?}")
    };
    logs.data
}

/// When job `id`'s time is up, as `squeue --json` says.
fn job_end_time(id: &str) -> DateTime<Utc> {
    let out = slurm("squeue", &["--json", "--states=all"]).expect("squeue --json");
    let reply: JobsReply = serde_json::from_str(&out).expect("squeue's JSON");
    let job = reply.jobs.iter().find(|j| j.job_id.to_string() == id);
    DateTime::from_timestamp(job.expect("the job").end_time, 0).expect("an end time")
}

/// Waits until `f` holds, up to `limit`; panics with `what`.
async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn users() -> (User, User) {
    (ensure_user(ALICE), ensure_user(BOB))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_is_a_reservation_moved_extended_and_cancelled_with_it() {
    let Some((_turn, alice, lab)) =
        turn("a_booking_is_a_reservation_moved_extended_and_cancelled_with_it").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;

    let start = slot_start(3600);
    let end = start + secs(7200);
    let b = booked(user.conn.request(book_count(2, start, end, "train")).await).booking;
    assert_eq!(b.gpus.len(), 2);
    let r = reservation(b.id).expect("the booking's reservation");
    assert_eq!(r["Users"], ALICE);
    assert_eq!(r["Nodes"], "gpunode1");
    assert_eq!(r["StartTime"], slurm_time(start));
    assert_eq!(r["EndTime"], slurm_time(end));
    assert!(r["Flags"].contains("OVERLAP"), "{r:?}");

    // Moved an hour later: the reservation moves with it.
    let (start2, end2) = (start + secs(3600), end + secs(3600));
    let moved = user
        .conn
        .request(Request::Move(MoveRequest {
            id: b.id,
            start: start2,
            end: end2,
            gpus: None,
        }))
        .await
        .expect("moved");
    assert!(matches!(moved, Response::Booking(_)), "{moved:?}");
    let r = reservation(b.id).expect("still reserved");
    assert_eq!(
        (r["StartTime"].as_str(), r["EndTime"].as_str()),
        (slurm_time(start2).as_str(), slurm_time(end2).as_str())
    );

    // Extended by half an hour.
    let end3 = end2 + secs(1800);
    user.conn
        .request(Request::Extend(ExtendRequest {
            id: b.id,
            end: end3,
        }))
        .await
        .expect("extended");
    assert_eq!(
        reservation(b.id).expect("still reserved")["EndTime"],
        slurm_time(end3)
    );

    // Cancelled: the reservation is gone.
    user.conn
        .request(Request::Cancel(CancelRequest { id: b.id }))
        .await
        .expect("cancelled");
    assert!(
        reservation(b.id).is_none(),
        "the reservation outlived its booking"
    );

    // A rectangle drawn on gpunode2's lanes books gpunode2, though gpunode1 is free too.
    let on_node = Request::Book(BookRequest {
        gpus: GpuChoice::OnNode {
            node: "gpunode2".into(),
            count: 2,
        },
        when: WhenChoice::At { start, end },
        title: "on node 2".into(),
        job: None,
    });
    let two = booked(user.conn.request(on_node).await).booking;
    assert!(
        two.gpus.iter().all(|g| g.0.starts_with("SLURM-gpunode2-")),
        "{two:?}"
    );
    assert_eq!(reservation(two.id).expect("reserved")["Nodes"], "gpunode2");
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_gpu_job_waits_while_a_booking_holds_the_node_and_runs_after() {
    let Some((_turn, alice, lab)) =
        turn("another_users_gpu_job_waits_while_a_booking_holds_the_node").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;

    let start = slot_start(2);
    let end = start + secs(20);
    let b = booked(user.conn.request(book_count(1, start, end, "hold")).await).booking;
    assert!(reservation(b.id).is_some());
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Bob asks Slurm itself for all four GPUs while Alice's booking holds the node.
    let job = bob_sbatch(&["--gres=gpu:4", "--time=1", "--wrap", "true"]).expect("bob's sbatch");
    // Nor can he submit into her reservation: it is hers alone.
    let into = bob_sbatch(&[
        &format!("--reservation=gpubook-{}", b.id),
        "--gres=gpu:1",
        "--time=1",
        "--wrap",
        "true",
    ]);
    assert!(
        into.as_ref().is_err_and(|e| e.contains("ccess denied")),
        "bob submitted into alice's reservation: {into:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        job_state(&job),
        "PENDING",
        "bob's job ran inside alice's booking"
    );
    // After the slot's end Slurm lets it run.
    until(
        "bob's job completed after the booking",
        Duration::from_secs(60),
        || job_state(&job) == "COMPLETED",
    )
    .await;
    assert!(Utc::now() >= end, "bob's job ended before the booking did");
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slurms_refusal_refuses_the_booking_in_its_words_and_nothing_is_stored() {
    let Some((_turn, alice, lab)) = turn("slurms_refusal_refuses_the_booking_in_its_words").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;
    let none_stored = || async {
        let listed = user
            .conn
            .request(Request::List(Default::default()))
            .await
            .expect("ls");
        let Response::Bookings(list) = listed else {
            panic!("{listed:?}")
        };
        list.bookings
    };

    // Bob's own GPU job runs on gpunode1 for the next half hour: gpubook knows, and books
    // around it (Slurm would not let the whole node be reserved while it runs). Three GPUs
    // are asked for each time below: only gpunode1 has that many.
    let job = bob_running(&[
        "--gres=gpu:1",
        "--time=30",
        "--job-name=sweep",
        "--wrap",
        "sleep 600",
    ])
    .await;
    let job_end = job_end_time(&job);
    // The agent reads Slurm at most every few seconds: the next reading sees the job.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let start = slot_start(60);
    let refused = user
        .conn
        .request(book_count(3, start, start + secs(600), "now"))
        .await
        .expect_err("booked over a running Slurm job");
    let ClientError::Agent(body) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(body.kind, ErrorKind::Conflict, "{body:?}");
    assert!(
        body.message
            .contains(&format!("Slurm job {job}: sweep ({BOB})"))
            && body.message.contains(&job_end.format("%H:%M").to_string()),
        "{}",
        body.message
    );
    assert!(
        none_stored().await.is_empty(),
        "a refused booking was stored"
    );

    // As soon as possible: when bob's job's time is up, and Slurm holds it for alice then.
    let asap = Request::Book(BookRequest {
        gpus: GpuChoice::Count {
            count: 3,
            min_memory: None,
        },
        when: WhenChoice::Asap { duration_secs: 600 },
        title: "after bob".into(),
        job: None,
    });
    let b = booked(user.conn.request(asap).await).booking;
    assert!(
        b.interval.start >= job_end && b.interval.start <= job_end + secs(60),
        "as soon as possible at {} while bob's job ends at {job_end}",
        b.interval.start
    );
    let held = reservation(b.id).expect("the reservation for the queued booking");
    assert_eq!(held["StartTime"], slurm_time(b.interval.start), "{held:?}");
    user.conn
        .request(Request::Cancel(CancelRequest { id: b.id }))
        .await
        .expect("cancel");
    slurm("scancel", &[job.as_str()]).expect("scancel bob's job");

    // A job without GPUs on the node takes none of them: the node is still booked.
    bob_running(&["--time=30", "--wrap", "sleep 600"]).await;
    // (once the agent's reading no longer has bob's cancelled GPU job)
    tokio::time::sleep(Duration::from_secs(6)).await;
    let start = slot_start(60);
    let beside = booked(
        user.conn
            .request(book_count(3, start, start + secs(600), "beside a CPU job"))
            .await,
    )
    .booking;
    assert!(reservation(beside.id).is_some());

    // Slurm's controller down: the booking is refused with what Slurm said, and nothing is
    // stored (the reservation could not be made, so neither is the booking).
    stop_slurmctld().await;
    let refused = user
        .conn
        .request(book_count(
            1,
            slot_start(7200),
            slot_start(7800),
            "controller down",
        ))
        .await;
    // The next one does not wait for Slurm's timeout again: it is refused at once, saying why.
    let again = user
        .conn
        .request(book_count(1, slot_start(7200), slot_start(7800), "again"))
        .await;
    start_slurmctld().await;
    let refused = refused.expect_err("booked while slurmctld was down");
    let ClientError::Agent(body) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        body.message.contains("Unable to contact slurm controller")
            && body.message.contains("nothing"),
        "{}",
        body.message
    );
    let Err(ClientError::Agent(again)) = again else {
        panic!("booked again while slurmctld was down: {again:?}")
    };
    assert!(
        again.message.contains("controller did not answer"),
        "{}",
        again.message
    );
    let left: Vec<_> = none_stored().await.into_iter().map(|l| l.id).collect();
    assert!(
        left.contains(&beside.id) && left.iter().all(|id| *id == b.id || *id == beside.id),
        "a refused booking was stored: {left:?}"
    );

    // GPUs by index are Slurm's to pick: refused with a message saying so, before Slurm is asked.
    assert!(
        user.conn.welcome().slurm,
        "the welcome does not say Slurm picks the GPUs"
    );
    let named = Request::Book(BookRequest {
        gpus: GpuChoice::Named {
            gpus: vec!["0".into(), "1".into()],
        },
        when: WhenChoice::At {
            start: slot_start(7200),
            end: slot_start(7800),
        },
        title: "by index".into(),
        job: None,
    });
    let refused = user.conn.request(named).await.expect_err("booked GPUs 0,1");
    let ClientError::Agent(body) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(body.kind, ErrorKind::Invalid, "{body:?}");
    assert!(body.message.contains("Slurm picks"), "{}", body.message);
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_puts_back_what_slurm_lost_and_removes_what_it_does_not_hold() {
    let Some((_turn, alice, mut lab)) = turn("a_restarted_agent_puts_back_what_slurm_lost").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;
    let start = slot_start(3600);
    let b = booked(
        user.conn
            .request(book_count(1, start, start + secs(3600), "kept"))
            .await,
    )
    .booking;
    assert!(reservation(b.id).is_some());
    drop(user);
    lab.kill();

    // While no agent runs: the booking's reservation deleted by hand, a stray one made.
    slurm(
        "scontrol",
        &["delete", &format!("ReservationName=gpubook-{}", b.id)],
    )
    .expect("delete by hand");
    slurm(
        "scontrol",
        &[
            "create",
            "reservation",
            "ReservationName=gpubook-9999",
            &format!("StartTime={}", slurm_time(start)),
            "Duration=10",
            "Users=root",
            "Nodes=gpunode1",
            "Flags=OVERLAP",
        ],
    )
    .expect("a stray reservation");

    lab.start().await;
    let r = reservation(b.id).expect("the booking's reservation is back");
    assert_eq!(r["Users"], ALICE);
    assert_eq!(r["StartTime"], slurm_time(start));
    assert!(
        reservation(BookingId(9999)).is_none(),
        "a gpubook- reservation no booking holds was left"
    );
    // Nothing twice: one reservation for the one booking.
    let all = slurm("scontrol", &["show", "reservation", "--oneliner"]).unwrap();
    assert_eq!(all.matches("ReservationName=gpubook-").count(), 1, "{all}");
    clean_cluster();
}

/// `count` GPUs from `start` to `end`, running `command` in `cwd`.
fn book_job(
    count: u32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    command: &str,
    cwd: &std::path::Path,
) -> Request {
    let mut spec = job(command);
    spec.cwd = Some(cwd.display().to_string());
    let Request::Book(mut b) = book_count(count, start, end, "slurm job") else {
        unreachable!()
    };
    b.job = Some(spec);
    Request::Book(b)
}

/// Alice's one-GPU booking from 2 s on until `end` whose job runs `command` (in her work
/// directory), once Slurm runs it: the booking and its Slurm job's number.
async fn running_job(
    lab: &Lab,
    events: &mut Events,
    user: &jobs_support::UserConn,
    alice: &User,
    end: DateTime<Utc>,
    command: &str,
) -> (gpubook_core::Booking, u64) {
    let work = lab.out_dir("work", alice);
    let request = book_job(1, slot_start(2), end, command, &work);
    let b = booked(user.conn.request(request).await).booking;
    let running = events
        .wait_until(b.id, EventKind::JobStarted, DEADLINE, |e| {
            e.booking
                .run
                .as_ref()
                .is_some_and(|r| r.state == JobState::Running)
        })
        .await;
    let number = running
        .booking
        .run
        .as_ref()
        .and_then(gpubook_agent::slurm::runner::job_number)
        .expect("the Slurm job's number");
    (b, number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_as_its_owner_in_its_reservation_and_its_exit_status_comes_back() {
    let Some((_turn, alice, lab)) = turn("a_job_runs_as_its_owner_in_its_reservation").await else {
        return;
    };
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &alice);
    let user = lab.connect_as(&alice).await;

    // The job also tries each of the node's four GPU device files: Slurm's device cgroup
    // lets it open the two it was given (they have no driver: "No such device"), and denies
    // the other two ("Operation not permitted").
    let devices = cluster_dir().join("dev");
    let probe = format!(
        "for i in 0 1 2 3; do echo gpu$i: $( (: < {}/gpu$i) 2>&1 | sed 's/.*: //'); done",
        devices.display()
    );
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book_job(
                2,
                start,
                start + secs(120),
                &format!(
                    "echo uid=$(id -u) job=$SLURM_JOB_ID resv=$SLURM_JOB_RESERVATION \
                     gpus=$CUDA_VISIBLE_DEVICES; {probe}; exit 3"
                ),
                &work,
            ))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    let number = started
        .booking
        .run
        .as_ref()
        .and_then(gpubook_agent::slurm::runner::job_number)
        .expect("the Slurm job's number recorded");
    let done = events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    let run = done.booking.run.expect("its run");
    assert_eq!(run.exit_code, Some(3), "{run:?}");
    // The rest of the slot went back, and the reservation with it.
    events
        .wait_for(b.id, EventKind::BookingReleased, DEADLINE)
        .await;
    until("the reservation deleted", Duration::from_secs(20), || {
        reservation(b.id).is_none()
    })
    .await;

    let logs = log_of(&user.conn, b.id).await;
    let mut lines = logs.lines();
    assert_eq!(
        lines.next().unwrap_or_default(),
        format!(
            "uid={} job={number} resv=gpubook-{} gpus=0,1",
            alice.uid, b.id
        )
    );
    let opened: Vec<&str> = lines.collect();
    if confined("a_job_runs_as_its_owner_in_its_reservation") {
        assert_eq!(
            opened,
            [
                "gpu0: No such device or address",
                "gpu1: No such device or address",
                "gpu2: Operation not permitted",
                "gpu3: Operation not permitted"
            ],
            "the job reached GPUs Slurm did not give it"
        );
    }
    let log = work.join(format!("gpubook-{}.log", b.id));
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&log).unwrap()),
        alice.uid,
        "the log was not written as its owner"
    );
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_still_running_at_the_slots_end_is_stopped_and_a_restart_submits_nothing_twice() {
    let Some((_turn, alice, mut lab)) =
        turn("a_job_still_running_at_the_slots_end_is_stopped").await
    else {
        return;
    };
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&alice).await;

    let end = slot_start(2 + 25);
    let (b, number) = running_job(
        &lab,
        &mut events,
        &user,
        &alice,
        end,
        "echo first; sleep 5; echo second; sleep 600",
    )
    .await;

    // gpubook's own job running on gpunode1 does not keep Slurm from holding the node's other
    // two GPUs for another booking.
    let beside = booked(
        user.conn
            .request(book_count(2, slot_start(5), end, "beside the job"))
            .await,
    )
    .booking;
    assert!(
        beside
            .gpus
            .iter()
            .all(|g| g.0.starts_with("SLURM-gpunode1-")),
        "{beside:?}"
    );
    assert!(reservation(beside.id).is_some());

    // Slurm picked the job's GPUs: those are recorded, as Slurm's own record says.
    let listed = jobs_support::listed(&user.conn, b.id).await;
    let devices = listed.run.expect("its run").devices;
    let detail = slurm("scontrol", &["show", "job", "-d", &number.to_string()]).unwrap();
    let idx = detail
        .split("IDX:")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("scontrol shows the job's GPU indexes");
    let want: Vec<String> = gpubook_agent::slurm::json::gpu_gres(&format!("gpu:1(IDX:{idx})"))
        .into_iter()
        .flat_map(|g| g.used)
        .map(|i| format!("SLURM-gpunode1-{i}"))
        .collect();
    assert_eq!(
        devices.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        want,
        "the GPUs Slurm gave the job"
    );
    assert_eq!(devices.len(), b.gpus.len());

    // The app follows the log as the Slurm job writes it: pushed, read as its owner.
    let (_, mut pushed) = user.conn.subscribe(None, false).await.unwrap();
    let answer = user
        .conn
        .request(Request::Logs(LogsRequest {
            id: b.id,
            offset: 0,
            follow: Some(true),
        }))
        .await
        .expect("follow the log");
    let Response::Logs(first) = answer else {
        panic!("{answer:?}")
    };
    assert!(!first.data.contains("second"), "{first:?}");
    let mut text = first.data.clone();
    let until = Instant::now() + Duration::from_secs(20);
    while !text.contains("second") {
        assert!(Instant::now() < until, "the log was not pushed: {text:?}");
        match tokio::time::timeout(Duration::from_secs(1), pushed.recv()).await {
            Ok(Some(Pushed::Log(p))) => text.push_str(&p.data),
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the connection ended"),
        }
    }
    assert_eq!(text, "first\nsecond\n");

    // `gpubook env` cannot hand Slurm's devices to a shell: it says how to get one.
    let env = user
        .conn
        .request(Request::JobEnv(gpubook_proto::job_env::JobEnvRequest {
            id: b.id,
        }))
        .await
        .expect_err("env on Slurm");
    let ClientError::Agent(body) = env else {
        panic!("{env:?}")
    };
    assert!(
        body.message
            .contains(&format!("srun --reservation=gpubook-{}", b.id)),
        "{}",
        body.message
    );

    // The agent killed mid-slot and started again: the job is followed, not submitted again.
    drop(user);
    lab.kill();
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let stopped = events
        .wait_for(b.id, EventKind::JobStopped, Duration::from_secs(60))
        .await;
    let run = stopped.booking.run.unwrap();
    assert_eq!(run.state, JobState::Stopped);
    // Not before its end signal's time: the default 30-s grace, capped at half of this 25-s
    // slot, puts it about 12 s before the end (3 s allowed for Slurm's own timing).
    let ended = run.ended_at.expect("when it ended");
    assert!(
        ended >= end - secs(15),
        "stopped at {ended}, before its end signal was due (the slot ends at {end})"
    );
    // Cancelled by gpubook at the end, or ended by the end signal Slurm sent within the grace
    // before it (Slurm sends it on its own schedule): either way stopped, not finished.
    let slurm_state = job_state(&number.to_string());
    assert!(
        slurm_state == "CANCELLED" || (slurm_state == "FAILED" && run.signal == Some(15)),
        "Slurm says {slurm_state}, gpubook {run:?}"
    );
    let out = slurm("squeue", &["--json", "--states=all"]).unwrap();
    let reply: JobsReply = serde_json::from_str(&out).unwrap();
    let named = reply
        .jobs
        .iter()
        // Earlier runs' stores numbered their bookings alike: only this booking's jobs count.
        .filter(|j| j.name == format!("gpubook-{}", b.id) && j.user_name == ALICE)
        .filter(|j| j.comment == gpubook_agent::slurm::runner::job_mark(&b))
        .count();
    assert_eq!(named, 1, "the booking's job was submitted more than once");
    assert_eq!(
        events.count(b.id, EventKind::JobStopped),
        1,
        "{}",
        events.describe()
    );
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slurm_jobs_and_reservations_made_outside_gpubook_are_shown_busy_with_their_owner() {
    let Some((_turn, alice, lab)) =
        turn("slurm_jobs_and_reservations_made_outside_gpubook_are_shown_busy").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;

    // Bob's own job on two GPUs, and an admin's reservation of the node later today.
    let job = bob_running(&[
        "--job-name=train",
        "--gres=gpu:2",
        "--time=30",
        "--wrap",
        "sleep 600",
    ])
    .await;
    let maint = slot_start(3 * 3600);
    slurm(
        "scontrol",
        &[
            "create",
            "reservation",
            "ReservationName=outside-maint",
            &format!("StartTime={}", slurm_time(maint)),
            "Duration=60",
            "Nodes=gpunode1",
            "Users=root",
        ],
    )
    .expect("an admin's reservation");

    let answer = user
        .conn
        .request(Request::Gpus(Default::default()))
        .await
        .expect("gpus");
    let _ = slurm("scontrol", &["delete", "ReservationName=outside-maint"]);
    let Response::Gpus(gpus) = answer else {
        panic!("{answer:?}")
    };
    let find = |title: &str| {
        gpus.outside
            .iter()
            .find(|o| o.title == title)
            .unwrap_or_else(|| panic!("no {title:?} among {:?}", gpus.outside))
            .clone()
    };
    let bobs = find(&format!("Slurm job {job}: train"));
    assert_eq!(bobs.owner, BOB);
    assert_eq!(bobs.gpus.len(), 2, "{bobs:?}");
    let drawn: Vec<String> = bobs.gpus.iter().map(|g| g.0.clone()).collect();
    assert!(bobs.start <= Utc::now() && bobs.end > Utc::now() + secs(25 * 60));
    let resv = find("Slurm reservation outside-maint");
    assert_eq!(resv.owner, "root");
    assert_eq!(
        resv.gpus.len(),
        4,
        "a whole-node reservation is all its GPUs"
    );
    assert_eq!((resv.start, resv.end), (maint, maint + secs(3600)));
    assert_eq!(gpus.outside.len(), 2, "{:?}", gpus.outside);
    // Without a node agent, each lane says whether Slurm has given it to a job: bob's two.
    let mut allocated = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let answer = user.conn.request(Request::Gpus(Default::default())).await;
        let Ok(Response::Gpus(now)) = answer else {
            panic!("{answer:?}")
        };
        allocated = now
            .readings
            .map(|r| r.gpus)
            .unwrap_or_default()
            .into_iter()
            .filter(|g| g.allocated == Some(true))
            .map(|g| g.uuid.0)
            .collect();
        if allocated.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        allocated,
        ["SLURM-gpunode1-0", "SLURM-gpunode1-1"],
        "the lanes Slurm allocated to bob's job"
    );
    assert_eq!(drawn, allocated, "bob's job is drawn where Slurm runs it");
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slurmctld_restarted_mid_slot_loses_nothing_and_duplicates_nothing() {
    let Some((_turn, alice, lab)) = turn("a_slurmctld_restarted_mid_slot_loses_nothing").await
    else {
        return;
    };
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&alice).await;

    let end = slot_start(2 + 30);
    let (b, _) = running_job(&lab, &mut events, &user, &alice, end, "sleep 600").await;

    // The controller goes away for a few seconds and comes back from its saved state.
    stop_slurmctld().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    start_slurmctld().await;
    assert!(
        reservation(b.id).is_some(),
        "the booking's reservation was lost"
    );

    let stopped = events
        .wait_for(b.id, EventKind::JobStopped, Duration::from_secs(90))
        .await;
    assert_eq!(stopped.booking.run.unwrap().state, JobState::Stopped);
    let running = |e: &gpubook_proto::Event| {
        e.booking.id == b.id
            && e.kind == EventKind::JobStarted
            && e.booking
                .run
                .as_ref()
                .is_some_and(|r| r.state == JobState::Running)
    };
    assert_eq!(
        events.seen.iter().filter(|e| running(e)).count(),
        1,
        "{}",
        events.describe()
    );
    assert_eq!(events.count(b.id, EventKind::JobStopped), 1);
    assert_eq!(events.count(b.id, EventKind::JobLost), 0);
    let out = slurm("squeue", &["--json", "--states=all"]).unwrap();
    let reply: JobsReply = serde_json::from_str(&out).unwrap();
    let mark = gpubook_agent::slurm::runner::job_mark(&b);
    assert_eq!(
        reply.jobs.iter().filter(|j| j.comment == mark).count(),
        1,
        "the booking's job was submitted again"
    );
    clean_cluster();
}

/// How many `squeue` reads (REQUEST_JOB_INFO) slurmctld has answered, from `sdiag`.
fn job_info_reads() -> u64 {
    let out = slurm("sdiag", &[]).expect("sdiag");
    out.lines()
        .find(|l| l.trim_start().starts_with("REQUEST_JOB_INFO "))
        .and_then(|l| l.split("count:").nth(1))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("REQUEST_JOB_INFO in sdiag's output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_asking_in_a_loop_does_not_make_the_agent_read_slurm_in_a_loop() {
    let Some((_turn, alice, lab)) = turn("a_user_asking_in_a_loop_does_not_read_slurm").await
    else {
        return;
    };
    let user = lab.connect_as(&alice).await;
    let before = job_info_reads();
    let started = Instant::now();
    for _ in 0..200 {
        let answer = user.conn.request(Request::Gpus(Default::default())).await;
        assert!(matches!(answer, Ok(Response::Gpus(_))), "{answer:?}");
    }
    let windows = started.elapsed().as_secs() / 5 + 1;
    let reads = job_info_reads() - before;
    assert!(
        reads <= windows,
        "200 requests in {:?} made slurmctld answer {reads} job reads",
        started.elapsed()
    );
    assert!(reads >= 1, "the outside holds were never read");

    // Booking decisions read Slurm afresh, but at most once a second: 100 requests, each
    // refused (no such node), read it at most once per second they took.
    let before = job_info_reads();
    let started = Instant::now();
    for _ in 0..100 {
        let nowhere = Request::Book(BookRequest {
            gpus: GpuChoice::OnNode {
                node: "no-such-node".into(),
                count: 1,
            },
            when: WhenChoice::At {
                start: slot_start(3600),
                end: slot_start(7200),
            },
            title: "loop".into(),
            job: None,
        });
        let answer = user.conn.request(nowhere).await;
        assert!(
            matches!(&answer, Err(ClientError::Agent(e)) if e.kind == ErrorKind::NotFound),
            "{answer:?}"
        );
    }
    let seconds = started.elapsed().as_secs() + 1;
    let reads = job_info_reads() - before;
    assert!(
        reads <= seconds + 1,
        "100 booking requests in {:?} made slurmctld answer {reads} job reads",
        started.elapsed()
    );
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_from_a_gpubook_agent_on_the_node_show_on_its_lanes() {
    let Some((_turn, alice, mut lab)) = turn("readings_from_a_gpubook_agent_on_the_node").await
    else {
        return;
    };
    // The cluster's shared directory, writable by root only, and an agent on gpunode1 that
    // reads its GPU (a real H200's recorded NVML readings: this machine has none) and
    // writes what it reads there.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let node_state = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/nvml/h200/nvml-busy.json"
    );
    let mut node_agent = Command::new(lab.agent_bin())
        .args(["serve", "--shared", "--name", "gpunode1", "--gpus"])
        .arg(format!("replay:{fixture}"))
        .arg("--state-dir")
        .arg(node_state.path())
        .arg("--socket")
        .arg(node_state.path().join("agent.sock"))
        .arg("--publish-readings")
        .arg(shared.path())
        .args(["--node-name", "gpunode1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the node's agent");
    lab.kill();
    let dir = shared.path().to_string_lossy().into_owned();
    lab.serve_args(&["--node-readings", &dir]);
    // The lab's policy stops intruders where it may: never a pid of another machine.
    lab.policy("intruders = \"stop\"\n");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &alice);
    let user = lab.connect_as(&alice).await;

    let mut lanes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let answer = user.conn.request(Request::Gpus(Default::default())).await;
        let Ok(Response::Gpus(gpus)) = answer else {
            panic!("{answer:?}")
        };
        lanes = gpus.readings.map(|r| r.gpus).unwrap_or_default();
        if lanes.first().is_some_and(|g| g.memory_total > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The node's GPU 0 is lane gpunode1-0, with what NVML read on the H200.
    let first = lanes.first().expect("a reading of the lanes");
    assert_eq!(first.uuid.0, "SLURM-gpunode1-0");
    assert_eq!(first.memory_total, 150_754_820_096, "{first:?}");
    assert_eq!(first.memory_used, 22_534_750_208);
    assert_eq!(first.util_gpu, 100);
    assert_eq!(first.processes.len(), 1, "{first:?}");
    // The node has one GPU in the recording: the other lanes keep what Slurm reports.
    assert!(lanes[1..].iter().all(|g| g.memory_total == 0), "{lanes:?}");

    // Alice's job gets gpunode1's GPU 0 from Slurm, where the recording has someone else's
    // process: an intruder on her booking, announced, and not signalled (its pid is the
    // node's, not this machine's).
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book_job(1, start, start + secs(120), "sleep 60", &work))
            .await,
    )
    .booking;
    let intruder = events.wait_for(b.id, EventKind::Intruder, DEADLINE).await;
    let run = jobs_support::listed(&user.conn, b.id)
        .await
        .run
        .expect("its run");
    assert_eq!(run.devices.len(), 1, "{run:?}");
    assert_eq!(run.devices[0].0, "SLURM-gpunode1-0");
    let Some(gpubook_core::Note::Intruder { gpu, stopped, .. }) = intruder.note else {
        panic!("{intruder:?}")
    };
    assert_eq!(gpu.0, "SLURM-gpunode1-0");
    assert!(
        !stopped,
        "the controller's agent signalled a pid of another machine"
    );
    let _ = node_agent.kill();
    let _ = node_agent.wait();

    // A directory anyone may write is not trusted: its readings stop showing.
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = user.conn.request(Request::Gpus(Default::default())).await;
    let Ok(Response::Gpus(gpus)) = answer else {
        panic!("{answer:?}")
    };
    let lanes = gpus.readings.map(|r| r.gpus).unwrap_or_default();
    assert_eq!(
        lanes[0].memory_total, 0,
        "read from a world-writable directory"
    );
    let log = lab.log();
    assert!(log.contains("group or others may write it"), "{log}");
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_goes_to_the_node_slurm_can_hold_and_its_job_runs_there() {
    let Some((_turn, alice, lab)) = turn("a_booking_goes_to_the_node_slurm_can_hold").await else {
        return;
    };
    let two = slurm("sinfo", &["-h", "-N", "-o", "%N"]).unwrap_or_default();
    if !two.lines().any(|n| n.trim() == "gpunode2")
        && !missing(
            "a_booking_goes_to_the_node_slurm_can_hold",
            Need::Service,
            "the test cluster has no gpunode2 (no network namespace could be made)",
            "run `. scripts/slurm-services.sh` as root on a host that allows `ip netns add`",
        )
    {
        return;
    }
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &alice);
    let user = lab.connect_as(&alice).await;

    // Bob's GPU job runs on gpunode1 (4 GPUs) for half an hour.
    let job = bob_running(&[
        "--gres=gpu:1",
        "--time=30",
        "--job-name=long",
        "--wrap",
        "sleep 600",
    ])
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Two GPUs now: gpunode2, which Slurm can reserve, and the job runs there, confined to
    // the GPUs Slurm gave it (gpunode2's are device files gpu4 and gpu5).
    let devices = cluster_dir().join("dev");
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book_job(
                2,
                start,
                start + secs(120),
                &format!(
                    "echo node=$SLURMD_NODENAME gpus=$CUDA_VISIBLE_DEVICES; for i in 0 1 4 5; \
                     do echo gpu$i: $( (: < {}/gpu$i) 2>&1 | sed 's/.*: //'); done",
                    devices.display()
                ),
                &work,
            ))
            .await,
    )
    .booking;
    assert!(
        b.gpus.iter().all(|g| g.0.starts_with("SLURM-gpunode2-")),
        "{:?}",
        b.gpus
    );
    let held = reservation(b.id).expect("the booking's reservation");
    assert_eq!(held["Nodes"], "gpunode2", "{held:?}");
    events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    let logs = log_of(&user.conn, b.id).await;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("node=gpunode2 gpus=0,1"),
        "{lines:?}"
    );
    if confined("a_booking_goes_to_the_node_slurm_can_hold") {
        // gpunode1's device files are not gpunode2's GPUs: Slurm leaves them alone.
        assert_eq!(
            lines[1..],
            [
                "gpu0: No such device or address",
                "gpu1: No such device or address",
                "gpu4: No such device or address",
                "gpu5: No such device or address"
            ]
        );
    }

    // Three GPUs: only gpunode1 has that many, and bob's job holds it: refused as busy, and
    // as soon as possible is when his job's time is up.
    let refused = user
        .conn
        .request(book_count(3, slot_start(60), slot_start(660), "three"))
        .await
        .expect_err("three GPUs over bob's job");
    let ClientError::Agent(body) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(body.kind, ErrorKind::Conflict, "{body:?}");
    assert!(
        body.message.contains(&format!("Slurm job {job}: long")),
        "{}",
        body.message
    );
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_waiting_for_approval_is_held_by_slurm_once_an_admin_approves() {
    let Some((_turn, alice, mut lab)) = turn("a_booking_waiting_for_approval_is_held").await else {
        return;
    };
    lab.kill();
    lab.policy(
        "default_role = \"user\"\nadmins = [\"root\"]\nweekly_quota_gpu_hours = 1\n\
         over_policy = \"approval\"\n",
    );
    lab.start().await;
    let user = lab.connect_as(&alice).await;
    // Two GPUs for an hour is over alice's weekly hour: it waits, and Slurm holds nothing.
    let start = slot_start(3600);
    let b = booked(
        user.conn
            .request(book_count(2, start, start + secs(3600), "big run"))
            .await,
    )
    .booking;
    assert_eq!(b.state, gpubook_core::BookingState::PendingApproval);
    assert!(
        reservation(b.id).is_none(),
        "a waiting booking was reserved"
    );
    // An admin approves: the reservation is made in the same decision, for alice.
    let admin = lab.root().await;
    admin
        .request(Request::Approve(gpubook_proto::ApproveRequest {
            id: b.id,
            rev: Some(b.revision),
        }))
        .await
        .expect("approve");
    let held = reservation(b.id).expect("the approved booking's reservation");
    assert_eq!(held["Users"], ALICE, "{held:?}");
    assert_eq!(held["StartTime"], slurm_time(start), "{held:?}");
    clean_cluster();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_slurm_will_not_take_fails_in_slurms_words() {
    let Some((_turn, alice, lab)) = turn("a_job_slurm_will_not_take_fails_in_slurms_words").await
    else {
        return;
    };
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &alice);
    let user = lab.connect_as(&alice).await;
    // An admin closes the partition to new jobs: Slurm's own rule, which gpubook does not know.
    slurm(
        "scontrol",
        &["update", "PartitionName=gpu", "State=INACTIVE"],
    )
    .expect("close");
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book_job(1, start, start + secs(60), "true", &work))
            .await,
    );
    let failed = events
        .wait_for(b.booking.id, EventKind::JobFailed, DEADLINE)
        .await;
    slurm("scontrol", &["update", "PartitionName=gpu", "State=UP"]).expect("open again");
    let run = failed.booking.run.expect("its run");
    assert_eq!(run.state, JobState::FailedToStart, "{run:?}");
    let words = run.message.unwrap_or_default();
    assert!(
        words.contains("sbatch") && words.to_lowercase().contains("partition"),
        "{words}"
    );
    clean_cluster();
}
