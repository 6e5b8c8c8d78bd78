//! `gpubook run --stage NAME=SOURCE -- CMD` against a real shared agent run by root: the copy
//! of the data before the slot is shown as it goes on stderr, ending with the data ready, and
//! the job (run as its owner) finds it under $GPUBOOK_STAGE.
//!
//! Needs root (the copy and the job run as a real user); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::os::unix::fs::{chown, PermissionsExt};
use support::{ensure_user, text, Lab};

const STAGER: &str = "gpb-stager";

#[test]
fn run_with_stage_shows_the_copy_and_the_job_finds_the_data() {
    if !require_root("run_with_stage_shows_the_copy_and_the_job_finds_the_data") {
        return;
    }
    let me = ensure_user(STAGER, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = dir.path().join("scratch");
    // The source: the owner's, as on an NFS share.
    let source = dir.path().join("dataset");
    std::fs::create_dir_all(source.join("images")).unwrap();
    for i in 0..20 {
        std::fs::write(
            source.join("images").join(format!("{i}.jpg")),
            vec![i as u8; 4096],
        )
        .unwrap();
    }
    std::fs::write(source.join("labels.txt"), "cat\ndog\n").unwrap();
    for p in [&source, &source.join("images")] {
        chown(p, Some(me.0), Some(me.1)).unwrap();
    }
    let lab = Lab::start_binary(
        &format!(
            "granularity = \"1s\"\nscratch = \"{}\"\n",
            scratch.display()
        ),
        2,
    );
    let stage = format!("data={}", source.display());
    let o = lab.gpubook(
        Some(me),
        &[
            "run",
            "--gpu",
            "0",
            "--asap",
            "--for",
            "10m",
            "--title",
            "staged",
            "--stage",
            &stage,
            "--",
            "cat $GPUBOOK_STAGE/data/labels.txt; ls $GPUBOOK_STAGE/data/images | wc -l",
        ],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out.contains("cat\ndog\n"),
        "the job did not find the staged labels: {out}"
    );
    assert!(
        out.trim_end().ends_with("20"),
        "the job did not see the 20 images: {out}"
    );
    // The copy in words on stderr, ending ready.
    assert!(
        err.contains("staged data ready"),
        "no progress line saying the data is ready: {err}"
    );
    let ready = err
        .lines()
        .find(|l| l.contains("staged data ready"))
        .unwrap();
    assert!(ready.contains("21 files copied"), "{ready}");
    println!("{ready}");
}
