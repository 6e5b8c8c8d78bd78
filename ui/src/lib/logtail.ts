// The tail of a job's log as the booking panel shows it while more arrives.

/**
 * The last `n` lines of `text` (a line still being written counts as one). The text's end is
 * kept as it is, so the next piece of the log can be appended to the result.
 */
export function tail(text: string, n: number): string {
  const lines = text.split('\n');
  const complete = text.endsWith('\n') ? lines.length - 1 : lines.length;
  if (complete <= n) return text;
  return lines.slice(complete - n).join('\n');
}
