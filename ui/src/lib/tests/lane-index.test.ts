import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BookingBook, JOURNAL_MAX } from '../bookings';
import { BookSync, LaneIndex } from '../lane-index';
import { blockBox, bookingItem, clockRange, maintenanceItem, sameBox, stack, type Item } from '../timeline-items';
import { contentPoint, clientPoint, editedTimes, hitRow, selectionBoxes } from '../timeline-drag';
import { rowsOf } from '../timeline';
import type { Booking } from '../wire/Booking';
import type { Maintenance } from '../wire/Maintenance';

const H = 3_600_000;
const T0 = Date.parse('2027-03-22T00:00:00Z');
const iso = (t: number) => new Date(t).toISOString().replace(/\.000Z$/, 'Z');

function booking(id: number, start: number, end: number, over: Partial<Booking> = {}): Booking {
  return {
    id, owner: 'alice', gpus: ['g0'], interval: { start: iso(start), end: iso(end) }, title: `run ${id}`, state: 'confirmed', job: null,
    asap: null, pending_reason: null, pending_since: null, created_at: iso(T0), revision: 1, warned_start: false, warned_end: false,
    run: null, usage: null, ...over,
  };
}

let savedTz: string | undefined;
beforeEach(() => {
  savedTz = process.env.TZ;
});
afterEach(() => {
  process.env.TZ = savedTz;
});

describe('the index of blocks per lane', () => {
  it('finds exactly the items overlapping a window, as a scan of all would', () => {
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const items: Item[] = [];
    for (let i = 0; i < 3000; i++) {
      const lanes = rnd() < 0.1 ? ['s/a', 's/b'] : [rnd() < 0.5 ? 's/a' : 's/b'];
      const start = T0 + Math.floor(rnd() * 500) * H / 4;
      const b = booking(i, start, start + (1 + Math.floor(rnd() * 40)) * H / 4);
      items.push({ ...bookingItem('s', b, 'alice', false), lanes });
    }
    const ix = new LaneIndex();
    ix.reset(items.slice(0, 2000));
    for (const it of items.slice(2000)) ix.put(it);
    for (const it of items.slice(0, 300)) ix.remove(it.key);
    const held = items.slice(300);
    for (let k = 0; k < 50; k++) {
      const from = T0 + rnd() * 130 * H;
      const to = from + rnd() * 20 * H;
      for (const lane of ['s/a', 's/b']) {
        const want = held.filter((it) => it.lanes.includes(lane) && it.start < to && it.end > from).map((it) => it.key).sort();
        expect(ix.query(lane, from, to).map((it) => it.key).sort()).toEqual(want);
      }
    }
    expect(ix.size).toBe(held.length);
  });
});

describe('keeping the index in step with the bookings', () => {
  const servers = [{ id: 'lab', user: 'alice' }];

  it('reads one pushed change as one item, and only that item changes', () => {
    const book = new BookingBook();
    book.load('lab', Array.from({ length: 2000 }, (_, i) => booking(i + 1, T0 + i * H, T0 + (i + 1) * H)));
    const sync = new BookSync();
    expect(sync.sync(book, servers, false, {})).toBe(-1);
    const before = sync.index.query('lab/g0', T0, T0 + 3000 * H);
    expect(before).toHaveLength(2000);
    book.upsert('lab', booking(5, T0 + 4.5 * H, T0 + 5.5 * H, { revision: 2 }));
    expect(sync.sync(book, servers, false, {})).toBe(1);
    const after = sync.index.query('lab/g0', T0, T0 + 3000 * H);
    const changed = after.filter((it, i) => it !== before[i]);
    expect(changed.map((it) => it.key)).toEqual(['lab:5']);
    expect(sync.sync(book, servers, false, {})).toBe(0);
  });

  it('takes a cancelled booking out, and rebuilds after a bulk load, a dropped server or new settings', () => {
    const book = new BookingBook();
    book.load('lab', [booking(1, T0, T0 + H), booking(2, T0 + H, T0 + 2 * H)]);
    const sync = new BookSync();
    sync.sync(book, servers, false, {});
    book.upsert('lab', booking(1, T0, T0 + H, { revision: 2, state: 'cancelled' }));
    expect(sync.sync(book, servers, false, {})).toBe(1);
    expect(sync.index.get('lab:1')).toBeUndefined();
    book.load('lab', Array.from({ length: 500 }, (_, i) => booking(i + 10, T0 + i * H, T0 + (i + 1) * H)));
    expect(sync.sync(book, servers, false, {})).toBe(-1);
    expect(sync.sync(book, servers, true, {})).toBe(-1);
    book.drop('lab');
    expect(sync.sync(book, servers, true, {})).toBe(-1);
    expect(sync.index.size).toBe(0);
  });

  it('reads everything again when it fell behind the journal\'s bound', () => {
    const book = new BookingBook();
    const sync = new BookSync();
    sync.sync(book, servers, false, {});
    for (let i = 0; i <= JOURNAL_MAX; i++) book.upsert('lab', booking(1, T0, T0 + H, { revision: i + 2 }));
    expect(book.journal.length).toBeLessThan(JOURNAL_MAX);
    expect(sync.sync(book, servers, false, {})).toBe(-1);
    expect(sync.index.size).toBe(1);
  });

  it('shows maintenance periods, replaced when their list is', () => {
    const book = new BookingBook();
    const sync = new BookSync();
    const m: Maintenance = { id: 3, gpus: ['g0'], whole_server: false, interval: { start: iso(T0), end: iso(T0 + H) }, reason: 'driver', by: 'root', cause: 'admin', created_at: iso(T0) };
    sync.sync(book, servers, false, { lab: [m] });
    expect(sync.index.get('lab:m3')?.title).toBe('Maintenance: driver');
    expect(sync.sync(book, servers, false, { lab: [] })).toBe(1);
    expect(sync.index.get('lab:m3')).toBeUndefined();
    expect(maintenanceItem('lab', { ...m, cause: 'fault' }).classes).toBe('maintenance fault');
  });
});

describe('a block from a booking', () => {
  it('spans its real hours across a DST change and reads its local times', () => {
    process.env.TZ = 'Europe/Berlin';
    const start = Date.parse('2027-03-28T00:00:00Z'); // 01:00 CET
    const end = Date.parse('2027-03-28T04:00:00Z'); // 06:00 CEST
    const it = bookingItem('lab', booking(1, start, end), 'alice', false);
    expect(it.timeText).toBe('01:00–06:00');
    const rangeStart = Date.parse('2027-03-27T23:00:00Z');
    const b = blockBox(it, 'lab/g0', 100, 40, rangeStart, 60, start);
    expect(b.left).toBe(60);
    expect(b.width).toBe(4 * 60 - 1);
    expect(b.top).toBe(102);
    expect(clockRange(Date.parse('2026-10-25T00:00:00Z'), Date.parse('2026-10-25T02:00:00Z'))).toBe('02:00–03:00');
  });

  it('lets its owner move it before it starts and resize it until it ends; others neither', () => {
    const b = booking(1, T0, T0 + 2 * H);
    const mine = bookingItem('lab', b, 'alice', false);
    const theirs = bookingItem('lab', b, 'bob', false);
    expect(blockBox(mine, 'l', 0, 40, T0, 60, T0 - H)).toMatchObject({ movable: true, resizable: true, past: false });
    expect(blockBox(theirs, 'l', 0, 40, T0, 60, T0 - H)).toMatchObject({ movable: false, resizable: false });
    expect(blockBox(mine, 'l', 0, 40, T0, 60, T0 + 3 * H)).toMatchObject({ movable: false, resizable: false, past: true });
    const active = bookingItem('lab', { ...b, state: 'active' }, 'alice', false);
    expect(blockBox(active, 'l', 0, 40, T0, 60, T0 + H)).toMatchObject({ movable: false, resizable: true });
    expect(theirs.classes).toContain('other');
    expect(mine.background).toBe('var(--own-bg)');
  });

  it('keeps a box that draws the same, so the block on screen is left alone', () => {
    const it = bookingItem('lab', booking(1, T0, T0 + H), 'alice', false);
    const a = blockBox(it, 'l', 0, 40, T0, 60, T0);
    expect(sameBox(a, blockBox(it, 'l', 0, 40, T0, 60, T0))).toBe(true);
    expect(sameBox(a, blockBox(it, 'l', 0, 40, T0, 80, T0))).toBe(false);
    expect(sameBox(a, blockBox(it, 'l', 0, 40, T0, 60, T0 + 2 * H))).toBe(false);
  });

  it('shares a row between items that overlap there', () => {
    const mk = (id: number, s: number, e: number) => bookingItem('lab', booking(id, T0 + s * H, T0 + e * H), null, false);
    expect(stack([mk(1, 0, 2), mk(2, 2, 3)])).toEqual({ level: [0, 0], levels: 1 });
    expect(stack([mk(1, 0, 2), mk(2, 1, 3), mk(3, 2, 4)])).toEqual({ level: [0, 1, 0], levels: 2 });
  });
});

describe('dragging on the timeline', () => {
  const { rows } = rowsOf([{ id: 'lab' }], { lab: [{ uuid: 'g0', index: 0 }, { uuid: 'g1', index: 1 }] }, new Set());
  const f = { left: 200, top: 100, scrollLeft: 600, scrollTop: 20, labelWidth: 260, headHeight: 48 };

  it('turns a client point into the row and instant under it, and back', () => {
    const p = contentPoint(f, 200 + 260 + 60, 100 + 48 + 50)!;
    expect(p).toEqual({ x: 660, y: 70 });
    expect(clientPoint(f, p.x, p.y)).toEqual({ x: 520, y: 198 });
    const h = hitRow(rows, T0, 60, p)!;
    expect(h.row.key).toBe('lab/g1');
    expect(h.t).toBe(T0 + 11 * H);
    expect(contentPoint(f, 300, 300)).toBeNull(); // over the labels
    expect(hitRow(rows, T0, 60, { x: 10, y: 5 })).toBeNull(); // the server's heading
  });

  it('draws the rectangle over the selected GPUs\' rows', () => {
    const sel = { server: 'lab', lanes: [{ server: 'lab', uuid: 'g0', index: 0 }, { server: 'lab', uuid: 'g1', index: 1 }], start: T0 + H, end: T0 + 3 * H };
    expect(selectionBoxes(sel, rows, T0, 60)).toEqual([
      { left: 60, width: 120, top: rows[1].top, height: rows[1].height },
      { left: 60, width: 120, top: rows[2].top, height: rows[2].height },
    ]);
  });

  it('moves and resizes by whole steps of the server\'s grid, never below one step', () => {
    expect(editedTimes('move', T0, T0 + H, 40 * 60_000, 900)).toEqual({ start: T0 + 45 * 60_000, end: T0 + H + 45 * 60_000 });
    expect(editedTimes('move', T0, T0 + H, -7 * 60_000, 900)).toEqual({ start: T0, end: T0 + H });
    expect(editedTimes('resize', T0, T0 + H, 2 * H, 3600)).toEqual({ start: T0, end: T0 + 3 * H });
    expect(editedTimes('resize', T0, T0 + H, -5 * H, 900)).toEqual({ start: T0, end: T0 + 15 * 60_000 });
  });
});

describe('what Slurm holds outside gpubook', () => {
  const servers = [{ id: 'lab', user: 'alice' }];
  const hold = (start: number, end: number, gpus: string[]) => ({
    gpus, start: iso(start), end: iso(end), owner: 'bob', title: 'Slurm job 42: train',
  });

  it('draws each hold on its lanes, busy and never movable, and follows a new list', () => {
    const book = new BookingBook();
    book.load('lab', [booking(1, T0, T0 + H)]);
    const sync = new BookSync();
    const first = [hold(T0 + H, T0 + 3 * H, ['g0', 'g1'])];
    sync.sync(book, servers, false, {}, { lab: first });
    const on = sync.index.query('lab/g1', T0, T0 + 4 * H);
    expect(on).toHaveLength(1);
    expect(on[0].props.outside).toBe(true);
    expect(on[0].props.owner).toBe('bob');
    expect(on[0].classes).toBe('outside');
    expect([on[0].canMove, on[0].canResize]).toEqual([false, false]);
    expect(sync.index.query('lab/g0', T0, T0 + 4 * H).map((i) => i.key)).toEqual(['lab:1', on[0].key]);
    // The job ended in Slurm: the next list no longer has it, and the block goes.
    expect(sync.sync(book, servers, false, {}, { lab: [] })).toBe(1);
    expect(sync.index.query('lab/g1', T0, T0 + 4 * H)).toHaveLength(0);
  });
});
