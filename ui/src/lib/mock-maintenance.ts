// Maintenance in the in-memory stand-in (mock.ts): the period a server is seeded with, and an
// admin's new one. The real agent moves what fits before it cancels; the mock keeps it simple:
// bookings in the way are cancelled, running ones end at its start.
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { Maintenance } from './wire/Maintenance';
import type { EventKind } from './wire/EventKind';
import type { MaintenanceResponse } from './wire/MaintenanceResponse';
import type { Note } from './wire/Note';
import { err } from './mock-data';
import { toWire } from './time';

const HOUR = 3_600_000;

/** The bookings that hold one of `gpus` at some instant of [start, end). */
export function inWay(bookings: Map<number, Booking>, gpus: string[], start: number, end: number): Booking[] {
  return [...bookings.values()].filter(
    (b) =>
      !['cancelled', 'denied', 'ended'].includes(b.state) &&
      b.gpus.some((g) => gpus.includes(g)) &&
      Date.parse(b.interval.start) < end &&
      start < Date.parse(b.interval.end),
  );
}

/** A driver update on GPUs 6 and 7 from 20 h after `hour` for 4 h, with nothing booked into it. */
export function seededPeriod(bookings: Map<number, Booking>, gpus: Gpu[], hour: number, now: number): Maintenance {
  const start = hour + 20 * HOUR;
  const end = start + 4 * HOUR;
  const uuids = [gpus[6].uuid, gpus[7].uuid];
  for (const b of inWay(bookings, uuids, start, end)) bookings.delete(b.id);
  return {
    id: 1, gpus: uuids, whole_server: false, interval: { start: toWire(start), end: toWire(end) },
    reason: 'driver 570', by: 'root', cause: 'admin', created_at: toWire(now - HOUR),
  };
}

/** What of a mock server maintenance needs. */
type Server = { role: string; view: { id: string; name: string }; gpus: Gpu[]; bookings: Map<number, Booking>; maintenance: Maintenance[]; seq: number };
/** What the app asks for. */
type Ask = { gpus?: string[] | null; start: string; end: string; reason: string };
/** Announces a booking's change as an event. */
type Emit = (kind: EventKind, b: Booking, before: Booking['interval'], note: Note) => void;

/** An admin's new period on `s`: each booking in its way is cut short (running) or cancelled,
 * announced with `emit`; a user is refused. */
export function takeOutOfService(s: Server, a: Ask, me: string, now: number, emit: Emit): MaintenanceResponse {
  if (s.role !== 'admin') throw err('not_allowed', `Only an admin can take GPUs out of service on ${s.view.name}.`, s.view.id);
  const m: Maintenance = {
    id: s.maintenance.length + 1, gpus: a.gpus ?? s.gpus.map((g) => g.uuid), whole_server: !a.gpus,
    interval: { start: a.start, end: a.end }, reason: a.reason, by: me, cause: 'admin', created_at: toWire(now),
  };
  s.maintenance.push(m);
  const changed: Booking[] = [];
  for (const b of inWay(s.bookings, m.gpus, Date.parse(m.interval.start), Date.parse(m.interval.end))) {
    const before = { ...b.interval };
    const active = b.state === 'active';
    if (active) b.interval = { start: b.interval.start, end: m.interval.start };
    else b.state = 'cancelled';
    const note: Note = { kind: 'maintenance', id: m.id, reason: m.reason, window: m.interval, outcome: active ? 'cut_short' : 'cancelled' };
    emit(active ? 'booking_changed' : 'booking_cancelled', b, before, note);
    changed.push(structuredClone(b));
  }
  return { server: s.view.name, maintenance: [m], changed, event: s.seq };
}
