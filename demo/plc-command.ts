// `plcguard plc`: the simulated boiler PLC of `plcguard demo` on its own, for docker-compose and
// the end-to-end check (where plcguard runs in another process or container).
import { parseArgs } from 'node:util';
import { UsageError } from '../modbus/errors.js';
import { endpointOption } from '../policy/net.js';
import { startSimulatedPlc } from './plc.js';
import { untilSignal } from './signals.js';

/** The demo's PLC address (examples/demo-policy.yaml's upstream). */
export const DEFAULT_PLC_LISTEN = '127.0.0.1:5021';
const MAX_UNIT_ID = 255;

export const PLC_USAGE = `usage: plcguard plc [--listen HOST:PORT] [--unit N]
  --listen HOST:PORT  where to listen (default ${DEFAULT_PLC_LISTEN}; 0.0.0.0:5021 in a container)
  --unit N            serve only this unit id 0..${MAX_UNIT_ID}; others get exception 0B (default: every unit)
A simulated gas boiler controller speaking Modbus/TCP (register map: demo/plc.ts), until
SIGTERM or SIGINT; logs one line per connection, write and exception.
exit status: 0 stopped by a signal, 1 cannot listen, 2 usage error`;

export interface PlcIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/**
 * Runs the simulated PLC until `until` resolves: 0 then, 1 when it can't listen. A command line it
 * can't use throws: a UsageError, or parseArgs' own error (cli/ reports both as usage errors).
 */
export async function plcCommand(args: string[], io: PlcIo, until: () => Promise<unknown> = untilSignal): Promise<number> {
  const { values } = parseArgs({ args, options: { listen: { type: 'string' }, unit: { type: 'string' } } });
  const listen = endpointOption(values.listen ?? DEFAULT_PLC_LISTEN, '--listen');
  let unitId: number | undefined;
  if (values.unit !== undefined) {
    unitId = Number(values.unit);
    if (!/^\d+$/.test(values.unit) || unitId > MAX_UNIT_ID) {
      throw new UsageError('ERR_PLC_USAGE', `--unit: expected a whole number 0..${MAX_UNIT_ID}, got "${values.unit}"`);
    }
  }
  let plc;
  try {
    plc = await startSimulatedPlc({ host: listen.host, port: listen.port, ...(unitId !== undefined ? { unitId } : {}), log: (line) => io.stdout(line) });
  } catch (err) {
    io.stderr(`plcguard plc: cannot listen on ${listen.host}:${listen.port}: ${(err as Error).message}`);
    return 1;
  }
  await until();
  await plc.close();
  return 0;
}
