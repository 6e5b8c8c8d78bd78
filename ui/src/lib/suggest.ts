// The booking dialog's suggested length: asked of the server for the command typed (from the
// person's own past runs of it there, `suggest_length`), shown with what it rests on, and
// offered as a button that sets the end. Pure: the dialog wires it to its fields.
import type { SuggestionResponse } from './wire/SuggestionResponse';
import { formatDuration } from './time';

/** How long the dialog waits after the last keystroke before it asks. */
export const ASK_AFTER_MS = 400;

/** Whether there is anything to ask about: a command, and at least one GPU. */
export function wantsSuggestion(command: string, gpus: number): boolean {
  return command.trim() !== '' && gpus > 0;
}

/** The suggested length in milliseconds, or null when the server had nothing to go by. */
export function suggestedMs(s: SuggestionResponse | null): number | null {
  return s?.length_secs != null && s.length_secs > 0 ? s.length_secs * 1000 : null;
}

/** The end that books the suggested length from `start`, or null when there is none. */
export function suggestedEnd(start: number | null, s: SuggestionResponse | null): number | null {
  const ms = suggestedMs(s);
  return start === null || ms === null ? null : start + ms;
}

/** The button's words: "Book 3h 15m"; null when there is no length to offer. */
export function offerLabel(s: SuggestionResponse | null): string | null {
  const ms = suggestedMs(s);
  return ms === null ? null : `Book ${formatDuration(ms)}`;
}

/** Whether the times already book exactly the suggested length (nothing left to offer). */
export function alreadyTaken(start: number | null, end: number | null, s: SuggestionResponse | null): boolean {
  const want = suggestedEnd(start, s);
  return want !== null && end === want;
}

/**
 * Answers arrive out of order when the person types on: only the answer to the latest
 * question is shown. `ask()` numbers a question; `isLatest(n)` says whether its answer still
 * matters.
 */
export class LatestOnly {
  private n = 0;
  ask(): number {
    return ++this.n;
  }
  isLatest(n: number): boolean {
    return n === this.n;
  }
}
