// An in-memory stand-in for the Rust side, used only when the page is not inside Tauri
// (`npm run dev`, a plain browser, screenshots). It plays a few agents: GPUs, other people's
// bookings, conflicts, approval, "as soon as possible", jobs with logs, pushed events and
// readings. It holds no booking rules beyond what makes the screens realistic.
import type { AppError, CaldavStatus, ServerView, Settings } from './app-types';
import type { CaldavCalendar } from './app/CaldavCalendar';
import type { Command, CommandArgs, CommandResults, EventName, EventPayloads, Handlers, Host } from './api';
import type { Booking } from './wire/Booking';
import type { BookingResponse } from './wire/BookingResponse';
import type { BookRequest } from './wire/BookRequest';
import type { Event } from './wire/Event';
import type { EventKind } from './wire/EventKind';
import type { Gpu } from './wire/Gpu';
import type { LogsResponse } from './wire/LogsResponse';
import type { OutsideHold } from './wire/OutsideHold';
import { clusterGpus, clusterHolds, slurmLane } from './mock-cluster';
import type { Maintenance } from './wire/Maintenance';
import { seededPeriod, takeOutOfService } from './mock-maintenance';
import { mockUsageSeries } from './mock-usage';
import { awayHandlers } from './mock-away';
import type { PolicyResponse } from './wire/PolicyResponse';
import type { Readings } from './wire/Readings';
import type { Role } from './wire/Role';
import { ceilTo, floorTo, HOUR, roundTo, toWire } from './time';
import { err, makeGpus, mockIcs, PEOPLE, rng, TITLES } from './mock-data';

const GRAN = 900; // 15-minute grid
const ME = 'you';

type MockServer = {
  view: ServerView;
  gpus: Gpu[];
  bookings: Map<number, Booking>;
  maintenance: Maintenance[];
  /** What Slurm holds outside gpubook (a Slurm cluster only). */
  outside: OutsideHold[];
  seq: number;
  nextId: number;
  role: Role;
};

/** The in-memory backend. */
export class MockBackend implements Host {
  readonly mock = true;
  private servers = new Map<string, MockServer>();
  private listeners = new Map<string, Set<(p: unknown) => void>>();
  private settingsValue: Settings = {
    notify: {
      slot_starting: true, slot_started: true, slot_ending: true, job_finished: true, job_stopped: true,
      booking_approved: true, booking_denied: true, booking_moved_earlier: true, maintenance: true, intruder: true, server_unreachable: true, server_back: true,
    },
    show_own_command_in_calendar: false,
  };
  private madeCalendars: CaldavCalendar[] = [];
  private caldav: CaldavStatus = { account: null, state: 'off', last_sync: null, pending: 0, error: null, needs_password: false };
  private knownHosts = new Set<string>();
  private timers: number[] = [];
  private started = Date.now();

  constructor(now: number = Date.now()) {
    this.addServer('local', 'This computer', makeGpus('This computer', 4, '', 24, true), 'admin', true, 'connected', now);
    this.addServer('lab1', 'lab1', makeGpus('lab1', 8, 'NVIDIA H200', 141, false), 'user', false, 'connecting', now);
    this.addServer('lab2', 'lab2', makeGpus('lab2', 4, 'NVIDIA A100-SXM4-80GB', 80, false), 'user', false, 'connecting', now);
    // A server whose login was refused: it waits for the person to sign in.
    this.addServer('lab3', 'lab3', makeGpus('lab3', 2, 'NVIDIA L40S', 48, false), 'user', false, 'unreachable', now);
    this.addCluster(now);
    const lab3 = this.servers.get('lab3')!;
    lab3.view = {
      ...lab3.view,
      needs_login: true,
      detail: `Cannot log in to lab3 as ${ME}: tried ssh-agent (1 key), no password (none in the keyring, and nobody to type one). Check that \`ssh lab3\` works, or load your key with \`ssh-add\``,
    };
    if (typeof window !== 'undefined') {
      this.timers.push(window.setTimeout(() => this.setState('lab1', 'connected'), 600));
      this.timers.push(window.setTimeout(() => this.setState('lab2', 'unreachable', 'lab2 did not answer on port 22 (connection timed out).'), 1500));
      this.timers.push(window.setInterval(() => this.pushReadings(), 2000));
      this.timers.push(window.setInterval(() => this.tickJobs(), 5000));
      this.timers.push(window.setInterval(() => this.pushLogs(), 1000));
    }
  }

  private addServer(id: string, name: string, gpus: Gpu[], role: Role, simulated: boolean, state: ServerView['state'], now: number) {
    const s: MockServer = {
      view: { id, name, state, detail: simulated ? 'Simulated GPUs: no NVIDIA GPU found here.' : null, user: ME, role, simulated, slurm: false, needs_login: false, host_key_changed: false, follows_logs: true },
      gpus,
      bookings: new Map(),
      maintenance: [],
      outside: [],
      seq: 0,
      nextId: 1,
      role,
    };
    this.servers.set(id, s);
    this.seed(s, now);
  }

  /** A Slurm cluster of two 4-GPU nodes, with Slurm's own jobs and an admin's reservation. */
  private addCluster(now: number) {
    this.addServer('cluster', 'cluster', clusterGpus(), 'user', false, 'connected', now);
    const s = this.servers.get('cluster')!;
    s.view = { ...s.view, slurm: true };
    s.outside = clusterHolds(now);
  }

  /** Fills a server with other people's bookings and a few of one's own. */
  private seed(s: MockServer, now: number) {
    const r = rng(s.view.id.length * 7919 + s.gpus.length);
    const base = floorTo(now, 3600) - 6 * HOUR;
    for (const g of s.gpus) {
      let t = base + Math.floor(r() * 8) * HOUR;
      while (t < now + 80 * HOUR) {
        const len = (1 + Math.floor(r() * 10)) * HOUR;
        if (r() < 0.55) {
          const owner = PEOPLE[Math.floor(r() * PEOPLE.length)];
          this.put(s, owner, [g.uuid], t, t + len, TITLES[Math.floor(r() * TITLES.length)], now);
        }
        t += len + Math.floor(r() * 6) * HOUR;
      }
    }
    if (s.view.id === 'lab1') {
      // One's own running job, with someone else's process turning up on its GPU.
      const t = floorTo(now, 900);
      const mine = this.put(s, ME, [s.gpus[4].uuid], t - 2 * HOUR, t + 3 * HOUR, 'resnet sweep', now, true);
      mine.state = 'active';
      mine.run = { state: 'running', pid: 7100, start_ticks: null, started_at: toWire(t - 2 * HOUR), ended_at: null, exit_code: null, signal: null, message: null, log: '/tmp/job.log', staged_bytes: null, devices: [] };
      if (typeof window !== 'undefined') {
        this.timers.push(window.setTimeout(() => {
          this.event(s, 'intruder', mine, null, { kind: 'intruder', gpu: s.gpus[4].uuid, pid: 31337, user: 'mallory', used_bytes: 9 * 2 ** 30, stopped: false });
        }, 2500));
      }
    }
    if (s.view.id === 'lab1') s.maintenance.push(seededPeriod(s.bookings, s.gpus, floorTo(now, 3600), now));
    if (s.view.id === 'local') {
      const a = this.put(s, ME, [s.gpus[2].uuid, s.gpus[3].uuid], floorTo(now, 3600) + HOUR * 30, floorTo(now, 3600) + HOUR * 34, 'my long run', now, true);
      a.state = 'pending_approval';
      a.pending_reason = 'It is longer than the 4 h a booking may last here.';
      a.pending_since = a.revision;
    }
  }

  private put(s: MockServer, owner: string, gpus: string[], start: number, end: number, title: string, now: number, force = false): Booking {
    if (!force && this.conflicts(s, gpus, start, end).length) return undefined as unknown as Booking;
    const id = s.nextId++;
    const started = start <= now;
    const b: Booking = {
      id, owner, gpus, title,
      interval: { start: toWire(start), end: toWire(end) },
      state: end <= now ? 'ended' : started ? 'active' : 'confirmed',
      job: owner === ME ? { command: 'python train.py', cwd: null, env: {}, end_signal: null, grace_secs: null, keep_slot: false, stage: {}, save: [], save_to: null, s3: { profile: null, env_file: null } } : null,
      asap: null, pending_reason: null, pending_since: null, created_at: toWire(now - 86_400_000), revision: 1,
      warned_start: false, warned_end: false,
      run: started && end > now ? { state: 'running', pid: 4242 + id, start_ticks: null, started_at: toWire(start), ended_at: null, exit_code: null, signal: null, message: null, log: '/tmp/job.log', staged_bytes: null, devices: [] } : null,
      usage: null,
    };
    s.bookings.set(id, b);
    return b;
  }

  private conflicts(s: MockServer, gpus: string[], start: number, end: number, except = -1) {
    const out = [];
    for (const b of s.bookings.values()) {
      if (b.id === except || ['cancelled', 'denied', 'ended'].includes(b.state)) continue;
      const bs = Date.parse(b.interval.start);
      const be = Date.parse(b.interval.end);
      const both = b.gpus.filter((g) => gpus.includes(g));
      if (both.length && bs < end && start < be) {
        out.push({ booking: b.id, owner: b.owner, gpus: both, interval: b.interval, title: b.title });
      }
    }
    return out;
  }

  private emit<E extends EventName>(name: E, payload: EventPayloads[E]) {
    for (const cb of this.listeners.get(name) ?? []) cb(payload);
  }

  private event(s: MockServer, kind: EventKind, b: Booking, before: Booking['interval'] | null = null, note: Event['note'] = null) {
    b.revision += 1;
    if (b.state === 'pending_approval' && b.pending_since === null) b.pending_since = b.revision;
    const ev: Event = { seq: ++s.seq, at: toWire(Date.now()), kind, booking: structuredClone(b), before, actor: ME, note };
    // Delivered like the real thing: after the command's answer.
    setTimeout(() => this.emit('gpubook://event', { server: s.view.id, event: ev }), 0);
  }

  private setState(id: string, state: ServerView['state'], detail: string | null = null) {
    const s = this.servers.get(id);
    if (!s) return;
    s.view = { ...s.view, state, detail: detail ?? (s.view.simulated ? s.view.detail : null) };
    this.emit('gpubook://server', s.view);
  }

  /** The fake job log as it is at `now` (a line every 3 s). */
  private logText(now: number): string {
    const lines = Math.max(1, Math.floor((now - this.started) / 3000) + 5);
    return Array.from({ length: Math.min(lines, 200) }, (_, i) => `epoch ${i + 1}: loss ${(2 / (i + 2)).toFixed(4)} acc ${(0.5 + i / 404).toFixed(3)}`).join('\n') + '\n';
  }

  /** What is followed: key server/id → where the next piece starts. */
  private followed = new Map<string, { server: string; id: number; next: number }>();
  private pushLogs() {
    const all = this.logText(Date.now());
    for (const f of this.followed.values()) {
      if (all.length <= f.next) continue;
      const piece = { id: f.id, offset: f.next, data: all.slice(f.next), next: all.length, done: false };
      f.next = all.length;
      this.emit('gpubook://log', { server: f.server, piece });
    }
  }

  private pushReadings() {
    const t = (Date.now() - this.started) / 1000;
    for (const s of this.servers.values()) {
      if (s.view.state !== 'connected') continue;
      const now = Date.now();
      const readings: Readings = {
        at: toWire(now),
        gpus: s.gpus.map((g) => {
          const busy = [...s.bookings.values()].find(
            (b) => b.state === 'active' && b.gpus.includes(g.uuid) && Date.parse(b.interval.start) <= now,
          );
          const util = busy ? Math.round(70 + 25 * Math.sin(t / 7 + g.index)) : Math.round(2 * Math.random());
          const mem = busy ? g.memory_total * (0.5 + 0.3 * Math.sin(t / 11 + g.index)) : 300 * 2 ** 20;
          const live = {
            uuid: g.uuid, index: g.index, name: g.name, memory_used: Math.round(mem), memory_total: g.memory_total,
            util_gpu: util, util_mem: Math.round(util * 0.6), temperature_c: busy ? 68 + (g.index % 5) : 34,
            power_mw: busy ? 450_000 + g.index * 3000 : 70_000, power_limit_mw: 700_000,
            processes: busy
              ? [
                  { pid: busy.run?.pid ?? 4242 + busy.id, user: busy.owner, used_bytes: Math.round(mem) },
                  ...(busy.title === 'resnet sweep' && now - this.started > 2500 ? [{ pid: 31337, user: 'mallory', used_bytes: 9 * 2 ** 30 }] : []),
                ]
              : [],
          };
          return s.view.slurm ? slurmLane(live, s.outside, now) : live;
        }),
      };
      this.emit('gpubook://readings', { server: s.view.id, readings });
    }
  }

  private tickJobs() {
    const now = Date.now();
    for (const s of this.servers.values()) {
      for (const b of s.bookings.values()) {
        const start = Date.parse(b.interval.start);
        const end = Date.parse(b.interval.end);
        if (b.state === 'confirmed' && start <= now) {
          b.state = 'active';
          if (b.job) b.run = { state: 'running', pid: 5000 + b.id, start_ticks: null, started_at: toWire(now), ended_at: null, exit_code: null, signal: null, message: null, log: '/tmp/job.log', staged_bytes: null, devices: [] };
          this.event(s, 'slot_started', b);
        } else if (b.state === 'active' && end <= now) {
          b.state = 'ended';
          if (b.run && b.run.state === 'running') b.run = { ...b.run, state: 'finished', ended_at: toWire(now), exit_code: 0 };
          this.event(s, 'slot_ended', b);
        }
      }
    }
  }

  private server(id: unknown): MockServer {
    const s = this.servers.get(String(id));
    if (!s) throw err('not_found', `There is no server "${id}" in the list.`);
    if (s.view.state === 'unreachable') throw err('unreachable', `${s.view.name} cannot be reached: ${s.view.detail ?? 'no answer'}`, s.view.id);
    return s;
  }

  private booking(s: MockServer, id: unknown): Booking {
    const b = s.bookings.get(Number(id));
    if (!b) throw err('not_found', `There is no booking ${id} on ${s.view.name}.`, s.view.id);
    return b;
  }

  private mine(s: MockServer, b: Booking) {
    if (b.owner !== ME && s.role !== 'admin') {
      throw err('not_allowed', `Booking ${b.id} on ${s.view.name} is ${b.owner}'s; only they or an admin can change it.`, s.view.id);
    }
  }

  private answer(b: Booking, s: MockServer): BookingResponse {
    return { booking: structuredClone(b), also_changed: [], event: s.seq };
  }

  async listen<E extends EventName>(name: E, cb: (p: EventPayloads[E]) => void): Promise<() => void> {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    const f = cb as (p: unknown) => void;
    set.add(f);
    return () => set!.delete(f);
  }

  async invoke<C extends Command>(cmd: C, args: CommandArgs[C]): Promise<CommandResults[C]> {
    await new Promise((r) => setTimeout(r, 20)); // a round trip
    const handle = this.handlers[cmd] as ((a: CommandArgs[C]) => CommandResults[C]) | undefined;
    if (!handle) throw err('unknown_request', `The app does not know the command "${cmd}".`);
    return handle(args);
  }

  /** Each command of the contract (api.ts's Handlers: one missing or mistyped does not compile). */
  private readonly handlers: Handlers = {
    servers: () => [...this.servers.values()].map((s) => s.view),
    gpus: (a) => {
      const s = this.server(a.server);
      return { server: s.view.name, source: s.view.slurm ? 'slurm' : s.view.simulated ? 'simulated' : 'nvml', gpus: s.gpus, readings: null, outside: s.outside };
    },
    bookings: (a) => {
      const s = this.server(a.server);
      const from = Date.parse(a.from);
      const to = Date.parse(a.to);
      return [...s.bookings.values()]
        .filter((b) => Date.parse(b.interval.start) < to && from < Date.parse(b.interval.end))
        .map((b) => {
          const c = structuredClone(b);
          if (c.owner !== ME) c.job = null;
          return c;
        });
    },
    policy: (a) => this.policy(this.server(a.server)),
    maintenance: (a) => structuredClone(this.server(a.server).maintenance),
    create_maintenance: (a) => { const s = this.server(a.server); return takeOutOfService(s, a, ME, Date.now(), (kind, b, before, note) => this.event(s, kind, b, before, note)); },
    book: (a) => this.book(this.server(a.server), a.request, Date.now()),
    asap_any: (a) => this.asapAny(a.request, Date.now()),
    move_booking: (a) => {
      const now = Date.now();
      const s = this.server(a.server);
      const b = this.booking(s, a.id);
      this.mine(s, b);
      const start = roundTo(Date.parse(a.start), GRAN);
      const end = roundTo(Date.parse(a.end), GRAN);
      if (end <= start) throw err('invalid', 'The end must be after the start.', s.view.id);
      if (start < floorTo(now, GRAN) && b.state !== 'active') throw err('invalid', 'A booking cannot be moved into the past.', s.view.id);
      const c = this.conflicts(s, b.gpus, start, end, b.id);
      if (c.length) {
        throw err('conflict', `${s.view.name}: GPU ${this.indexOf(s, c[0].gpus[0])} is booked by ${c[0].owner} ("${c[0].title}") then.`, s.view.id, { conflicts: c });
      }
      const before = { ...b.interval };
      b.interval = { start: toWire(start), end: toWire(end) };
      this.event(s, 'booking_changed', b, before);
      return this.answer(b, s);
    },
    extend: (a) => {
      const s = this.server(a.server);
      const b = this.booking(s, a.id);
      this.mine(s, b);
      const end = ceilTo(Date.parse(a.to), GRAN);
      const c = this.conflicts(s, b.gpus, Date.parse(b.interval.end), end, b.id);
      if (c.length) throw err('conflict', `${s.view.name}: ${c[0].owner} has GPU ${this.indexOf(s, c[0].gpus[0])} from ${new Date(c[0].interval.start).toLocaleTimeString()}.`, s.view.id, { conflicts: c });
      b.interval = { ...b.interval, end: toWire(end) };
      this.event(s, 'booking_changed', b);
      return this.answer(b, s);
    },
    cancel: (a) => {
      const s = this.server(a.server);
      const b = this.booking(s, a.id);
      this.mine(s, b);
      b.state = 'cancelled';
      this.event(s, 'booking_cancelled', b);
      return this.answer(b, s);
    },
    release: (a) => {
      const now = Date.now();
      const s = this.server(a.server);
      const b = this.booking(s, a.id);
      this.mine(s, b);
      if (b.state !== 'active') throw err('invalid', `Booking ${b.id} has not started; cancel it instead.`, s.view.id);
      b.state = 'ended';
      b.interval = { ...b.interval, end: toWire(ceilTo(now, GRAN)) };
      if (b.run) b.run = { ...b.run, state: 'stopped', ended_at: toWire(now), signal: 15, message: 'Stopped: the booking was released.' };
      this.event(s, 'booking_released', b);
      return this.answer(b, s);
    },
    approve: (a) => this.decide('approve', a), deny: (a) => this.decide('deny', a),
    usage_series: (a) => { const s = this.server(a.server); return mockUsageSeries(s, this.booking(s, a.id), ME, Date.now()); },
    // The mock "remembers" six runs of `python train.py`; any other command has none.
    suggest_length: (a) => {
      this.server(a.server);
      if (a.command.trim() === 'python train.py' && a.gpus > 0) {
        return { length_secs: 11_700, runs: 6, shortest_secs: 9660, longest_secs: 11_100, scaled: false, says: 'your last 6 runs of this took 2h 41m – 3h 5m; book 3h 15m' };
      }
      return { length_secs: null, runs: 0, shortest_secs: 0, longest_secs: 0, scaled: false, says: `no past run of this command with ${a.gpus} GPU(s) on this server to go by: give a length` };
    },
    job_logs: (a) => {
      const s = this.server(a.server);
      const b = this.booking(s, a.id);
      const all = this.logText(Date.now());
      const from = Math.min(a.offset ?? 0, all.length);
      const r: LogsResponse = { data: all.slice(from), next: all.length, done: b.run?.state !== 'running' };
      // Following: the rest is pushed as "gpubook://log" (see pushLogs).
      const key = `${s.view.id}/${b.id}`;
      if (a.follow === true && !r.done) this.followed.set(key, { server: s.view.id, id: b.id, next: r.next });
      if (a.follow === false) this.followed.delete(key);
      return r;
    },
    add_server: (a) => {
      const spec = a.spec.trim();
      if (!/^([\w.-]+@)?[\w.-]+$/.test(spec)) throw err('invalid', `"${spec}" is not a Host from ~/.ssh/config nor user@host.`);
      if (spec.includes('secure') && !a.secret) {
        throw err('auth', `${spec} asks for a password: the SSH agent has no key it accepts.`, spec);
      }
      if (!this.knownHosts.has(spec)) {
        throw err('host_key_unknown', `${spec} is new: check its key's fingerprint before you trust it.`, spec, { fingerprint: 'SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8' });
      }
      return this.accept(spec, Date.now());
    },
    accept_host_key: (a) => {
      this.knownHosts.add(a.spec);
      return this.accept(a.spec, Date.now());
    },
    sign_in: (a) => {
      const s = this.servers.get(a.id);
      if (!s) throw err('internal', `There is no server "${a.id}" in the app; it may have been removed.`, a.id);
      if (!a.secret) throw err('auth', s.view.detail ?? `Cannot log in to ${s.view.name}.`, s.view.id);
      s.view = { ...s.view, needs_login: false, state: 'connecting', detail: null };
      setTimeout(() => this.setState(s.view.id, 'connected'), 500);
      return s.view;
    },
    remove_server: (a) => {
      this.servers.delete(a.id);
      return null;
    },
    settings: () => structuredClone(this.settingsValue),
    set_settings: (a) => {
      this.settingsValue = structuredClone(a.settings);
      return null;
    },
    ssh_hosts: () => ['lab1', 'lab2', 'gpu-box'],
    feed_url: () => 'http://127.0.0.1:47615/feed/3q9xk2mv7c/bookings.ics',
    caldav_status: () => structuredClone(this.caldav),
    caldav_login: (a) => {
      // The mock's CalDAV server takes any password but "wrong".
      if (a.password === 'wrong') {
        throw err('auth', `The CalDAV server at ${a.url} refused the password of ${a.user} (401 Unauthorized); nothing was stored. Check the user and the password.`);
      }
      this.caldav = {
        account: { url: a.url, user: a.user, all_url: a.allUrl ?? null },
        state: 'ok',
        last_sync: new Date().toISOString(),
        pending: 0,
        error: null,
        needs_password: false,
      };
      setTimeout(() => this.emit('gpubook://caldav', structuredClone(this.caldav)), 0);
      return structuredClone(this.caldav);
    },
    caldav_discover: (a) => {
      if (a.password === 'wrong') {
        throw err('auth', `The CalDAV server at ${a.url} refused the password of ${a.user} (401 Unauthorized).`);
      }
      const home = `https://${a.url.replace(/^https?:\/\//, '').replace(/\/$/, '')}/dav/calendars/${a.user}/`;
      return {
        home,
        calendars: [
          { url: `${home}personal/`, name: 'Personal', events: true },
          ...this.madeCalendars,
          { url: `${home}tasks/`, name: 'Tasks', events: false },
        ],
      };
    },
    caldav_create_calendar: (a) => {
      const home = `https://${a.url.replace(/^https?:\/\//, '').replace(/\/$/, '')}/dav/calendars/${a.user}/`;
      const found = this.madeCalendars.find((c) => c.name === a.name);
      if (found) return found;
      const made = { url: `${home}gpu-bookings/`, name: a.name, events: true };
      this.madeCalendars.push(made);
      return made;
    },
    caldav_logout: () => {
      this.caldav = { account: null, state: 'off', last_sync: null, pending: 0, error: null, needs_password: false };
      this.emit('gpubook://caldav', structuredClone(this.caldav));
      return null;
    },
    export_ics: (a) => mockIcs(this.servers.values(), a.mine, ME),
    // A browser has no Downloads folder to write into: the path the app would answer.
    save_ics: () => '/home/you/Downloads/gpubook-bookings.ics',
    ...awayHandlers((id) => this.server(id), ME),
  };

  private policy(s: MockServer): PolicyResponse {
    return {
      policy: {
        default_role: 'user', admins: [], guests: [], users: [], granularity_secs: GRAN,
        max_booking_secs: s.view.id === 'local' ? 4 * 3600 : 48 * 3600, max_ahead_secs: 14 * 86400,
        weekly_quota_gpu_hours: 200, max_gpus_at_once: 4, over_policy: 'approval', intruders: 'warn',
        idle_after_secs: 3600, release_idle: false, idle_held_after_secs: 1800,
        idle_held_below_pct: 5, release_idle_held: false, end_warning_secs: 600,
        max_grace_secs: 300, max_log_bytes: 2 ** 30, max_pending: 20, max_upcoming: 500,
        scratch: '/scratch/gpubook', stage_quota_bytes: 500 * 2 ** 30,
      },
      role: s.role,
      week_gpu_hours: 12.5,
    };
  }

  /** `approve` and `deny`, as the agent decides them. */
  private decide(cmd: 'approve' | 'deny', a: CommandArgs['approve']): BookingResponse {
    const s = this.server(a.server);
    if (s.role !== 'admin') throw err('not_allowed', `Only an admin of ${s.view.name} can ${cmd} bookings.`, s.view.id);
    const b = this.booking(s, a.id);
    if (b.state !== 'pending_approval') throw err('invalid', `Booking ${b.id} is not waiting for approval.`, s.view.id);
    // As the agent (protocol 1.2): a decision on an older revision than the booking's is
    // refused, with the revision it has now; one that names none (an older client) is
    // taken only if the booking is unchanged since it began to wait.
    const rev = a.rev ?? b.pending_since;
    if (rev !== undefined && rev !== null && rev !== b.revision) {
      const shape = `GPU ${b.gpus.map((g) => this.indexOf(s, g)).join(',')}, ${b.interval.start} → ${b.interval.end}, ${b.state}`;
      throw err('changed', `${s.view.name}: booking ${b.id} changed since you looked: ${shape}`, s.view.id, { revision: b.revision });
    }
    b.state = cmd === 'approve' ? 'confirmed' : 'denied';
    b.pending_reason = null;
    this.event(s, cmd === 'approve' ? 'booking_approved' : 'booking_denied', b);
    return this.answer(b, s);
  }

  private indexOf(s: MockServer, uuid: string): number {
    return s.gpus.find((g) => g.uuid === uuid)?.index ?? -1;
  }

  private accept(spec: string, now: number): ServerView {
    const host = spec.split('@').pop()!;
    if (!this.servers.has(host)) {
      this.addServer(host, host, makeGpus(host, 4, 'NVIDIA L40S', 48, false), 'user', false, 'connecting', now);
      setTimeout(() => this.setState(host, 'connected'), 500);
    }
    return this.servers.get(host)!.view;
  }

  private book(s: MockServer, req: BookRequest, now: number): BookingResponse {
    if (!req.title.trim()) throw err('invalid', 'A booking needs a title: say what the GPUs are for.', s.view.id);
    if (req.job?.cwd && !req.job.cwd.startsWith('/')) {
      throw err('invalid', `The working directory ${req.job.cwd} is not an absolute path; give an absolute path on the server.`, s.view.id);
    }
    let gpus: string[];
    let start: number;
    let end: number;
    if (req.when.kind === 'at') {
      start = floorTo(Date.parse(req.when.start), GRAN);
      end = ceilTo(Date.parse(req.when.end), GRAN);
      if (end <= start) throw err('invalid', 'The end must be after the start.', s.view.id);
      if (end <= now) throw err('invalid', 'That time is already over.', s.view.id);
    } else {
      start = ceilTo(now, GRAN);
      end = start + req.when.duration_secs * 1000;
    }
    if (req.gpus.kind === 'named') {
      gpus = req.gpus.gpus.map((g) => s.gpus.find((x) => x.uuid === g || String(x.index) === g)?.uuid ?? g);
      const c = this.conflicts(s, gpus, start, end);
      if (c.length) {
        const who = c.map((x) => `${x.owner} ("${x.title}") on GPU ${this.indexOf(s, x.gpus[0])}`).join(', ');
        throw err('conflict', `${s.view.name}: those GPUs are already booked then by ${who}.`, s.view.id, { conflicts: c });
      }
    } else {
      const q = this.quote(s, req, now);
      gpus = q.gpus;
      start = q.start;
      end = q.end;
    }
    const b = this.put(s, ME, gpus, start, end, req.title.trim(), now, true);
    b.job = req.job;
    b.run = null;
    if (req.when.kind === 'asap') {
      b.asap = { count: gpus.length, min_memory: null, duration_secs: req.when.duration_secs, asked_at: toWire(now), named: [], exempt: false };
    }
    if (s.view.id === 'local' && end - start > 4 * HOUR) {
      b.state = 'pending_approval';
      b.pending_reason = 'It is longer than the 4 h a booking may last here.';
    }
    this.event(s, 'booking_created', b);
    return this.answer(b, s);
  }

  /** Where an "as soon as possible" request would go on a server (what the agent would find). */
  private quote(s: MockServer, req: BookRequest, now: number): { gpus: string[]; start: number; end: number } {
    if (req.gpus.kind !== 'count' || req.when.kind !== 'asap') throw err('invalid', 'Not an "as soon as possible" request.', s.view.id);
    const count = req.gpus.count;
    const minMem = req.gpus.min_memory ?? 0;
    const fit = s.gpus.filter((g) => g.memory_total >= minMem);
    if (fit.length < count) throw err('invalid', `${s.view.name} has no ${count} GPUs with that much memory.`, s.view.id);
    const dur = req.when.duration_secs * 1000;
    for (let t = ceilTo(now, GRAN); t < now + 14 * 86400_000; t += GRAN * 1000) {
      const free = fit.filter((g) => this.conflicts(s, [g.uuid], t, t + dur).length === 0);
      if (free.length >= count) return { gpus: free.slice(0, count).map((g) => g.uuid), start: t, end: t + dur };
    }
    throw err('unavailable', `${s.view.name} has no free slot within two weeks.`, s.view.id);
  }

  private asapAny(req: BookRequest, now: number): { server: string; response: BookingResponse } {
    let best: { s: MockServer; start: number } | null = null;
    const reasons: string[] = [];
    for (const s of this.servers.values()) {
      if (s.view.state !== 'connected') continue;
      try {
        const q = this.quote(s, req, now);
        if (!best || q.start < best.start) best = { s, start: q.start };
      } catch (e) {
        reasons.push((e as AppError).message);
      }
    }
    if (!best) throw err('unavailable', reasons.join(' ') || 'No server is connected.');
    return { server: best.s.view.id, response: this.book(best.s, req, now) };
  }
}
