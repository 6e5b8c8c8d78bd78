// The app's live state: servers, GPUs, readings, policies and bookings, fed by commands at
// start and by pushed events after. Components read it, and call commands through `app.api`
// (typed, generated from the contract: api.ts). Nothing here polls: every change after the
// first load arrives from an event listener.
import type { ServerView, Settings } from './app-types';
import { makeApi, type Api } from './api';
import { connectBackend, toAppError, type Backend } from './backend';
import { BookingBook } from './bookings';
import type { EventPayload } from './app-types';
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { Maintenance } from './wire/Maintenance';
import type { OutsideHold } from './wire/OutsideHold';
import type { PolicyResponse } from './wire/PolicyResponse';
import type { Readings } from './wire/Readings';
import type { Event } from './wire/Event';
import { toWire } from './time';

const DAY = 86_400_000;

/** Everything the screens show. */
/** How often Slurm servers' outside holds are read again, ms. */
const OUTSIDE_EVERY = 30_000;

export class AppState {
  backend: Backend | null = null;
  /** The contract's commands and events, typed; set by `start`. */
  api: Api | null = null;
  servers = $state<ServerView[]>([]);
  gpus = $state<Record<string, Gpu[]>>({});
  readings = $state<Record<string, Readings>>({});
  policies = $state<Record<string, PolicyResponse>>({});
  /** Per server, its maintenance periods: drawn as their own blocks. */
  maintenance = $state<Record<string, Maintenance[]>>({});
  /** Per server, what holds its GPUs outside gpubook (Slurm's jobs and reservations). */
  outside = $state<Record<string, OutsideHold[]>>({});
  /** Raised on every change of `book`, so derived views recompute. */
  version = $state(0);
  /** The last pushed events, newest first (for the status line). */
  lastEvent = $state<{ server: string; event: Event } | null>(null);
  /** A problem loading, shown in the sidebar. */
  loadError = $state<string | null>(null);
  settings = $state<Settings | null>(null);
  /** When set, the calendar shows only this server (the bench's synthetic one). */
  only = $state<string | null>(null);
  readonly book = new BookingBook();
  /** The window of time loaded: [from, to). */
  private from = Date.now() - 2 * DAY;
  private to = Date.now() + 9 * DAY;
  private loaded = new Set<string>();

  /** Connects, subscribes, then loads what is there. */
  async start(backend?: Backend): Promise<void> {
    this.backend = backend ?? (await connectBackend());
    const api = (this.api = makeApi(this.backend));
    // Listen first, so nothing that happens during the load is missed.
    await api.onServer((v) => this.onServer(v));
    await api.onEvent((p) => this.onEvent(p));
    await api.onReadings((p) => {
      this.readings[p.server] = p.readings;
    });
    try {
      this.servers = await api.servers();
      // Slurm's own jobs come and go without a gpubook event: looked at again every 30 s.
      if (typeof window !== 'undefined') setInterval(() => void this.refreshOutside(), OUTSIDE_EVERY);
    } catch (e) {
      this.loadError = toAppError(e).message;
      return;
    }
    api.settings().then((s) => (this.settings = s)).catch(() => {});
    await Promise.all(this.servers.filter((s) => s.state === 'connected').map((s) => this.loadServer(s.id)));
  }

  private onServer(v: ServerView) {
    const i = this.servers.findIndex((s) => s.id === v.id);
    if (i >= 0) this.servers[i] = v;
    else this.servers.push(v);
    if (v.state === 'connected') void this.loadServer(v.id);
  }

  private onEvent(p: EventPayload) {
    if (this.book.apply(p.server, p.event)) this.version++;
    // A booking moved for maintenance: the period itself is new to the calendar.
    if (p.event.note?.kind === 'maintenance') void this.loadMaintenance(p.server);
    this.lastEvent = p;
  }

  /** Loads a server's GPUs, policy and bookings in the loaded window. */
  async loadServer(id: string): Promise<void> {
    const api = this.api!;
    try {
      const [g, pol, list, periods] = await Promise.all([
        api.gpus(id),
        api.policy(id),
        api.bookings(id, toWire(this.from), toWire(this.to)),
        api.maintenance(id),
      ]);
      this.gpus[id] = g.gpus;
      this.maintenance[id] = periods;
      this.outside[id] = g.outside ?? [];
      if (g.readings) this.readings[id] = g.readings;
      this.policies[id] = pol;
      this.book.load(id, list);
      this.loaded.add(id);
      this.version++;
      if (typeof document !== 'undefined') document.body.dataset.ready = 'true';
    } catch (e) {
      this.loadError = toAppError(e).message;
    }
  }

  /** Reads again what holds the GPUs of the connected Slurm servers outside gpubook. */
  async refreshOutside(): Promise<void> {
    const slurm = this.servers.filter((s) => s.slurm && s.state === 'connected' && this.loaded.has(s.id));
    await Promise.all(
      slurm.map(async (s) => {
        try {
          this.outside[s.id] = (await this.api!.gpus(s.id)).outside ?? [];
          this.version++;
        } catch {
          // Shown on the next load; the calendar keeps what it had.
        }
      }),
    );
  }

  /** Reads a server's maintenance periods again. */
  async loadMaintenance(id: string): Promise<void> {
    try {
      this.maintenance[id] = await this.api!.maintenance(id);
      this.version++;
    } catch (e) {
      this.loadError = toAppError(e).message;
    }
  }

  /** Makes sure bookings in [from, to) are loaded (called when the calendar moves). */
  async ensureRange(from: number, to: number): Promise<void> {
    if (from >= this.from && to <= this.to) return;
    const nf = Math.min(from, this.from);
    const nt = Math.max(to, this.to);
    this.from = nf;
    this.to = nt;
    const api = this.api!;
    await Promise.all(
      [...this.loaded].map(async (id) => {
        try {
          const list = await api.bookings(id, toWire(nf), toWire(nt));
          this.book.load(id, list);
          this.version++;
        } catch (e) {
          this.loadError = toAppError(e).message;
        }
      }),
    );
  }

  /**
   * Reads a server's bookings in the loaded window again: for when an answer says the app's
   * copy is behind (an approval refused as `changed`), rather than waiting for the event.
   */
  async reloadBookings(id: string): Promise<void> {
    const list = await this.api!.bookings(id, toWire(this.from), toWire(this.to));
    this.book.load(id, list);
    this.version++;
  }

  /** Puts a command's answer into the book at once (its event follows and is a repeat). */
  applyAnswer(server: string, bookings: Booking[]): void {
    let changed = false;
    for (const bk of bookings) changed = this.book.upsert(server, bk) || changed;
    if (changed) this.version++;
  }

  /** The server with this id. */
  server(id: string): ServerView | undefined {
    return this.servers.find((s) => s.id === id);
  }

  /** Removes a server from the list. */
  forget(id: string): void {
    this.servers = this.servers.filter((s) => s.id !== id);
    delete this.gpus[id];
    delete this.readings[id];
    delete this.policies[id];
    this.book.drop(id);
    this.loaded.delete(id);
    this.version++;
  }

  /** The granularity of a server's policy, seconds (15 min until the policy is known). */
  granularity(id: string): number {
    return this.policies[id]?.policy.granularity_secs ?? 900;
  }
}

/** The one state of this page. */
export const app = new AppState();
