// Reports in the in-memory stand-in (mock.ts): GPU-hours per user and per GPU over a window,
// from the mock's bookings and, before them, a made-up history (one pseudo-random stretch per
// GPU and day, the same whatever window asks), so the report page has weeks to draw. Not the
// agent's rules (gpubook_core::report); enough to make the screens realistic.
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { GpuLine } from './wire/GpuLine';
import type { ReportResponse } from './wire/ReportResponse';
import type { UserLine } from './wire/UserLine';
import { err, PEOPLE, rng } from './mock-data';
import { toWire } from './time';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** What of a mock server a report needs. */
export type ReportServer = { view: { id: string; name: string }; role: string; gpus: Gpu[]; bookings: Map<number, Booking> };

/** One stretch of GPU time: who held which GPU when, and the share of it used. */
type Stretch = { user: string; gpu: string; start: number; end: number; used: number };

/** Seconds of [a, b) inside [from, to). */
function within(a: number, b: number, from: number, to: number): number {
  return Math.max(0, Math.min(b, to) - Math.max(a, from)) / 1000;
}

/** The made-up history of `s` before `until`: per GPU and UTC day, maybe one stretch. */
function history(s: ReportServer, from: number, until: number): Stretch[] {
  const out: Stretch[] = [];
  for (let day = Math.floor(from / DAY) * DAY; day < until; day += DAY) {
    s.gpus.forEach((g, i) => {
      const r = rng((day / DAY) * 131 + i * 7 + s.view.id.length * 977);
      if (r() < 0.35) return;
      const start = day + Math.floor(r() * 10) * HOUR;
      const end = Math.min(start + (2 + Math.floor(r() * 12)) * HOUR, until);
      if (end > start) out.push({ user: PEOPLE[Math.floor(r() * PEOPLE.length)], gpu: g.uuid, start, end, used: 0.3 + 0.7 * r() });
    });
  }
  return out;
}

/** The stretches of the mock's own bookings that reserve GPUs. */
function fromBookings(s: ReportServer): Stretch[] {
  return [...s.bookings.values()]
    .filter((b) => ['confirmed', 'active', 'ended'].includes(b.state))
    .flatMap((b) => b.gpus.map((gpu) => ({ user: b.owner, gpu, start: Date.parse(b.interval.start), end: Date.parse(b.interval.end), used: (b.id % 7) / 8 + 0.1 })));
}

/** The report of `s` over [from, to) as `me` asks for it at `now`: everyone's for an admin. */
export function mockReport(s: ReportServer, from: string, to: string, me: string, now: number): ReportResponse {
  const a = Date.parse(from);
  const b = Date.parse(to);
  if (!(b > a)) throw err('invalid', `${s.view.name}: the report's end must be after its start.`, s.view.id);
  if (b - a > 366 * DAY) throw err('invalid', `${s.view.name}: a report covers at most 366 days; ask for a shorter one (or several).`, s.view.id);
  const earliest = Math.min(...[...s.bookings.values()].map((x) => Date.parse(x.interval.start)), now);
  const everyone = s.role === 'admin';
  const all = [...history(s, a, Math.min(b, earliest)), ...fromBookings(s)].filter((x) => everyone || x.user === me);
  const users = new Map<string, UserLine>();
  const gpus = new Map<string, GpuLine>(s.gpus.map((g) => [g.uuid, { uuid: g.uuid, index: g.index, name: g.name, booked_secs: 0, used_secs: 0, maintenance_secs: 0 }]));
  for (const x of all) {
    const booked = within(x.start, x.end, a, b);
    if (booked <= 0) continue;
    // Used only as far as the stretch has happened.
    const used = Math.floor(within(x.start, Math.min(x.end, now), a, b) * x.used);
    const u = users.get(x.user) ?? { user: x.user, bookings: 0, booked_gpu_secs: 0, used_gpu_secs: 0, idle_held_gpu_secs: 0, released_early_gpu_secs: 0, cancelled_late: 0, never_used: 0, intruder_events: 0, intrusions_caused: 0 };
    u.bookings += 1;
    u.booked_gpu_secs += booked;
    u.used_gpu_secs += used;
    if (x.used < 0.4) u.idle_held_gpu_secs += Math.floor(booked / 4);
    users.set(x.user, u);
    const g = gpus.get(x.gpu);
    if (g) {
      g.booked_secs += booked;
      g.used_secs += used;
    }
  }
  return {
    server: s.view.name,
    everyone,
    report: {
      window: { start: toWire(a), end: toWire(b) },
      late_cancel_hours: 24,
      users: [...users.values()].sort((x, y) => x.user.localeCompare(y.user)),
      gpus: [...gpus.values()],
    },
  };
}
