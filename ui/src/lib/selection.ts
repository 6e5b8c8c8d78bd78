// The drag rectangle: over time and across adjacent GPU lanes of one server, snapped to the
// policy's granularity, turned into a BookRequest. Pure: the calendar feeds it points.
import type { BookRequest } from './wire/BookRequest';
import type { JobData } from './jobdata';
import type { JobSpec } from './wire/JobSpec';
import { ceilTo, floorTo, toWire } from './time';

/** One GPU lane, in display order. */
export type Lane = { server: string; uuid: string; index: number; node?: string | null };

/** The calendar's resource id of a lane. */
export function laneId(server: string, uuid: string): string {
  return `${server}/${uuid}`;
}

/** A rectangle being dragged: where the pointer went down and where it is now. */
export type Drag = { fromLane: number; toLane: number; anchor: number; current: number };

/** A snapped selection: adjacent GPUs of one server and a UTC interval. */
export type Selection = { server: string; lanes: Lane[]; start: number; end: number };

/**
 * The lanes between the pointer's first and current lane, inclusive, in display order, kept
 * to the first lane's server (a booking is on one server): crossing into another server's
 * lanes stops at the last lane of the first.
 */
export function lanesCrossed(lanes: Lane[], from: number, to: number): Lane[] {
  if (from < 0 || from >= lanes.length) return [];
  const server = lanes[from].server;
  const target = Math.max(0, Math.min(lanes.length - 1, to));
  const step = target >= from ? 1 : -1;
  const out: Lane[] = [lanes[from]];
  for (let i = from + step; step > 0 ? i <= target : i >= target; i += step) {
    if (lanes[i].server !== server) break;
    out.push(lanes[i]);
  }
  return out.sort((a, b) => a.index - b.index);
}

/**
 * The snapped interval between two instants (either order): the earlier one rounded down,
 * the later one rounded up to the granularity; at least one step long.
 */
export function snapInterval(a: number, b: number, granularitySecs: number): { start: number; end: number } {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  const start = floorTo(lo, granularitySecs);
  let end = ceilTo(hi, granularitySecs);
  if (end <= start) end = start + Math.max(1, granularitySecs) * 1000;
  return { start, end };
}

/** The selection a drag stands for now. */
export function selectionOf(lanes: Lane[], drag: Drag, granularitySecs: number): Selection | null {
  const crossed = lanesCrossed(lanes, drag.fromLane, drag.toLane);
  if (crossed.length === 0) return null;
  const { start, end } = snapInterval(drag.anchor, drag.current, granularitySecs);
  return { server: crossed[0].server, lanes: crossed, start, end };
}

/** What the booking dialog adds to a selection. */
export type BookForm = {
  title: string;
  command: string;
  cwd: string;
  endSignal: string;
  keepSlot: boolean;
  /** Data staged before the slot and files saved after it (lib/jobdata.ts); none if absent. */
  data?: JobData;
  /** Which of the owner's S3 credentials: a profile, or an environment file on the server. */
  s3Profile?: string;
  s3EnvFile?: string;
};

/**
 * Why the dialog's working directory cannot be sent, or null when it can (empty: the owner's
 * home). The job runs on the server, where only an absolute path means one place: the app has
 * no "current directory" to read a relative one from, and `~` is the server's to expand.
 */
export function cwdProblem(cwd: string): string | null {
  const c = cwd.trim();
  if (c === '' || c.startsWith('/')) return null;
  return `The working directory must be an absolute path on the server (starting with /), not "${c}".`;
}

/**
 * The booking request for a selection and the dialog's fields; times go out in UTC. On a Slurm
 * server (`slurm`) Slurm picks the node's devices when the job starts: the selection books
 * that many GPUs, its lanes are for display only.
 */
export function toBookRequest(sel: Selection, form: BookForm, slurm = false): BookRequest {
  const command = form.command.trim();
  const job: JobSpec | null = command
    ? {
        command,
        cwd: form.cwd.trim() || null,
        env: {},
        end_signal: form.endSignal.trim() || null,
        grace_secs: null,
        keep_slot: form.keepSlot,
        stage: form.data?.stage ?? {},
        save: form.data?.save ?? [],
        save_to: form.data?.save_to ?? null,
        s3: { profile: form.s3Profile?.trim() || null, env_file: form.s3EnvFile?.trim() || null },
      }
    : null;
  // On Slurm: that many GPUs of the node the lanes belong to (Slurm picks which).
  const nodes = [...new Set(sel.lanes.map((l) => l.node ?? null))];
  return {
    gpus: !slurm
      ? { kind: 'named', gpus: sel.lanes.map((l) => l.uuid) }
      : nodes.length === 1 && nodes[0]
        ? { kind: 'on_node', node: nodes[0], count: sel.lanes.length }
        : { kind: 'count', count: sel.lanes.length, min_memory: null },
    when: { kind: 'at', start: toWire(sel.start), end: toWire(sel.end) },
    title: form.title.trim(),
    job,
  };
}

/** An "as soon as possible" request: any `count` GPUs with at least `minMemGiB` each. */
export function toAsapRequest(
  count: number,
  minMemGiB: number | null,
  durationHours: number,
  title: string,
): BookRequest {
  return {
    gpus: { kind: 'count', count, min_memory: minMemGiB ? Math.round(minMemGiB * 2 ** 30) : null },
    when: { kind: 'asap', duration_secs: Math.round(durationHours * 3600) },
    title: title.trim(),
    job: null,
  };
}

/**
 * A drag from the cell the pointer went down in to the cell it is over now (cell starts, ms,
 * as the calendar reports them), as the two instants to snap between: both cells included.
 */
export function cellsToSpan(anchorCell: number, currentCell: number, granularitySecs: number): { anchor: number; current: number } {
  const g = Math.max(1, granularitySecs) * 1000;
  return currentCell >= anchorCell
    ? { anchor: anchorCell, current: currentCell + g }
    : { anchor: anchorCell + g, current: currentCell };
}
