//! What holds a cluster's GPUs outside gpubook, for the calendar to draw as busy: Slurm's jobs
//! (running, or pending with the start the controller expects) that ask for GPUs, and the
//! reservations gpubook did not make. gpubook's own jobs and reservations are its bookings.
//!
//! Slurm picks a job's devices itself, so a hold is drawn on lanes of its node chosen for
//! display: the node's last free ones at its time (gpubook places bookings from the first).

use super::hold::PREFIX;
use super::json::{reservation_fields, Job};
use super::reader::node_of;
use super::runner::{read_jobs, MARK_PREFIX};
use super::{run, SlurmError};
use chrono::{DateTime, NaiveDateTime, Utc};
use gpubook_core::{Gpu, GpuUuid, Interval, Outside};
use gpubook_proto::OutsideHold;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `scontrol`'s time format (the agent runs Slurm's commands with TZ=UTC).
const TIME: &str = "%Y-%m-%dT%H:%M:%S";

/// How long one reading of Slurm serves every caller: each calendar asks every 30 s, and
/// someone asking in a loop must not make the root agent run Slurm's commands in a loop.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// What Slurm held at the last reading, before anyone's view of it.
#[derive(Debug, Clone)]
struct Seen {
    wanted: Vec<Wanted>,
    /// What `PrivateData` hides.
    private: Vec<String>,
}

/// The last reading, shared by every caller for [`FRESH_FOR`].
static LAST: Mutex<Option<(Instant, Seen)>> = Mutex::new(None);

/// What holds `gpus` outside gpubook from `now` on, as `viewer` may see it (`None`: an admin,
/// who sees all), from a reading of Slurm at most [`FRESH_FOR`] old.
///
/// The agent reads Slurm as root. Where the cluster keeps jobs or reservations private
/// (`PrivateData=jobs`, `reservations`), another user's are shown only as busy: no name, no
/// owner, as Slurm itself would show that viewer nothing of them.
pub fn read(
    gpus: &[Gpu],
    booked: &[(Vec<GpuUuid>, Interval)],
    now: DateTime<Utc>,
    viewer: Option<&str>,
) -> Result<Vec<OutsideHold>, SlurmError> {
    let Seen {
        mut wanted,
        private,
    } = seen(now, FRESH_FOR)?;
    if let Some(viewer) = viewer {
        for w in &mut wanted {
            hide(w, viewer, &private);
        }
    }
    Ok(place(gpus, booked, wanted))
}

/// How old a reading a booking decision may use: a job Slurm started since is not known to
/// the plan (the reservation is made all the same, see [`super::hold`]). Decisions come one at
/// a time, under the plan's lock, so this bounds Slurm's reads at one a second.
pub const FRESH_FOR_DECISIONS: Duration = Duration::from_secs(1);

/// What Slurm holds after `now`, from a reading at most `max_age` old.
fn seen(now: DateTime<Utc>, max_age: Duration) -> Result<Seen, SlurmError> {
    let mut seen = fresh(&LAST, max_age, || {
        let private = private_data(&run("scontrol", &["show", "config"])?);
        let mut wanted = jobs(&read_jobs()?, now);
        let resv = run("scontrol", &["show", "reservation", "--oneliner"])?;
        wanted.extend(reservations(&resv, now));
        Ok(Seen { wanted, private })
    })?;
    seen.wanted.retain(|w| w.end > now);
    Ok(seen)
}

/// What the plan must book around (see [`gpubook_core::Outside`]): Slurm's running jobs and
/// the reservations gpubook did not make, which Slurm would not let a gpubook reservation
/// take, and pending jobs Slurm means to start within [`FRESH_FOR`] (before the next reading).
/// Other pending jobs are left out: a reservation comes first and Slurm starts them after.
/// With `whole_nodes` (Slurm before 23.02, where gpubook's reservation holds the whole node)
/// each takes all of its nodes' GPUs; otherwise as many as it asks for. Described as nobody
/// in particular may see them where `PrivateData` hides them: the plan answers everyone.
pub fn blocking(
    gpus: &[Gpu],
    booked: &[(Vec<GpuUuid>, Interval)],
    now: DateTime<Utc>,
    whole_nodes: bool,
) -> Result<Vec<Outside>, SlurmError> {
    let Seen { wanted, private } = seen(now, FRESH_FOR_DECISIONS)?;
    let wanted = wanted
        .into_iter()
        .filter(|w| w.blocks)
        .map(|mut w| {
            if whole_nodes {
                w.count = None;
                w.indexes.clear();
            }
            hide(&mut w, "", &private);
            w
        })
        .collect();
    Ok(place(gpus, booked, wanted)
        .into_iter()
        .map(|h| Outside {
            gpus: h.gpus,
            interval: Interval {
                start: h.start,
                end: h.end,
            },
            what: format!("{} ({})", h.title, h.owner),
        })
        .collect())
}

/// What `plan` holds from `now` on, per booking: the GPUs and when (holds are placed
/// around it).
pub fn booked(plan: &gpubook_core::Plan, now: DateTime<Utc>) -> Vec<(Vec<GpuUuid>, Interval)> {
    plan.bookings()
        .filter(|b| b.state.holds_gpus() && b.interval.end > now)
        .map(|b| (b.gpus.clone(), b.interval))
        .collect()
}

/// The value in `slot` if it is younger than `fresh`, else `fetch`'s, kept there. The slot
/// stays locked while `fetch` runs, so callers arriving together cause one fetch.
fn fresh<T: Clone, E>(
    slot: &Mutex<Option<(Instant, T)>>,
    fresh: Duration,
    fetch: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let mut last = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, value)) = last.as_ref() {
        if at.elapsed() < fresh {
            return Ok(value.clone());
        }
    }
    let value = fetch()?;
    *last = Some((Instant::now(), value.clone()));
    Ok(value)
}

/// What `PrivateData` hides, from `scontrol show config`: "jobs", "reservations", "all"…
pub fn private_data(config: &str) -> Vec<String> {
    config
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "PrivateData").then(|| {
                v.split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty() && s != "none")
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// `w` as `viewer` may see it under `private`: someone else's private job or reservation is
/// only busy.
pub fn hide(w: &mut Wanted, viewer: &str, private: &[String]) {
    let is = |what: &str| private.iter().any(|p| p == what || p == "all");
    let reservation = w.title.starts_with("Slurm reservation");
    let hidden = if reservation {
        is("reservations") && !w.owner.split(',').any(|u| u == viewer)
    } else {
        is("jobs") && w.owner != viewer
    };
    if hidden {
        w.owner = "someone".into();
        w.title = if reservation {
            "Slurm reservation".into()
        } else {
            "Slurm job".into()
        };
    }
}

/// One hold before its lanes are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The node names (a job's or a reservation's).
    pub nodes: Vec<String>,
    /// GPUs per node; `None`: all of each node's (a whole-node reservation).
    pub count: Option<usize>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub owner: String,
    pub title: String,
    /// Whether a gpubook reservation cannot take its GPUs (running jobs, reservations), not
    /// only drawn (pending jobs).
    pub blocks: bool,
    /// The GPUs Slurm gave it on its node, where it says (a running job's `gres_detail`): it
    /// is drawn on those lanes, not chosen ones.
    pub indexes: Vec<u32>,
}

/// The jobs that hold or will hold GPUs after `now`, gpubook's own left out.
pub fn jobs(jobs: &[Job], now: DateTime<Utc>) -> Vec<Wanted> {
    jobs.iter()
        .filter(|j| !(j.resv_name.starts_with(PREFIX) || j.comment.starts_with(MARK_PREFIX)))
        .filter_map(|j| {
            let live = matches!(
                j.job_state.as_str(),
                "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" | "PENDING"
            );
            let count = gpu_count(&j.tres_per_node)?;
            let start = DateTime::from_timestamp(j.start_time, 0)?;
            let end = DateTime::from_timestamp(j.end_time, 0)?;
            (live && j.start_time > 0 && end > start && end > now).then(|| Wanted {
                nodes: hostnames(&j.nodes),
                count: Some(count),
                start,
                end,
                owner: j.user_name.clone(),
                title: format!("Slurm job {}: {}", j.job_id, j.name),
                // A pending job Slurm means to start now is as good as running.
                blocks: j.job_state != "PENDING" || start <= now + FRESH_FOR,
                indexes: j.gpu_indexes(),
            })
        })
        .collect()
}

/// The reservations in `scontrol show reservation --oneliner`'s output that gpubook did not
/// make and that end after `now`.
pub fn reservations(out: &str, now: DateTime<Utc>) -> Vec<Wanted> {
    out.lines()
        .filter_map(|line| {
            let f = reservation_fields(line);
            let name = f.get("ReservationName")?;
            if name.starts_with(PREFIX) {
                return None;
            }
            let time = |k: &str| {
                NaiveDateTime::parse_from_str(f.get(k)?, TIME)
                    .ok()
                    .map(|t| t.and_utc())
            };
            let (start, end) = (time("StartTime")?, time("EndTime")?);
            let owner = match (f.get("Users"), f.get("Accounts")) {
                (Some(u), _) if u != "(null)" => u.clone(),
                (_, Some(a)) if a != "(null)" => format!("account {a}"),
                _ => "Slurm".into(),
            };
            (end > now).then(|| Wanted {
                nodes: hostnames(f.get("Nodes").map_or("", String::as_str)),
                count: f.get("TRES").and_then(|t| gpu_count(t)),
                start,
                end,
                owner,
                title: format!("Slurm reservation {name}"),
                blocks: true,
                indexes: Vec::new(),
            })
        })
        .collect()
}

/// The GPUs asked for in a TRES string ("gres:gpu:4", "gres:gpu:h200:2", "cpu=8,gres/gpu=2");
/// `None` when it asks for none.
pub fn gpu_count(tres: &str) -> Option<usize> {
    tres.split(',')
        .filter(|e| e.contains("gpu"))
        .map(|e| {
            e.rsplit([':', '='])
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .find(|n| *n > 0)
}

/// The names in a Slurm host list: "n1", "n1,n2", or a range ("gpu[1-3,5]") expanded by
/// `scontrol show hostnames`.
fn hostnames(list: &str) -> Vec<String> {
    if list.contains('[') {
        if let Ok(out) = run("scontrol", &["show", "hostnames", list]) {
            return out.split_whitespace().map(str::to_string).collect();
        }
    }
    list.split(',')
        .filter(|s| !s.is_empty() && *s != "(null)")
        .map(str::to_string)
        .collect()
}

/// Chooses each hold's lanes among `gpus`: the GPUs Slurm gave a running job where it says
/// which; otherwise per node the last ones neither `booked` in gpubook nor drawn on by a hold
/// already placed over the same time (the last ones when all are).
pub fn place(
    gpus: &[Gpu],
    booked: &[(Vec<GpuUuid>, Interval)],
    mut wanted: Vec<Wanted>,
) -> Vec<OutsideHold> {
    wanted.sort_by_key(|w| (w.start, w.end));
    let mut placed: Vec<OutsideHold> = Vec::new();
    for w in wanted {
        let mut lanes = Vec::new();
        for node in &w.nodes {
            let on_node: Vec<&GpuUuid> = gpus
                .iter()
                .map(|g| &g.uuid)
                .filter(|u| node_of(u) == Some(node.as_str()))
                .collect();
            let n = w.count.unwrap_or(on_node.len()).min(on_node.len());
            // Where Slurm says which GPUs a job has, those are its lanes.
            if w.nodes.len() == 1 && !w.indexes.is_empty() {
                let exact: Vec<GpuUuid> = w
                    .indexes
                    .iter()
                    .map(|i| super::reader::uuid(node, *i))
                    .filter(|u| on_node.contains(&u))
                    .collect();
                if exact.len() == w.indexes.len() {
                    lanes.extend(exact);
                    continue;
                }
            }
            let taken = |u: &GpuUuid| {
                placed
                    .iter()
                    .any(|p| p.start < w.end && w.start < p.end && p.gpus.contains(u))
                    || booked
                        .iter()
                        .any(|(g, i)| i.start < w.end && w.start < i.end && g.contains(u))
            };
            let mut chosen: Vec<GpuUuid> = on_node
                .iter()
                .rev()
                .filter(|u| !taken(u))
                .take(n)
                .map(|u| (*u).clone())
                .collect();
            for u in on_node.iter().rev() {
                if chosen.len() >= n {
                    break;
                }
                if !chosen.contains(u) {
                    chosen.push((*u).clone());
                }
            }
            chosen.reverse();
            lanes.extend(chosen);
        }
        if lanes.is_empty() {
            continue;
        }
        placed.push(OutsideHold {
            gpus: lanes,
            start: w.start,
            end: w.end,
            owner: w.owner,
            title: w.title,
        });
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::reader::uuid;

    fn gpus() -> Vec<Gpu> {
        (0..4)
            .map(|i| Gpu {
                uuid: uuid("n1", i),
                index: i,
                name: "n1 · H200".into(),
                memory_total: 0,
                server: "c".into(),
                simulated: false,
                node: Some("n1".into()),
            })
            .collect()
    }

    fn at(h: u32) -> DateTime<Utc> {
        format!("2026-12-04T{h:02}:00:00Z").parse().unwrap()
    }

    #[test]
    fn running_jobs_and_jobs_about_to_start_block_other_pending_ones_are_drawn() {
        let now = at(10);
        let reply: crate::slurm::json::JobsReply = serde_json::from_str(&format!(
            r#"{{"jobs":[
            {{"job_id":1,"name":"run","user_name":"bob","job_state":"RUNNING",
              "tres_per_node":"gres:gpu:1","nodes":"n1","start_time":{s},"end_time":{e}}},
            {{"job_id":2,"name":"soon","user_name":"bob","job_state":"PENDING",
              "tres_per_node":"gres:gpu:1","nodes":"n1","start_time":{s},"end_time":{e}}},
            {{"job_id":3,"name":"later","user_name":"bob","job_state":"PENDING",
              "tres_per_node":"gres:gpu:1","nodes":"n1","start_time":{l},"end_time":{e}}},
            {{"job_id":4,"name":"cpu","user_name":"bob","job_state":"RUNNING",
              "tres_per_node":"","nodes":"n1","start_time":{s},"end_time":{e}}}]}}"#,
            s = now.timestamp(),
            l = at(11).timestamp(),
            e = at(12).timestamp()
        ))
        .unwrap();
        let seen: Vec<(String, bool)> = jobs(&reply.jobs, now)
            .into_iter()
            .map(|w| (w.title, w.blocks))
            .collect();
        assert_eq!(
            seen,
            [
                ("Slurm job 1: run".to_string(), true),
                ("Slurm job 2: soon".to_string(), true),
                ("Slurm job 3: later".to_string(), false)
            ]
        );
    }

    #[test]
    fn private_jobs_of_others_are_only_busy() {
        let config = "Configuration data as of 2026-12-04T12:00:00\n\
                      PreemptType             = preempt/none\n\
                      PrivateData             = jobs,usage\n\
                      ProctrackType           = proctrack/linuxproc\n";
        let private = private_data(config);
        assert_eq!(private, ["jobs", "usage"]);
        assert!(private_data("PrivateData             = none\n").is_empty());
        let job = |owner: &str, title: &str| Wanted {
            nodes: vec!["n1".into()],
            count: Some(1),
            start: at(10),
            end: at(11),
            owner: owner.into(),
            title: title.into(),
            blocks: true,
            indexes: Vec::new(),
        };
        let mut bobs = job("bob", "Slurm job 7: secret-project");
        hide(&mut bobs, "ana", &private);
        assert_eq!(
            (bobs.owner.as_str(), bobs.title.as_str()),
            ("someone", "Slurm job")
        );
        let mut anas = job("ana", "Slurm job 8: mine");
        hide(&mut anas, "ana", &private);
        assert_eq!(anas.title, "Slurm job 8: mine");
        // Reservations are not private under this config.
        let mut resv = job("root", "Slurm reservation maint");
        hide(&mut resv, "ana", &private);
        assert_eq!(resv.owner, "root");
        let mut resv = job("root,bob", "Slurm reservation maint");
        hide(&mut resv, "ana", &["all".to_string()]);
        assert_eq!(resv.title, "Slurm reservation");
    }

    #[test]
    fn callers_within_the_fresh_window_share_one_reading() {
        let slot = Mutex::new(None);
        let mut fetches = 0;
        for _ in 0..100 {
            let got: Result<u32, ()> = fresh(&slot, Duration::from_secs(60), || {
                fetches += 1;
                Ok(7)
            });
            assert_eq!(got, Ok(7));
        }
        assert_eq!(fetches, 1, "a burst of requests read Slurm more than once");
        // A failed reading is not kept: the next caller tries again.
        let empty = Mutex::new(None);
        assert_eq!(
            fresh(&empty, Duration::ZERO, || Err::<u32, _>("down")),
            Err("down")
        );
        assert_eq!(fresh(&empty, Duration::ZERO, || Ok::<_, &str>(1)), Ok(1));
        assert_eq!(
            fresh(&slot, Duration::ZERO, || Ok::<_, ()>(8)),
            Ok(8),
            "stale: read again"
        );
    }

    #[test]
    fn gpu_counts_from_tres_strings() {
        assert_eq!(gpu_count("gres:gpu:4"), Some(4));
        assert_eq!(gpu_count("gres:gpu:h200:2"), Some(2));
        assert_eq!(gpu_count("cpu=8,gres/gpu=2"), Some(2));
        assert_eq!(gpu_count("gres:gpu"), Some(1));
        assert_eq!(gpu_count("cpu=8,mem=2000M"), None);
        assert_eq!(gpu_count(""), None);
    }

    #[test]
    fn holds_go_on_the_nodes_last_lanes_side_by_side_when_they_overlap() {
        let w = |count, start, end, title: &str| Wanted {
            nodes: vec!["n1".into()],
            count,
            start: at(start),
            end: at(end),
            owner: "bob".into(),
            title: title.into(),
            blocks: true,
            indexes: Vec::new(),
        };
        // gpubook's own booking on lane 3 from 10:00 to 11:00 is avoided while it lasts; the
        // whole node's hold takes all four lanes whatever is there.
        let booked = [(
            vec![uuid("n1", 3)],
            Interval {
                start: at(10),
                end: at(11),
            },
        )];
        let placed = place(
            &gpus(),
            &booked,
            vec![
                w(Some(1), 10, 12, "a"),
                w(Some(2), 11, 13, "b"),
                w(Some(1), 12, 14, "c"),
                w(None, 20, 21, "whole"),
                Wanted {
                    indexes: vec![0, 1],
                    ..w(Some(2), 20, 22, "running on 0 and 1")
                },
            ],
        );
        let lanes = |t: &str| {
            placed
                .iter()
                .find(|p| p.title == t)
                .unwrap()
                .gpus
                .iter()
                .map(|u| u.0.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(lanes("a"), ["SLURM-n1-2"]);
        assert_eq!(lanes("b"), ["SLURM-n1-1", "SLURM-n1-3"]);
        assert_eq!(lanes("c"), ["SLURM-n1-2"]);
        assert_eq!(lanes("whole").len(), 4);
        // A running job is drawn where Slurm put it, whatever else is there.
        assert_eq!(lanes("running on 0 and 1"), ["SLURM-n1-0", "SLURM-n1-1"]);
    }

    #[test]
    fn reservations_other_than_gpubook_s() {
        let out = "ReservationName=maint StartTime=2026-12-04T20:00:00 \
                   EndTime=2026-12-04T22:00:00 Duration=02:00:00 Nodes=n1 NodeCnt=1 \
                   CoreCnt=8 Features=(null) PartitionName=(null) Flags=MAINT \
                   TRES=cpu=8 Users=root Groups=(null) Accounts=(null) Licenses=(null) \
                   State=INACTIVE BurstBuffer=(null) Watts=n/a\n\
                   ReservationName=gpubook-7 StartTime=2026-12-04T20:00:00 \
                   EndTime=2026-12-04T22:00:00 Nodes=n1 Users=alice State=INACTIVE\n";
        let r = reservations(out, at(10));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].title, "Slurm reservation maint");
        assert_eq!(r[0].owner, "root");
        assert_eq!(r[0].count, None);
        assert_eq!((r[0].start, r[0].end), (at(20), at(22)));
        assert!(reservations(out, at(23)).is_empty());
    }
}
