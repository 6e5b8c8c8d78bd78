//! Saving a job's results through the real agent running as root, for a real non-root owner:
//! when the job ends, the files matching its globs reach the destination as the owner with
//! their checksums verified, and a `job_saved` event lists them; a destination the owner may
//! not write to is tried again with back-off and then told in a `save_failed` event, the files
//! left where they were. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_client::Pushed;
use gpubook_core::{BookingId, Note, SavedFile};
use gpubook_proto::EventKind;
use jobs_support::{
    book, booked, ensure_user, job, require_root, secs, slot_start, Events, Lab, UserConn,
    DEADLINE, JOBBER, OTHER, SERVER,
};
use sha2::Digest;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Writes a checkpoint worth keeping, one that is not, and a note beside them.
const TRAIN: &str = "mkdir -p runs/exp1 runs/exp2 && head -c 3000000 /dev/urandom > \
                     runs/exp1/best.pt && head -c 1000 /dev/urandom > runs/exp2/best.pt && \
                     echo last > runs/exp1/last.pt && echo notes > best.pt.txt";

async fn book_saving(user: &UserConn, cwd: &Path, to: &str) -> BookingId {
    let mut spec = job(TRAIN);
    spec.cwd = Some(cwd.display().to_string());
    spec.save = vec!["runs/**/best.pt".into()];
    spec.save_to = Some(to.into());
    let start = slot_start(2);
    booked(
        user.conn
            .request(book(&["0"], start, start + secs(20), "train", Some(spec)))
            .await,
    )
    .booking
    .id
}

fn sha256(path: &Path) -> String {
    let d = sha2::Sha256::digest(std::fs::read(path).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matching_files_reach_the_directory_as_the_owner_with_checksums_equal() {
    if !require_root("the_matching_files_reach_the_directory_as_the_owner") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &jobber);
    let saved = lab.out_dir("saved", &jobber);
    let user = lab.connect_as(&jobber).await;
    let to = format!("{}/{{owner}}/{{server}}-{{id}}/", saved.display());

    let id = book_saving(&user, &work, &to).await;
    let e = events.wait_for(id, EventKind::JobSaved, DEADLINE).await;
    let Some(Note::Saved { to: where_, files }) = &e.note else {
        panic!("job_saved without its files: {:?}", e.note);
    };
    let dest = saved.join(JOBBER).join(format!("{SERVER}-{id}"));
    assert_eq!(Path::new(where_.trim_end_matches('/')), dest);
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["runs/exp1/best.pt", "runs/exp2/best.pt"]);
    for SavedFile {
        name,
        size,
        sha256: sum,
    } in files
    {
        let (src, copy) = (work.join(name), dest.join(name));
        assert!(src.exists(), "{name} stays where the job left it");
        assert_eq!(std::fs::metadata(&copy).unwrap().len(), *size);
        assert_eq!(&sha256(&src), sum);
        assert_eq!(&sha256(&copy), sum, "{name} equal at the destination");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().uid(),
            jobber.uid,
            "saved as the owner"
        );
    }
    assert!(
        !dest.join("runs/exp1/last.pt").exists(),
        "only what matches"
    );
    assert!(!dest.join("best.pt.txt").exists());

    // Someone else sees that it was saved, not what or where.
    let other = lab.connect_as(&ensure_user(OTHER)).await;
    let (_, mut rx) = other
        .conn
        .subscribe(Some(0), false)
        .await
        .expect("subscribe");
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(Pushed::Event(e))) if e.booking.id == id && e.kind == EventKind::JobSaved => {
                assert_eq!(e.note, None, "another person's saved files are hidden");
                assert!(e.booking.job.is_some_and(|j| j.save_to.is_none()));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no job_saved for another person: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_refuses_is_retried_then_told_and_the_files_stay() {
    if !require_root("a_destination_that_refuses_is_retried_then_told") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    // The agent inherits it: tries 50 ms apart, doubling.
    std::env::set_var("GPUBOOK_SAVE_BACKOFF_MS", "50");
    let mut lab = Lab::new(2);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &jobber);
    // Root's: root could write there, the owner cannot.
    let locked = lab.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = lab.connect_as(&jobber).await;

    let id = book_saving(&user, &work, &format!("{}/{{id}}", locked.display())).await;
    let e = events.wait_for(id, EventKind::SaveFailed, DEADLINE).await;
    let Some(Note::TransferFailed { reason, attempts }) = &e.note else {
        panic!("save_failed without its reason: {:?}", e.note);
    };
    assert_eq!(*attempts, gpubook_agent::transfer::SAVE_TRIES);
    assert!(reason.contains("Permission denied"), "{reason}");
    assert!(reason.contains(&locked.display().to_string()), "{reason}");
    assert_eq!(events.count(id, EventKind::JobSaved), 0);
    assert!(work.join("runs/exp1/best.pt").exists(), "the files stay");
    assert_eq!(
        std::fs::read_dir(&locked).unwrap().count(),
        0,
        "nothing written as root"
    );
    let log = lab.log();
    assert!(
        log.matches("saving booking").count() >= 3,
        "each failed try is logged:\n{log}"
    );
}
