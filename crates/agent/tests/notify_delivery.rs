//! News while away, end to end: the real agent binary as root, real Unix users asking through
//! `gpubook-agent bridge` under their uid, a real SMTP server (aiosmtpd) and an HTTP receiver on
//! 127.0.0.1 (`notify_support`), mails read back by Python's own e-mail parser.
//!
//! - A job that finishes while no app is connected gives exactly one mail and one webhook POST
//!   with its exit status, and still one of each after the agent is killed and started again.
//! - A receiver that hangs does not slow booking, nor another person's news.
//! - Another person's webhook URL is in no answer to anyone else, admins included.
//! - A failed delivery is shown to its owner with why and when the next try is.
//! - A mail credentials file that its group or others can read stops the agent at start.
//!
//! `latency_job_end_to_mail_and_webhook` (ignored; run with --ignored --nocapture) prints the
//! figures in BENCHMARKS.md. Needs root and `. scripts/mail-services.sh`.

mod jobs_support;
mod notify_support;

use gpubook_client::Connection;
use gpubook_proto::{
    Channel, DeliveryState, EventKind, NotifyResponse, NotifySetRequest, NotifyShowRequest,
    NotifyTarget, Request, Response, WebhookFormat,
};
use jobs_support::{
    book, booked, ensure_user, job, require_root, secs, slot_start, wait_until_within, Events, Lab,
    DEADLINE, JOBBER, OTHER,
};
use notify_support::Receivers;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

async fn set(conn: &Connection, targets: Vec<NotifyTarget>) -> NotifyResponse {
    match conn
        .request(Request::NotifySet(NotifySetRequest { targets }))
        .await
    {
        Ok(Response::Notify(n)) => n,
        other => panic!("notify_set: {other:?}"),
    }
}

async fn show(conn: &Connection) -> NotifyResponse {
    match conn
        .request(Request::NotifyShow(NotifyShowRequest {}))
        .await
    {
        Ok(Response::Notify(n)) => n,
        other => panic!("notify_show: {other:?}"),
    }
}

fn mail(address: &str, kinds: &[EventKind]) -> NotifyTarget {
    NotifyTarget {
        channel: Channel::Email {
            address: address.into(),
        },
        kinds: kinds.to_vec(),
    }
}

fn hook(url: String, format: WebhookFormat, kinds: &[EventKind]) -> NotifyTarget {
    NotifyTarget {
        channel: Channel::Webhook { url, format },
        kinds: kinds.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finishing_with_no_app_connected_is_mailed_and_posted_once_even_across_a_restart() {
    let name =
        "a_job_finishing_with_no_app_connected_is_mailed_and_posted_once_even_across_a_restart";
    if !require_root(name) {
        return;
    }
    let Some(rx) = Receivers::start(name) else {
        return;
    };
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.policy(&rx.mail_policy());
    lab.start().await;
    let script = lab.script("exit3.sh", "#!/bin/sh\nsleep 1\nexit 3\n");
    let b = {
        let user = lab.connect_as(&jobber).await;
        let n = set(
            &user.conn,
            vec![
                mail("jobber@lab.test", &[EventKind::JobFinished]),
                hook(
                    rx.url("/ok/jobber"),
                    WebhookFormat::Json,
                    &[EventKind::JobFinished],
                ),
            ],
        )
        .await;
        assert!(n.mail, "the policy has [mail]");
        let start = slot_start(2);
        booked(
            user.conn
                .request(book(
                    &["0"],
                    start,
                    start + secs(60),
                    "exit three",
                    Some(job(&script.display().to_string())),
                ))
                .await,
        )
        .booking
        // The person's connection closes here: no app is connected when the job ends.
    };
    wait_until_within("one mail and one webhook POST", DEADLINE, || {
        !rx.mails().is_empty() && !rx.posts().is_empty()
    })
    .await;

    let m = &rx.mails()[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["jobber@lab.test"]), "{m}");
    assert_eq!(m["to"], "jobber@lab.test", "{m}");
    assert_eq!(m["from"], "gpubook <gpubook@lab.test>", "{m}");
    assert_eq!(m["content_type"], "text/plain", "{m}");
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.contains("[gpubook lab-test]") && subject.contains("exit 3"),
        "{subject}"
    );
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("Exit status: 3"), "{body}");
    assert!(body.contains(&format!("Booking: {} ", b.id.0)), "{body}");

    let p = &rx.posts()[0];
    assert_eq!(p["path"], "/ok/jobber");
    assert_eq!(p["content_type"], "application/json");
    let ev = &p["json"]["event"];
    assert_eq!(ev["kind"], "job_finished", "{p}");
    assert_eq!(ev["booking"]["id"], b.id.0, "{p}");
    assert_eq!(ev["booking"]["run"]["exit_code"], 3, "{p}");

    // Once the agent has recorded both as sent (a receiver writes its record before it
    // answers, and the agent commits after the answer: a kill in between repeats the
    // delivery, with the same Message-ID; see SECURITY.md), it is killed and started again:
    // nothing is sent twice.
    let user = lab.connect_as(&jobber).await;
    let until = Instant::now() + DEADLINE;
    while show(&user.conn)
        .await
        .deliveries
        .iter()
        .any(|d| d.state != DeliveryState::Sent)
    {
        assert!(Instant::now() < until, "{:?}", show(&user.conn).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(user);
    lab.kill();
    lab.start().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rx.mails().len(), 1, "{:?}", rx.mails());
    assert_eq!(rx.posts().len(), 1, "{:?}", rx.posts());

    let user = lab.connect_as(&jobber).await;
    let n = show(&user.conn).await;
    assert_eq!(n.deliveries.len(), 2, "{n:?}");
    for d in &n.deliveries {
        assert_eq!(d.state, DeliveryState::Sent, "{d:?}");
        assert_eq!((d.attempts, d.booking), (1, b.id), "{d:?}");
        assert_eq!(d.kind, EventKind::JobFinished);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_slows_neither_booking_nor_another_persons_news() {
    let name = "a_hanging_receiver_slows_neither_booking_nor_another_persons_news";
    if !require_root(name) {
        return;
    }
    let Some(rx) = Receivers::start(name) else {
        return;
    };
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(4);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let them = lab.connect_as(&other).await;
    set(
        &user.conn,
        vec![hook(
            rx.url("/hang/jobber"),
            WebhookFormat::Slack,
            &[EventKind::SlotStarted],
        )],
    )
    .await;
    set(
        &them.conn,
        vec![hook(
            rx.url("/ok/other"),
            WebhookFormat::Slack,
            &[EventKind::SlotStarted],
        )],
    )
    .await;

    // Booking latency with nothing to send.
    let far = slot_start(3600);
    async fn book_one(conn: &Connection, at: chrono::DateTime<chrono::Utc>) -> Duration {
        let t = Instant::now();
        booked(
            conn.request(book(&["3"], at, at + secs(60), "later", None))
                .await,
        );
        t.elapsed()
    }
    let mut n = 0;
    let mut next = || {
        n += 1;
        far + secs(120 * n)
    };
    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(book_one(&user.conn, next()).await);
    }

    // Three of the jobber's slots start, each posting to a receiver that never answers.
    let start = slot_start(2);
    for g in ["0", "1", "2"] {
        booked(
            user.conn
                .request(book(&[g], start, start + secs(60), "hangs", None))
                .await,
        );
    }
    wait_until_within("the jobber's POSTs to hang", DEADLINE, || {
        rx.hangs().len() >= 2
    })
    .await;
    let during_start = Instant::now();
    let mut during = Vec::new();
    for _ in 0..10 {
        during.push(book_one(&user.conn, next()).await);
    }
    // Another person's news goes out meanwhile.
    let start = slot_start(2);
    booked(
        them.conn
            .request(book(&["3"], start, start + secs(30), "theirs", None))
            .await,
    );
    wait_until_within(
        "the other person's POST while the jobber's hang",
        Duration::from_secs(8),
        || rx.posts().iter().any(|p| p["path"] == "/ok/other"),
    )
    .await;
    // Only the other person's own booking reached their webhook, not the jobber's slots.
    assert_eq!(
        rx.posts()
            .iter()
            .filter(|p| p["path"] == "/ok/other")
            .count(),
        1,
        "{:?}",
        rx.posts()
    );
    assert!(
        rx.hangs().len() <= 3,
        "each delivery is one try in flight: {:?}",
        rx.hangs()
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, d) = (median(&mut before), median(&mut during));
    let worst = *during.iter().max().unwrap();
    eprintln!("booking: median {b:?} before, {d:?} while hanging (worst {worst:?})");
    assert!(
        worst < Duration::from_secs(1) && d <= b * 5 + Duration::from_millis(100),
        "booking slowed while a receiver hangs: median {b:?} before, {d:?} during, worst \
         {worst:?}"
    );
    assert!(during_start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_persons_webhook_url_is_in_no_answer_to_anyone_else() {
    let name = "another_persons_webhook_url_is_in_no_answer_to_anyone_else";
    if !require_root(name) {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let secret = format!("tok{}", std::process::id());
    let url = format!("https://hooks.example.invalid/services/{secret}");
    let user = lab.connect_as(&jobber).await;
    set(
        &user.conn,
        vec![hook(
            url.clone(),
            WebhookFormat::Slack,
            &[EventKind::JobFinished],
        )],
    )
    .await;
    let start = slot_start(3600);
    booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "mine", None))
            .await,
    );
    // Its owner sees it.
    assert_eq!(
        show(&user.conn).await.targets[0].channel,
        Channel::Webhook {
            url: url.clone(),
            format: WebhookFormat::Slack
        }
    );

    let them = lab.connect_as(&other).await;
    let root = lab.root().await;
    let mut events = Events::subscribe(&lab).await;
    events.drain(Duration::from_millis(500)).await;
    for conn in [&them.conn, &root] {
        let mut seen = String::new();
        let n = show(conn).await;
        assert!(n.targets.is_empty() && n.deliveries.is_empty(), "{n:?}");
        seen.push_str(&format!("{n:?}"));
        for req in [
            Request::Whoami(Default::default()),
            Request::Gpus(Default::default()),
            Request::List(gpubook_proto::ListRequest {
                include_past: true,
                ..Default::default()
            }),
            Request::Policy(Default::default()),
            Request::Report(gpubook_proto::ReportRequest {
                from: start - secs(86400),
                to: start + secs(86400),
            }),
        ] {
            seen.push_str(&format!("{:?}", conn.request(req).await));
        }
        // Setting or clearing one's own touches no one else's.
        set(conn, vec![]).await;
        assert!(!seen.contains(&secret), "{seen}");
    }
    assert!(!events.describe().contains(&secret));
    assert_eq!(show(&user.conn).await.targets.len(), 1, "still the owner's");
    assert!(!lab.log().contains(&secret), "{}", lab.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_shown_to_its_owner_with_why_and_the_next_try() {
    let name = "a_failed_delivery_is_shown_to_its_owner_with_why_and_the_next_try";
    if !require_root(name) {
        return;
    }
    let Some(rx) = Receivers::start(name) else {
        return;
    };
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    set(
        &user.conn,
        vec![
            hook(
                rx.url("/fail/x"),
                WebhookFormat::Slack,
                &[EventKind::SlotStarted],
            ),
            // Nothing listens on port 9 of 127.0.0.1.
            hook(
                "http://127.0.0.1:9/hook".into(),
                WebhookFormat::Json,
                &[EventKind::SlotStarted],
            ),
        ],
    )
    .await;
    let start = slot_start(2);
    let b = booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "doomed", None))
            .await,
    )
    .booking;
    let mut shown = NotifyResponse {
        targets: vec![],
        deliveries: vec![],
        mail: false,
    };
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        shown = show(&user.conn).await;
        if shown.deliveries.len() == 2 && shown.deliveries.iter().all(|d| d.attempts == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(shown.deliveries.len(), 2, "{shown:?}");
    for d in &shown.deliveries {
        assert_eq!(
            (d.state, d.attempts, d.booking),
            (DeliveryState::Pending, 1, b.id),
            "{d:?}"
        );
        let next = d.next_attempt.expect("a next try");
        let wait = (next - chrono::Utc::now()).num_seconds();
        assert!((20..=31).contains(&wait), "next try in {wait} s: {d:?}");
        let why = d.last_error.as_deref().unwrap_or_default();
        assert!(
            why.contains("HTTP 500") || why.contains("cannot connect"),
            "{why}"
        );
    }
    assert_eq!(rx.posts().len(), 1, "one try so far: {:?}", rx.posts());
    assert!(!shown.mail, "no [mail] in this policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_a_mail_credentials_file_others_can_read() {
    let name = "the_agent_refuses_a_mail_credentials_file_others_can_read";
    if !require_root(name) {
        return;
    }
    let lab = Lab::new(1);
    let creds = lab.path().join("smtp-credentials");
    std::fs::write(&creds, "gpubook\nsecret-password\n").unwrap();
    lab.policy(&format!(
        "[mail]\nserver = \"127.0.0.1\"\ntls = \"none\"\nsender = \"gpubook@lab.test\"\n\
         credentials_file = \"{}\"\n",
        creds.display()
    ));
    let serve = |lab: &Lab| {
        std::process::Command::new(lab.agent_bin())
            .arg("serve")
            .arg("--state-dir")
            .arg(lab.state_dir())
            .arg("--socket")
            .arg(lab.path().join("probe.sock"))
            .arg("--gpus")
            .arg("sim:1")
            .arg("--policy")
            .arg(lab.path().join("policy.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the agent")
    };
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = serve(&lab).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {mode:o}: it started");
        assert!(
            err.contains("smtp-credentials") && err.contains("chmod 600"),
            "mode {mode:o}: {err}"
        );
        assert!(!err.contains("secret-password"), "{err}");
    }
    // Root's alone: the agent starts.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = serve(&lab);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent stopped with a 0600 credentials file"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Job end → mail received and → webhook received, over many jobs: prints median and p99.
/// `cargo test -p gpubook-agent --test notify_delivery -- --ignored --nocapture latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn latency_job_end_to_mail_and_webhook() {
    let name = "latency_job_end_to_mail_and_webhook";
    if !require_root(name) {
        return;
    }
    let Some(rx) = Receivers::start(name) else {
        return;
    };
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(32);
    lab.policy(&rx.mail_policy());
    lab.start().await;
    let script = lab.script("quick.sh", "#!/bin/sh\nsleep 0.$(( $$ % 9 + 1 ))\nexit 0\n");
    let user = lab.connect_as(&jobber).await;
    set(
        &user.conn,
        vec![
            mail("jobber@lab.test", &[EventKind::JobFinished]),
            hook(
                rx.url("/ok/bench"),
                WebhookFormat::Json,
                &[EventKind::JobFinished],
            ),
        ],
    )
    .await;
    let mut events = Events::subscribe(&lab).await;
    // Each booking on a GPU of its own: a booking right after another on the same GPU would
    // have the earlier job stopped early to free it.
    let rounds = 4;
    let mut ids = Vec::new();
    for r in 0..rounds {
        let start = slot_start(2 + 3 * r);
        for g in 0..8 {
            let b = booked(
                user.conn
                    .request(book(
                        &[&(8 * r + g).to_string()],
                        start,
                        start + secs(3),
                        "bench",
                        Some(job(&script.display().to_string())),
                    ))
                    .await,
            )
            .booking;
            ids.push(b.id);
        }
    }
    let n = ids.len();
    let until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < until && (rx.mails().len() < n || rx.posts().len() < n) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    events.drain(Duration::from_millis(200)).await;
    assert!(
        rx.mails().len() >= n && rx.posts().len() >= n,
        "{} mails and {} POSTs of {n}; events:\n{}\ndeliveries: {:?}",
        rx.mails().len(),
        rx.posts().len(),
        events.describe(),
        show(&user.conn).await
    );
    let mut to_mail = Vec::new();
    let mut to_hook = Vec::new();
    for id in &ids {
        let ev = events.wait_for(*id, EventKind::JobFinished, DEADLINE).await;
        let ended = ev.booking.run.and_then(|r| r.ended_at).expect("ended_at");
        let ended = ended.timestamp_micros() as f64 / 1e6;
        let mark = format!("Booking: {} ", id.0);
        let m = rx
            .mails()
            .into_iter()
            .find(|m| m["body"].as_str().unwrap_or("").contains(&mark))
            .expect("its mail");
        let p = rx
            .posts()
            .into_iter()
            .find(|p| p["json"]["event"]["booking"]["id"] == id.0)
            .expect("its POST");
        to_mail.push(m["at"].as_f64().unwrap() - ended);
        to_hook.push(p["at"].as_f64().unwrap() - ended);
    }
    assert_eq!(rx.mails().len(), n, "one mail per job");
    assert_eq!(rx.posts().len(), n, "one POST per job");
    let figures = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        (p(0.5) * 1000.0, p(0.99) * 1000.0)
    };
    let (m50, m99) = figures(&mut to_mail);
    let (h50, h99) = figures(&mut to_hook);
    println!("{n} jobs: job end -> mail received: median {m50:.0} ms, p99 {m99:.0} ms");
    println!("{n} jobs: job end -> webhook received: median {h50:.0} ms, p99 {h99:.0} ms");
}
