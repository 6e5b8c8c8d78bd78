//! A booking's length suggested from the owner's own past runs, on a real agent with real jobs:
//! runs of one script with per-run output names count as one command, another user's runs and
//! other GPU counts do not, and with no history the answer says so. Each run records the
//! size of the data it staged, and a suggestion for a grown dataset (counted as the owner)
//! scales with it.
//! Needs root (real Unix users); see `jobs_support`.

mod jobs_support;

use gpubook_proto::{EventKind, Request, Response, SuggestRequest, SuggestionResponse};
use jobs_support::{
    book_asap, booked, ensure_user, job, listed, require_root, Events, Lab, User, UserConn,
    DEADLINE, JOBBER, OTHER,
};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

async fn suggest(user: &UserConn, command: &str, gpus: u32) -> SuggestionResponse {
    suggest_staging(user, command, gpus, &[]).await
}

async fn suggest_staging(
    user: &UserConn,
    command: &str,
    gpus: u32,
    stage: &[(&str, &Path)],
) -> SuggestionResponse {
    let req = Request::Suggest(SuggestRequest {
        command: command.into(),
        gpus,
        stage: stage_map(stage),
        ..SuggestRequest::default()
    });
    match user.conn.request(req).await {
        Ok(Response::Suggestion(s)) => s,
        other => panic!("expected a suggestion, got {other:?}"),
    }
}

fn stage_map(stage: &[(&str, &Path)]) -> BTreeMap<String, String> {
    stage
        .iter()
        .map(|(n, p)| (n.to_string(), p.display().to_string()))
        .collect()
}

/// A dataset of `user`'s at `root`: a `secs` file holding `secs` (how long the test's training
/// script sleeps) and a `blob` of `bytes` (sparse: only its length counts); its size in all.
fn dataset(root: &Path, user: &User, secs: u32, bytes: u64) -> u64 {
    std::fs::create_dir(root).unwrap();
    std::fs::write(root.join("secs"), secs.to_string()).unwrap();
    std::fs::File::create(root.join("blob"))
        .unwrap()
        .set_len(bytes)
        .unwrap();
    for p in [root.join("secs"), root.join("blob"), root.to_path_buf()] {
        std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
    bytes + secs.to_string().len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_s_past_runs_of_a_command_suggest_its_length() {
    if !require_root("the_owner_s_past_runs_of_a_command_suggest_its_length") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let script = lab.script("train.sh", "#!/bin/sh\nsleep 1\n");
    let user = lab.connect_as(&jobber).await;

    let none = suggest(&user, &format!("{} --out runs/0", script.display()), 1).await;
    assert_eq!(none.length_secs, None);
    assert!(none.says.contains("no past run"), "{}", none.says);

    for n in 1..=3 {
        let command = format!("{} --out runs/{n}", script.display());
        let b = booked(
            user.conn
                .request(book_asap(&["0"], 60, "train", Some(job(&command))))
                .await,
        );
        events
            .wait_for(b.booking.id, EventKind::JobFinished, DEADLINE)
            .await;
    }

    let s = suggest(&user, &format!("{} --out runs/4", script.display()), 1).await;
    assert_eq!(s.runs, 3, "{s:?}");
    assert!((1..=3).contains(&s.longest_secs), "{s:?}");
    // Three runs of about a second: the longest plus 15 %, rounded up to 5 minutes.
    assert_eq!(s.length_secs, Some(300), "{s:?}");
    assert!(
        s.says.starts_with("your last 3 runs of this took"),
        "{}",
        s.says
    );

    // Another GPU count is another job; another person has no history of it.
    let two = suggest(&user, &format!("{} --out runs/4", script.display()), 2).await;
    assert_eq!(two.length_secs, None, "{two:?}");
    let theirs = lab.connect_as(&other).await;
    let s = suggest(&theirs, &format!("{} --out runs/4", script.display()), 1).await;
    assert_eq!((s.length_secs, s.runs), (None, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_records_its_staged_size_and_a_grown_dataset_scales_the_suggestion() {
    if !require_root("each_run_records_its_staged_size_and_a_grown_dataset_scales") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let lab = Lab::new(2);
    let scratch = lab.path().join("scratch");
    lab.policy(&format!("scratch = \"{}\"\n", scratch.display()));
    let mut lab = lab;
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    // A training whose length follows its data: one second per MiB.
    let script = lab.script(
        "train.sh",
        "#!/bin/sh\nsleep \"$(cat \"$GPUBOOK_STAGE/data/secs\")\"\n",
    );
    let user = lab.connect_as(&jobber).await;
    let command = |n: u32| format!("{} --out runs/{n}", script.display());
    const MIB: u64 = 1 << 20;

    let mut runs: Vec<(PathBuf, u64)> = Vec::new();
    for (n, mib) in [(1u32, 1u32), (2, 2)] {
        let src = lab.path().join(format!("data-{n}"));
        let size = dataset(&src, &jobber, mib, u64::from(mib) * MIB);
        let mut spec = job(&command(n));
        spec.stage = stage_map(&[("data", &src)]);
        let b = booked(
            user.conn
                .request(book_asap(&["0"], 60, "train", Some(spec)))
                .await,
        );
        events
            .wait_for(b.booking.id, EventKind::JobFinished, DEADLINE)
            .await;
        let run = listed(&user.conn, b.booking.id).await.run.expect("a run");
        assert_eq!(run.exit_code, Some(0), "{run:?}");
        assert_eq!(
            run.staged_bytes,
            Some(size),
            "the run records what it staged"
        );
        runs.push((src, size));
    }

    // The same data as the first run: about a second, so the smallest length.
    let same = suggest_staging(&user, &command(3), 1, &[("data", &runs[0].0)]).await;
    assert!(same.scaled, "{same:?}");
    assert_eq!(same.length_secs, Some(300), "{same:?}");
    // A dataset grown to 1 GiB: 1024 times the first, 512 times the second; both runs
    // scale to about 1024 s, plus 15 % for few runs, rounded up to 5 minutes.
    let grown = lab.path().join("data-grown");
    dataset(&grown, &jobber, 1, 1024 * MIB);
    let s = suggest_staging(&user, &command(3), 1, &[("data", &grown)]).await;
    assert!(s.scaled, "{s:?}");
    assert_eq!(s.runs, 2, "{s:?}");
    let length = s.length_secs.unwrap_or_default();
    assert!((1200..=1800).contains(&length), "{s:?}");
    assert!(s.says.contains("scaled to the data's size"), "{}", s.says);
    // Without the data named, the history alone: not scaled.
    let plain = suggest(&user, &command(3), 1).await;
    assert_eq!(
        (plain.scaled, plain.length_secs),
        (false, Some(300)),
        "{plain:?}"
    );

    // Data the owner cannot read (though root could) is refused to them, with why.
    let secret = lab.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let req = Request::Suggest(SuggestRequest {
        command: command(4),
        gpus: 1,
        stage: stage_map(&[("data", &secret)]),
        ..SuggestRequest::default()
    });
    let e = user.conn.request(req).await.expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("Permission denied") && text.contains("secret"),
        "{text}"
    );
}
