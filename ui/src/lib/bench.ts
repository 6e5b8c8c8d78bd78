// window.__gpubookBench(): the frame time while dragging over a week × 32 GPUs × 2,000
// bookings, measured in whatever web view runs it (WebKitGTK in the app through WebDriver's
// execute script, or chromium against `npm run dev`). It loads a synthetic server into the
// app's state (through the same path as real bookings), shows the week timeline, drags the
// booking rectangle with pointer events (one move per animation frame, over time and across
// GPUs), records the intervals between animation frames, cancels the drag and puts the real
// state back.
import { app } from './state.svelte';
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { ServerView } from './app-types';
import { floorTo, toWire } from './time';

/** What the bench can be asked. */
export type BenchOptions = {
  gpus?: number;
  bookings?: number;
  frames?: number;
  view?: string;
  /** Measure without moving the pointer (the baseline). */
  idle?: boolean;
  /** Leave the synthetic server and the rectangle on screen (for a screenshot); reload after. */
  keep?: boolean;
  /** false: send the moves to the calendar's root without finding the element under the
   * pointer (tells the browser's hit testing apart from the app's work). */
  hit?: boolean;
};

/** What it answers (milliseconds). */
export type BenchResult = {
  gpus: number;
  bookings: number;
  view: string;
  frames: number;
  load_ms: number;
  /** One pushed change to a booking, from its arrival to the frame after it is drawn. */
  update_ms: number;
  median_ms: number;
  p95_ms: number;
  max_ms: number;
  slowest_frame: number;
  selection_gpus: number;
  user_agent: string;
};

type Hooks = { setView: (v: string) => void; getView: () => string };

const nextFrame = () => new Promise<number>((r) => requestAnimationFrame(r));

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function synthetic(nGpus: number, nBookings: number, weekStart: number): { gpus: Gpu[]; bookings: Booking[] } {
  const gpus: Gpu[] = Array.from({ length: nGpus }, (_, i) => ({
    uuid: `GPU-bench-${i}`, index: i, name: 'NVIDIA H200', memory_total: 141 * 2 ** 30, server: 'bench', simulated: false, node: null,
  }));
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const people = ['alice', 'bob', 'chen', 'dara', 'emil', 'fatima', 'gus', 'hana'];
  const bookings: Booking[] = [];
  // As an agent would hold them: no two bookings of one GPU overlap. Round-robin over the
  // GPUs, each filled from Monday on with 30 min to 2.5 h bookings and short gaps; every
  // tenth booking takes the GPU and its neighbour over the same time (multi-GPU blocks).
  const cursor = gpus.map(() => weekStart);
  for (let id = 1; id <= nBookings; id++) {
    let g = (id - 1) % nGpus;
    const width = id % 10 === 0 && g + 1 < nGpus ? 2 : 1;
    const start = floorTo(Math.max(cursor[g], width === 2 ? cursor[g + 1] : 0) + Math.floor(rnd() * 4) * 900_000, 900);
    const end = start + (1 + Math.floor(rnd() * 5)) * 1_800_000;
    for (let k = 0; k < width; k++) cursor[g + k] = end;
    bookings.push({
      id, owner: people[id % people.length], gpus: gpus.slice(g, g + width).map((x) => x.uuid),
      interval: { start: toWire(start), end: toWire(end) }, title: `bench ${id}`, state: 'confirmed', job: null,
      asap: null, pending_reason: null, pending_since: null, created_at: toWire(weekStart), revision: 1, warned_start: false,
      warned_end: false, run: null, usage: null,
    });
    g = 0;
  }
  return { gpus, bookings };
}

async function bench(hooks: Hooks, opts: BenchOptions = {}): Promise<BenchResult> {
  const nGpus = opts.gpus ?? 32;
  const nBookings = opts.bookings ?? 2000;
  const frames = opts.frames ?? 180;
  const view = opts.view ?? 'timeline';
  const savedView = hooks.getView();
  let savedZoom: number | 'fit' | null = null;
  const monday = new Date();
  monday.setHours(0, 0, 0, 0);
  monday.setDate(monday.getDate() - ((monday.getDay() + 6) % 7));
  const { gpus, bookings } = synthetic(nGpus, nBookings, monday.getTime());
  const server: ServerView = { id: 'bench', name: 'bench', state: 'connected', detail: null, user: 'you', role: 'user', simulated: false, slurm: false, needs_login: false, host_key_changed: false, follows_logs: true };
  let result: BenchResult | undefined;
  let t0 = 0;
  try {
    // The view first, the whole week across the window (as the bench has always measured it),
    // then the bookings: loading is the time until they are drawn in that view.
    hooks.setView(view);
    for (let i = 0; i < 10; i++) await nextFrame();
    const g = (window as unknown as { __gpubook: CalendarHooks }).__gpubook;
    savedZoom = g.getZoom();
    g.zoom('fit');
    for (let i = 0; i < 10; i++) await nextFrame();
    t0 = performance.now();
    app.servers.push(server);
    app.only = 'bench';
    app.gpus.bench = gpus;
    app.book.load('bench', bookings);
    app.version++;
    // Until the blocks are on screen.
    for (let i = 0; i < 600; i++) {
      await nextFrame();
      if (document.querySelectorAll('[data-testid="booking"][data-server="bench"]').length > 0) break;
    }
    await nextFrame();
    const loadMs = performance.now() - t0;
    // Let the calendar settle before measuring.
    await new Promise((r) => setTimeout(r, 1000));
    for (let i = 0; i < 10; i++) await nextFrame();
    // From Tuesday 08:00 on GPU 2 to Thursday 20:00 on GPU 9 (or the last shown GPU).
    const from = monday.getTime() + 86_400_000 + 8 * 3_600_000;
    const to = monday.getTime() + 3 * 86_400_000 + 20 * 3_600_000;
    const p1 = g.pointFor('bench', Math.min(2, nGpus - 1), new Date(from).toISOString());
    // The farthest GPU whose lane is on screen at the end time.
    let p2: { x: number; y: number } | null = null;
    for (let i = nGpus - 1; i > 2 && !p2; i--) {
      const p = g.pointFor('bench', i, new Date(to).toISOString());
      if (p && p.y > 0 && p.y < window.innerHeight - 20 && p.x < window.innerWidth - 20) p2 = p;
    }
    if (!p1 || !p2) throw new Error('The bench lanes are not on screen: make the window larger.');
    // The view's own root: where its pointer handlers are.
    const cal = document.querySelector('[data-testid="calendar"] .cal-view') as HTMLElement;
    // The element under the pointer, found once per move as the browser does for a real one.
    const dayAt = (x: number, y: number) => (document.elementFromPoint(x, y) as HTMLElement | null) ?? cal;
    const ev = (type: string, x: number, y: number) =>
      new PointerEvent(type, { bubbles: true, cancelable: true, composed: true, clientX: x, clientY: y, pointerId: 1, pointerType: 'mouse', button: 0, buttons: type === 'pointerup' ? 0 : 1, isPrimary: true });
    // Down on the lane itself (under any booking there), as a person would on free time.
    const under = document.elementsFromPoint(p1.x, p1.y).find((e) => e.classList.contains('ec-day') || e.classList.contains('tl-lane')) as HTMLElement | undefined;
    (under ?? cal).dispatchEvent(ev('pointerdown', p1.x, p1.y));
    const stamps: number[] = [];
    let maxGpus = 0;
    for (let i = 1; i <= frames; i++) {
      // There and back again, so the rectangle keeps changing.
      const f = opts.keep ? i / frames : i <= frames / 2 ? (2 * i) / frames : 2 - (2 * i) / frames;
      const x = p1.x + (p2.x - p1.x) * f;
      const y = p1.y + (p2.y - p1.y) * f;
      if (!opts.idle) (opts.hit === false ? cal : dayAt(x, y)).dispatchEvent(ev('pointermove', x, y));
      stamps.push(await nextFrame());
      maxGpus = Math.max(maxGpus, new Set([...document.querySelectorAll<HTMLElement>('[data-testid="selection"]')].map((e) => e.style.transform.split(',')[1])).size);
    }
    if (!opts.keep) cal.dispatchEvent(ev('pointercancel', p1.x, p1.y));
    // One pushed change (a booking moved by 30 min) until it is on screen.
    const u0 = performance.now();
    const moved = structuredClone(bookings[nBookings - 1]);
    moved.revision += 1;
    moved.interval = { start: toWire(Date.parse(moved.interval.start) + 1_800_000), end: toWire(Date.parse(moved.interval.end) + 1_800_000) };
    app.book.upsert('bench', moved);
    app.version++;
    await nextFrame();
    await nextFrame();
    const updateMs = performance.now() - u0;
    const deltas = stamps.slice(1).map((t, i) => t - stamps[i]);
    const r = (x: number) => Math.round(x * 10) / 10;
    result = {
      gpus: nGpus, bookings: nBookings, view, frames: deltas.length, load_ms: r(loadMs), update_ms: r(updateMs),
      slowest_frame: deltas.indexOf(Math.max(...deltas)),
      median_ms: r(quantile(deltas, 0.5)), p95_ms: r(quantile(deltas, 0.95)), max_ms: r(Math.max(...deltas)),
      selection_gpus: maxGpus, user_agent: navigator.userAgent,
    };
    return result;
  } finally {
    if (opts.keep) return result!;
    app.servers = app.servers.filter((s) => s.id !== 'bench');
    app.only = null;
    app.book.drop('bench');
    delete app.gpus.bench;
    app.version++;
    hooks.setView(savedView);
    if (savedZoom !== null) (window as unknown as { __gpubook: CalendarHooks }).__gpubook.zoom(savedZoom);
  }
}

/** What the calendar offers the bench on window.__gpubook (CalendarView.svelte). */
type CalendarHooks = {
  pointFor: (s: string, g: number, iso: string) => { x: number; y: number } | null;
  zoom: (z: number | 'fit') => void;
  getZoom: () => number | 'fit';
};

/** Installs window.__gpubookBench. */
export function installBench(hooks: Hooks): void {
  (window as unknown as { __gpubookBench: (o?: BenchOptions) => Promise<BenchResult> }).__gpubookBench = (o) => bench(hooks, o);
}
