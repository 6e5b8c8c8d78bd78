//! Property tests of how the agent reads a request frame's body ([`parse_request`]), which
//! any local user controls. Whatever the body: no panic; an error message of at most
//! [`MAX_MESSAGE`] bytes that quotes no more than [`MAX_ECHO`] bytes of what was sent; the
//! request's id kept when there is one. And every well-formed request of each type is read
//! back as it was sent.
//!
//! The case counts keep the file to a few seconds in a debug build.

use chrono::{DateTime, TimeZone, Utc};
use gpubook_agent::request::{parse_request, MAX_ECHO, MAX_MESSAGE};
use gpubook_core::{BookingId, Interval, JobSpec};
use gpubook_proto::{
    ApproveRequest, BookRequest, CancelRequest, ClientFrame, DenyRequest, ErrorBody, ExtendRequest,
    GpuChoice, GpusRequest, ListCursor, ListRequest, LogsRequest, MaintenanceRequest, MoveRequest,
    PolicyRequest, ReleaseRequest, ReportRequest, Request, SubscribeRequest, SuggestRequest,
    WhenChoice, WhoamiRequest,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Value};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// The error's own checks: its size, and that it does not quote `long` (untrusted text the
/// frame carried) past [`MAX_ECHO`] bytes.
fn check_error(error: &ErrorBody, long: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        error.message.len() <= MAX_MESSAGE,
        "{} bytes: {}",
        error.message.len(),
        error.message
    );
    for text in long {
        // Quoting escapes nothing in these (lowercase ASCII), so an echo of more than
        // MAX_ECHO bytes would hold this prefix.
        if let Some(prefix) = text.get(..MAX_ECHO + 1) {
            prop_assert!(!error.message.contains(prefix), "echoed: {}", error.message);
        }
    }
    Ok(())
}

/// Any JSON value serde_json can write.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,80}".prop_map(Value::String),
        "[a-z]{65,400}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}|.{0,80}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame that gets past the outer checks more often than noise does: a known or unknown
/// frame type, an id or not, a body with a known or unknown request type and arbitrary
/// fields. Returns it with the long untrusted strings it carries.
fn near_request() -> impl Strategy<Value = (Value, Vec<String>)> {
    let frame_type = prop_oneof![
        4 => Just("request".to_string()),
        1 => Just("hello".to_string()),
        1 => "[a-z]{65,300}",
        1 => ".{0,100}",
    ];
    let request_type = prop_oneof![
        4 => prop::sample::select(Request::TYPES).prop_map(str::to_string),
        1 => "[a-z]{65,300}",
        1 => ".{0,100}",
    ];
    let id = prop_oneof![
        3 => any::<u64>().prop_map(Value::from),
        1 => json_value(),
    ];
    (
        frame_type,
        id,
        request_type,
        prop::collection::btree_map(
            prop_oneof![
                "id|gpus|when|kind|count|start|end|title|job|range|after|offset|follow|rev|reason",
                "[a-z]{65,200}",
            ],
            json_value(),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(frame_type, id, request_type, fields, drop_id)| {
            let mut long: Vec<String> = vec![frame_type.clone(), request_type.clone()];
            long.extend(fields.keys().cloned());
            for v in fields.values() {
                collect_strings(v, &mut long);
            }
            collect_strings(&id, &mut long);
            long.retain(|s| s.len() > MAX_ECHO && s.bytes().all(|b| b.is_ascii_lowercase()));
            let mut body = serde_json::Map::new();
            body.insert("type".into(), Value::String(request_type));
            body.extend(fields);
            let mut frame = json!({"type": frame_type, "body": body});
            if !drop_id {
                frame["id"] = id;
            }
            (frame, long)
        })
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out);
        }),
        _ => {}
    }
}

#[test]
fn any_bytes_are_answered_without_panic_and_briefly() {
    proptest!(config(1024), |(bytes in prop::collection::vec(any::<u8>(), 0..256))| {
        if let Err((_, e)) = parse_request(&bytes) {
            check_error(&e, &[])?;
        }
    });
}

#[test]
fn any_json_is_answered_without_panic_and_briefly() {
    proptest!(config(512), |(v in json_value())| {
        let mut long = Vec::new();
        collect_strings(&v, &mut long);
        long.retain(|s| s.len() > MAX_ECHO && s.bytes().all(|b| b.is_ascii_lowercase()));
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        if let Err((_, e)) = parse_request(&serde_json::to_vec(&v).unwrap()) {
            check_error(&e, &long)?;
        }
    });
}

#[test]
fn a_frame_shaped_like_a_request_is_answered_briefly_and_keeps_its_id() {
    proptest!(config(1024), |((frame, long) in near_request())| {
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let id = frame.get("id").and_then(Value::as_u64);
        match parse_request(&serde_json::to_vec(&frame).unwrap()) {
            Ok((got, _)) => {
                prop_assert_eq!(Some(got), id);
                prop_assert_eq!(&frame["type"], "request");
            }
            Err((got, e)) => {
                check_error(&e, &long)?;
                // A frame with a numeric id is answered with that id, whatever else is
                // wrong with it.
                prop_assert_eq!(got, id, "{}", e.message);
            }
        }
    });
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for open in ["[", "{\"a\":"] {
        let body = open.repeat(100_000);
        let (id, e) = parse_request(body.as_bytes()).unwrap_err();
        assert_eq!(id, None);
        assert!(e.message.len() <= MAX_MESSAGE, "{}", e.message);
    }
    let mut body = String::from(r#"{"type":"request","id":3,"body":{"type":"book","gpus":"#);
    body.push_str(&"[".repeat(100_000));
    let (id, e) = parse_request(body.as_bytes()).unwrap_err();
    assert_eq!(id, None, "not JSON, so no id can be trusted: {}", e.message);
}

/// The name each request goes by on the wire. An exhaustive match: a new request type does
/// not compile until it is named here and given a strategy in `request()`.
fn type_of(r: &Request) -> &'static str {
    match r {
        Request::Whoami(_) => "whoami",
        Request::Gpus(_) => "gpus",
        Request::List(_) => "list",
        Request::Book(_) => "book",
        Request::Cancel(_) => "cancel",
        Request::Extend(_) => "extend",
        Request::Move(_) => "move",
        Request::Release(_) => "release",
        Request::Approve(_) => "approve",
        Request::Deny(_) => "deny",
        Request::Subscribe(_) => "subscribe",
        Request::Policy(_) => "policy",
        Request::Logs(_) => "logs",
        Request::Suggest(_) => "suggest",
        Request::Report(_) => "report",
        Request::JobEnv(_) => "job_env",
        Request::UsageSeries(_) => "usage_series",
        Request::NotifySet(_) => "notify_set",
        Request::NotifyShow(_) => "notify_show",
        Request::NotifyClear(_) => "notify_clear",
        Request::Maintenance(_) => "maintenance",
    }
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2200, to the nanosecond.
    (0i64..7_258_118_400, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).single().expect("in range"))
}

fn booking() -> impl Strategy<Value = BookingId> {
    any::<u64>().prop_map(BookingId)
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(".{0,40}", 0..4)
}

fn job() -> impl Strategy<Value = JobSpec> {
    (
        ".{0,80}",
        proptest::option::of(".{0,40}"),
        prop::collection::btree_map(".{0,16}", ".{0,40}", 0..4),
        proptest::option::of(".{0,10}"),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(
            |(command, cwd, env, end_signal, grace_secs, keep_slot)| JobSpec {
                command,
                cwd,
                env,
                end_signal,
                grace_secs,
                keep_slot,
                ..Default::default()
            },
        )
}

/// Any well-formed request, of every type.
fn request() -> impl Strategy<Value = Request> {
    let list = (
        proptest::option::of((time(), time()).prop_map(|(start, end)| Interval { start, end })),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((time(), booking()).prop_map(|(start, id)| ListCursor { start, id })),
    )
        .prop_map(|(range, mine, include_past, after)| {
            Request::List(ListRequest {
                range,
                mine,
                include_past,
                after,
            })
        });
    let gpus = prop_oneof![
        names().prop_map(|gpus| GpuChoice::Named { gpus }),
        (any::<u32>(), proptest::option::of(any::<u64>()))
            .prop_map(|(count, min_memory)| GpuChoice::Count { count, min_memory }),
    ];
    let when = prop_oneof![
        (time(), time()).prop_map(|(start, end)| WhenChoice::At { start, end }),
        any::<i64>().prop_map(|duration_secs| WhenChoice::Asap { duration_secs }),
    ];
    let book = (gpus, when, ".{0,80}", proptest::option::of(job())).prop_map(
        |(gpus, when, title, job)| {
            Request::Book(BookRequest {
                gpus,
                when,
                title,
                job,
            })
        },
    );
    let moved = (booking(), time(), time(), proptest::option::of(names())).prop_map(
        |(id, start, end, gpus)| {
            Request::Move(MoveRequest {
                id,
                start,
                end,
                gpus,
            })
        },
    );
    prop_oneof![
        Just(Request::Whoami(WhoamiRequest {})),
        Just(Request::Gpus(GpusRequest {})),
        list,
        book,
        booking().prop_map(|id| Request::Cancel(CancelRequest { id })),
        (booking(), time()).prop_map(|(id, end)| Request::Extend(ExtendRequest { id, end })),
        moved,
        booking().prop_map(|id| Request::Release(ReleaseRequest { id })),
        (booking(), proptest::option::of(any::<u32>()))
            .prop_map(|(id, rev)| Request::Approve(ApproveRequest { id, rev })),
        (
            booking(),
            proptest::option::of(".{0,80}"),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(id, reason, rev)| Request::Deny(DenyRequest { id, reason, rev })),
        (proptest::option::of(any::<u64>()), any::<bool>())
            .prop_map(|(after, readings)| Request::Subscribe(SubscribeRequest { after, readings })),
        Just(Request::Policy(PolicyRequest {})),
        (booking(), any::<u64>(), proptest::option::of(any::<bool>()))
            .prop_map(|(id, offset, follow)| Request::Logs(LogsRequest { id, offset, follow })),
        (".{0,200}", any::<u32>(), proptest::option::of(any::<u64>())).prop_map(
            |(command, gpus, staged_bytes)| Request::Suggest(SuggestRequest {
                command,
                gpus,
                staged_bytes,
                ..SuggestRequest::default()
            })
        ),
        (time(), time()).prop_map(|(from, to)| Request::Report(ReportRequest { from, to })),
        booking().prop_map(|id| Request::JobEnv(gpubook_proto::JobEnvRequest { id })),
        booking().prop_map(|id| Request::UsageSeries(gpubook_proto::UsageSeriesRequest { id })),
        prop::collection::vec((".{0,80}", any::<bool>()), 0..6).prop_map(|ts| {
            use gpubook_proto::{Channel, EventKind, NotifySetRequest, NotifyTarget};
            let targets = ts
                .into_iter()
                .map(|(s, mail)| NotifyTarget {
                    channel: if mail {
                        Channel::Email { address: s }
                    } else {
                        Channel::Webhook {
                            url: s,
                            format: Default::default(),
                        }
                    },
                    kinds: vec![EventKind::JobFinished],
                })
                .collect();
            Request::NotifySet(NotifySetRequest { targets })
        }),
        Just(Request::NotifyShow(Default::default())),
        Just(Request::NotifyClear(Default::default())),
        prop_oneof![
            (
                proptest::option::of(proptest::collection::vec("[0-9]{1,2}", 0..4)),
                time(),
                time(),
                ".{0,80}"
            )
                .prop_map(|(gpus, start, end, reason)| MaintenanceRequest::Create {
                    gpus,
                    start,
                    end,
                    reason
                }),
            any::<bool>().prop_map(|include_past| MaintenanceRequest::List { include_past }),
            any::<u64>().prop_map(|n| MaintenanceRequest::End {
                id: gpubook_core::MaintenanceId(n)
            }),
        ]
        .prop_map(Request::Maintenance),
    ]
}

#[test]
fn every_well_formed_request_is_read_back_as_sent() {
    proptest!(config(512), |(id in any::<u64>(), body in request())| {
        prop_assert!(Request::TYPES.contains(&type_of(&body)));
        let frame = ClientFrame::Request { id, body: body.clone() };
        let bytes = serde_json::to_vec(&frame).unwrap();
        match parse_request(&bytes) {
            Ok(got) => prop_assert_eq!(got, (id, body)),
            Err((_, e)) => {
                return Err(TestCaseError::fail(format!(
                    "refused ({:?}): {}\n{}",
                    e.kind,
                    e.message,
                    String::from_utf8_lossy(&bytes)
                )))
            }
        }
    });
}

#[test]
fn every_request_type_is_generated() {
    // The strategy's arms, by the exhaustive match: each type on the wire appears.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let r = strategy.new_tree(&mut runner).unwrap().current();
        seen.insert(type_of(&r));
    }
    let mut all: Vec<&str> = Request::TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
}
