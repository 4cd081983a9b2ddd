// A request decided as the proxy decides it, and how `policy check` and `policy test` show the
// decision: in words, and as the stable values of `--json` (the action's values are the audit
// log's).
import { exceptionName } from '../modbus/index.js';
import type { OnDeny } from '../policy/format.js';
import { Decision } from '../policy/types.js';
import type { CompiledDevice } from '../policy/types.js';
import { frameRequest, type RequestSpec } from './request.js';

/** Transaction id of the dry-run frame (any value works; the proxy never looks at it). */
const DRY_RUN_TRANSACTION_ID = 1;

/**
 * Frames the request for `unit`, decodes it and decides it for a client at `source` (with the
 * certificate `role`, on a device with tls; null: none), as the proxy would.
 */
export function decideRequest(device: CompiledDevice, source: string, unit: number, spec: RequestSpec, role: string | null = null): Decision {
  const req = frameRequest(spec, DRY_RUN_TRANSACTION_ID, unit);
  return device.decide(device.forSource(source, role), req, new Decision());
}

/** The exception a denial replies with; null when there is none: allowed, or refused at connect. */
export function exceptionOf(d: Decision): number | null {
  return d.allow || d.reason === 'source_not_allowed' ? null : d.exception;
}

/** `0x02 (illegal data address)`: the spec's names, as probe and the demo PLC print them. */
export function exceptionText(code: number): string {
  return `0x${code.toString(16).toUpperCase().padStart(2, '0')} (${exceptionName(code)})`;
}

/** What the proxy does with the request: forward it, refuse the connection, or deny as on_deny says. */
export type Action = 'forward' | 'refuse' | OnDeny;

export function actionOf(device: CompiledDevice, d: Decision): Action {
  if (d.allow || device.mode === 'monitor') return 'forward';
  if (d.reason === 'source_not_allowed') return 'refuse';
  return device.onDeny;
}

/** The action in words. */
export function actionText(device: CompiledDevice, d: Decision): string {
  const action = actionOf(device, d);
  switch (action) {
    case 'forward':
      return d.allow ? 'forward to the PLC' : 'forward to the PLC (monitor mode: logged and counted as would-deny)';
    case 'refuse':
      return device.document.tls === undefined
        ? 'refuse the connection (no rule matches this source)'
        : 'refuse the connection after the handshake (no rule matches this source and role)';
    case 'exception':
      return `reply with exception ${exceptionText(d.exception)}`;
    case 'drop':
      return 'drop the request (no reply)';
    case 'close':
      return 'close the client connection';
  }
}
