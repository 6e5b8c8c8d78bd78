//! A booking's length suggested from the owner's own past runs, on a real agent with real jobs:
//! runs of one script with per-run output names count as one command, another user's runs and
//! other GPU counts do not, and with no history the answer says so.
//! Needs root (real Unix users); see `jobs_support`.

mod jobs_support;

use gpubook_proto::{EventKind, Request, Response, SuggestRequest, SuggestionResponse};
use jobs_support::{
    book_asap, booked, ensure_user, job, require_root, Events, Lab, UserConn, DEADLINE, JOBBER,
    OTHER,
};

async fn suggest(user: &UserConn, command: &str, gpus: u32) -> SuggestionResponse {
    let req = Request::Suggest(SuggestRequest {
        command: command.into(),
        gpus,
        staged_bytes: None,
    });
    match user.conn.request(req).await {
        Ok(Response::Suggestion(s)) => s,
        other => panic!("expected a suggestion, got {other:?}"),
    }
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
