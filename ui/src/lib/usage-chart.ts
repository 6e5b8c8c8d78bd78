// A booking's GPU series (the agent's `usage_series` answer) shaped for its panel's chart: per
// GPU, SVG paths of the mean utilisation, the peak utilisation and the memory in use over the
// whole slot, with a verdict in words. Pure: the component (UsageChart.svelte) only draws.
//
// x runs from the slot's start to its end (the whole slot, so an unused tail shows as empty);
// y from 0 % (bottom) to 100 % utilisation, or to the GPU's total memory. A point is drawn at
// the middle of its bucket; a missing bucket (the agent was down) breaks the line.
import type { GpuSeries } from './wire/GpuSeries';
import type { UsageSeriesResponse } from './wire/UsageSeriesResponse';

/** The chart's size in SVG units. */
export type Box = { width: number; height: number };

/** One GPU's chart. */
export type GpuChart = {
  /** "GPU 2", or the UUID where the GPU is gone. */
  label: string;
  /** Mean utilisation per bucket, as a path ('' when nothing was read). */
  util: string;
  /** Peak utilisation per bucket, as a path. */
  utilMax: string;
  /** Mean memory in use per bucket, as a path, scaled to the GPU's memory. */
  memory: string;
  /** Mean utilisation over every reading, percent. */
  meanUtil: number;
  /** Highest utilisation, percent. */
  peakUtil: number;
  /** Most memory in use, bytes. */
  peakMemory: number;
  /** The memory drawn as 100 %, bytes. */
  memoryScale: number;
  /** How many readings. */
  readings: number;
  /** The drawn points, for reading back: [x, mean util %, memory bytes]. */
  points: [number, number, number][];
};

/** Whether a booking was used, from its GPUs' mean utilisation and peak memory. */
export type Verdict = 'no_readings' | 'unused' | 'light' | 'used';

/** Below this mean utilisation (percent) a booking is lightly used. */
export const LIGHT_BELOW = 10;

/** The charts of every GPU of `s`, drawn into `box`. */
export function shapeSeries(s: UsageSeriesResponse, box: Box): GpuChart[] {
  const start = Date.parse(s.start);
  const end = Math.max(Date.parse(s.end), start + 1);
  const bucket = Math.max(s.bucket_secs, 1) * 1000;
  const x = (t: number) => round(((Math.min(Math.max(t, start), end) - start) / (end - start)) * box.width);
  return s.gpus.map((g) => chart(g, box, x, bucket));
}

function chart(g: GpuSeries, box: Box, x: (t: number) => number, bucket: number): GpuChart {
  const top = Math.max(g.memory_total, ...g.points.map((p) => p.memory_max), 1);
  const yUtil = (u: number) => round(box.height - (Math.min(Math.max(u, 0), 100) / 100) * box.height);
  const yMem = (m: number) => round(box.height - (Math.min(m, top) / top) * box.height);
  const mid = (at: string) => x(Date.parse(at) + bucket / 2);
  const readings = g.points.reduce((n, p) => n + p.readings, 0);
  const weighted = g.points.reduce((n, p) => n + p.util_mean * p.readings, 0);
  return {
    label: g.index === null ? g.uuid : `GPU ${g.index}`,
    util: path(g, bucket, (p) => [mid(p.at), yUtil(p.util_mean)]),
    utilMax: path(g, bucket, (p) => [mid(p.at), yUtil(p.util_max)]),
    memory: path(g, bucket, (p) => [mid(p.at), yMem(p.memory_mean)]),
    meanUtil: readings ? round(weighted / readings) : 0,
    peakUtil: Math.max(0, ...g.points.map((p) => p.util_max)),
    peakMemory: Math.max(0, ...g.points.map((p) => p.memory_max)),
    memoryScale: top,
    readings,
    points: g.points.map((p) => [mid(p.at), p.util_mean, p.memory_mean]),
  };
}

/** An SVG path through `g`'s points, broken where a bucket is missing. A point alone between
 * breaks (a short slot, or one reading between two gaps) is a zero-length `h0`, which the
 * chart's round line caps draw as a dot. */
function path(g: GpuSeries, bucket: number, xy: (p: GpuSeries['points'][number]) => [number, number]): string {
  const joined = (a: GpuSeries['points'][number] | undefined, b: GpuSeries['points'][number] | undefined) =>
    !!a && !!b && Date.parse(b.at) - Date.parse(a.at) <= bucket;
  let d = '';
  g.points.forEach((p, i) => {
    const [px, py] = xy(p);
    const [before, after] = [joined(g.points[i - 1], p), joined(p, g.points[i + 1])];
    d += before ? `L${px},${py} ` : `M${px},${py} ${after ? '' : 'h0 '}`;
  });
  return d.trim();
}

/** Whether the booking was used, over all its GPUs. */
export function verdict(charts: GpuChart[]): Verdict {
  const readings = charts.reduce((n, c) => n + c.readings, 0);
  if (!readings) return 'no_readings';
  const mean = charts.reduce((n, c) => n + c.meanUtil * c.readings, 0) / readings;
  const peak = Math.max(...charts.map((c) => c.peakUtil));
  if (peak === 0) return 'unused';
  return mean < LIGHT_BELOW ? 'light' : 'used';
}

/** The verdict in words. */
export const verdictWords: Record<Verdict, string> = {
  no_readings: 'No readings kept yet.',
  unused: 'Not used: its GPUs did no work.',
  light: 'Lightly used: its GPUs were mostly idle.',
  used: 'Used.',
};

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
