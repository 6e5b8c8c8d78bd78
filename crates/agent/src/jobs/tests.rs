//! Unit tests of the job runner's helpers.

use super::limits::{parse_limits, LOG_CUT};
use super::*;

#[test]
fn signals_by_name() {
    assert_eq!(signal_number("SIGTERM"), Some(libc::SIGTERM));
    assert_eq!(signal_number("usr1"), Some(libc::SIGUSR1));
    assert_eq!(signal_number("SIGINT"), Some(libc::SIGINT));
    assert_eq!(signal_number("SIGBOGUS"), None);
    assert_eq!(signal_number("SIGSEGV"), None);
}

#[test]
fn the_system_limits_are_read_from_proc() {
    let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                Max cpu time              unlimited            unlimited            seconds\n\
                Max open files            1024                 524288               files\n\
                Max realtime timeout      unlimited            unlimited            us\n";
    let limits = parse_limits(text);
    assert_eq!(limits.len(), 3);
    let files = limits
        .iter()
        .find(|(r, _)| *r == libc::RLIMIT_NOFILE)
        .unwrap()
        .1;
    assert_eq!((files.rlim_cur, files.rlim_max), (1024, 524288));
    assert!(
        !system_limits().is_empty(),
        "pid 1's limits are readable here"
    );
}

#[test]
fn a_log_over_its_limit_is_cut_with_a_line_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("booking-1.log");
    std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
    cut_log(&path, 4096);
    let text = std::fs::read(&path).unwrap();
    assert_eq!(text.len(), 4096 + LOG_CUT.len());
    assert!(text.ends_with(LOG_CUT.as_bytes()));
    // Under the limit: left alone.
    cut_log(&path, 1 << 20);
    assert_eq!(std::fs::read(&path).unwrap().len(), 4096 + LOG_CUT.len());
    // The tail of a large log is read without reading it all.
    std::fs::write(
        &path,
        [vec![b'y'; 1 << 20], b"\nsh: 1: nope: not found\n".to_vec()].concat(),
    )
    .unwrap();
    assert_eq!(last_line(&path).as_deref(), Some("sh: 1: nope: not found"));
}

#[test]
fn the_agent_s_variables_cannot_be_overridden() {
    for name in [
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "GPUBOOK_JOB_KEY",
        "GPUBOOK_X",
    ] {
        assert!(reserved_var(name), "{name}");
    }
    assert!(!reserved_var("WANDB_API_KEY"));
}
