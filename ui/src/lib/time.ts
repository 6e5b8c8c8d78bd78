// Time on the wire is UTC (ISO 8601); on screen it is the local zone. Snapping follows the
// agent's grid: multiples of the granularity since the Unix epoch (crates/core/src/time.rs).

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** `t` (ms) rounded down to a multiple of `granularitySecs` since the epoch. */
export function floorTo(t: number, granularitySecs: number): number {
  const g = Math.max(1, granularitySecs) * 1000;
  return Math.floor(t / g) * g;
}

/** `t` (ms) rounded up to a multiple of `granularitySecs` since the epoch. */
export function ceilTo(t: number, granularitySecs: number): number {
  const g = Math.max(1, granularitySecs) * 1000;
  return Math.ceil(t / g) * g;
}

/** `t` (ms) rounded to the nearest multiple (halfway rounds up), like the agent's `round_to`. */
export function roundTo(t: number, granularitySecs: number): number {
  const g = Math.max(1, granularitySecs) * 1000;
  return Math.floor(t / g + 0.5) * g;
}

/** A UTC ISO string for the wire, without milliseconds: "2026-03-29T01:00:00Z". */
export function toWire(t: number | Date): string {
  const d = typeof t === 'number' ? new Date(t) : t;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Parses a wire time (UTC ISO) to ms. */
export function fromWire(s: string): number {
  return Date.parse(s);
}

const pad = (n: number) => String(n).padStart(2, '0');

/** The value of an `<input type="datetime-local">` for `t`, in the local zone. */
export function toLocalInput(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * Parses an `<input type="datetime-local">` value as local time. A wall time that does not
 * exist (skipped at a DST change) moves forward like the platform does; null when malformed.
 */
export function fromLocalInput(s: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(s.trim());
  if (!m) return null;
  const d = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], m[6] ? +m[6] : 0, 0);
  return Number.isNaN(d.getTime()) ? null : d.getTime();
}

/** "14:00" in the local zone. */
export function formatClock(t: number): string {
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** "Thu 26 14:00" in the local zone; "today 14:00" / "tomorrow 14:00" relative to `now`. */
export function formatWhen(t: number, now: number = Date.now()): string {
  const d = new Date(t);
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const n = new Date(now);
  const today = new Date(n.getFullYear(), n.getMonth(), n.getDate()).getTime();
  const tomorrow = new Date(n.getFullYear(), n.getMonth(), n.getDate() + 1).getTime();
  let prefix: string;
  if (day === today) prefix = 'today';
  else if (day === tomorrow) prefix = 'tomorrow';
  else prefix = `${WEEKDAYS[d.getDay()]} ${d.getDate()}`;
  return `${prefix} ${formatClock(t)}`;
}

/** "today 14:00–18:00", or both ends in full when they are on different days. */
export function formatRange(start: number, end: number, now: number = Date.now()): string {
  const a = new Date(start);
  const b = new Date(end - 1);
  const sameDay =
    a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  return sameDay
    ? `${formatWhen(start, now)}–${formatClock(end)}`
    : `${formatWhen(start, now)} – ${formatWhen(end, now)}`;
}

/**
 * A duration as a person reads it: "2d 4h", "1h 35m", "45m", "42s"; the twin of
 * gpubook_core::duration::human_duration (the tray, the notifications and the CLI), checked
 * against the same cases (tests/fixtures/durations.json). Rounded to the nearest minute from
 * 59.5 s on, to the nearest second below; nothing negative.
 */
export function formatDuration(ms: number): string {
  const t = Math.max(0, Math.round(ms));
  if (t < 59_500) return `${Math.floor((t + 500) / 1000)}s`;
  const mins = Math.floor((t + 30_000) / MINUTE);
  const parts: [number, string][] = [
    [Math.floor(mins / 1440), 'd'],
    [Math.floor((mins % 1440) / 60), 'h'],
    [mins % 60, 'm'],
  ];
  return parts
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join(' ');
}

/** Bytes as "80 GiB" / "512 MiB". */
export function formatBytes(b: number): string {
  const gib = b / 2 ** 30;
  if (gib >= 1) return `${gib >= 10 ? Math.round(gib) : gib.toFixed(1)} GiB`;
  return `${Math.round(b / 2 ** 20)} MiB`;
}

/** Local midnight of the day containing `t`. */
export function startOfLocalDay(t: number): number {
  const d = new Date(t);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

export { MINUTE, HOUR };
