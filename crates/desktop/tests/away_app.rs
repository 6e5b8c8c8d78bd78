//! The app's commands for news while away and reports, against a real agent (in this
//! process, simulated GPUs): the person's webhook is kept by the agent and read back, a bad
//! address is refused with `invalid` before anything is sent and what was kept stays, e-mail
//! is refused where the admin set up no mail, clearing removes all; a report over a window
//! counts a booking's GPU-hours for its owner and its GPUs, and a window that ends before it
//! starts is refused typed.

use std::sync::Arc;

use chrono::{Duration, Utc};
use gpubook_core::time::floor_to;
use gpubook_desktop::error::AppErrorKind;
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    Address, EventPayload, Files, Manager, ReadingsPayload, ServerState, ServerView, Sink,
};
use gpubook_proto::{
    BookRequest, Channel, ErrorKind, EventKind, GpuChoice, NotifyTarget, WebhookFormat, WhenChoice,
};
use gpubook_testkit::agent::InProcessAgent;
use gpubook_testkit::wait_until;

#[derive(Debug, Default)]
struct Quiet;

impl Sink for Quiet {
    fn server(&self, _: &ServerView) {}
    fn event(&self, _: &EventPayload) {}
    fn readings(&self, _: &ReadingsPayload) {}
}

impl Notifier for Quiet {
    fn show(&self, _: Notice, _: Option<Box<dyn FnOnce() + Send>>) {}
}

async fn connected(agent: &InProcessAgent, app: &tempfile::TempDir) -> Manager {
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let q = Arc::new(Quiet);
    let m = Manager::new(
        files,
        q.clone(),
        q,
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.add("lab", "Lab test", Address::Unix(agent.socket()));
    wait_until("connected", || m.views()[0].state == ServerState::Connected).await;
    m
}

fn webhook(url: &str) -> NotifyTarget {
    NotifyTarget {
        channel: Channel::Webhook {
            url: url.into(),
            format: WebhookFormat::Json,
        },
        kinds: vec![EventKind::JobFinished, EventKind::JobFailed],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_webhook_is_kept_by_the_agent_and_bad_targets_change_nothing() {
    let agent = InProcessAgent::builder(2).start().await;
    let app = tempfile::tempdir().unwrap();
    let m = connected(&agent, &app).await;

    let none = m.notify_show("lab").await.unwrap();
    assert!(none.targets.is_empty() && !none.mail, "{none:?}");
    let hook = webhook("http://127.0.0.1:9/hooks/secret");
    let set = m.notify_set("lab", vec![hook.clone()]).await.unwrap();
    assert_eq!(set.targets, vec![hook.clone()]);
    assert_eq!(
        m.notify_show("lab").await.unwrap().targets,
        vec![hook.clone()]
    );

    // Refused by the app's own check: nothing reaches the agent, the webhook stays.
    let bad = m
        .notify_set("lab", vec![webhook("ftp://h.example/x")])
        .await
        .unwrap_err();
    assert_eq!(bad.kind, AppErrorKind::Agent(ErrorKind::Invalid), "{bad:?}");
    assert!(bad.message.contains("Lab test"), "{}", bad.message);
    // Refused by the agent: no mail server in its policy.
    let mail = NotifyTarget {
        channel: Channel::Email {
            address: "me@lab.example".into(),
        },
        kinds: vec![EventKind::JobFinished],
    };
    let refused = m.notify_set("lab", vec![mail]).await.unwrap_err();
    assert!(
        matches!(refused.kind, AppErrorKind::Agent(_)),
        "{refused:?}"
    );
    assert_eq!(m.notify_show("lab").await.unwrap().targets, vec![hook]);

    assert!(m.notify_clear("lab").await.unwrap().targets.is_empty());
    assert!(m.notify_show("lab").await.unwrap().targets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_counts_a_bookings_gpu_hours_and_refuses_an_empty_window() {
    let agent = InProcessAgent::builder(2).start().await;
    let app = tempfile::tempdir().unwrap();
    let m = connected(&agent, &app).await;
    let me = agent.connect().await.welcome().user.clone();

    let start = floor_to(Utc::now(), Duration::hours(1)) + Duration::days(1);
    let booked = m
        .book(
            "lab",
            BookRequest {
                gpus: GpuChoice::Named {
                    gpus: vec!["0".into(), "1".into()],
                },
                when: WhenChoice::At {
                    start,
                    end: start + Duration::minutes(90),
                },
                title: "report me".into(),
                job: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(booked.booking.gpus.len(), 2);

    let r = m
        .report("lab", start - Duration::days(1), start + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(r.server, agent.connect().await.welcome().server);
    let line = r
        .report
        .users
        .iter()
        .find(|u| u.user == me)
        .expect("my line");
    assert_eq!(line.booked_gpu_secs, 2 * 90 * 60, "{line:?}");
    assert_eq!(line.used_gpu_secs, 0, "not started yet");
    let per_gpu: Vec<i64> = r.report.gpus.iter().map(|g| g.booked_secs).collect();
    assert_eq!(per_gpu, vec![90 * 60, 90 * 60]);
    // A window that leaves the booking out has nothing of it.
    let before = m
        .report("lab", start - Duration::days(1), start)
        .await
        .unwrap();
    assert!(before.report.users.iter().all(|u| u.booked_gpu_secs == 0));

    let e = m
        .report("lab", start, start - Duration::hours(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, AppErrorKind::Agent(ErrorKind::Invalid), "{e:?}");
    assert!(e.message.contains("after its start"), "{}", e.message);
}
