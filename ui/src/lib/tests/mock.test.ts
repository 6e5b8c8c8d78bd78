import { describe, expect, it } from 'vitest';
import { MockBackend } from '../mock';
import { maintenanceEventOf } from '../calendar-model';
import { makeApi, type Api } from '../api';
import type { AppError } from '../app-types';
import type { Booking } from '../wire/Booking';
import type { BookRequest } from '../wire/BookRequest';

const DAY = 86_400_000;

/** The mock's local server's bookings, as the app loads them. */
async function bookings(api: Api): Promise<Booking[]> {
  const now = Date.now();
  return api.bookings('local', new Date(now - DAY).toISOString(), new Date(now + 9 * DAY).toISOString());
}

async function refusal(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    return e as AppError;
  }
  throw new Error('it was not refused');
}

describe('the mock agent decides on a booking as the admin saw it', () => {
  it('refuses an approval or a denial of an older revision, and takes the current one', async () => {
    const m = makeApi(new MockBackend());
    // Five hours where they are free: longer than the 4 h the mock's local server allows.
    const request: BookRequest = { gpus: { kind: 'count', count: 1, min_memory: null }, when: { kind: 'asap', duration_secs: 5 * 3600 }, title: 'long run', job: null };
    const seen = (await m.book('local', request)).booking;
    expect(seen.state).toBe('pending_approval');
    // The owner shortens it while the admin looks at the old shape (within its own free slot).
    const start = Date.parse(seen.interval.start);
    const end = Date.parse(seen.interval.end) - 1_800_000;
    const moved = await m.moveBooking('local', seen.id, new Date(start).toISOString(), new Date(end).toISOString());
    expect(moved.booking.revision).toBeGreaterThan(seen.revision);

    for (const decide of [m.approve, (s: string, id: number, rev?: number | null) => m.deny(s, id, null, rev)]) {
      const e = await refusal(decide('local', seen.id, seen.revision));
      expect(e.kind).toBe('changed');
      expect(e.message).toContain(`booking ${seen.id} changed since you looked`);
      expect(e.revision).toBe(moved.booking.revision);
    }
    // An older client names no revision: taken only if unchanged since it began to wait.
    expect((await refusal(m.approve('local', seen.id))).kind).toBe('changed');
    expect((await bookings(m)).find((x) => x.id === seen.id)?.state).toBe('pending_approval');

    const r = await m.approve('local', seen.id, moved.booking.revision);
    expect(r.booking.state).toBe('confirmed');
  });

  it('refuses a relative working directory, as the agent does', async () => {
    const m = makeApi(new MockBackend());
    const start = Date.now() + 40 * 3_600_000;
    const request: BookRequest = {
      gpus: { kind: 'named', gpus: ['0'] },
      when: { kind: 'at', start: new Date(start).toISOString(), end: new Date(start + 3_600_000).toISOString() },
      title: 'run',
      job: { command: './train.sh', cwd: 'runs/7', env: {}, end_signal: null, grace_secs: null, keep_slot: false, stage: {}, save: [], save_to: null, s3: { profile: null, env_file: null } },
    };
    const e = await refusal(m.book('local', request));
    expect(e.kind).toBe('invalid');
    expect(e.message).toContain('absolute path on the server');
  });
});

describe('maintenance is its own kind of block', () => {
  it('comes from the server, holds no booking, and is drawn striped and fixed', async () => {
    const api = makeApi(new MockBackend());
    const periods = await api.maintenance('lab1');
    expect(periods).toHaveLength(1);
    const m = periods[0];
    expect(m.reason).toBe('driver 570');
    const now = Date.now();
    const list = await api.bookings('lab1', new Date(now - DAY).toISOString(), new Date(now + 9 * DAY).toISOString());
    const [ms, me] = [Date.parse(m.interval.start), Date.parse(m.interval.end)];
    const inside = list.filter((b) => b.gpus.some((g) => m.gpus.includes(g)) && Date.parse(b.interval.start) < me && ms < Date.parse(b.interval.end));
    expect(inside).toEqual([]);
    const ev = maintenanceEventOf('lab1', m, now);
    expect(ev.classNames).toContain('maintenance');
    expect(ev.editable).toBe(false);
    expect(ev.resourceIds).toHaveLength(2);
    expect(ev.extendedProps.maintenance?.reason).toBe('driver 570');
  });
});

describe('an admin takes GPUs out of service from the app', () => {
  it('is refused to a user, and for an admin cancels what is in the way', async () => {
    const api = makeApi(new MockBackend());
    const now = Date.now();
    const from = new Date(now - DAY).toISOString();
    const to = new Date(now + 9 * DAY).toISOString();
    // lab1: the person is a user there.
    const no = await refusal(api.createMaintenance('lab1', null, new Date(now + DAY).toISOString(), new Date(now + DAY + 3_600_000).toISOString(), 'x'));
    expect(no.kind).toBe('not_allowed');
    // local: an admin. Take GPU 2 for a day from tomorrow.
    const gpu = (await api.gpus('local')).gpus[2].uuid;
    const start = new Date(now + DAY).toISOString();
    const end = new Date(now + 2 * DAY).toISOString();
    const r = await api.createMaintenance('local', [gpu], start, end, 'driver 570');
    expect(r.maintenance[0].gpus).toEqual([gpu]);
    expect(await api.maintenance('local')).toHaveLength(1);
    for (const b of r.changed) expect(['cancelled', 'active']).toContain(b.state);
    const live = (await api.bookings('local', from, to)).filter(
      (b) => (b.state === 'confirmed' || b.state === 'active') && b.gpus.includes(gpu) && Date.parse(b.interval.start) < Date.parse(end) && Date.parse(start) < Date.parse(b.interval.end),
    );
    expect(live).toEqual([]);
  });
});
