// The bookings the app knows, per server, kept current by the agents' events. Pure: the
// Svelte state wraps it and re-reads after each change.
import type { Booking } from './wire/Booking';
import type { Event } from './wire/Event';

/** The most journal entries kept; a reader further behind reads everything again. */
export const JOURNAL_MAX = 50_000;

/** States a booking leaves the calendar in. */
export const GONE: ReadonlySet<string> = new Set(['cancelled', 'denied']);

/** An intruder seen on a booked GPU. */
export type Intruder = { gpu: string; booking: number; pid: number; user: string | null; at: string };

/** Where a booking's stage-in stands, from the agent's `stage_progress` events. */
export type Staging = {
  /** Bytes copied or found already there, and in all as far as known. */
  done: number;
  total: number;
  copied: number;
  kept: number;
  /** At the pace so far it ends after the slot starts. */
  late: boolean;
  /** `ready` (all there), `copying`, or `failed` with the agent's reason. */
  state: 'copying' | 'ready' | 'failed';
  reason: string | null;
};

/** How far along `s` is, 0 to 1 (1 when ready; 0 while nothing is known). */
export function stagedFraction(s: Staging): number {
  if (s.state === 'ready') return 1;
  return s.total > 0 ? Math.min(1, s.done / s.total) : 0;
}

/** Bookings, intruders and stage-ins per server. */
export class BookingBook {
  /** server → booking id → booking. */
  readonly byServer = new Map<string, Map<number, Booking>>();
  /** server → GPU uuid → intruder on it, while its booking lasts. */
  readonly intruders = new Map<string, Map<string, Intruder>>();
  /** server → booking id → its stage-in, while the agent reports it. */
  readonly staging = new Map<string, Map<number, Staging>>();
  /** server → last event number applied (events at or below it are repeats). */
  readonly lastSeq = new Map<string, number>();
  /**
   * What changed, in order: `[server, booking id]` for a booking (or its stage-in), `[server,
   * null]` when a whole server was dropped. The timeline reads it from where it last stopped
   * (lib/lane-index.ts), so one pushed change costs it one booking, not all of them.
   */
  readonly journal: [string, number | null][] = [];
  /** How many entries were cut from the journal's front (it keeps at most `JOURNAL_MAX`). */
  journalBase = 0;

  private note(server: string, id: number | null): void {
    if (this.journal.length >= JOURNAL_MAX) {
      this.journalBase += this.journal.length;
      this.journal.length = 0;
    }
    this.journal.push([server, id]);
  }

  private server(id: string): Map<number, Booking> {
    let m = this.byServer.get(id);
    if (!m) this.byServer.set(id, (m = new Map()));
    return m;
  }

  /**
   * Puts a booking in unless the book already holds a newer revision of it (a listing and
   * the event stream can arrive in either order). Returns whether anything changed.
   */
  upsert(server: string, b: Booking): boolean {
    const m = this.server(server);
    const old = m.get(b.id);
    if (old && old.revision > b.revision) return false;
    if (old && old.revision === b.revision && old.state === b.state && sameRun(old, b)) return false;
    m.set(b.id, b);
    this.note(server, b.id);
    if (b.state === 'ended' || GONE.has(b.state)) this.clearIntruders(server, b.id);
    return true;
  }

  /** Replaces what is known of a server's bookings in a window with a fresh listing. */
  load(server: string, list: Booking[]): void {
    for (const b of list) this.upsert(server, b);
  }

  /** Applies one pushed event; returns whether anything changed. */
  apply(server: string, ev: Event): boolean {
    const last = this.lastSeq.get(server) ?? -1;
    if (ev.seq <= last) return false;
    this.lastSeq.set(server, ev.seq);
    let changed = this.upsert(server, ev.booking);
    if (ev.note?.kind === 'intruder') {
      let m = this.intruders.get(server);
      if (!m) this.intruders.set(server, (m = new Map()));
      m.set(ev.note.gpu, {
        gpu: ev.note.gpu,
        booking: ev.booking.id,
        pid: ev.note.pid,
        user: ev.note.user,
        at: ev.at,
      });
      changed = true;
    }
    changed = this.applyStage(server, ev) || changed;
    if (ev.kind === 'slot_ended' || ev.kind === 'booking_released') {
      changed = this.clearIntruders(server, ev.booking.id) || changed;
    }
    return changed;
  }

  /** Follows a booking's stage-in: progress, ready, or failed with its reason. */
  private applyStage(server: string, ev: Event): boolean {
    if (!['stage_progress', 'stage_ready', 'stage_failed'].includes(ev.kind)) return false;
    let m = this.staging.get(server);
    if (!m) this.staging.set(server, (m = new Map()));
    const before = m.get(ev.booking.id);
    const s: Staging = before ? { ...before } : { done: 0, total: 0, copied: 0, kept: 0, late: false, state: 'copying', reason: null };
    if (ev.note?.kind === 'stage') {
      s.done = ev.note.done_bytes;
      s.total = ev.note.total_bytes;
      s.copied = ev.note.copied_files;
      s.kept = ev.note.kept_files;
      s.late = ev.note.late;
    }
    if (ev.kind === 'stage_ready') {
      s.state = 'ready';
      s.late = false;
    } else if (ev.kind === 'stage_failed') {
      s.state = 'failed';
      s.reason = ev.note?.kind === 'transfer_failed' ? ev.note.reason : null;
    } else {
      s.state = 'copying';
    }
    m.set(ev.booking.id, s);
    this.note(server, ev.booking.id);
    return true;
  }

  /** A booking's stage-in, if it has one the agent reported. */
  stageOf(server: string, id: number): Staging | undefined {
    return this.staging.get(server)?.get(id);
  }

  private clearIntruders(server: string, booking: number): boolean {
    const m = this.intruders.get(server);
    if (!m) return false;
    let changed = false;
    for (const [gpu, i] of m) {
      if (i.booking === booking) {
        m.delete(gpu);
        changed = true;
      }
    }
    return changed;
  }

  /** Forgets a server (removed from the list). */
  drop(server: string): void {
    this.byServer.delete(server);
    this.intruders.delete(server);
    this.staging.delete(server);
    this.lastSeq.delete(server);
    this.note(server, null);
  }

  /** A server's bookings that still belong on the calendar. */
  visible(server: string): Booking[] {
    const m = this.byServer.get(server);
    if (!m) return [];
    return [...m.values()].filter((b) => !GONE.has(b.state));
  }

  /** One booking. */
  get(server: string, id: number): Booking | undefined {
    return this.byServer.get(server)?.get(id);
  }
}

function sameRun(a: Booking, b: Booking): boolean {
  return a.run?.state === b.run?.state && a.run?.exit_code === b.run?.exit_code;
}
