//! Stage-in through the real agent running as root, for a real non-root owner: the data is in
//! the server's scratch before the slot starts, equal to its source and owned by the owner;
//! the same data staged for a second booking is not copied again; the least recently used
//! copies go under the quota, never those of bookings still to come; a source the owner
//! cannot read (though root could) or that does not exist fails before the slot, with why.
//! Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_core::{BookingId, Note};
use gpubook_proto::{CancelRequest, EventKind, Request};
use jobs_support::{
    book, booked, ensure_user, job, parse_env, read_when_there, require_root, secs, slot_start,
    Events, Lab, UserConn, DEADLINE, JOBBER,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Small files in the tree, besides the large one.
const SMALL_FILES: usize = 300;
/// The large file's size.
const LARGE: usize = 48 << 20;

/// A tree of `SMALL_FILES` small files in nested directories and one large file, owned by
/// `uid`, readable by them only.
fn make_tree(root: &Path, uid: u32, gid: u32, seed: u8) {
    for i in 0..SMALL_FILES {
        let dir = root
            .join(format!("part-{}", i % 7))
            .join(format!("d{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(i * 37 % 5000)).map(|j| (j as u8) ^ seed).collect();
        std::fs::write(dir.join(format!("img-{i}.jpg")), body).unwrap();
    }
    let large: Vec<u8> = (0..LARGE).map(|j| (j % 251) as u8 ^ seed).collect();
    std::fs::write(root.join("train.bin"), large).unwrap();
    for e in walk(root) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Every path under `root`, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Asserts the staged copy equals its source file by file, owned by `uid`.
fn assert_same_tree(src: &Path, copy: &Path, uid: u32) {
    let (a, b) = (walk(src), walk(copy));
    let rel = |v: &[PathBuf], r: &Path| -> Vec<PathBuf> {
        v.iter()
            .map(|p| p.strip_prefix(r).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(rel(&a, src), rel(&b, copy), "the same files");
    for (x, y) in a.iter().zip(&b) {
        let m = std::fs::metadata(y).unwrap();
        assert_eq!(m.uid(), uid, "{} is owned by the owner", y.display());
        if m.is_file() {
            assert!(
                std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
                "{}",
                y.display()
            );
        }
    }
}

fn stage_note(e: &gpubook_proto::Event) -> (u64, u64, u64, String) {
    match &e.note {
        Some(Note::Stage {
            copied_files,
            kept_files,
            total_bytes,
            dir,
            ..
        }) => (*copied_files, *kept_files, *total_bytes, dir.clone()),
        other => panic!("a stage event without its figures: {other:?}"),
    }
}

fn failure(e: &gpubook_proto::Event) -> String {
    match &e.note {
        Some(Note::TransferFailed { reason, .. }) => reason.clone(),
        other => panic!("a failure without its reason: {other:?}"),
    }
}

async fn lab_with(policy: &str) -> (Lab, PathBuf) {
    let lab = Lab::new(4);
    let scratch = lab.path().join("scratch");
    lab.policy(&format!("scratch = \"{}\"\n{policy}", scratch.display()));
    let mut lab = lab;
    lab.start().await;
    (lab, scratch)
}

async fn book_staged(
    user: &UserConn,
    gpu: &str,
    lead: i64,
    sources: &[(&str, &Path)],
    command: &str,
) -> BookingId {
    let mut spec = job(command);
    for (name, src) in sources {
        spec.stage
            .insert(name.to_string(), src.display().to_string());
    }
    let start = slot_start(lead);
    booked(
        user.conn
            .request(book(&[gpu], start, start + secs(3), "staged", Some(spec)))
            .await,
    )
    .booking
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_staged_before_the_slot_as_the_owner_and_a_second_booking_copies_nothing() {
    if !require_root("data_is_staged_before_the_slot_as_the_owner") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let (lab, scratch) = lab_with("").await;
    let mut events = Events::subscribe(&lab).await;
    let src = lab.path().join("coco");
    make_tree(&src, jobber.uid, jobber.gid, 1);
    let out = lab.out_dir("out", &jobber);
    let user = lab.connect_as(&jobber).await;
    let cmd = format!(
        "env > {}/env; ls $GPUBOOK_STAGE/coco/ > {}/ls",
        out.display(),
        out.display()
    );

    let first = book_staged(&user, "0", 12, &[("coco", &src)], &cmd).await;
    let ready = events
        .wait_for(first, EventKind::StageReady, DEADLINE)
        .await;
    let start = ready.booking.interval.start;
    assert!(
        ready.at < start,
        "ready at {} for a slot at {start}",
        ready.at
    );
    let (copied, kept, total, dir) = stage_note(&ready);
    assert_eq!((copied, kept), (SMALL_FILES as u64 + 1, 0));
    assert!(total >= LARGE as u64);
    let staged = Path::new(&dir).join("coco");
    assert_same_tree(&src, &std::fs::canonicalize(&staged).unwrap(), jobber.uid);
    assert!(dir.starts_with(&scratch.display().to_string()), "{dir}");
    // Progress came before it, as figures a client can show.
    let progress = events
        .seen
        .iter()
        .find(|e| e.booking.id == first && e.kind == EventKind::StageProgress)
        .expect("a stage_progress event before stage_ready");
    assert!(progress.seq < ready.seq);
    let (_, _, of, _) = stage_note(progress);
    assert_eq!(of, total, "the total is known from the first report");

    // The job finds it through GPUBOOK_STAGE.
    events
        .wait_for(first, EventKind::JobStarted, DEADLINE)
        .await;
    let listing = read_when_there(&out.join("ls"), DEADLINE).await;
    assert!(listing.contains("train.bin"), "{listing}");
    let env = parse_env(&std::fs::read_to_string(out.join("env")).unwrap());
    assert_eq!(env.get("GPUBOOK_STAGE"), Some(&dir), "{env:#?}");

    // The same data for another booking: nothing copied again.
    let second = book_staged(&user, "1", 30, &[("coco", &src)], "true").await;
    let ready = events
        .wait_for(second, EventKind::StageReady, DEADLINE)
        .await;
    let (copied, kept, _, _) = stage_note(&ready);
    assert_eq!((copied, kept), (0, SMALL_FILES as u64 + 1), "copied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_copy_goes_under_the_quota_but_never_one_still_to_come() {
    if !require_root("the_least_recently_used_copy_goes_under_the_quota") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    // Room for one tree (a little over 48 MiB), not two.
    let (lab, scratch) = lab_with("stage_quota = \"80M\"\n").await;
    let mut events = Events::subscribe(&lab).await;
    let (a, b) = (lab.path().join("a"), lab.path().join("b"));
    make_tree(&a, jobber.uid, jobber.gid, 2);
    make_tree(&b, jobber.uid, jobber.gid, 3);
    let user = lab.connect_as(&jobber).await;
    let cache = scratch.join(JOBBER).join("cache");

    let first = book_staged(&user, "0", 600, &[("a", &a)], "true").await;
    events
        .wait_for(first, EventKind::StageReady, DEADLINE)
        .await;
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    // The first booking still to come pins its copy: the second does not fit.
    let second = book_staged(&user, "1", 600, &[("b", &b)], "true").await;
    let failed = events
        .wait_for(second, EventKind::StageFailed, DEADLINE)
        .await;
    assert!(failure(&failed).contains("quota"), "{}", failure(&failed));
    // Once it is cancelled, its copy is the one to go.
    user.conn
        .request(Request::Cancel(CancelRequest { id: first }))
        .await
        .expect("cancel");
    let third = book_staged(&user, "2", 600, &[("b", &b)], "true").await;
    let ready = events
        .wait_for(third, EventKind::StageReady, DEADLINE)
        .await;
    let (_, _, _, dir) = stage_note(&ready);
    assert_same_tree(
        &b,
        &std::fs::canonicalize(Path::new(&dir).join("b")).unwrap(),
        jobber.uid,
    );
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "the older copy was evicted");
    let source = std::fs::read_to_string(left[0].path().join("source")).unwrap();
    assert_eq!(source, b.display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_the_owner_cannot_read_or_that_is_missing_fails_before_the_slot() {
    if !require_root("a_source_the_owner_cannot_read_fails_before_the_slot") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let (lab, _) = lab_with("").await;
    let mut events = Events::subscribe(&lab).await;
    // Root's own, readable by root alone: the agent could read it, the owner cannot.
    let secret = lab.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("weights.pt"), b"root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let missing = lab.path().join("no-such-dataset");
    let user = lab.connect_as(&jobber).await;

    let denied = book_staged(&user, "0", 4, &[("s", &secret)], "true").await;
    let e = events
        .wait_for(denied, EventKind::StageFailed, DEADLINE)
        .await;
    assert!(e.at < e.booking.interval.start, "told before the slot");
    let why = failure(&e);
    assert!(
        why.contains("Permission denied") && why.contains("secret"),
        "{why}"
    );
    // Its job does not start without its data, and says why.
    let e = events
        .wait_for(denied, EventKind::JobFailed, DEADLINE)
        .await;
    let msg = e.booking.run.and_then(|r| r.message).unwrap_or_default();
    assert!(
        msg.contains("could not be staged") && msg.contains("Permission denied"),
        "{msg}"
    );

    // A slot two days away is not staged yet: its stage begins 12 hours before it.
    let later = book_staged(&user, "2", 2 * 86_400, &[("m", &missing)], "true").await;
    events.drain(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        events.count(later, EventKind::StageFailed),
        0,
        "not tried yet"
    );

    let gone = book_staged(&user, "1", 20, &[("m", &missing)], "true").await;
    let e = events
        .wait_for(gone, EventKind::StageFailed, DEADLINE)
        .await;
    let why = failure(&e);
    assert!(
        why.contains("No such file") && why.contains("no-such-dataset"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_s_links_go_when_it_ends_or_is_cancelled_and_its_data_stays_cached() {
    if !require_root("a_booking_s_links_go_when_it_ends") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let (lab, scratch) = lab_with("").await;
    let mut events = Events::subscribe(&lab).await;
    let src = lab.path().join("coco");
    make_tree(&src, jobber.uid, jobber.gid, 4);
    let user = lab.connect_as(&jobber).await;
    let owner_dir = scratch.join(JOBBER);

    let short = book_staged(&user, "0", 4, &[("coco", &src)], "true").await;
    let later = book_staged(&user, "1", 600, &[("coco", &src)], "true").await;
    for id in [short, later] {
        events.wait_for(id, EventKind::StageReady, DEADLINE).await;
    }
    let dir = |id: BookingId| owner_dir.join(format!("booking-{id}"));
    assert!(dir(short).join("coco").exists() && dir(later).join("coco").exists());
    // Planted by the owner: a link to a directory only root may change. Removed as the link
    // it is; what it points at is untouched.
    let roots = lab.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::write(roots.join("keep.txt"), b"root's").unwrap();
    let planted = owner_dir.join("booking-999999");
    std::os::unix::fs::symlink(&roots, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(jobber.uid), Some(jobber.gid)).unwrap();

    // The short one's job ends: its links go, the later one's stay.
    events
        .wait_for(short, EventKind::JobFinished, DEADLINE)
        .await;
    jobs_support::wait_until_within("the ended booking's links removed", DEADLINE, || {
        !dir(short).exists()
    })
    .await;
    assert!(
        dir(later).join("coco").exists(),
        "a booking still to come keeps its links"
    );
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "the planted link went too"
    );
    assert_eq!(std::fs::read(roots.join("keep.txt")).unwrap(), b"root's");

    // Cancelled: its links go as well.
    user.conn
        .request(Request::Cancel(CancelRequest { id: later }))
        .await
        .expect("cancel");
    jobs_support::wait_until_within("the cancelled booking's links removed", DEADLINE, || {
        !dir(later).exists()
    })
    .await;
    // The data itself stays cached for the next booking (evicted only under the quota).
    let cache: Vec<_> = std::fs::read_dir(owner_dir.join("cache"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cache.len(), 1);
    assert_same_tree(&src, &cache[0].path().join("data"), jobber.uid);
}
