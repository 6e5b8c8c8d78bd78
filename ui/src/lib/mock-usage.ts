// A booking's GPU series in the in-memory stand-in (mock.ts): made up from the booking, the
// same every time for the same booking, up to now. Like the agent, it answers the owner and
// admins and refuses anyone else with `not_allowed`.
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { UsageSeriesResponse } from './wire/UsageSeriesResponse';
import { err } from './mock-data';
import { toWire } from './time';

/** What of a mock server the series needs. */
type Server = { role: string; view: { id: string; name: string }; gpus: Gpu[] };

/** Booking `b`'s series on `s` as of `now`, for `me`. Even bookings are used (a training run
 * that ramps up), odd ones only hold memory: the panel shows both kinds. */
export function mockUsageSeries(s: Server, b: Booking, me: string, now: number): UsageSeriesResponse {
  if (b.owner !== me && s.role !== 'admin') {
    throw err('not_allowed', `booking ${b.id} is ${b.owner}'s: only its owner and admins see its GPU readings`, s.view.id);
  }
  const start = Date.parse(b.interval.start);
  const end = Date.parse(b.interval.end);
  const perGpu = Math.min(720, Math.floor(2880 / Math.max(b.gpus.length, 1)));
  let width = 60;
  while (Math.ceil((end - start) / 1000 / width) > perGpu) width *= 2;
  const started = b.state === 'active' || b.state === 'ended';
  const until = Math.min(now, end);
  const gpus = b.gpus.map((uuid, k) => {
    const gpu = s.gpus.find((g) => g.uuid === uuid);
    const total = gpu?.memory_total ?? 0;
    const points = [];
    for (let t = start; started && t < until; t += width * 1000) {
      const i = (t - start) / (width * 1000);
      const used = b.id % 2 === 0;
      const util = used ? Math.min(100, 20 + 70 * Math.abs(Math.sin(i / 9 + k))) : 0;
      const memory = Math.round(total * (used ? 0.55 + 0.1 * Math.sin(i / 17) : 0.3));
      points.push({
        at: toWire(t), readings: width, util_mean: Math.round(util * 10) / 10, util_max: Math.round(used ? Math.min(100, util + 8) : 0),
        memory_mean: memory, memory_max: memory,
      });
    }
    return { uuid, index: gpu?.index ?? null, memory_total: total, points };
  });
  return { id: b.id, server: s.view.name, start: b.interval.start, end: b.interval.end, bucket_secs: started ? width : 0, gpus };
}
