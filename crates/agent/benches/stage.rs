//! Stage-in throughput against `cp -r` and `rsync -a` of the same tree: a dataset of many small
//! files and one large one, copied cold (nothing there yet) and again (all of it there), with
//! the real copy child (`gpubook-agent transfer`, as the agent starts it for an owner).
//!
//! Run: `cargo bench -p gpubook-agent --bench stage` (about a minute; needs rsync for its
//! column). Prints figures; asserts nothing about speed (see BENCHMARKS.md). The source is read
//! from the page cache after the first copy, so the figures are of the copy, not the disk.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const SMALL: usize = 5000;
const LARGE: usize = 1 << 30;

fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    for i in 0..SMALL {
        let dir = root.join(format!("class-{}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        let body = vec![(i % 251) as u8; 20_000 + (i * 97) % 100_000];
        total += body.len() as u64;
        std::fs::write(dir.join(format!("img-{i}.jpg")), body).unwrap();
    }
    let large: Vec<u8> = (0..LARGE).map(|j| (j % 253) as u8).collect();
    std::fs::write(root.join("train.bin"), large).unwrap();
    total + LARGE as u64
}

fn timed(what: &str, bytes: u64, run: impl FnOnce()) {
    let t = Instant::now();
    run();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{what:<34} {s:>7.2} s  {:>8.0} MiB/s",
        bytes as f64 / (1 << 20) as f64 / s
    );
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().expect("run");
    assert!(st.success(), "{cmd:?}: {st}");
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        return;
    }
    let base = std::env::var("GPUBOOK_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let src = dir.path().join("src");
    let bytes = make_tree(&src);
    // Read once so every contender starts from the page cache.
    sh(Command::new("cat")
        .arg(src.join("train.bin"))
        .stdout(std::process::Stdio::null()));
    println!(
        "tree: {SMALL} files of 20-120 KB and one of {} MiB, {:.0} MiB in all",
        LARGE >> 20,
        bytes as f64 / (1 << 20) as f64
    );
    let agent = env!("CARGO_BIN_EXE_gpubook-agent");
    let task = |owner_dir: &Path| {
        serde_json::json!({"stage": {
            "owner_dir": owner_dir,
            "booking_dir": owner_dir.join("booking-1"),
            "entries": [["data", src]],
            "quota": u64::MAX,
            "pinned": [],
        }})
        .to_string()
    };
    let stage = |owner_dir: &Path| {
        sh(Command::new(agent)
            .arg("transfer")
            .arg(task(owner_dir))
            .stdout(std::process::Stdio::null()));
    };
    let (cp, rs, gb) = (
        dir.path().join("cp"),
        dir.path().join("rsync"),
        dir.path().join("gpubook"),
    );
    timed("cp -r (cold)", bytes, || {
        sh(Command::new("cp").arg("-r").arg(&src).arg(&cp))
    });
    let rsync = Command::new("rsync").arg("--version").output().is_ok();
    if rsync {
        timed("rsync -a (cold)", bytes, || {
            sh(Command::new("rsync")
                .arg("-a")
                .arg(format!("{}/", src.display()))
                .arg(&rs))
        });
    } else {
        println!("rsync -a: not installed");
    }
    timed("gpubook stage (cold)", bytes, || stage(&gb));
    if rsync {
        timed("rsync -a (all there)", bytes, || {
            sh(Command::new("rsync")
                .arg("-a")
                .arg(format!("{}/", src.display()))
                .arg(&rs))
        });
    }
    timed("gpubook stage (all there)", bytes, || stage(&gb));
}
