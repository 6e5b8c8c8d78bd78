import { describe, expect, it } from 'vitest';
import { LatestOnly, alreadyTaken, offerLabel, suggestedEnd, wantsSuggestion } from '../suggest';
import { MockBackend } from '../mock';
import { makeApi } from '../api';
import type { SuggestionResponse } from '../wire/SuggestionResponse';

const HOUR = 3_600_000;
const three15: SuggestionResponse = {
  length_secs: 3 * 3600 + 15 * 60,
  runs: 6,
  shortest_secs: 2 * 3600 + 41 * 60,
  longest_secs: 3 * 3600 + 5 * 60,
  scaled: false,
  says: 'your last 6 runs of this took 2h 41m – 3h 5m; book 3h 15m',
};
const none: SuggestionResponse = { length_secs: null, runs: 0, shortest_secs: 0, longest_secs: 0, scaled: false, says: 'no past run' };

describe('the booking dialog offers the suggested length', () => {
  it('asks only with a command and a GPU', () => {
    expect(wantsSuggestion('python train.py', 1)).toBe(true);
    expect(wantsSuggestion('   ', 2)).toBe(false);
    expect(wantsSuggestion('python train.py', 0)).toBe(false);
  });

  it('sets the end to the start plus the suggestion, and says it in words', () => {
    const start = Date.UTC(2026, 11, 3, 14, 0);
    expect(suggestedEnd(start, three15)).toBe(start + 3.25 * HOUR);
    expect(offerLabel(three15)).toBe('Book 3h 15m');
    expect(alreadyTaken(start, start + 3.25 * HOUR, three15)).toBe(true);
    expect(alreadyTaken(start, start + HOUR, three15)).toBe(false);
  });

  it('offers nothing when the server has nothing to go by, or the start is unreadable', () => {
    expect(offerLabel(none)).toBeNull();
    expect(suggestedEnd(Date.now(), none)).toBeNull();
    expect(suggestedEnd(null, three15)).toBeNull();
  });

  it('shows only the answer to the latest question', () => {
    const q = new LatestOnly();
    const first = q.ask();
    const second = q.ask();
    expect(q.isLatest(first)).toBe(false);
    expect(q.isLatest(second)).toBe(true);
  });

  it('is answered by the mock agent through the declared command', async () => {
    const api = makeApi(new MockBackend());
    const s = await api.suggestLength('local', 'python train.py', 2);
    expect(offerLabel(s)).toBe('Book 3h 15m');
    expect(s.says).toContain('your last 6 runs');
    const n = await api.suggestLength('local', 'python other.py', 1);
    expect(n.length_secs).toBeNull();
    expect(n.says).toContain('no past run');
  });
});
