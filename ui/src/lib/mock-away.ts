// News while away and reports in the in-memory stand-in (mock.ts): each server keeps the
// person's e-mail and webhook targets (lab1 starts with a webhook and two deliveries, one
// retried), refuses what the agent refuses, and reports from mock-report.ts.
import type { Handlers } from './api';
import { check, drafts } from './away';
import { err } from './mock-data';
import { mockReport, type ReportServer } from './mock-report';
import type { NotifyResponse } from './wire/NotifyResponse';
import { toWire } from './time';

/** The commands of news while away and reports. */
export type AwayHandlers = Pick<Handlers, 'notify_show' | 'notify_set' | 'notify_clear' | 'report'>;

/** What lab1 starts with: a Mattermost webhook, one delivery sent and one being retried. */
function seeded(now: number): NotifyResponse {
  return {
    targets: [{ channel: 'webhook', url: 'https://chat.lab.example/hooks/x7k2p9', format: 'slack', kinds: ['job_finished', 'job_failed', 'job_stopped', 'intruder'] }],
    deliveries: [
      { event: 41, kind: 'job_finished', booking: 12, target: 'webhook https://chat.lab.example/…', state: 'pending', attempts: 2, last_error: 'HTTP 503 Service Unavailable', next_attempt: toWire(now + 240_000), sent_at: null },
      { event: 37, kind: 'intruder', booking: 9, target: 'webhook https://chat.lab.example/…', state: 'sent', attempts: 1, last_error: null, next_attempt: null, sent_at: toWire(now - 3 * 3_600_000) },
    ],
    mail: true,
  };
}

/** The handlers over the mock's servers (`find` refuses an unknown or unreachable one). */
export function awayHandlers(find: (id: string) => ReportServer, me: string): AwayHandlers {
  const kept = new Map<string, NotifyResponse>();
  const of = (id: string): NotifyResponse => {
    const s = find(id);
    let n = kept.get(s.view.id);
    if (!n) kept.set(s.view.id, (n = s.view.id === 'lab1' ? seeded(Date.now()) : { targets: [], deliveries: [], mail: s.view.id !== 'local' }));
    return n;
  };
  return {
    notify_show: (a) => structuredClone(of(a.server)),
    notify_set: (a) => {
      const n = of(a.server);
      const why = check(drafts(a.targets), n.mail);
      if (why) throw err('invalid', `${find(a.server).view.name}: ${why}`, a.server);
      n.targets = structuredClone(a.targets);
      return structuredClone(n);
    },
    notify_clear: (a) => {
      const n = of(a.server);
      n.targets = [];
      n.deliveries = n.deliveries.filter((d) => d.state !== 'pending');
      return structuredClone(n);
    },
    report: (a) => mockReport(find(a.server), a.from, a.to, me, Date.now()),
  };
}
