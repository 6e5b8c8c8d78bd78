//! Simulated GPUs, for a machine without NVIDIA GPUs: named "Simulated GPU N" everywhere they
//! are shown, so nobody mistakes them for real ones.
//!
//! # Telling the simulated GPUs that a process runs on them
//!
//! The agent reads a JSON file, `<state-dir>/sim-processes.json` unless `gpubook-agent serve
//! --sim-processes FILE` names another, that lists the processes the simulated GPUs should
//! report:
//!
//! ```json
//! [
//!   {"gpu": 0, "pid": 4242, "user": "mallory", "used_bytes": 1073741824, "util": 80},
//!   {"gpu": "SIM-lab1-1", "pid": 4243, "user": "alice"}
//! ]
//! ```
//!
//! - `gpu`: the GPU's index (a number) or its UUID (`SIM-<server>-<index>`);
//! - `pid`: the process id the GPU reports;
//! - `user`: its owner's user name; leave it out for a process whose user is unknown;
//! - `used_bytes`: GPU memory it holds (default 0);
//! - `util`: the utilisation, in percent, it puts on the GPU (default 0).
//!
//! An entry `{"gpu": 2, "fault": "lost"}` (no `pid`) is not a process: it makes GPU 2 report
//! that fault, as NVML reports a GPU that fell off the bus, and the agent takes the GPU out of
//! service until an admin puts it back.
//!
//! The file is read again whenever it changes (its modification time, size or inode), at the
//! next reading. Write it whole: write a temporary file next to it and rename it into place.
//!
//! While no such file exists, every simulated GPU shows slowly varying, made-up load (so the
//! calendar's bars move) and no processes. Once the file exists it describes the whole
//! simulated load: a GPU it names reports those processes, the sum of their memory and
//! utilisation (at most 100 %); a GPU it does not name is idle (no process, no load, no
//! memory in use). An empty list (`[]`) makes every simulated GPU idle; deleting the file
//! brings the made-up load back.
//!
//! The agent treats these processes like real ones: one that does not belong to the owner of
//! a booking on its GPU is an intruder, and with the policy `intruders = "stop"` an agent
//! running as root sends SIGTERM to that pid, so name a process you started for the purpose.
//! A file that cannot be read, or that names a GPU the set does not have, fails the reading
//! (the agent's log says why) until it is fixed.

use super::{GpuError, GpuReader};
use gpubook_core::{Gpu, GpuUuid};
use gpubook_proto::{GpuProcess, GpuReading, Readings};
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Memory of a simulated GPU: 80 GiB.
const SIM_MEMORY: u64 = 80 << 30;

/// The processes file's name in the agent's state directory.
pub const SIM_PROCESSES_FILE: &str = "sim-processes.json";

/// `n` simulated GPUs with slowly varying, made-up readings, or the processes a file names.
#[derive(Debug)]
pub struct SimReader {
    /// The GPUs.
    gpus: Vec<Gpu>,
    /// Readings made so far; drives the made-up curves.
    tick: u64,
    /// The processes file, if the agent watches one.
    processes_file: Option<PathBuf>,
    /// What the file said when it was last read, and how it looked then.
    loaded: Option<Loaded>,
}

/// The processes file as last read.
#[derive(Debug)]
struct Loaded {
    /// Modification time, size and inode: a change to any means "read it again".
    stamp: (Option<SystemTime>, u64, u64),
    /// Per GPU (by position in `gpus`), its processes and their utilisation; or why the file
    /// could not be used.
    per_gpu: Result<Vec<Vec<SimProcess>>, String>,
}

/// One line of the processes file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimProcess {
    /// Which GPU.
    gpu: GpuRef,
    /// Its pid; absent only in a fault entry.
    #[serde(default)]
    pid: Option<u32>,
    /// A fault the GPU reports instead (an entry that is not a process).
    #[serde(default)]
    fault: Option<String>,
    /// Its user, when known.
    #[serde(default)]
    user: Option<String>,
    /// GPU memory it holds.
    #[serde(default)]
    used_bytes: u64,
    /// Utilisation it causes, percent.
    #[serde(default)]
    util: u32,
}

/// A GPU named in the file: by index or by UUID.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum GpuRef {
    /// Its index.
    Index(u32),
    /// Its UUID.
    Uuid(String),
}

impl SimReader {
    /// `n` simulated GPUs on `server`.
    pub fn new(n: u32, server: &str) -> Self {
        let gpus = (0..n)
            .map(|i| Gpu {
                uuid: GpuUuid(format!("SIM-{server}-{i}")),
                index: i,
                name: format!("Simulated GPU {i}"),
                memory_total: SIM_MEMORY,
                server: server.to_string(),
                simulated: true,
                node: None,
            })
            .collect();
        Self {
            gpus,
            tick: 0,
            processes_file: None,
            loaded: None,
        }
    }

    /// The same GPUs, reporting the processes that the file at `path` lists (see the module
    /// documentation for its format).
    pub fn with_processes_file(mut self, path: PathBuf) -> Self {
        self.processes_file = Some(path);
        self
    }

    /// The processes file this reader watches, if any.
    pub fn processes_file(&self) -> Option<&Path> {
        self.processes_file.as_deref()
    }

    /// Reads the processes file again if it changed: `Ok(None)` when there is no file.
    fn processes(&mut self) -> Result<Option<&[Vec<SimProcess>]>, GpuError> {
        let Some(path) = &self.processes_file else {
            return Ok(None);
        };
        let bad = |why: String| GpuError::SimProcesses {
            path: path.clone(),
            why,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.loaded = None;
                return Ok(None);
            }
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        };
        let stamp = (meta.modified().ok(), meta.len(), meta.ino());
        if self.loaded.as_ref().map(|l| l.stamp) != Some(stamp) {
            let per_gpu = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|text| parse_processes(&text, &self.gpus));
            self.loaded = Some(Loaded { stamp, per_gpu });
        }
        match self.loaded.as_ref().map(|l| &l.per_gpu) {
            Some(Ok(per_gpu)) => Ok(Some(per_gpu)),
            Some(Err(why)) => Err(bad(why.clone())),
            None => Ok(None),
        }
    }
}

/// The file's processes, grouped per GPU (by position in `gpus`); the error is a sentence.
fn parse_processes(text: &str, gpus: &[Gpu]) -> Result<Vec<Vec<SimProcess>>, String> {
    let list: Vec<SimProcess> = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a list of processes (expected [{{\"gpu\": 0, \"pid\": 4242, \"user\": \
             \"mallory\", \"used_bytes\": 1073741824, \"util\": 80}}]): {e}"
        )
    })?;
    let mut per_gpu = vec![Vec::new(); gpus.len()];
    for p in list {
        let i = gpus.iter().position(|g| match &p.gpu {
            GpuRef::Index(i) => g.index == *i,
            GpuRef::Uuid(u) => g.uuid.0 == *u,
        });
        let Some(i) = i else {
            let named = match &p.gpu {
                GpuRef::Index(i) => i.to_string(),
                GpuRef::Uuid(u) => format!("{u:?}"),
            };
            return Err(format!(
                "process {} names GPU {named}, but the simulated GPUs are 0 to {}",
                p.pid.unwrap_or(0),
                gpus.len().saturating_sub(1)
            ));
        };
        if p.pid.is_none() && p.fault.is_none() {
            return Err(format!(
                "an entry for GPU {} has neither a pid (a process) nor a fault",
                gpus[i].index
            ));
        }
        per_gpu[i].push(p);
    }
    Ok(per_gpu)
}

impl GpuReader for SimReader {
    fn inventory(&self) -> Vec<Gpu> {
        self.gpus.clone()
    }

    fn read(&mut self) -> Result<Readings, GpuError> {
        self.tick += 1;
        let t = self.tick;
        let processes = self.processes()?.map(<[_]>::to_vec);
        let gpus = self
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let fault = processes
                    .as_ref()
                    .and_then(|per_gpu| per_gpu[i].iter().find_map(|p| p.fault.clone()));
                let (util, memory_used, procs) = match &processes {
                    Some(per_gpu) => {
                        let procs: Vec<&SimProcess> =
                            per_gpu[i].iter().filter(|p| p.fault.is_none()).collect();
                        let util = procs.iter().map(|p| p.util).sum::<u32>().min(100);
                        let memory = procs
                            .iter()
                            .map(|p| p.used_bytes)
                            .fold(0u64, u64::saturating_add)
                            .min(SIM_MEMORY);
                        let procs = procs
                            .iter()
                            .map(|p| GpuProcess {
                                pid: p.pid.unwrap_or(0),
                                user: p.user.clone(),
                                used_bytes: p.used_bytes,
                            })
                            .collect();
                        (util, memory, procs)
                    }
                    None => {
                        // A slow triangle wave per GPU, out of phase, so the bars move.
                        let phase = (t + u64::from(g.index) * 17) % 120;
                        let util = if phase < 60 { phase } else { 120 - phase } as u32 * 100 / 60;
                        (util, SIM_MEMORY / 100 * u64::from(util) / 2, Vec::new())
                    }
                };
                GpuReading {
                    uuid: g.uuid.clone(),
                    index: g.index,
                    name: g.name.clone(),
                    memory_used,
                    memory_total: SIM_MEMORY,
                    util_gpu: util,
                    util_mem: util / 3,
                    temperature_c: 35 + util / 3,
                    power_mw: 60_000 + util * 3_000,
                    power_limit_mw: 400_000,
                    processes: procs,
                    fault,
                    allocated: None,
                }
            })
            .collect();
        Ok(Readings {
            at: chrono::Utc::now(),
            gpus,
        })
    }

    fn source(&self) -> &'static str {
        "simulated"
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(dir: &Path) -> SimReader {
        SimReader::new(3, "lab1").with_processes_file(dir.join(SIM_PROCESSES_FILE))
    }

    /// Writes `text` as a new file renamed into place, as the documentation asks.
    fn write(dir: &Path, text: &str) {
        let tmp = dir.join("sim-processes.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(SIM_PROCESSES_FILE)).unwrap();
    }

    #[test]
    fn without_a_file_the_gpus_show_made_up_load_and_no_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = reader(dir.path());
        let loads: Vec<u32> = (0..5)
            .flat_map(|_| r.read().unwrap().gpus)
            .map(|g| {
                assert!(g.processes.is_empty());
                g.util_gpu
            })
            .collect();
        assert!(loads.iter().any(|u| *u > 0), "{loads:?}");
    }

    #[test]
    fn the_file_puts_processes_on_gpus_and_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = reader(dir.path());
        write(
            dir.path(),
            r#"[{"gpu": 0, "pid": 4242, "user": "mallory", "used_bytes": 1073741824, "util": 80},
                {"gpu": "SIM-lab1-0", "pid": 7, "used_bytes": 1, "util": 50},
                {"gpu": 2, "pid": 9, "user": "alice"}]"#,
        );
        let g = r.read().unwrap().gpus;
        assert_eq!(
            g[0].processes,
            vec![
                GpuProcess {
                    pid: 4242,
                    user: Some("mallory".into()),
                    used_bytes: 1 << 30
                },
                GpuProcess {
                    pid: 7,
                    user: None,
                    used_bytes: 1
                }
            ]
        );
        assert_eq!(
            g[0].util_gpu, 100,
            "the sum of the processes' load, at most 100"
        );
        assert_eq!(g[0].memory_used, (1 << 30) + 1);
        assert!(g[1].processes.is_empty());
        assert_eq!((g[1].util_gpu, g[1].memory_used), (0, 0), "unnamed: idle");
        assert_eq!(g[2].processes[0].pid, 9);
        assert_eq!(g[2].util_gpu, 0);

        write(dir.path(), "[]");
        let g = r.read().unwrap().gpus;
        assert!(g.iter().all(|g| g.processes.is_empty() && g.util_gpu == 0));

        std::fs::remove_file(dir.path().join(SIM_PROCESSES_FILE)).unwrap();
        let loads: Vec<u32> = (0..5)
            .flat_map(|_| r.read().unwrap().gpus)
            .map(|g| g.util_gpu)
            .collect();
        assert!(
            loads.iter().any(|u| *u > 0),
            "made-up load is back: {loads:?}"
        );
    }

    #[test]
    fn a_bad_file_fails_the_reading_until_it_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = reader(dir.path());
        write(dir.path(), r#"[{"gpu": 0, "pid": "x"}]"#);
        let e = r.read().unwrap_err().to_string();
        assert!(
            e.contains("sim-processes.json") && e.contains("not a list"),
            "{e}"
        );
        assert!(r.read().is_err(), "still bad on the next reading");

        write(dir.path(), r#"[{"gpu": 3, "pid": 1}]"#);
        let e = r.read().unwrap_err().to_string();
        assert!(e.contains("GPU 3") && e.contains("0 to 2"), "{e}");

        write(dir.path(), r#"[{"gpu": "GPU-x", "pid": 1}]"#);
        let e = r.read().unwrap_err().to_string();
        assert!(e.contains("\"GPU-x\""), "{e}");

        write(dir.path(), r#"[{"gpu": 1, "pid": 1, "usr": "bob"}]"#);
        let e = r.read().unwrap_err().to_string();
        assert!(e.contains("usr"), "a misspelt field is named: {e}");

        write(dir.path(), r#"[{"gpu": 1, "pid": 1}]"#);
        assert_eq!(r.read().unwrap().gpus[1].processes[0].pid, 1);
    }
}
