import { describe, expect, it } from 'vitest';
import { nextStep } from '../add-server';
import type { AppError } from '../app-types';

const err = (kind: AppError['kind'], message: string, fingerprint: string | null = null): AppError => ({
  kind,
  message,
  server: null,
  conflicts: [],
  fingerprint,
  revision: null,
});

describe('"Add server" asks for what the server needs next', () => {
  it('shows an unknown host key with its fingerprint', () => {
    expect(nextStep('lab', err('host_key_unknown', 'not known', 'SHA256:abc'))).toEqual({
      kind: 'host_key',
      spec: 'lab',
      fingerprint: 'SHA256:abc',
      message: 'not known',
    });
  });

  it('asks for the password when the login needs one, also right after the key was trusted', () => {
    expect(nextStep('lab', err('auth', 'cannot log in to lab'))).toEqual({ kind: 'secret', spec: 'lab', message: 'cannot log in to lab' });
  });

  it('says anything else as it is, a changed key included', () => {
    expect(nextStep('lab', err('host_key_changed', 'changed', 'SHA256:new'))).toEqual({ kind: 'error', message: 'changed' });
    expect(nextStep('lab', err('host_key_unknown', 'no fingerprint'))).toEqual({ kind: 'error', message: 'no fingerprint' });
    expect(nextStep('lab', err('unreachable', 'down'))).toEqual({ kind: 'error', message: 'down' });
  });
});
