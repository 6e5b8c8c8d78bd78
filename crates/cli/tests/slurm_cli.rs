//! `gpubook run` against the agent on the tests' real Slurm cluster (`--gpus slurm`, started
//! by `scripts/slurm-services.sh`): the job runs through Slurm as its owner, its output comes
//! back, and its exit status is the command's. Needs root and the cluster (with
//! GPUBOOK_REQUIRE_SERVICES set, fails rather than skips without them).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::{ensure_user, text, Lab};

const ALICE: &str = "gpb-slurm-alice";

#[test]
fn gpubook_run_on_slurm_passes_the_jobs_output_and_exit_status_through() {
    let test = "gpubook_run_on_slurm_passes_the_jobs_output_and_exit_status_through";
    if !gpubook_testkit::require_slurm(test) {
        return;
    }
    let alice = ensure_user(ALICE, &[]);
    let lab = Lab::start_binary_on("slurm", "granularity = \"1s\"\n");
    // Where the job runs and Slurm writes its log: alice's own directory.
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = outer.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(alice.0), Some(alice.1)).unwrap();
    let cwd = work.display().to_string();
    let o = lab.gpubook(
        Some(alice),
        &[
            "run",
            "--count",
            "1",
            "--start",
            "now",
            "--for",
            "2m",
            "--cwd",
            &cwd,
            "--title",
            "from the CLI",
            "--",
            "echo hello from Slurm job $SLURM_JOB_ID on $SLURMD_NODENAME; exit 3",
        ],
    );
    let _ = Command::new("scancel").args(["--user", ALICE]).output();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("hello from Slurm job ") && out.contains(" on gpunode"),
        "{}",
        text(&o)
    );
}
