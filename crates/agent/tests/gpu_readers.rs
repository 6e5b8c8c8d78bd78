//! The GPU readers against real recordings from an H200 (tests/fixtures/nvml/h200), the
//! `--gpus` values, and NVML itself: on a machine without a driver it must say so and point at
//! `--gpus sim:4`; on a machine with an NVIDIA GPU it must read it.

use gpubook_agent::gpu::nvml::NvmlReader;
use gpubook_agent::gpu::replay::ReplayReader;
use gpubook_agent::gpu::{self, GpuError, GpuReader, Source};
use gpubook_proto::Readings;
use std::path::{Path, PathBuf};
use std::time::Duration;

const IDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/nvml/h200/nvml-idle.json"
);
const BUSY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/nvml/h200/nvml-busy.json"
);
const TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/nvml/h200/nvml-trace.jsonl"
);

const H200_UUID: &str = "GPU-5a8504ec-ad2a-9cbb-5a64-94609374aa07";
const TRACE_UUID: &str = "GPU-96a58100-80d0-8087-9fbb-07e9040262bc";
const H200_MEMORY: u64 = 150_754_820_096;

fn replay(path: &str) -> ReplayReader {
    ReplayReader::open(Path::new(path), "lab1").unwrap()
}

fn replay_error(path: &Path) -> String {
    match ReplayReader::open(path, "lab1") {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e @ GpuError::Replay { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            text
        }
        Err(e) => panic!("not a Replay error: {e:?}"),
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn replay_of_the_idle_h200() {
    let mut r = replay(IDLE);
    assert_eq!(r.source(), "replay");
    assert!(!r.simulated());
    assert!(!r.is_trace());
    let inv = r.inventory();
    assert_eq!(inv.len(), 1);
    let g = &inv[0];
    assert_eq!(g.uuid.0, H200_UUID);
    assert_eq!(g.index, 0);
    assert_eq!(g.name, "NVIDIA H200");
    assert_eq!(g.memory_total, H200_MEMORY);
    assert_eq!(g.server, "lab1");
    assert!(!g.simulated);

    let reading = r.read().unwrap();
    assert_eq!(reading.gpus.len(), 1);
    let g = &reading.gpus[0];
    assert_eq!(g.uuid.0, H200_UUID);
    assert_eq!(g.memory_total, H200_MEMORY);
    assert_eq!(g.memory_used, 0);
    assert_eq!(g.util_gpu, 0);
    assert_eq!(g.util_mem, 0);
    assert_eq!(g.temperature_c, 39);
    assert_eq!(g.power_mw, 128_093);
    assert_eq!(g.power_limit_mw, 700_000);
    assert!(g.processes.is_empty());
    let age = chrono::Utc::now() - reading.at;
    assert!(age.num_seconds().abs() < 5, "at = {}", reading.at);
}

#[test]
fn replay_of_the_busy_h200_is_the_same_at_any_time() {
    let mut r = replay(BUSY);
    assert_eq!(r.inventory()[0].uuid.0, H200_UUID);
    let check = |reading: Readings| {
        let g = &reading.gpus[0];
        assert_eq!(g.util_gpu, 100);
        assert_eq!(g.util_mem, 23);
        assert_eq!(g.temperature_c, 61);
        assert_eq!(g.power_mw, 692_219);
        assert_eq!(g.power_limit_mw, 700_000);
        assert_eq!(g.memory_used, 22_534_750_208);
        assert_eq!(g.memory_total, H200_MEMORY);
        assert_eq!(g.processes.len(), 1);
        assert_eq!(g.processes[0].pid, 431);
        assert_eq!(g.processes[0].used_bytes, 22_525_509_632);
        assert_eq!(
            g.processes[0].user, None,
            "the single readings carry no user"
        );
    };
    check(r.read().unwrap());
    check(r.read_at(Duration::ZERO));
    check(r.read_at(Duration::from_secs(3600)));
}

#[test]
fn the_trace_is_played_in_time_and_loops() {
    let r = replay(TRACE);
    assert!(r.is_trace());
    let inv = r.inventory();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].uuid.0, TRACE_UUID);
    assert_eq!(inv[0].memory_total, H200_MEMORY);
    // 150 readings from t0 to t0 + 148.99 s: one pass lasts 149.99 s.
    let period = r.period().unwrap();
    assert!(
        period > Duration::from_secs(149) && period < Duration::from_secs(151),
        "{period:?}"
    );

    let at = |secs: f64| {
        let reading = r.read_at(Duration::from_secs_f64(secs));
        assert_eq!(reading.gpus.len(), 1);
        reading.gpus.into_iter().next().unwrap()
    };
    let users = |g: &gpubook_proto::GpuReading| -> Vec<(u32, Option<String>)> {
        g.processes
            .iter()
            .map(|p| (p.pid, p.user.clone()))
            .collect()
    };

    // Idle at the start.
    let g = at(0.0);
    assert_eq!(g.util_gpu, 0);
    assert!(g.processes.is_empty());
    assert_eq!(g.uuid.0, TRACE_UUID);

    // alice's training alone.
    let g = at(30.0);
    assert_eq!(g.util_gpu, 100);
    assert_eq!(users(&g), vec![(568, Some("alice".into()))]);
    assert_eq!(g.processes[0].used_bytes, 14_459_863_040);

    // root's intruder beside it.
    let g = at(80.0);
    assert_eq!(g.util_gpu, 100);
    assert_eq!(
        users(&g),
        vec![(568, Some("alice".into())), (610, Some("root".into()))]
    );
    assert_eq!(g.memory_used, 47_536_537_600);

    // alice alone again, then idle at the end.
    assert_eq!(users(&at(125.0)), vec![(568, Some("alice".into()))]);
    let g = at(145.0);
    assert_eq!(g.util_gpu, 0);
    assert!(g.processes.is_empty());

    // After the end it starts again: one pass later, and many passes later.
    let p = period.as_secs_f64();
    let g = at(p + 1.0);
    assert_eq!(g.util_gpu, 0);
    assert!(g.processes.is_empty());
    assert_eq!(users(&at(p + 30.0)), vec![(568, Some("alice".into()))]);
    assert_eq!(at(10.0 * p + 80.0).processes.len(), 2);

    // read() is read_at(time since open): right after opening, the trace is idle.
    let mut r = replay(TRACE);
    assert!(r.read().unwrap().gpus[0].processes.is_empty());
}

#[test]
fn replay_through_the_source() {
    let source: Source = format!("replay:{BUSY}").parse().unwrap();
    assert_eq!(source, Source::Replay(PathBuf::from(BUSY)));
    let mut r = gpu::open(&source, "lab1").unwrap();
    assert_eq!(r.source(), "replay");
    assert_eq!(r.read().unwrap().gpus[0].util_gpu, 100);
}

#[test]
fn bad_replay_files_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.json");
    let e = replay_error(&missing);
    assert!(e.contains("cannot read"), "{e}");

    let e = replay_error(&write(&dir, "empty.json", ""));
    assert!(e.contains("empty"), "{e}");
    let e = replay_error(&write(&dir, "blank.jsonl", "\n  \n"));
    assert!(e.contains("empty"), "{e}");

    let e = replay_error(&write(&dir, "junk.json", "this is not json"));
    assert!(e.contains("not a reading"), "{e}");
    let e = replay_error(&write(&dir, "other.json", r#"{"gpus": []}"#));
    assert!(e.contains("not a reading") && e.contains("sample"), "{e}");

    // A trace with a broken third line: the message names the line.
    let text = std::fs::read_to_string(TRACE).unwrap();
    let lines: Vec<&str> = text.lines().take(5).collect();
    let mut broken = lines.clone();
    broken[2] = r#"{"t": 1795697472.5, "sample_us": 600}"#;
    let e = replay_error(&write(&dir, "broken.jsonl", &broken.join("\n")));
    assert!(e.contains("line 3 is not a reading"), "{e}");
    assert!(e.contains("sample"), "{e}");

    let mut truncated = lines.clone();
    truncated[4] = &lines[4][..lines[4].len() / 2];
    let e = replay_error(&write(&dir, "truncated.jsonl", &truncated.join("\n")));
    assert!(e.contains("line 5 is not a reading"), "{e}");

    // The good part alone plays.
    let good = write(&dir, "good.jsonl", &lines[..4].join("\n"));
    let r = ReplayReader::open(&good, "lab1").unwrap();
    assert_eq!(r.inventory()[0].uuid.0, TRACE_UUID);
    // Four readings a second apart: a pass of about 4 s.
    let period = r.period().unwrap().as_secs_f64();
    assert!((3.9..4.1).contains(&period), "{period}");
}

#[test]
fn gpus_values() {
    assert_eq!("nvml".parse::<Source>().unwrap(), Source::Nvml);
    assert_eq!("sim:4".parse::<Source>().unwrap(), Source::Sim(4));
    assert_eq!("sim:64".parse::<Source>().unwrap(), Source::Sim(64));
    assert_eq!(
        "replay:/tmp/x.jsonl".parse::<Source>().unwrap(),
        Source::Replay(PathBuf::from("/tmp/x.jsonl"))
    );
    for bad in [
        "sim:0", "sim:65", "sim:", "sim:x", "replay:", "bogus", "", "NVML",
    ] {
        match bad.parse::<Source>() {
            Err(GpuError::BadSource(s)) => assert_eq!(s, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let e = "bogus".parse::<Source>().unwrap_err().to_string();
    assert!(e.contains("sim:N") && e.contains("replay:FILE"), "{e}");

    let mut sim = gpu::open(&Source::Sim(4), "lab1").unwrap();
    assert!(sim.simulated());
    assert_eq!(sim.inventory().len(), 4);
    assert_eq!(sim.read().unwrap().gpus.len(), 4);
}

/// Without a driver, NVML says so and points at the simulated GPUs; on a machine with an
/// NVIDIA GPU (there is a /dev/nvidia0), it lists and reads the GPUs.
///
/// On a GPU machine, start a CUDA process first (as another user, to check the user lookup)
/// and name it: `GPUBOOK_TEST_GPU_PID=PID GPUBOOK_TEST_GPU_USER=NAME cargo test -p
/// gpubook-agent --test gpu_readers nvml_here -- --nocapture`; the test then asserts that NVML
/// lists that process, with its memory and its user.
#[test]
fn nvml_here() {
    let has_gpu = Path::new("/dev/nvidia0").exists();
    match NvmlReader::open("lab1") {
        Err(e) if !has_gpu => {
            assert!(matches!(e, GpuError::NoDriver(_)), "{e:?}");
            assert!(e.to_string().contains("--gpus sim:4"), "{e}");
            eprintln!("{e}");
            // The same through the `--gpus` source.
            let e = gpu::open(&Source::Nvml, "lab1").err().unwrap();
            assert!(matches!(e, GpuError::NoDriver(_)), "{e:?}");
        }
        Err(e) => panic!("there is a /dev/nvidia0 but NVML does not open: {e}"),
        Ok(mut r) if has_gpu => check_real_gpus(&mut r),
        Ok(_) => panic!("NVML opened without a /dev/nvidia0"),
    }
}

fn check_real_gpus(r: &mut NvmlReader) {
    assert_eq!(r.source(), "nvml");
    assert!(!r.simulated());
    let inv = r.inventory();
    assert!(!inv.is_empty(), "NVML lists no GPU");
    for (i, g) in inv.iter().enumerate() {
        eprintln!(
            "GPU {}: {} {} {} bytes",
            g.index, g.uuid.0, g.name, g.memory_total
        );
        assert_eq!(g.index as usize, i, "in index order");
        assert!(
            g.uuid.0.starts_with("GPU-") || g.uuid.0.starts_with("MIG-"),
            "{:?}",
            g.uuid
        );
        assert!(!g.name.is_empty());
        assert!(g.memory_total > 1 << 30, "{} bytes", g.memory_total);
        assert_eq!(g.server, "lab1");
        assert!(!g.simulated);
    }
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let reading = r.read().unwrap();
        took.push(started.elapsed());
        assert_eq!(reading.gpus.len(), inv.len());
        for (g, i) in reading.gpus.iter().zip(&inv) {
            assert_eq!(g.uuid, i.uuid);
            assert_eq!(g.memory_total, i.memory_total);
            assert!(g.memory_used <= g.memory_total);
            assert!(g.util_gpu <= 100 && g.util_mem <= 100);
            assert!(g.temperature_c < 120, "{} °C", g.temperature_c);
            assert!(g.power_mw < 2_000_000, "{} mW", g.power_mw);
            assert!(g.power_limit_mw < 2_000_000, "{} mW", g.power_limit_mw);
            for p in &g.processes {
                assert!(p.pid > 0);
                assert!(p.used_bytes <= g.memory_total);
            }
        }
        eprintln!("{reading:?}");
    }
    eprintln!("reading times: {took:?}");
    assert!(took.iter().all(|t| *t < r.timeout()));

    let Ok(pid) = std::env::var("GPUBOOK_TEST_GPU_PID") else {
        return;
    };
    let pid: u32 = pid.parse().expect("GPUBOOK_TEST_GPU_PID is a pid");
    let reading = r.read().unwrap();
    let found = reading
        .gpus
        .iter()
        .flat_map(|g| g.processes.iter().map(move |p| (g, p)))
        .find(|(_, p)| p.pid == pid);
    let Some((g, p)) = found else {
        panic!("NVML does not list process {pid}: {reading:?}");
    };
    eprintln!("process {pid} on GPU {}: {p:?}", g.index);
    assert!(p.used_bytes > 0, "{p:?}");
    assert!(g.memory_used >= p.used_bytes, "{g:?}");
    if let Ok(user) = std::env::var("GPUBOOK_TEST_GPU_USER") {
        assert_eq!(p.user.as_deref(), Some(user.as_str()), "{p:?}");
    }
}
