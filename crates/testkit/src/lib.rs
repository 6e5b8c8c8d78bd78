//! The fixtures gpubook's tests share, written once: the agent ([`agent`]: the real binary as
//! a child process, or in the test's own process), a real OpenSSH server and client side
//! ([`sshd`]), a real Radicale with Python's `icalendar` as the independent reader
//! ([`radicale`]), a private D-Bus session with an unlocked gnome-keyring ([`keyring`]), real
//! Unix users ([`users`]), one require-or-skip rule ([`require`]) and one wait-until
//! ([`wait`]). Used only as a dev-dependency; never published.
//!
//! # The require-or-skip rule
//!
//! A test that needs something a machine may lack asks [`require`] first:
//!
//! - **root** (to create Unix users, run jobs as them, start sshd): required when
//!   `GPUBOOK_REQUIRE_ROOT_TESTS` is set;
//! - **a service** (Radicale and `icalendar` in `$GPUBOOK_PYTHON`, dbus-daemon,
//!   gnome-keyring-daemon, sshd and the OpenSSH tools): required when
//!   `GPUBOOK_REQUIRE_SERVICES` is set;
//! - **a host that delegates cgroup v2** (for the jobs' cgroup kill path): a property of the
//!   host, not something root or a script provides, so required only when
//!   `GPUBOOK_REQUIRE_CGROUP_V2` is set (on a host known to delegate); elsewhere the test
//!   prints that this path is NOT tested there.
//!
//! (A variable counts as set unless it is empty or `0`.) When the part is missing and
//! required, the test **fails**, saying what is missing and what to run; when it is not
//! required, the test prints a line starting `SKIPPED` with the same advice and passes
//! without running. CI (`.ci/run` → `scripts/test.sh`) sets both variables, and
//! `scripts/test.sh` refuses to run the Rust tests when they are set and it is not root, so a
//! test there can fail but never silently skip. To run the service tests by hand:
//!
//! ```text
//! . ./scripts/calendar-services.sh; . ./scripts/ssh-services.sh
//! GPUBOOK_REQUIRE_ROOT_TESTS=1 cargo test -p gpubook-client   # as root
//! ```

pub mod agent;
pub mod bookings;
pub mod keyring;
pub mod radicale;
pub mod require;
pub mod sshd;
pub mod users;
pub mod wait;
pub mod xandikos;

pub use require::{require_cgroup_v2, require_python, require_root, require_slurm, require_tools};
pub use users::{ensure_group, ensure_user, ensure_user_in, User};
pub use wait::{
    wait_for, wait_for_within, wait_until, wait_until_blocking, wait_until_within, DEADLINE,
};

/// A fresh temporary directory (removed on drop).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Whether `path` exists and holds `needle`.
pub fn file_has(path: &std::path::Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}
