// What "Add server" asks next when adding (or accepting a host key) was refused: the unknown
// host key with its fingerprint, a password or passphrase, or the refusal itself. The same
// answer comes after "Trust and connect", so a server reached with a password asks for it
// there too rather than ending in an error.
import type { AppError } from './app-types';

/** The next step of adding the server `spec`. */
export type AddStep =
  | { kind: 'host_key'; spec: string; fingerprint: string; message: string }
  | { kind: 'secret'; spec: string; message: string }
  | { kind: 'error'; message: string };

/** What to ask after `err` refused adding `spec`. */
export function nextStep(spec: string, err: AppError): AddStep {
  if (err.kind === 'host_key_unknown' && err.fingerprint) {
    return { kind: 'host_key', spec, fingerprint: err.fingerprint, message: err.message };
  }
  if (err.kind === 'auth') return { kind: 'secret', spec, message: err.message };
  return { kind: 'error', message: err.message };
}
