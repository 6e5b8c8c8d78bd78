//! The CSV's quoting and shape, and the window's defaults (the report against a real agent is
//! in tests/report_cli.rs).

use super::*;
use gpubook_core::report::Report;
use gpubook_core::{GpuUuid, Interval};

#[test]
fn csv_fields_are_quoted_only_when_they_must_be() {
    assert_eq!(csv_field("ada"), "ada");
    assert_eq!(csv_field("NVIDIA H200, 141GB"), "\"NVIDIA H200, 141GB\"");
    assert_eq!(csv_field("the \"big\" one"), "\"the \"\"big\"\" one\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
}

#[test]
fn csv_has_a_header_and_one_line_per_gpu() {
    let t = |h: i64| DateTime::<Utc>::from_timestamp(h * 3600, 0).unwrap();
    let r = ReportResponse {
        server: "lab".into(),
        everyone: true,
        report: Report {
            window: Interval::new(t(0), t(24)).unwrap(),
            late_cancel_hours: 24,
            users: vec![],
            gpus: vec![GpuLine {
                uuid: GpuUuid("GPU-0".into()),
                index: 0,
                name: "Tesla, \"big\"".into(),
                booked_secs: 5400,
                used_secs: 1800,
                maintenance_secs: 0,
            }],
        },
    };
    assert_eq!(
        csv(&r, By::Gpu),
        "gpu,uuid,name,booked_hours,used_hours,maintenance_hours\r\n\
         0,GPU-0,\"Tesla, \"\"big\"\"\",1.5000,0.5000,0.0000\r\n"
    );
    assert_eq!(
        csv(&r, By::User).lines().count(),
        1,
        "a header even with nobody"
    );
}

#[test]
fn the_window_defaults_to_the_last_seven_days() {
    let now = Utc::now();
    let a = ReportArgs {
        by: By::User,
        from: None,
        to: None,
        csv: false,
    };
    let r = request(&a, now).unwrap();
    assert_eq!((r.from, r.to), (now - Duration::days(7), now));
    let backwards = ReportArgs {
        from: Some("now".into()),
        to: Some("-1h".into()),
        ..a
    };
    let e = request(&backwards, now).unwrap_err();
    assert_eq!(e.code, 2);
    assert!(e.error.to_string().contains("must be after"), "{}", e.error);
}
