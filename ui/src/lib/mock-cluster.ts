// The mock's Slurm cluster: two nodes of four GPUs, as the agent names them (`SLURM-<node>-<i>`,
// "<node> · H200", no memory reported), and what Slurm holds there outside gpubook.

import { floorTo, HOUR } from './time';
import type { Gpu } from './wire/Gpu';
import type { GpuReading } from './wire/GpuReading';
import type { OutsideHold } from './wire/OutsideHold';

/** The cluster's eight GPUs. */
export function clusterGpus(): Gpu[] {
  return ['node1', 'node2'].flatMap((node, n) =>
    Array.from({ length: 4 }, (_, i) => ({
      uuid: `SLURM-${node}-${i}`, index: n * 4 + i, name: `${node} · H200`, memory_total: 0,
      server: 'cluster', simulated: false, node,
    })),
  );
}

/** Slurm's own jobs on node2 (one running, one pending) and an admin's reservation of it, around `now`. */
export function clusterHolds(now: number): OutsideHold[] {
  const t = floorTo(now, 3600);
  const iso = (ms: number) => new Date(ms).toISOString();
  const node2 = [0, 1, 2, 3].map((i) => `SLURM-node2-${i}`);
  return [
    { gpus: ['SLURM-node2-2', 'SLURM-node2-3'], start: iso(t - 3 * HOUR), end: iso(t + 5 * HOUR), owner: 'chen', title: 'Slurm job 4127: llama-sft' },
    { gpus: ['SLURM-node2-3'], start: iso(t + 2 * HOUR), end: iso(t + 14 * HOUR), owner: 'dara', title: 'Slurm job 4133: sweep (pending)' },
    { gpus: node2, start: iso(t + 30 * HOUR), end: iso(t + 34 * HOUR), owner: 'root', title: 'Slurm reservation firmware' },
  ];
}

/**
 * A lane's reading as the Slurm agent sends it: node1 runs a gpubook agent that writes its
 * readings (live figures, an H200's memory), node2 does not (only whether Slurm has given
 * the GPU to a job).
 */
export function slurmLane(live: GpuReading, outside: OutsideHold[], now: number): GpuReading {
  if (live.uuid.startsWith('SLURM-node1-')) return { ...live, memory_total: 141 * 2 ** 30, allocated: undefined };
  const running = outside.some((o) => o.gpus.includes(live.uuid) && Date.parse(o.start) <= now && now < Date.parse(o.end));
  return { ...live, memory_used: 0, memory_total: 0, util_gpu: 0, util_mem: 0, temperature_c: 0, power_mw: 0, processes: [], allocated: running };
}
