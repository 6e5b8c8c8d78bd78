//! The CLI writing into a pipe whose reader has gone (`gpubook ics | head -1`): it ends as Unix
//! tools do, by SIGPIPE, without a panic or a word on stderr. A real agent, the real binary.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use support::{text, Lab};

#[test]
fn a_reader_that_went_away_ends_the_cli_quietly() {
    let lab = Lab::start("", "sim:2");
    let o = lab.gpubook(
        None,
        &["book", "--gpu", "0", "--start", "+1h", "--for", "1h"],
    );
    assert!(o.status.success(), "{}", text(&o));
    for args in [
        &["ls"][..],
        &["--json", "ls"],
        &["ics"],
        &["gpus"],
        &["policy"],
        &["whoami"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = lab
            .command(None, args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.is_empty(), "{args:?} said on stderr: {stderr}");
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?} ended with {:?}",
            o.status
        );
    }
}
