import { describe, expect, it } from 'vitest';
import { tail } from '../logtail';

describe('the log tail', () => {
  it('keeps the last lines and the end as it is', () => {
    expect(tail('a\nb\nc\n', 2)).toBe('b\nc\n');
    expect(tail('a\nb\nc', 2)).toBe('b\nc');
    expect(tail('a\nb', 5)).toBe('a\nb');
    expect(tail('', 3)).toBe('');
  });

  it('continues a line that was still being written when the next piece comes', () => {
    // "epoch 3: lo" arrived in one piece, "ss 0.2\n" in the next.
    let shown = tail('epoch 1\nepoch 2\nepoch 3: lo', 2);
    expect(shown).toBe('epoch 2\nepoch 3: lo');
    shown = tail(shown + 'ss 0.2\nepoch 4\n', 2);
    expect(shown).toBe('epoch 3: loss 0.2\nepoch 4\n');
  });
});
