import { describe, expect, it } from 'vitest';
import { checkSpan, dateOf, defaultRange, gpuSeries, hours, rangeOfDates, scaleTop, share, userSeries, weekStart, weeks } from '../report';
import type { ReportResponse } from '../wire/ReportResponse';
import type { UserLine } from '../wire/UserLine';

const DAY = 86_400_000;

function user(name: string, booked: number, used: number): UserLine {
  return { user: name, bookings: 1, booked_gpu_secs: booked, used_gpu_secs: used, idle_held_gpu_secs: 0, released_early_gpu_secs: 0, cancelled_late: 0, never_used: 0, intruder_events: 0, intrusions_caused: 0 };
}

function week(start: string, end: string, users: UserLine[], gpus: [string, number, number, number, number][] = []): ReportResponse {
  return {
    server: 'lab1', everyone: true,
    report: {
      window: { start, end }, late_cancel_hours: 24, users,
      gpus: gpus.map(([uuid, index, booked, used, maint]) => ({ uuid, index, name: 'H200', booked_secs: booked, used_secs: used, maintenance_secs: maint })),
    },
  };
}

describe('the report window', () => {
  it('starts on a Monday and covers four whole weeks, this one included', () => {
    const now = new Date(2025, 2, 13, 15, 30).getTime(); // a Thursday
    const r = defaultRange(now);
    expect(new Date(r.start).getDay()).toBe(1);
    expect(new Date(r.end).getDay()).toBe(1);
    expect(r.start).toBeLessThan(now);
    expect(r.end).toBeGreaterThan(now);
    expect(weeks(r)).toHaveLength(4);
    expect(dateOf(r.start)).toBe('2025-02-17');
    expect(dateOf(r.end)).toBe('2025-03-17');
  });

  it('is cut at each Monday, the ends partial, with no gap and no overlap', () => {
    const span = rangeOfDates('2025-03-05', '2025-03-20')!; // Wednesday to Thursday
    const w = weeks(span);
    expect(w.map((x) => dateOf(x.start))).toEqual(['2025-03-05', '2025-03-10', '2025-03-17']);
    expect(w[0].start).toBe(span.start);
    expect(w[w.length - 1].end).toBe(span.end);
    for (let i = 1; i < w.length; i++) expect(w[i].start).toBe(w[i - 1].end);
    expect(weekStart(w[1].start)).toBe(w[1].start);
  });

  it('refuses a window that ends before it starts or is longer than the agent takes', () => {
    expect(rangeOfDates('2025-03-05', '2025-03-04')).toBeNull();
    expect(rangeOfDates('nonsense', '2025-03-04')).toBeNull();
    expect(checkSpan({ start: 0, end: 367 * DAY })).toMatch(/366 days/);
    expect(checkSpan({ start: 0, end: 7 * DAY })).toBeNull();
  });
});

describe('the series drawn', () => {
  const weekly = [
    week('2025-03-03T00:00:00Z', '2025-03-10T00:00:00Z', [user('bob', 7200, 3600), user('alice', 36000, 30000)], [['GPU-b', 1, 7200, 3600, 0], ['GPU-a', 0, 36000, 30000, 3600]]),
    week('2025-03-10T00:00:00Z', '2025-03-17T00:00:00Z', [user('alice', 3600, 0)], [['GPU-a', 0, 3600, 0, 0], ['GPU-b', 1, 0, 0, 0]]),
  ];

  it('has one series per user, by name, with 0 in a week the user booked nothing', () => {
    const s = userSeries(weekly);
    expect(s.map((x) => x.key)).toEqual(['alice', 'bob']);
    expect(s[1].points.map((p) => [p.booked, p.used])).toEqual([[7200, 3600], [0, 0]]);
    expect(s[0].booked).toBe(39600);
    expect(s[0].used).toBe(30000);
    expect(s[0].points[1].start).toBe(Date.parse('2025-03-10T00:00:00Z'));
  });

  it('has one series per GPU in index order, with its maintenance', () => {
    const s = gpuSeries(weekly);
    expect(s.map((x) => x.key)).toEqual(['GPU-a', 'GPU-b']);
    expect([s[0].label, s[0].sub]).toEqual(['GPU 0', 'H200']);
    expect(s[0].points.map((p) => p.maintenance)).toEqual([3600, 0]);
  });

  it('shares one round scale at or above every bar', () => {
    expect(scaleTop(userSeries(weekly))).toBe(10); // alice's 10 h
    expect(scaleTop([])).toBe(1);
    expect(scaleTop(userSeries([week('a', 'b', [user('x', 3 * 3600 + 1, 0)])]))).toBe(4);
    expect(share(1, 4)).toBe('25 %');
    expect(share(0, 0)).toBe('–');
    expect(share(30, 20_000)).toBe('<1 %');
    expect([hours(0), hours(30), hours(5400)]).toEqual(['0.0', '<0.1', '1.5']);
  });
});
