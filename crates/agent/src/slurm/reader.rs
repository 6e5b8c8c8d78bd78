//! The cluster's GPUs as gpubook's calendar knows them: one per `gres/gpu` of every node, in
//! node-name order, named `SLURM-<node>-<i>` (Slurm picks the devices when a job starts, so
//! the `i` is a lane of the calendar, not a device).
//!
//! Slurm does not measure GPUs: the readings are empty (no utilisation, no memory, no
//! processes) unless a gpubook agent runs on the node itself (`--gpus nvml`), and the panel
//! says so.

use super::json::{gpu_gres, Node, NodesReply};
use super::{run, SlurmError};
use crate::gpu::{GpuError, GpuReader};
use gpubook_core::{Gpu, GpuUuid};
use gpubook_proto::{GpuReading, Readings};

/// The prefix of every Slurm GPU's name in gpubook.
pub const UUID_PREFIX: &str = "SLURM-";

/// The calendar lane `i` of `node`.
pub fn uuid(node: &str, i: u32) -> GpuUuid {
    GpuUuid(format!("{UUID_PREFIX}{node}-{i}"))
}

/// The node of a Slurm GPU's name, `None` for any other GPU.
pub fn node_of(uuid: &GpuUuid) -> Option<&str> {
    let rest = uuid.0.strip_prefix(UUID_PREFIX)?;
    let (node, i) = rest.rsplit_once('-')?;
    i.parse::<u32>().ok()?;
    Some(node)
}

/// Reads the cluster's GPUs from `sinfo --json`.
#[derive(Debug)]
pub struct SlurmReader {
    gpus: Vec<Gpu>,
    /// Where the nodes' agents write their readings (see [`super::nodes`]), if anywhere.
    node_readings: Option<std::path::PathBuf>,
    /// The last complaint about them, so it is logged once.
    complained: Option<String>,
    /// Which lanes Slurm has allocated, and when that was read (`sinfo --json`, at most
    /// every [`ALLOCATED_EVERY`]).
    allocated: Option<(std::time::Instant, Vec<GpuUuid>)>,
}

/// How often the lanes' allocation is read from Slurm (the GPUs are sampled every second).
pub const ALLOCATED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The lanes Slurm has allocated now, from `sinfo --json`'s `gres_used` ("gpu:h200:2(IDX:0-1)").
pub fn allocated(nodes: &[Node]) -> Vec<GpuUuid> {
    nodes
        .iter()
        .flat_map(|n| {
            gpu_gres(&n.gres_used)
                .into_iter()
                .flat_map(|g| g.used)
                .map(|i| uuid(&n.name, i))
        })
        .collect()
}

impl SlurmReader {
    /// Checks the Slurm version and reads the nodes' GPUs once.
    pub fn open(server: &str) -> Result<Self, GpuError> {
        super::check_version().map_err(slurm_error)?;
        let out = run("sinfo", &["--json"]).map_err(slurm_error)?;
        let reply: NodesReply = serde_json::from_str(&out).map_err(|e| {
            slurm_error(SlurmError::Output {
                command: "sinfo --json".into(),
                why: e.to_string(),
            })
        })?;
        let gpus = inventory(&reply.nodes, server);
        if gpus.is_empty() {
            return Err(GpuError::Slurm(
                "no node of this cluster has a gres/gpu (sinfo --json shows none): add \
                 Gres=gpu:N to the nodes in slurm.conf and gres.conf"
                    .into(),
            ));
        }
        Ok(Self {
            gpus,
            node_readings: None,
            complained: None,
            allocated: None,
        })
    }

    /// Shows the live readings the nodes' agents write to `dir` (see [`super::nodes`]).
    pub fn with_node_readings(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.node_readings = dir;
        self
    }
}

/// The GPUs of `nodes`, for the server `server`: each node's lanes in order, nodes by name.
pub fn inventory(nodes: &[Node], server: &str) -> Vec<Gpu> {
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    let mut gpus = Vec::new();
    for node in nodes {
        let mut i = 0;
        for gres in gpu_gres(&node.gres) {
            let model = gres
                .kind
                .as_deref()
                .map(str::to_uppercase)
                .unwrap_or_else(|| "GPU".into());
            for _ in 0..gres.count {
                gpus.push(Gpu {
                    uuid: uuid(&node.name, i),
                    index: gpus.len() as u32,
                    name: format!("{} · {model}", node.name),
                    memory_total: 0,
                    server: server.to_string(),
                    simulated: false,
                    node: Some(node.name.clone()),
                });
                i += 1;
            }
        }
    }
    gpus
}

/// Lane `g` as Slurm alone reads it: no figures (what a node agent would add).
pub fn unread(g: &Gpu) -> GpuReading {
    GpuReading {
        uuid: g.uuid.clone(),
        index: g.index,
        name: g.name.clone(),
        memory_used: 0,
        memory_total: 0,
        util_gpu: 0,
        util_mem: 0,
        temperature_c: 0,
        power_mw: 0,
        power_limit_mw: 0,
        processes: Vec::new(),
        fault: None,
        allocated: None,
    }
}

fn slurm_error(e: SlurmError) -> GpuError {
    GpuError::Slurm(e.to_string())
}

impl GpuReader for SlurmReader {
    fn inventory(&self) -> Vec<Gpu> {
        self.gpus.clone()
    }

    fn read(&mut self) -> Result<Readings, GpuError> {
        let now = chrono::Utc::now();
        let mut readings = Readings {
            at: now,
            gpus: self.gpus.iter().map(unread).collect(),
        };
        let stale = self
            .allocated
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= ALLOCATED_EVERY);
        if stale {
            let read = run("sinfo", &["--json"]).ok().and_then(|out| {
                serde_json::from_str::<NodesReply>(&out)
                    .ok()
                    .map(|r| allocated(&r.nodes))
            });
            // What cannot be read now is shown as unknown, not as free.
            self.allocated = read.map(|a| (std::time::Instant::now(), a));
        }
        if let Some((_, used)) = &self.allocated {
            for g in &mut readings.gpus {
                g.allocated = Some(used.contains(&g.uuid));
            }
        }
        if let Some(dir) = &self.node_readings {
            let complained = &mut self.complained;
            super::nodes::merge(&self.gpus, &mut readings, dir, now, &mut |e| {
                let e = e.to_string();
                if complained.as_ref() != Some(&e) {
                    eprintln!("gpubook-agent: node readings: {e}");
                    *complained = Some(e);
                }
            });
        }
        Ok(readings)
    }

    fn source(&self) -> &'static str {
        "slurm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gres: &str) -> Node {
        Node {
            name: name.into(),
            gres: gres.into(),
            gres_used: String::new(),
            state: "idle".into(),
            partitions: vec!["gpu".into()],
        }
    }

    #[test]
    fn lanes_by_node_in_name_order() {
        let gpus = inventory(
            &[
                node("n2", "gpu:a100:2(S:0)"),
                node("cpu1", ""),
                node("n1", "gpu:h200:1(S:0),gpu:h100:1(S:1)"),
            ],
            "cluster",
        );
        let names: Vec<_> = gpus.iter().map(|g| (g.uuid.0.as_str(), g.index)).collect();
        assert_eq!(
            names,
            [
                ("SLURM-n1-0", 0),
                ("SLURM-n1-1", 1),
                ("SLURM-n2-0", 2),
                ("SLURM-n2-1", 3)
            ]
        );
        assert_eq!(gpus[1].name, "n1 · H100");
        assert_eq!(node_of(&gpus[3].uuid), Some("n2"));
        assert_eq!(node_of(&uuid("gpu-node-07", 3)), Some("gpu-node-07"));
        assert_eq!(node_of(&GpuUuid("GPU-5a85".into())), None);
    }

    #[test]
    fn allocated_lanes_from_gres_used() {
        let mut n1 = node("n1", "gpu:h200:4(S:0)");
        n1.gres_used = "gpu:h200:2(IDX:1,3)".into();
        let mut n2 = node("n2", "gpu:a100:2(S:0)");
        n2.gres_used = "gpu:a100:0(IDX:N/A)".into();
        assert_eq!(allocated(&[n1, n2]), [uuid("n1", 1), uuid("n1", 3)]);
    }
}
