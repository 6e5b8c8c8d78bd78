import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ceilTo, floorTo, formatDuration, formatRange, fromLocalInput, roundTo, toLocalInput, toWire } from '../time';

let savedTz: string | undefined;
beforeEach(() => {
  savedTz = process.env.TZ;
});
afterEach(() => {
  process.env.TZ = savedTz;
});

describe('time zones', () => {
  it('shows a UTC wire time in the local zone, east and west', () => {
    const t = Date.parse('2026-11-26T14:00:00Z');
    process.env.TZ = 'Asia/Tokyo';
    expect(toLocalInput(t)).toBe('2026-11-26T23:00');
    process.env.TZ = 'America/Sao_Paulo';
    expect(toLocalInput(t)).toBe('2026-11-26T11:00');
    process.env.TZ = 'Asia/Kathmandu'; // +05:45
    expect(toLocalInput(t)).toBe('2026-11-26T19:45');
  });

  it('round-trips local input to the same instant', () => {
    for (const tz of ['UTC', 'Asia/Kolkata', 'America/Los_Angeles', 'Europe/Berlin']) {
      process.env.TZ = tz;
      const t = Date.parse('2026-07-01T09:15:00Z');
      expect(fromLocalInput(toLocalInput(t))).toBe(t);
    }
  });

  it('moves a wall time skipped by DST forward, like the platform', () => {
    process.env.TZ = 'Europe/Berlin';
    const t = fromLocalInput('2026-03-29T02:30')!;
    expect(toWire(t)).toBe('2026-03-29T01:30:00Z');
    expect(toLocalInput(t)).toBe('2026-03-29T03:30');
  });

  it('rejects malformed input', () => {
    expect(fromLocalInput('tomorrow')).toBeNull();
    expect(fromLocalInput('2026-13-01')).toBeNull();
  });

  it('formats a range on one day and across days in the local zone', () => {
    process.env.TZ = 'Europe/Berlin';
    const now = Date.parse('2026-11-26T08:00:00Z');
    expect(formatRange(Date.parse('2026-11-26T13:00:00Z'), Date.parse('2026-11-26T17:00:00Z'), now)).toBe('today 14:00–18:00');
    expect(formatRange(Date.parse('2026-11-26T22:00:00Z'), Date.parse('2026-11-27T02:00:00Z'), now)).toBe('today 23:00 – tomorrow 03:00');
  });
});

describe('snapping', () => {
  const t = Date.parse('2026-11-26T14:07:30Z');
  it('floors, ceils and rounds to multiples since the epoch', () => {
    expect(toWire(floorTo(t, 900))).toBe('2026-11-26T14:00:00Z');
    expect(toWire(ceilTo(t, 900))).toBe('2026-11-26T14:15:00Z');
    expect(toWire(roundTo(t, 900))).toBe('2026-11-26T14:15:00Z');
    expect(toWire(roundTo(Date.parse('2026-11-26T14:07:29Z'), 900))).toBe('2026-11-26T14:00:00Z');
    expect(ceilTo(floorTo(t, 900), 900)).toBe(floorTo(t, 900));
  });
  it('writes wire times without milliseconds', () => {
    expect(toWire(Date.parse('2026-01-02T03:04:05.678Z'))).toBe('2026-01-02T03:04:05Z');
  });
  it('says durations as the tray, the notifications and the CLI do', () => {
    // The cases crates/core's human_duration is checked against.
    const fixture = JSON.parse(readFileSync(new URL('../../../../tests/fixtures/durations.json', import.meta.url), 'utf8'));
    const cases = fixture.cases as [number, string][];
    expect(cases.length).toBeGreaterThan(10);
    for (const [ms, text] of cases) expect([ms, formatDuration(ms)]).toEqual([ms, text]);
  });
});
