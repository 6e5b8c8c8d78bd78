import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dayMarks, hourMarks, labelStep, pageAnchor, rangeTitle, renderWindow, rowIndexAt, rowsIn, rowsOf, timeAt, viewRange, xOf, GPU_ROW, SERVER_ROW } from '../timeline';

let savedTz: string | undefined;
beforeEach(() => {
  savedTz = process.env.TZ;
});
afterEach(() => {
  process.env.TZ = savedTz;
});

const H = 3_600_000;

describe('the span of time a timeline view shows', () => {
  it('starts the 72 hours at the local midnight and the week on its Monday, in the zone shown', () => {
    process.env.TZ = 'Europe/Berlin';
    const t = Date.parse('2026-12-04T03:30:00Z'); // Friday 04:30 in Berlin
    expect(viewRange('next72', t)).toEqual({ start: Date.parse('2026-12-03T23:00:00Z'), end: Date.parse('2026-12-07T23:00:00Z') });
    expect(viewRange('timeline', t).start).toBe(Date.parse('2026-11-29T23:00:00Z')); // Monday Nov 30
    process.env.TZ = 'America/Los_Angeles';
    expect(viewRange('next72', t).start).toBe(Date.parse('2026-12-03T08:00:00Z')); // Thursday Dec 3 there
  });

  it('counts calendar days across a DST change: 95 real hours for the 4 days holding one', () => {
    process.env.TZ = 'Europe/Berlin';
    const r = viewRange('next72', Date.parse('2027-03-27T12:00:00Z'));
    expect((r.end - r.start) / H).toBe(95);
    const w = viewRange('timeline', Date.parse('2026-10-25T12:00:00Z'));
    expect((w.end - w.start) / H).toBe(169);
    expect(rangeTitle(r)).toMatch(/^March 27 – 30/);
  });

  it('pages by whole views', () => {
    process.env.TZ = 'Europe/Berlin';
    const a = Date.parse('2027-03-26T23:00:00Z'); // Saturday 00:00
    expect(new Date(pageAnchor('next72', a, 1)).toISOString()).toBe('2027-03-30T22:00:00.000Z');
    expect(new Date(pageAnchor('timeline', a, -1)).toISOString()).toBe('2027-03-19T23:00:00.000Z');
  });
});

describe('where instants fall', () => {
  it('is linear in real time, so a booking is as wide as it is long, DST or not', () => {
    const s = Date.parse('2027-03-28T00:00:00Z');
    expect(xOf(s, 60, s + 4 * H)).toBe(240);
    expect(timeAt(s, 60, 240)).toBe(s + 4 * H);
    expect(timeAt(s, 8, xOf(s, 8, s + 17 * 60_000))).toBe(s + 17 * 60_000);
  });

  it('marks the local hours: none for the hour DST skips, two for the one it repeats', () => {
    process.env.TZ = 'Europe/Berlin';
    const spring = hourMarks(Date.parse('2027-03-27T23:00:00Z'), Date.parse('2027-03-28T04:00:00Z'), 1);
    expect(spring.map((m) => m.label)).toEqual(['00', '01', '03', '04', '05']);
    expect(spring[2].t - spring[1].t).toBe(H);
    const autumn = hourMarks(Date.parse('2026-10-24T22:00:00Z'), Date.parse('2026-10-25T03:00:00Z'), 1);
    expect(autumn.map((m) => m.label)).toEqual(['00', '01', '02', '02', '03']);
  });

  it('marks every step hours from midnight, also in a zone off the hour', () => {
    process.env.TZ = 'Asia/Kathmandu'; // +05:45
    const day = Date.parse('2026-12-03T18:15:00Z'); // local midnight
    const m = hourMarks(day, day + 24 * H, 6);
    expect(m.map((x) => x.label)).toEqual(['00', '06', '12', '18']);
    expect(m[0].t).toBe(day);
  });

  it('gives each local day its real width and names today', () => {
    process.env.TZ = 'Europe/Berlin';
    const now = Date.parse('2027-03-28T10:00:00Z');
    const d = dayMarks(Date.parse('2027-03-27T12:00:00Z'), Date.parse('2027-03-29T12:00:00Z'), now);
    expect(d.map((x) => x.label)).toEqual(['Sat, Mar 27', 'Sun, Mar 28', 'Mon, Mar 29']);
    expect(d.map((x) => (x.end - x.start) / H)).toEqual([24, 23, 24]);
    expect(d.map((x) => x.today)).toEqual([false, true, false]);
  });

  it('labels hours only as closely as they fit', () => {
    expect(labelStep(60)).toBe(1);
    expect(labelStep(16)).toBe(3);
    expect(labelStep(4.7)).toBe(12);
    expect(labelStep(1)).toBe(24);
  });
});

describe('rows and the window rendered', () => {
  const servers = [{ id: 'a' }, { id: 'b' }, { id: 'gone' }];
  const gpus = {
    a: [{ uuid: 'a0', index: 0 }, { uuid: 'a1', index: 1 }],
    b: [{ uuid: 'b0', index: 0 }],
  };

  it('puts each server\'s GPUs under its heading and numbers lanes across servers', () => {
    const { rows, height } = rowsOf(servers, gpus, new Set());
    expect(rows.map((r) => r.key)).toEqual(['server:a', 'a/a0', 'a/a1', 'server:b', 'b/b0']);
    expect(rows.map((r) => (r.kind === 'gpu' ? r.lane : -1))).toEqual([-1, 0, 1, -1, 2]);
    expect(height).toBe(2 * SERVER_ROW + 3 * GPU_ROW);
  });

  it('hides a collapsed server\'s GPUs but keeps the lane numbers of the rest', () => {
    const { rows } = rowsOf(servers, gpus, new Set(['a']));
    expect(rows.map((r) => r.key)).toEqual(['server:a', 'server:b', 'b/b0']);
    const b0 = rows[2];
    expect(b0.kind === 'gpu' && b0.lane).toBe(2);
    expect(b0.top).toBe(2 * SERVER_ROW);
  });

  it('finds the row at a height and the rows in a band', () => {
    const { rows, height } = rowsOf(servers, gpus, new Set());
    expect(rowIndexAt(rows, 0)).toBe(0);
    expect(rowIndexAt(rows, SERVER_ROW)).toBe(1);
    expect(rowIndexAt(rows, SERVER_ROW + GPU_ROW - 1)).toBe(1);
    expect(rowIndexAt(rows, height)).toBe(-1);
    expect(rowsIn(rows, SERVER_ROW + 5, SERVER_ROW + GPU_ROW + 5)).toEqual([1, 2]);
    expect(rowsIn(rows, -50, 10_000)).toEqual([0, 4]);
    expect(rowsIn([], 0, 100)).toEqual([0, -1]);
  });

  it('renders a viewport and as much again either side, in steps that small scrolls keep', () => {
    expect(renderWindow(0, 800, 10_000)).toEqual({ from: 0, to: 1600 });
    const a = renderWindow(5000, 800, 100_000);
    expect(a.from).toBeLessThanOrEqual(4200);
    expect(a.to).toBeGreaterThanOrEqual(6600);
    expect(renderWindow(5100, 800, 100_000)).toEqual(a);
    expect(renderWindow(99_500, 800, 100_000).to).toBe(100_000);
  });
});
