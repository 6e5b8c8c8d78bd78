import { describe, expect, it } from 'vitest';
import { shapeSeries, verdict } from '../usage-chart';
import { MockBackend } from '../mock';
import { makeApi } from '../api';
import type { UsageSeriesResponse } from '../wire/UsageSeriesResponse';
import type { SeriesPoint } from '../wire/SeriesPoint';

const T0 = Date.parse('2026-03-02T08:00:00Z');
const MIN = 60_000;
const GIB = 2 ** 30;

function point(minute: number, util: number, memory: number): SeriesPoint {
  return { at: new Date(T0 + minute * MIN).toISOString(), readings: 60, util_mean: util, util_max: Math.min(100, Math.max(0, util + 5)), memory_mean: memory, memory_max: memory };
}

/** A one-hour slot on GPU 3 (80 GiB) with `points`. */
function series(points: SeriesPoint[]): UsageSeriesResponse {
  return {
    id: 7, server: 'lab1', start: new Date(T0).toISOString(), end: new Date(T0 + 60 * MIN).toISOString(), bucket_secs: 60,
    gpus: [{ uuid: 'GPU-3', index: 3, memory_total: 80 * GIB, points }],
  };
}

describe('a booking\'s series is shaped for its chart', () => {
  it('places each point at the middle of its bucket over the whole slot', () => {
    const [c] = shapeSeries(series([point(0, 100, 40 * GIB), point(1, 50, 80 * GIB)]), { width: 600, height: 100 });
    expect(c.label).toBe('GPU 3');
    // Minute 0's middle is 30 s of 3600 s: x = 5; 100 % is the top, 50 % the middle.
    expect(c.util).toBe('M5,0 L15,50');
    expect(c.memory).toBe('M5,50 L15,0');
    expect(c.utilMax).toBe('M5,0 L15,45');
    expect(c.points).toEqual([[5, 100, 40 * GIB], [15, 50, 80 * GIB]]);
    expect([c.meanUtil, c.peakUtil, c.peakMemory, c.memoryScale, c.readings]).toEqual([75, 100, 80 * GIB, 80 * GIB, 120]);
  });

  it('breaks the line where buckets are missing (the agent was down)', () => {
    const [c] = shapeSeries(series([point(0, 10, 0), point(1, 10, 0), point(5, 10, 0)]), { width: 600, height: 100 });
    expect(c.util).toBe('M5,90 L15,90 M55,90 h0');
  });

  it('says whether the booking was used', () => {
    const box = { width: 100, height: 10 };
    expect(verdict(shapeSeries(series([]), box))).toBe('no_readings');
    expect(verdict(shapeSeries(series([{ ...point(0, 0, 8 * GIB), util_max: 0 }]), box))).toBe('unused');
    expect(verdict(shapeSeries(series([point(0, 4, GIB), point(1, 6, GIB)]), box))).toBe('light');
    expect(verdict(shapeSeries(series([point(0, 60, GIB)]), box))).toBe('used');
  });

  it('scales memory to the readings where the GPU\'s total is unknown, and keeps values in the box', () => {
    const s = series([point(0, 140, 3 * GIB), point(1, -5, 6 * GIB)]);
    s.gpus[0] = { ...s.gpus[0], index: null, memory_total: 0 };
    const [c] = shapeSeries(s, { width: 600, height: 100 });
    expect(c.label).toBe('GPU-3');
    expect(c.memoryScale).toBe(6 * GIB);
    expect(c.util).toBe('M5,0 L15,100');
    expect(c.memory).toBe('M5,50 L15,0');
  });
});

describe('the mock answers like the agent', () => {
  it('refuses a user someone else\'s booking and gives an admin its series so far', async () => {
    const api = makeApi(new MockBackend());
    const now = Date.now();
    const [from, to] = [new Date(now - 86_400_000).toISOString(), new Date(now + 86_400_000).toISOString()];
    const other = (await api.bookings('lab1', from, to)).find((x) => x.owner !== 'you');
    expect(other).toBeDefined();
    await expect(api.usageSeries('lab1', other!.id)).rejects.toMatchObject({ kind: 'not_allowed' });
    // On "This computer" the person is an admin.
    const running = (await api.bookings('local', from, to)).find((x) => x.state === 'active');
    expect(running).toBeDefined();
    const s = await api.usageSeries('local', running!.id);
    expect(s.gpus.map((g) => g.uuid)).toEqual(running!.gpus);
    expect(s.gpus[0].points.length).toBeGreaterThan(0);
    expect(s.gpus[0].points.length).toBeLessThanOrEqual(720);
  });
});
