import { describe, expect, it } from 'vitest';
import { BookingBook, stagedFraction } from '../bookings';
import { colourFor } from '../colors';
import { blockDetails, eventOf } from '../calendar-model';
import type { Booking } from '../wire/Booking';
import type { Event } from '../wire/Event';
import type { Gpu } from '../wire/Gpu';

function booking(id: number, over: Partial<Booking> = {}): Booking {
  return {
    id, owner: 'alice', gpus: ['GPU-a'], interval: { start: '2026-11-26T14:00:00Z', end: '2026-11-26T18:00:00Z' },
    title: 'run', state: 'confirmed', job: null, asap: null, pending_reason: null, pending_since: null, created_at: '2026-11-25T00:00:00Z',
    revision: 1, warned_start: false, warned_end: false, run: null, usage: null, ...over,
  };
}
function event(seq: number, b: Booking, over: Partial<Event> = {}): Event {
  return { seq, at: '2026-11-26T13:00:00Z', kind: 'booking_changed', booking: b, before: null, actor: 'alice', note: null, ...over };
}

describe('applying pushed events to the bookings', () => {
  it('adds, moves and cancels', () => {
    const book = new BookingBook();
    expect(book.apply('lab1', event(1, booking(7), { kind: 'booking_created' }))).toBe(true);
    const moved = booking(7, { revision: 2, interval: { start: '2026-11-26T15:00:00Z', end: '2026-11-26T19:00:00Z' } });
    expect(book.apply('lab1', event(2, moved))).toBe(true);
    expect(book.get('lab1', 7)!.interval.start).toBe('2026-11-26T15:00:00Z');
    expect(book.apply('lab1', event(3, booking(7, { revision: 3, state: 'cancelled' }), { kind: 'booking_cancelled' }))).toBe(true);
    expect(book.visible('lab1')).toEqual([]);
  });

  it('applies each event once', () => {
    const book = new BookingBook();
    book.apply('lab1', event(5, booking(1, { revision: 2 })));
    expect(book.apply('lab1', event(5, booking(1, { revision: 3, title: 'again' })))).toBe(false);
    expect(book.apply('lab1', event(4, booking(1, { revision: 9 })))).toBe(false);
    expect(book.get('lab1', 1)!.revision).toBe(2);
  });

  it('keeps the newer revision whichever arrives first (listing or event)', () => {
    const book = new BookingBook();
    book.apply('lab1', event(10, booking(1, { revision: 4, title: 'new' })));
    book.load('lab1', [booking(1, { revision: 3, title: 'old' })]);
    expect(book.get('lab1', 1)!.title).toBe('new');
  });

  it('keeps servers apart', () => {
    const book = new BookingBook();
    book.apply('a', event(1, booking(1)));
    book.apply('b', event(1, booking(1, { owner: 'bob' })));
    expect(book.get('a', 1)!.owner).toBe('alice');
    expect(book.get('b', 1)!.owner).toBe('bob');
  });

  it('marks an intruder on a booked GPU until the slot ends', () => {
    const book = new BookingBook();
    const b = booking(3, { state: 'active', gpus: ['GPU-a', 'GPU-b'] });
    book.apply('lab1', event(1, b, {
      kind: 'intruder',
      note: { kind: 'intruder', gpu: 'GPU-b', pid: 999, user: 'mallory', used_bytes: 1 << 30, stopped: false },
    }));
    expect(book.intruders.get('lab1')!.get('GPU-b')!.user).toBe('mallory');
    book.apply('lab1', event(2, booking(3, { state: 'ended', revision: 2 }), { kind: 'slot_ended' }));
    expect(book.intruders.get('lab1')!.size).toBe(0);
  });
});

describe('how bookings look', () => {
  it('gives each person one stable colour, different people (mostly) different ones', () => {
    expect(colourFor('alice')).toEqual(colourFor('alice'));
    const hues = new Set(['alice', 'bob', 'chen', 'dara', 'emil'].map((p) => colourFor(p).background));
    expect(hues.size).toBeGreaterThanOrEqual(4);
  });

  it('lets only the owner drag, in every lane of the booking', () => {
    const now = Date.parse('2026-11-26T10:00:00Z');
    const b = booking(4, { gpus: ['GPU-a', 'GPU-b'] });
    const mine = eventOf('lab1', b, 'alice', now, false);
    const theirs = eventOf('lab1', b, 'bob', now, false);
    expect(mine.editable).toBe(true);
    expect(theirs.editable).toBe(false);
    expect(mine.resourceIds).toEqual(['lab1/GPU-a', 'lab1/GPU-b']);
    expect(theirs.classNames).toContain('other');
  });

  it('marks pending, as-soon-as-possible and running bookings differently', () => {
    const now = Date.parse('2026-11-26T15:00:00Z');
    expect(eventOf('s', booking(1, { state: 'pending_approval' }), 'alice', now, false).classNames).toContain('st-pending_approval');
    const asap = booking(2, { asap: { count: 1, min_memory: null, duration_secs: 3600, asked_at: '', named: [], exempt: false } });
    expect(eventOf('s', asap, 'alice', now, false).classNames).toContain('asap');
    const run = booking(3, { state: 'active', run: { state: 'running', pid: 1, start_ticks: null, started_at: null, ended_at: null, exit_code: null, signal: null, message: null, log: null, staged_bytes: null, devices: [] } });
    expect(eventOf('s', run, 'alice', now, false).classNames).toContain('running');
  });

  it('shows one own command only when the setting says so, never another person', () => {
    const now = Date.parse('2026-11-26T10:00:00Z');
    const b = booking(5, { job: { command: 'python train.py', cwd: null, env: {}, end_signal: null, grace_secs: null, keep_slot: false, stage: {}, save: [], save_to: null, s3: { profile: null, env_file: null } } });
    expect(eventOf('s', b, 'alice', now, true).extendedProps.job).toBe('python train.py');
    expect(eventOf('s', b, 'alice', now, false).extendedProps.job).toBeNull();
    expect(eventOf('s', b, 'bob', now, true).extendedProps.job).toBeNull();
  });
});

describe('a block tooltip', () => {
  it('says whose, what, which GPUs, when and its state', () => {
    const gpus = [0, 1, 2].map((i) => ({ uuid: `GPU-${'abc'[i]}`, index: i }) as unknown as Gpu);
    const range = (a: number, b: number) => `${new Date(a).toISOString()}/${new Date(b).toISOString()}`;
    const d = blockDetails(booking(3, { gpus: ['GPU-c', 'GPU-a'], state: 'pending_approval' }), 'lab 1', gpus, 'bob', range);
    expect(d.heading).toBe('alice · run');
    expect(d.lines).toEqual(['GPUs 0, 2 on lab 1', '2026-11-26T14:00:00.000Z/2026-11-26T18:00:00.000Z', 'awaiting approval']);
    const mine = blockDetails(booking(4), 'lab 1', gpus, 'alice', range);
    expect(mine.heading).toBe('you · run');
    expect(mine.lines[0]).toBe('GPU 0 on lab 1');
  });
});

describe("a booking's stage-in", () => {
  it('follows the agent: progress, late, ready, failed; the block shows the copy', () => {
    const book = new BookingBook();
    const b = booking(5, { job: { command: 'x', cwd: null, env: {}, end_signal: null, grace_secs: null, keep_slot: false, stage: { coco: '/d' }, save: [], save_to: null, s3: { profile: null, env_file: null } } });
    const note = (done: number, late = false) => ({ kind: 'stage' as const, name: '', done_bytes: done, total_bytes: 400, copied_files: 3, kept_files: 1, dir: '/scratch/x', late });
    book.apply('lab1', event(1, b, { kind: 'stage_progress', note: note(100) }));
    expect(book.stageOf('lab1', 5)).toMatchObject({ done: 100, total: 400, state: 'copying' });
    expect(stagedFraction(book.stageOf('lab1', 5)!)).toBe(0.25);
    expect(eventOf('lab1', b, 'alice', Date.now(), false, book.stageOf('lab1', 5)).extendedProps.staged).toBe(0.25);
    book.apply('lab1', event(2, b, { kind: 'stage_progress', note: note(200, true) }));
    expect(book.stageOf('lab1', 5)!.late).toBe(true);
    book.apply('lab1', event(3, b, { kind: 'stage_ready', note: note(400) }));
    expect(book.stageOf('lab1', 5)).toMatchObject({ state: 'ready', late: false });
    expect(stagedFraction(book.stageOf('lab1', 5)!)).toBe(1);
    // Ready: no bar on the block any more.
    expect(eventOf('lab1', b, 'alice', Date.now(), false, book.stageOf('lab1', 5)).extendedProps.staged).toBeNull();
    book.apply('lab1', event(4, booking(6), { kind: 'stage_failed', note: { kind: 'transfer_failed', reason: 'no such file', attempts: 4 } }));
    expect(book.stageOf('lab1', 6)).toMatchObject({ state: 'failed', reason: 'no such file' });
  });
});
