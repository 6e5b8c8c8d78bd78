// News while away, pure: the kinds of event a person may have mailed or posted to a webhook,
// in words; the targets as the Settings form edits them; the same checks as the agent's
// (gpubook_proto::notify::check_targets), so a mistake is shown before anything is sent; and
// a delivery in words.
import type { Delivery } from './wire/Delivery';
import type { EventKind } from './wire/EventKind';
import type { NotifyTarget } from './wire/NotifyTarget';
import type { WebhookFormat } from './wire/WebhookFormat';

/** Most targets one person may have on one server (gpubook_proto::notify::MAX_TARGETS). */
export const MAX_TARGETS = 4;

/** The kinds a person can ask for, with what each means, in the order the form lists them. */
export const KINDS: [EventKind, string][] = [
  ['job_finished', 'A job finished'],
  ['job_stopped', "A job was stopped at the slot's end"],
  ['job_failed', 'A job could not start'],
  ['job_lost', 'A job was lost (the server restarted)'],
  ['slot_ending', 'A slot ends soon'],
  ['booking_approved', 'A booking was approved'],
  ['booking_denied', 'A booking was denied'],
  ['booking_cancelled', 'A booking was cancelled (by an admin or for maintenance)'],
  ['booking_changed', 'A booking was moved or changed'],
  ['booking_moved_earlier', 'An "as soon as possible" booking moved earlier'],
  ['intruder', 'Someone else is on your GPU'],
  ['idle_held', 'Your GPUs hold memory but do nothing'],
  ['stage_failed', 'Data for a booking could not be staged'],
  ['job_saved', "A job's results were saved"],
  ['save_failed', "A job's results could not be saved"],
  ['slot_starting', 'A slot starts in 5 minutes'],
  ['slot_started', 'A slot started'],
];

/** What the agent sends when a target names no kinds (gpubook_proto::notify::DEFAULT_KINDS). */
export const DEFAULT_KINDS: EventKind[] = [
  'job_finished', 'job_stopped', 'job_failed', 'job_lost', 'slot_ending', 'booking_approved', 'booking_denied',
  'booking_cancelled', 'booking_moved_earlier', 'intruder', 'stage_failed', 'save_failed',
];

/** A target as the form edits it: an address or a URL, its format and kinds. */
export type Draft = { channel: 'email' | 'webhook'; to: string; format: WebhookFormat; kinds: EventKind[] };

/** The form's rows for the targets the agent keeps. */
export function drafts(targets: NotifyTarget[]): Draft[] {
  return targets.map((t) =>
    t.channel === 'email'
      ? { channel: 'email', to: t.address, format: 'slack', kinds: [...t.kinds] }
      : { channel: 'webhook', to: t.url, format: t.format, kinds: [...t.kinds] },
  );
}

/** A new row: an e-mail or a webhook with the default kinds. */
export function blank(channel: Draft['channel']): Draft {
  return { channel, to: '', format: 'slack', kinds: [...DEFAULT_KINDS] };
}

/** The targets the form's rows ask for, as the agent takes them. */
export function targetsOf(rows: Draft[]): NotifyTarget[] {
  return rows.map((r) =>
    r.channel === 'email'
      ? { channel: 'email', address: r.to.trim(), kinds: r.kinds }
      : { channel: 'webhook', url: r.to.trim(), format: r.format, kinds: r.kinds },
  );
}

/** The first problem with `rows` in words (as the agent would refuse them), or null. */
export function check(rows: Draft[], mail: boolean): string | null {
  if (rows.length > MAX_TARGETS) return `At most ${MAX_TARGETS} targets per server.`;
  const seen = new Set<string>();
  for (const r of rows) {
    const to = r.to.trim();
    if (r.kinds.length === 0) return `${to || 'A target'} needs at least one kind of event.`;
    if (r.channel === 'email') {
      if (!mail) return "This server's admin has not set up e-mail: use a webhook here.";
      if (!isAddress(to)) return `${JSON.stringify(to)} is not an e-mail address (name@domain.tld).`;
    } else {
      const why = urlProblem(to);
      if (why) return why;
    }
    const key = `${r.channel} ${to}`;
    if (seen.has(key)) return `${to} is given twice: give it once with all its kinds.`;
    seen.add(key);
  }
  return null;
}

function isAddress(a: string): boolean {
  if (a.length > 254 || /[\s<>,;"()[\]\\\p{Cc}]/u.test(a)) return false;
  const at = a.indexOf('@');
  if (at <= 0 || at !== a.lastIndexOf('@')) return false;
  const domain = a.slice(at + 1);
  return domain.includes('.') && !domain.startsWith('.') && !domain.endsWith('.');
}

function urlProblem(u: string): string | null {
  if (u.length > 2048) return `The URL is ${u.length} bytes; at most 2048.`;
  if (/[\s\p{Cc}]/u.test(u)) return 'A webhook URL may not hold spaces.';
  const m = /^https?:\/\/([^/?#]*)/.exec(u);
  if (!m) return `${JSON.stringify(u.slice(0, 64))} is not an http:// or https:// URL.`;
  if (!m[1] || m[1].includes('@')) return `${JSON.stringify(u.slice(0, 64))} has no host, or carries a user name: put a token in the path instead.`;
  return null;
}

/** A delivery in words: "sent 14:02", "retry 14:05 (connection refused)", "gave up (…)". */
export function deliveryWords(d: Delivery, time: (iso: string) => string): string {
  const tries = d.attempts === 1 ? '1 try' : `${d.attempts} tries`;
  if (d.state === 'sent') return `sent${d.sent_at ? ` ${time(d.sent_at)}` : ''}`;
  if (d.state === 'failed') return `gave up after ${tries}${d.last_error ? `: ${d.last_error}` : ''}`;
  if (d.attempts === 0) return 'waiting to be sent';
  return `${tries} failed${d.last_error ? ` (${d.last_error})` : ''}; next${d.next_attempt ? ` ${time(d.next_attempt)}` : ' soon'}`;
}
