//! Wire names of requests, events and errors (moved from message.rs's unit tests).

use chrono::Utc;
use gpubook_core::BookingId;
use gpubook_proto::*;

#[test]
fn unknown_event_kinds_and_error_kinds_are_tolerated() {
    let k: EventKind = serde_json::from_str("\"job_exploded\"").unwrap();
    assert_eq!(k, EventKind::Unknown);
    let e: gpubook_proto::ErrorKind = serde_json::from_str("\"quota_melted\"").unwrap();
    assert_eq!(e, gpubook_proto::ErrorKind::Other);
}

#[test]
fn request_types_match_the_enum() {
    let all = [
        Request::Whoami(WhoamiRequest {}),
        Request::Gpus(GpusRequest {}),
        Request::List(ListRequest::default()),
        Request::Book(BookRequest {
            gpus: GpuChoice::Count {
                count: 1,
                min_memory: None,
            },
            when: WhenChoice::Asap { duration_secs: 60 },
            title: String::new(),
            job: None,
        }),
        Request::Cancel(CancelRequest { id: BookingId(1) }),
        Request::Extend(ExtendRequest {
            id: BookingId(1),
            end: Utc::now(),
        }),
        Request::Move(MoveRequest {
            id: BookingId(1),
            start: Utc::now(),
            end: Utc::now(),
            gpus: None,
        }),
        Request::Release(ReleaseRequest { id: BookingId(1) }),
        Request::Approve(ApproveRequest {
            id: BookingId(1),
            rev: Some(2),
        }),
        Request::Deny(DenyRequest {
            id: BookingId(1),
            reason: None,
            rev: None,
        }),
        Request::Subscribe(SubscribeRequest::default()),
        Request::Policy(PolicyRequest {}),
        Request::Logs(LogsRequest {
            id: BookingId(1),
            offset: 0,
            follow: None,
        }),
        Request::Suggest(SuggestRequest::default()),
        Request::Report(ReportRequest {
            from: Utc::now(),
            to: Utc::now(),
        }),
        Request::JobEnv(JobEnvRequest { id: BookingId(1) }),
        Request::NotifySet(gpubook_proto::NotifySetRequest::default()),
        Request::NotifyShow(gpubook_proto::NotifyShowRequest::default()),
        Request::NotifyClear(gpubook_proto::NotifyClearRequest::default()),
        Request::Maintenance(MaintenanceRequest::List {
            include_past: false,
        }),
        Request::UsageSeries(UsageSeriesRequest { id: BookingId(1) }),
    ];
    // Every type has its case here: a zip would stop quietly at the shorter list.
    assert_eq!(
        all.len(),
        Request::TYPES.len(),
        "a request type without its case here"
    );
    for (t, req) in Request::TYPES.iter().zip(all) {
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["type"], *t);
    }
}
