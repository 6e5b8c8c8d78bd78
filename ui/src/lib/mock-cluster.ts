// The mock's Slurm cluster: two nodes of four GPUs, as the agent names them (`SLURM-<node>-<i>`,
// "<node> · H200", no memory reported), and what Slurm holds there outside gpubook.

import { floorTo, HOUR } from './time';
import type { Gpu } from './wire/Gpu';
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

/** Slurm's own jobs (one running, one pending) and an admin's reservation of node2, around `now`. */
export function clusterHolds(now: number): OutsideHold[] {
  const t = floorTo(now, 3600);
  const iso = (ms: number) => new Date(ms).toISOString();
  const node2 = [0, 1, 2, 3].map((i) => `SLURM-node2-${i}`);
  return [
    { gpus: ['SLURM-node1-2', 'SLURM-node1-3'], start: iso(t - 3 * HOUR), end: iso(t + 5 * HOUR), owner: 'chen', title: 'Slurm job 4127: llama-sft' },
    { gpus: ['SLURM-node2-3'], start: iso(t + 2 * HOUR), end: iso(t + 14 * HOUR), owner: 'dara', title: 'Slurm job 4133: sweep (pending)' },
    { gpus: node2, start: iso(t + 30 * HOUR), end: iso(t + 34 * HOUR), owner: 'root', title: 'Slurm reservation firmware' },
  ];
}
