import { describe, expect, it } from 'vitest';
import { blank, check, DEFAULT_KINDS, deliveryWords, drafts, targetsOf, type Draft } from '../away';
import { MockBackend } from '../mock';
import { makeApi } from '../api';
import type { AppError } from '../app-types';
import type { Delivery } from '../wire/Delivery';

const row = (channel: Draft['channel'], to: string): Draft => ({ ...blank(channel), to });

describe('news while away, as the form edits it', () => {
  it('round-trips the targets the agent keeps', () => {
    const t = targetsOf([row('email', ' me@lab.org '), { ...row('webhook', 'https://chat.example/h/1'), format: 'json' }]);
    expect(t).toEqual([
      { channel: 'email', address: 'me@lab.org', kinds: DEFAULT_KINDS },
      { channel: 'webhook', url: 'https://chat.example/h/1', format: 'json', kinds: DEFAULT_KINDS },
    ]);
    expect(targetsOf(drafts(t))).toEqual(t);
  });

  it('refuses what the agent refuses, in words', () => {
    expect(check([row('email', 'me@lab.org'), row('webhook', 'http://127.0.0.1:9/h')], true)).toBeNull();
    expect(check([row('email', 'me@lab')], true)).toMatch(/not an e-mail address/);
    expect(check([row('email', 'me@lab.org\r\nBcc: x@y.z')], true)).toMatch(/not an e-mail address/);
    expect(check([row('email', 'me@lab.org')], false)).toMatch(/not set up e-mail/);
    expect(check([row('webhook', 'ftp://h/x')], true)).toMatch(/http/);
    expect(check([row('webhook', 'https://user:pw@h.example/x')], true)).toMatch(/user name/);
    expect(check([row('webhook', 'https://h/x'), row('webhook', 'https://h/x')], true)).toMatch(/twice/);
    expect(check([{ ...row('webhook', 'https://h/x'), kinds: [] }], true)).toMatch(/at least one kind/);
    expect(check(Array.from({ length: 5 }, (_, i) => row('webhook', `https://h/${i}`)), true)).toMatch(/At most 4/);
  });

  it('says how a delivery went', () => {
    const d: Delivery = { event: 1, kind: 'job_finished', booking: 3, target: 'mail to a@b.c', state: 'pending', attempts: 2, last_error: 'connection refused', next_attempt: '2025-03-03T10:00:00Z', sent_at: null };
    const t = (s: string) => s.slice(11, 16);
    expect(deliveryWords(d, t)).toBe('2 tries failed (connection refused); next 10:00');
    expect(deliveryWords({ ...d, state: 'sent', attempts: 1, sent_at: '2025-03-03T09:00:00Z' }, t)).toBe('sent 09:00');
    expect(deliveryWords({ ...d, state: 'failed', attempts: 8 }, t)).toBe('gave up after 8 tries: connection refused');
  });
});

describe('the mock keeps targets per server and reports by role', () => {
  it('sets, refuses and clears targets on one server only', async () => {
    const api = makeApi(new MockBackend());
    const set = await api.notifySet('local', [{ channel: 'webhook', url: 'https://h.example/x', format: 'slack', kinds: ['job_finished'] }]);
    expect(set.targets).toHaveLength(1);
    expect(JSON.stringify((await api.notifyShow('lab1')).targets)).not.toContain('h.example');
    const e = await api.notifySet('local', [{ channel: 'email', address: 'me@lab.org', kinds: ['job_finished'] }]).catch((x) => x as AppError);
    expect((e as AppError).kind).toBe('invalid');
    expect((await api.notifyShow('local')).targets).toHaveLength(1);
    expect((await api.notifyClear('local')).targets).toEqual([]);
  });

  it('gives an admin everyone and a user their own line, week sums adding up', async () => {
    const api = makeApi(new MockBackend());
    const now = Date.now();
    const from = new Date(now - 14 * 86_400_000).toISOString();
    const mid = new Date(now - 7 * 86_400_000).toISOString();
    const to = new Date(now).toISOString();
    const admin = await api.report('local', from, to);
    expect(admin.everyone).toBe(true);
    expect(admin.report.users.length).toBeGreaterThan(1);
    const [a, b] = [await api.report('local', from, mid), await api.report('local', mid, to)];
    const sum = (r: typeof a) => r.report.gpus.reduce((x, g) => x + g.booked_secs, 0);
    // Seconds with a fraction (the mock books from Date.now()): summed in another order, they
    // may differ in the last bit.
    expect(sum(a) + sum(b)).toBeCloseTo(sum(admin), 6);
    const user = await api.report('lab1', from, to);
    expect(user.everyone).toBe(false);
    expect(user.report.users.every((u) => u.user === 'you')).toBe(true);
  });
});
