// The geometry of the app's own timeline (TimelineView.svelte): which span of time a view
// shows, where an instant falls (x is linear in real time, so a day with a DST change is 23
// or 25 hours wide and a booking's width is always its real length), the hour and day marks
// in the person's zone, the rows (servers and their GPUs) and which of them, and which span
// of time, are in view. Pure: the component gives it numbers, it gives numbers back.

import { HOUR } from './time';

/** A span of time, half-open [start, end), epoch ms. */
export type Range = { start: number; end: number };

/** Local midnight of the day `days` after the one holding `t` (DST-safe: calendar days). */
export function localDay(t: number, days = 0): number {
  const d = new Date(t);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + days).getTime();
}

/** How many calendar days a timeline view spans: the 72-hour view 4 (so the next 72 hours
 * from any time of today fit), the timeline week 7. */
export function viewDays(view: string): number {
  return view === 'timeline' ? 7 : 4;
}

/**
 * The range view `view` shows around instant `anchor`: the 72-hour view from the anchor's
 * local midnight, the timeline week from the Monday of its week; whole local days.
 */
export function viewRange(view: string, anchor: number): Range {
  let start = localDay(anchor);
  if (view === 'timeline') start = localDay(start, -((new Date(start).getDay() + 6) % 7));
  return { start, end: localDay(start, viewDays(view)) };
}

/** The anchor one page earlier (`dir` -1) or later (+1): a whole view's days. */
export function pageAnchor(view: string, anchor: number, dir: number): number {
  return localDay(anchor, dir * viewDays(view));
}

/** x (px from the range's start) of instant `t` at `pxPerHour`. */
export function xOf(start: number, pxPerHour: number, t: number): number {
  return ((t - start) / HOUR) * pxPerHour;
}

/** The instant at x (px from the range's start). */
export function timeAt(start: number, pxPerHour: number, x: number): number {
  return start + (x / pxPerHour) * HOUR;
}

/** Hours between the labelled marks at `pxPerHour`: the smallest step of 1, 2, 3, 6, 12 or
 * 24 h whose marks are at least `minPx` apart. */
export function labelStep(pxPerHour: number, minPx = 34): number {
  for (const h of [1, 2, 3, 6, 12]) if (h * pxPerHour >= minPx) return h;
  return 24;
}

/** An hour mark: where, and the local hour it stands for ("03"). */
export type HourMark = { t: number; hour: number; label: string };

/**
 * The local whole hours in [from, to) that are multiples of `step` (a day's midnight always
 * is): walked in real time from a local midnight, so an hour skipped by DST has no mark and a
 * repeated one has two.
 */
export function hourMarks(from: number, to: number, step: number): HourMark[] {
  const out: HourMark[] = [];
  const q = 15 * 60_000;
  // Local midnight is on the quarter-hour grid in every zone in use.
  let t = localDay(from);
  t += Math.max(0, Math.floor((from - t) / q)) * q;
  for (; t < to; t += q) {
    if (t < from) continue;
    const d = new Date(t);
    if (d.getMinutes() !== 0 || d.getHours() % step !== 0) continue;
    out.push({ t, hour: d.getHours(), label: String(d.getHours()).padStart(2, '0') });
  }
  return out;
}

/** A local day overlapping a span: its bounds and how it reads ("Sun, Mar 28"). */
export type DayMark = { start: number; end: number; label: string; today: boolean };

const WD = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MON = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The local days overlapping [from, to), each with its real bounds (23, 24 or 25 hours). */
export function dayMarks(from: number, to: number, now: number): DayMark[] {
  const out: DayMark[] = [];
  const today = localDay(now);
  for (let s = localDay(from); s < to; ) {
    const e = localDay(s, 1);
    const d = new Date(s);
    out.push({ start: s, end: e, label: `${WD[d.getDay()]}, ${MON[d.getMonth()]} ${d.getDate()}`, today: s === today });
    s = e;
  }
  return out;
}

/** The title of a range: "December 4 – 7", "March 28 – April 3". */
export function rangeTitle(r: Range): string {
  const names = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  const a = new Date(r.start);
  const b = new Date(r.end - 1);
  const left = `${names[a.getMonth()]} ${a.getDate()}`;
  const right = a.getMonth() === b.getMonth() ? `${b.getDate()}` : `${names[b.getMonth()]} ${b.getDate()}`;
  return `${left} – ${right}${a.getFullYear() !== new Date().getFullYear() ? `, ${b.getFullYear()}` : ''}`;
}

// ---- Rows ---------------------------------------------------------------------------------

/** A row of the timeline: a server's heading, or one GPU (a lane) of it. */
export type Row =
  | { kind: 'server'; key: string; server: string; top: number; height: number }
  | { kind: 'gpu'; key: string; server: string; uuid: string; index: number; lane: number; top: number; height: number };

/** Row heights, px. */
export const SERVER_ROW = 30;
export const GPU_ROW = 40;

/**
 * The rows for `servers` (in order) with their GPUs, each server's GPUs under its heading
 * unless the server is collapsed; `lane` numbers the GPUs of all servers in display order
 * (collapsed ones too), as the drag rectangle counts them.
 */
export function rowsOf(
  servers: { id: string }[],
  gpus: Record<string, { uuid: string; index: number }[] | undefined>,
  collapsed: ReadonlySet<string>,
): { rows: Row[]; height: number } {
  const rows: Row[] = [];
  let top = 0;
  let lane = 0;
  for (const s of servers) {
    const list = gpus[s.id];
    if (!list) continue;
    rows.push({ kind: 'server', key: `server:${s.id}`, server: s.id, top, height: SERVER_ROW });
    top += SERVER_ROW;
    for (const g of list) {
      if (!collapsed.has(s.id)) {
        rows.push({ kind: 'gpu', key: `${s.id}/${g.uuid}`, server: s.id, uuid: g.uuid, index: g.index, lane, top, height: GPU_ROW });
        top += GPU_ROW;
      }
      lane++;
    }
  }
  return { rows, height: top };
}

/** The index of the row at y (px from the first row's top), or -1 outside them all. */
export function rowIndexAt(rows: Row[], y: number): number {
  let lo = 0;
  let hi = rows.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = rows[mid];
    if (y < r.top) hi = mid - 1;
    else if (y >= r.top + r.height) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** The rows overlapping [top, bottom) px, as [first, last] indices (empty: first > last). */
export function rowsIn(rows: Row[], top: number, bottom: number): [number, number] {
  if (rows.length === 0) return [0, -1];
  let first = rowIndexAt(rows, Math.max(0, top));
  if (first < 0) first = top < 0 ? 0 : rows.length;
  let last = rowIndexAt(rows, bottom - 1);
  if (last < 0) last = rows.length - 1;
  return [first, Math.min(last, rows.length - 1)];
}

/**
 * The window to render for a viewport at (`pos`, `size`) along one axis of `total` px: the
 * viewport with `size` more on either side, its ends moved out to multiples of `size / 2`,
 * so that scrolling by less than that keeps the same window (and renders nothing new).
 */
export function renderWindow(pos: number, size: number, total: number): { from: number; to: number } {
  const step = Math.max(64, Math.round(size / 2));
  const from = Math.max(0, Math.floor((pos - size) / step) * step);
  const to = Math.min(total, Math.ceil((pos + 2 * size) / step) * step);
  return { from, to: Math.max(from, to) };
}
