// The report page's data shaping, pure: the window the person chose cut into weeks, the
// agent's reports (one per week, and one over the whole window for the table) turned into one
// series per user and per GPU, and the scale the charts share. Figures stay in GPU-seconds as
// the agent gives them; hours are for the eye only.
import type { ReportResponse } from './wire/ReportResponse';

const DAY = 86_400_000;

/** A window `[start, end)` in epoch milliseconds. */
export type Span = { start: number; end: number };

/** One bar pair of a chart: a week's booked against used (and, for a GPU, maintenance). */
export type Point = Span & { booked: number; used: number; maintenance: number };

/** One user's or one GPU's figures over the weeks. */
export type Series = { key: string; label: string; sub: string; points: Point[]; booked: number; used: number };

/** Local midnight at or before `t`. */
function midnight(t: number): number {
  const d = new Date(t);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** `t` (a local midnight) moved by `days` calendar days, across daylight-saving changes. */
function addDays(t: number, days: number): number {
  const d = new Date(t);
  d.setDate(d.getDate() + days);
  return d.getTime();
}

/** The Monday midnight (local) of `t`'s week. */
export function weekStart(t: number): number {
  const m = midnight(t);
  const dow = (new Date(m).getDay() + 6) % 7; // Monday 0 … Sunday 6
  return addDays(m, -dow);
}

/** The window shown first: the last `weeks` weeks, this one included (Monday to Monday). */
export function defaultRange(now: number, weeks = 4): Span {
  const end = addDays(weekStart(now), 7);
  return { start: addDays(end, -7 * weeks), end };
}

/** The window from the first day to the last day (both local dates, "YYYY-MM-DD") included. */
export function rangeOfDates(first: string, last: string): Span | null {
  const a = parseDate(first);
  const b = parseDate(last);
  if (a === null || b === null) return null;
  const end = addDays(b, 1);
  return end > a ? { start: a, end } : null;
}

/** "YYYY-MM-DD" at local midnight, or null. */
function parseDate(s: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s.trim());
  if (!m) return null;
  const t = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).getTime();
  return Number.isNaN(t) ? null : t;
}

/** `t` as the local date "YYYY-MM-DD" (what a date input holds). */
export function dateOf(t: number): string {
  const d = new Date(t);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** The longest window the agent reports on, in days (gpubook_core::report::MAX_REPORT_DAYS). */
export const MAX_DAYS = 366;

/** `span` cut at each Monday midnight: the first and last weeks may be partial. */
export function weeks(span: Span): Span[] {
  const out: Span[] = [];
  let start = span.start;
  while (start < span.end) {
    const next = Math.min(addDays(weekStart(start), 7), span.end);
    out.push({ start, end: next });
    start = next;
  }
  return out;
}

/** Whether the agent takes `span` (after its start, at most MAX_DAYS days). */
export function checkSpan(span: Span): string | null {
  if (span.end <= span.start) return 'The last day must not be before the first.';
  if (span.end - span.start > MAX_DAYS * DAY) return `A report covers at most ${MAX_DAYS} days: choose a shorter window.`;
  return null;
}

/** One series per user over the weeks, by name; a user missing from a week has 0 there. */
export function userSeries(weekly: ReportResponse[]): Series[] {
  const names = new Set(weekly.flatMap((r) => r.report.users.map((u) => u.user)));
  return [...names].sort().map((user) =>
    build(user, user, '', weekly, (r) => {
      const l = r.report.users.find((u) => u.user === user);
      return [l?.booked_gpu_secs ?? 0, l?.used_gpu_secs ?? 0, 0];
    }),
  );
}

/** One series per GPU over the weeks, in index order. */
export function gpuSeries(weekly: ReportResponse[]): Series[] {
  const gpus = new Map<string, { index: number; name: string }>();
  for (const r of weekly) for (const g of r.report.gpus) gpus.set(g.uuid, { index: g.index, name: g.name });
  return [...gpus.entries()]
    .sort((a, b) => a[1].index - b[1].index)
    .map(([uuid, g]) =>
      build(uuid, `GPU ${g.index}`, g.name, weekly, (r) => {
        const l = r.report.gpus.find((x) => x.uuid === uuid);
        return [l?.booked_secs ?? 0, l?.used_secs ?? 0, l?.maintenance_secs ?? 0];
      }),
    );
}

function build(key: string, label: string, sub: string, weekly: ReportResponse[], pick: (r: ReportResponse) => [number, number, number]): Series {
  const points = weekly.map((r) => {
    const [booked, used, maintenance] = pick(r);
    return { start: Date.parse(r.report.window.start), end: Date.parse(r.report.window.end), booked, used, maintenance };
  });
  return { key, label, sub, points, booked: sum(points.map((p) => p.booked)), used: sum(points.map((p) => p.used)) };
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** The top of the charts' shared scale, in hours: a round number at or above every bar. */
export function scaleTop(series: Series[]): number {
  const most = Math.max(0, ...series.flatMap((s) => s.points.map((p) => Math.max(p.booked, p.used, p.maintenance)))) / 3600;
  if (most <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(most));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * step >= most) return m * step;
  return 10 * step;
}

/** GPU-seconds as hours with one decimal ("12.5"); "<0.1" for a little that is not none. */
export function hours(secs: number): string {
  return secs > 0 && secs < 180 ? '<0.1' : (secs / 3600).toFixed(1);
}

/** Used as a share of booked ("63 %", "<1 %"), or "–" when nothing was booked. */
export function share(used: number, booked: number): string {
  if (booked <= 0) return '–';
  const p = Math.round((100 * used) / booked);
  return p === 0 && used > 0 ? '<1 %' : `${p} %`;
}
