import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  cellsToSpan,
  cwdProblem,
  lanesCrossed,
  selectionOf,
  snapInterval,
  toAsapRequest,
  toBookRequest,
  type Lane,
} from '../selection';
import { fromLocalInput } from '../time';

const lanes: Lane[] = [
  { server: 'local', uuid: 'SIM-0', index: 0 },
  { server: 'local', uuid: 'SIM-1', index: 1 },
  { server: 'lab1', uuid: 'GPU-a', index: 0 },
  { server: 'lab1', uuid: 'GPU-b', index: 1 },
  { server: 'lab1', uuid: 'GPU-c', index: 2 },
  { server: 'lab1', uuid: 'GPU-d', index: 3 },
];
const H = 3_600_000;
const form = { title: '  yolov8 defects ', command: '', cwd: '', endSignal: '', keepSlot: false };

let savedTz: string | undefined;
beforeEach(() => {
  savedTz = process.env.TZ;
});
afterEach(() => {
  process.env.TZ = savedTz;
});

describe('the rectangle across GPUs', () => {
  it('takes every lane between the first and the current one', () => {
    expect(lanesCrossed(lanes, 2, 4).map((l) => l.uuid)).toEqual(['GPU-a', 'GPU-b', 'GPU-c']);
  });
  it('works dragging upwards, and lists the GPUs in index order', () => {
    expect(lanesCrossed(lanes, 5, 3).map((l) => l.index)).toEqual([1, 2, 3]);
  });
  it('stays on the first lane server when the pointer crosses into another', () => {
    expect(lanesCrossed(lanes, 0, 4).map((l) => l.uuid)).toEqual(['SIM-0', 'SIM-1']);
    expect(lanesCrossed(lanes, 1, 4).map((l) => l.uuid)).toEqual(['SIM-1']);
    expect(lanesCrossed(lanes, 2, 0).map((l) => l.uuid)).toEqual(['GPU-a']);
  });
  it('clamps a pointer past the last lane', () => {
    expect(lanesCrossed(lanes, 4, 99).map((l) => l.uuid)).toEqual(['GPU-c', 'GPU-d']);
  });
  it('is empty for a lane that does not exist', () => {
    expect(lanesCrossed(lanes, -1, 2)).toEqual([]);
    expect(lanesCrossed([], 0, 0)).toEqual([]);
  });
});

describe('snapping to the policy granularity', () => {
  const t0 = Date.UTC(2026, 10, 26, 14, 0);
  it('rounds the earlier end down and the later end up', () => {
    const s = snapInterval(t0 + 7 * 60_000, t0 + 4 * H - 5 * 60_000, 900);
    expect(s).toEqual({ start: t0, end: t0 + 4 * H });
  });
  it('accepts the two instants in either order', () => {
    expect(snapInterval(t0 + 4 * H, t0, 900)).toEqual({ start: t0, end: t0 + 4 * H });
  });
  it('is at least one step long', () => {
    expect(snapInterval(t0, t0, 1800)).toEqual({ start: t0, end: t0 + 1800_000 });
  });
  it('uses the epoch grid like the agent (hour granularity)', () => {
    const s = snapInterval(t0 + 10 * 60_000, t0 + 70 * 60_000, 3600);
    expect(s).toEqual({ start: t0, end: t0 + 2 * H });
  });
  it('counts the cell under the pointer as part of the drag, both ways', () => {
    expect(cellsToSpan(t0, t0 + 3 * 900_000, 900)).toEqual({ anchor: t0, current: t0 + 4 * 900_000 });
    expect(cellsToSpan(t0, t0 - 900_000, 900)).toEqual({ anchor: t0 + 900_000, current: t0 - 900_000 });
  });
});

describe('a drag selection to a booking request', () => {
  it('drags over two GPUs from 14:00 to 18:00 (UTC zone)', () => {
    process.env.TZ = 'UTC';
    const a = fromLocalInput('2026-11-26T14:00')!;
    const b = fromLocalInput('2026-11-26T17:45')!; // the last 15-minute cell under the pointer
    const span = cellsToSpan(a, b, 900);
    const sel = selectionOf(lanes, { fromLane: 2, toLane: 3, ...span }, 900)!;
    expect(sel.server).toBe('lab1');
    const req = toBookRequest(sel, form);
    expect(req).toEqual({
      gpus: { kind: 'named', gpus: ['GPU-a', 'GPU-b'] },
      when: { kind: 'at', start: '2026-11-26T14:00:00Z', end: '2026-11-26T18:00:00Z' },
      title: 'yolov8 defects',
      job: null,
    });
  });

  it('books that many GPUs of the node on a Slurm server, where Slurm picks the devices', () => {
    process.env.TZ = 'UTC';
    const a = fromLocalInput('2026-11-26T14:00')!;
    const sel = selectionOf(lanes, { fromLane: 2, toLane: 4, anchor: a, current: a + 3_600_000 }, 900)!;
    expect(toBookRequest(sel, form, true).gpus).toEqual({ kind: 'count', count: 3, min_memory: null });
    const onNode = { ...sel, lanes: sel.lanes.map((l) => ({ ...l, node: 'gpunode2' })) };
    expect(toBookRequest(onNode, form, true).gpus).toEqual({ kind: 'on_node', node: 'gpunode2', count: 3 });
    expect(toBookRequest(sel, form, false).gpus).toEqual({ kind: 'named', gpus: ['GPU-a', 'GPU-b', 'GPU-c'] });
  });

  it('sends local times as UTC in a zone east of UTC (Asia/Kolkata, +05:30)', () => {
    process.env.TZ = 'Asia/Kolkata';
    const a = fromLocalInput('2026-11-26T14:00')!;
    const b = fromLocalInput('2026-11-26T18:00')!;
    const sel = selectionOf(lanes, { fromLane: 0, toLane: 1, anchor: a, current: b }, 900)!;
    const req = toBookRequest(sel, form);
    expect(req.when).toEqual({ kind: 'at', start: '2026-11-26T08:30:00Z', end: '2026-11-26T12:30:00Z' });
    expect(req.gpus).toEqual({ kind: 'named', gpus: ['SIM-0', 'SIM-1'] });
  });

  it('sends local times as UTC in a zone west of UTC (America/Los_Angeles, -08:00)', () => {
    process.env.TZ = 'America/Los_Angeles';
    const a = fromLocalInput('2026-11-26T22:00')!;
    const b = fromLocalInput('2026-11-27T02:00')!;
    const sel = selectionOf(lanes, { fromLane: 3, toLane: 3, anchor: a, current: b }, 900)!;
    expect(toBookRequest(sel, form).when).toEqual({
      kind: 'at',
      start: '2026-11-27T06:00:00Z',
      end: '2026-11-27T10:00:00Z',
    });
  });

  it('keeps real durations across the spring-forward DST change (Europe/Berlin, 29 March 2026)', () => {
    process.env.TZ = 'Europe/Berlin';
    // 01:00 CET to 04:00 CEST on the wall clock is two hours: 02:00–03:00 does not exist.
    const a = fromLocalInput('2026-03-29T01:00')!;
    const b = fromLocalInput('2026-03-29T04:00')!;
    expect(b - a).toBe(2 * H);
    const sel = selectionOf(lanes, { fromLane: 2, toLane: 5, anchor: a, current: b }, 1800)!;
    const req = toBookRequest(sel, form);
    expect(req.when).toEqual({ kind: 'at', start: '2026-03-29T00:00:00Z', end: '2026-03-29T02:00:00Z' });
    expect(req.gpus).toEqual({ kind: 'named', gpus: ['GPU-a', 'GPU-b', 'GPU-c', 'GPU-d'] });
  });

  it('keeps real durations across the fall-back DST change (America/New_York, 1 November 2026)', () => {
    process.env.TZ = 'America/New_York';
    const a = fromLocalInput('2026-11-01T00:00')!;
    const b = fromLocalInput('2026-11-01T03:00')!;
    expect(b - a).toBe(4 * H); // 01:00–02:00 happens twice
    const sel = selectionOf(lanes, { fromLane: 0, toLane: 0, anchor: a, current: b }, 900)!;
    expect(toBookRequest(sel, form).when).toEqual({
      kind: 'at',
      start: '2026-11-01T04:00:00Z',
      end: '2026-11-01T08:00:00Z',
    });
  });

  it('carries the job when a command is given', () => {
    process.env.TZ = 'UTC';
    const sel = { server: 'lab1', lanes: [lanes[2]], start: Date.UTC(2026, 0, 1, 9), end: Date.UTC(2026, 0, 1, 10) };
    const req = toBookRequest(sel, { title: 't', command: ' python train.py ', cwd: '/data/x', endSignal: 'SIGUSR1', keepSlot: true });
    expect(req.job).toEqual({
      command: 'python train.py',
      cwd: '/data/x',
      env: {},
      end_signal: 'SIGUSR1',
      grace_secs: null,
      keep_slot: true,
      stage: {},
      save: [],
      save_to: null,
      s3: { profile: null, env_file: null },
    });
  });
});

describe('as soon as possible', () => {
  it('asks for a count, memory in bytes and a duration in seconds', () => {
    expect(toAsapRequest(2, 40, 1.5, ' sweep ')).toEqual({
      gpus: { kind: 'count', count: 2, min_memory: 40 * 2 ** 30 },
      when: { kind: 'asap', duration_secs: 5400 },
      title: 'sweep',
      job: null,
    });
    expect(toAsapRequest(1, null, 2, 'x').gpus).toEqual({ kind: 'count', count: 1, min_memory: null });
  });
});

describe('the working directory of a job', () => {
  it('is an absolute path on the server, or empty for the home', () => {
    expect(cwdProblem('')).toBeNull();
    expect(cwdProblem('  ')).toBeNull();
    expect(cwdProblem('/data/run7')).toBeNull();
    for (const rel of ['runs/7', './runs', '~/runs', '~']) {
      expect(cwdProblem(rel)).toContain('absolute path on the server');
    }
  });
});
