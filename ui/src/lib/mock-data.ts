// What the in-memory stand-in (mock.ts) is made of: a seeded random generator, its people and
// titles, GPUs named as agents name them, and errors shaped as the Rust side rejects.
import type { AppError } from './app-types';
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import { toWire } from './time';

/** A small deterministic random generator, so screenshots are stable. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** An error as the Rust side rejects with. */
export function err(kind: AppError['kind'], message: string, server: string | null = null, extra: Partial<AppError> = {}): AppError {
  return { kind, message, server, conflicts: [], fingerprint: null, revision: null, ...extra };
}

/** `n` GPUs of `server`, named as the agent names them. */
export function makeGpus(server: string, n: number, model: string, memGiB: number, simulated: boolean): Gpu[] {
  return Array.from({ length: n }, (_, i) => ({
    uuid: `${simulated ? 'SIM' : 'GPU'}-${server}-${i.toString(16).padStart(4, '0')}`,
    index: i,
    name: simulated ? `Simulated GPU ${i}` : model,
    memory_total: memGiB * 2 ** 30,
    server,
    simulated,
    node: null,
  }));
}

export const PEOPLE = ['alice', 'bob', 'chen', 'dara', 'emil', 'fatima'];
export const TITLES = ['yolov8 defects', 'llama finetune', 'ablation sweep', 'diffusion eval', 'thesis runs', 'protein fold', 'RL baseline'];

/** The mock's `.ics` export: every booking of `servers` (only `me`'s when `mine`), as the
 * real export writes them (UID, DTSTAMP, SEQUENCE). */
export function mockIcs(
  servers: Iterable<{ view: { name: string }; bookings: Map<number, Booking> }>,
  mine: boolean,
  me: string,
): string {
  const lines = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//gpubook//mock//EN'];
  const stamp = toWire(Date.now()).replace(/[-:]/g, '');
  for (const s of servers) {
    for (const b of s.bookings.values()) {
      if (mine && b.owner !== me) continue;
      lines.push('BEGIN:VEVENT', `UID:${b.id}@${s.view.name}`, `DTSTAMP:${stamp}`,
        `DTSTART:${b.interval.start.replace(/[-:]/g, '')}`, `DTEND:${b.interval.end.replace(/[-:]/g, '')}`,
        `SUMMARY:${b.gpus.length}× GPU on ${s.view.name} — ${b.title}`, `SEQUENCE:${b.revision}`, 'END:VEVENT');
    }
  }
  lines.push('END:VCALENDAR');
  return lines.join('\r\n') + '\r\n';
}
