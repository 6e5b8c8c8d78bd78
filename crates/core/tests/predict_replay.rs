//! The length suggestion replayed over a generated history: for each run, the suggestion made
//! from the runs before it is compared with how long it really took. The generator is fixed
//! (seeded), so the figures are reproducible:
//! `cargo test -p gpubook-core --test predict_replay -- --nocapture` prints them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gpubook_core::predict::{suggest, Ask, PastRun};

/// xorshift64*: a small fixed generator, so the history is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One kind of run a person repeats.
struct Kind {
    /// The command, with `{n}` where a per-run value goes.
    command: &'static str,
    gpus: u32,
    minutes: f64,
    /// Relative noise of the length (standard deviation).
    noise: f64,
    /// Growth of the staged data per run (0: no staged data).
    growth: f64,
}

const KINDS: &[Kind] = &[
    Kind {
        command: "python train.py --data coco.yaml --epochs 50 --name exp{n}",
        gpus: 2,
        minutes: 170.0,
        noise: 0.05,
        growth: 0.0,
    },
    Kind {
        command: "yolo detect train model=yolov8s.pt epochs=30 project=runs/{n}",
        gpus: 1,
        minutes: 45.0,
        noise: 0.08,
        growth: 0.0,
    },
    Kind {
        command: "torchrun --nproc_per_node 4 finetune.py --out /scratch/ft-{n} --seed {n}",
        gpus: 4,
        minutes: 480.0,
        noise: 0.04,
        growth: 0.0,
    },
    Kind {
        command: "python train.py --data $GPUBOOK_STAGE/crawl --log-dir logs/{n}",
        gpus: 2,
        minutes: 90.0,
        noise: 0.05,
        growth: 0.03,
    },
];

fn history(seed: u64, runs_per_kind: usize) -> Vec<PastRun> {
    let mut rng = Rng(seed);
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
    let mut out = Vec::new();
    for i in 0..runs_per_kind {
        for (k, kind) in KINDS.iter().enumerate() {
            let data = (kind.growth > 0.0).then(|| 1e9 * (1.0 + kind.growth).powi(i as i32));
            let scale = data.map_or(1.0, |d| d / 1e9);
            let minutes = kind.minutes * scale * (1.0 + kind.noise * rng.normal()).max(0.5);
            out.push(PastRun {
                command: kind.command.replace("{n}", &format!("{}", 100 + i * 7 + k)),
                gpus: kind.gpus,
                ended_at: t0 + Duration::hours((i * KINDS.len() + k) as i64 * 9),
                ran: Duration::seconds((minutes * 60.0) as i64),
                finished: true,
                staged_bytes: data.map(|d| d as u64),
            });
        }
    }
    out
}

struct Replay {
    asked: usize,
    covered: usize,
    overshoots: Vec<f64>,
}

fn replay(history: &[PastRun]) -> Replay {
    let mut r = Replay {
        asked: 0,
        covered: 0,
        overshoots: Vec::new(),
    };
    for (i, next) in history.iter().enumerate() {
        let ask = Ask {
            command: &next.command,
            gpus: next.gpus,
            staged_bytes: next.staged_bytes,
        };
        let Ok(s) = suggest(&history[..i], &ask) else {
            continue;
        };
        r.asked += 1;
        if s.length >= next.ran {
            r.covered += 1;
        }
        r.overshoots
            .push(s.length.num_seconds() as f64 / next.ran.num_seconds() as f64 - 1.0);
    }
    r.overshoots.sort_by(f64::total_cmp);
    r
}

#[test]
fn suggestions_cover_nine_runs_in_ten_without_booking_far_too_long() {
    let mut worst_cover = 1.0f64;
    let mut worst_median = 0.0f64;
    for seed in [1u64, 7, 42, 1234, 98765] {
        let h = history(seed, 40);
        let r = replay(&h);
        assert_eq!(
            r.asked,
            h.len() - KINDS.len(),
            "every run after a kind's first is asked"
        );
        let cover = r.covered as f64 / r.asked as f64;
        let median = r.overshoots[r.overshoots.len() / 2];
        let p90 = r.overshoots[r.overshoots.len() * 9 / 10];
        println!(
            "seed {seed:>5}: {} asks, covered {:.1} %, over the real length: median {:.1} %, p90 {:.1} %",
            r.asked,
            cover * 100.0,
            median * 100.0,
            p90 * 100.0
        );
        worst_cover = worst_cover.min(cover);
        worst_median = worst_median.max(median);
    }
    assert!(
        worst_cover >= 0.90,
        "covered only {:.1} %",
        worst_cover * 100.0
    );
    assert!(
        worst_median <= 0.25,
        "median overshoot {:.1} %",
        worst_median * 100.0
    );
}

#[test]
fn a_growing_dataset_is_followed_not_lagged() {
    // Only the growing kind: without scaling by the data's size, the suggestion trails.
    let h: Vec<PastRun> = history(3, 40)
        .into_iter()
        .filter(|r| r.staged_bytes.is_some())
        .collect();
    let with = replay(&h);
    let unscaled: Vec<PastRun> = h
        .iter()
        .cloned()
        .map(|r| PastRun {
            staged_bytes: None,
            ..r
        })
        .collect();
    let without = replay(&unscaled);
    println!(
        "growing data: covered {} of {} with the size, {} of {} without",
        with.covered, with.asked, without.covered, without.asked
    );
    assert!(with.covered >= with.asked * 9 / 10);
    // Without the size the older, smaller runs pull the guess below the next run's length.
    assert!(without.covered < with.covered * 3 / 4);
}
