// `plcguard demo --tls`: the demo behind a Modbus/TCP Security (mbaps) listener. A throwaway CA
// issues plcguard's certificate and two client certificates, one per role, into a temp folder,
// beside a policy naming them: an Operator may read and change the supply setpoint, a Viewer
// may only read. Nothing here is fit for a plant (docs/tls.md says how to issue real ones).
import fs from 'node:fs';
import path from 'node:path';
import { TestCa, type CertFiles } from './pki.js';

export interface TlsDemo {
  /** The policy file (certificate paths in it are relative to its folder). */
  readonly policy: string;
  readonly ca: string;
  readonly operator: CertFiles;
  readonly viewer: CertFiles;
}

/** Makes the CA, certificates and policy in `dir` for plcguard at `listen` in front of `plc`. */
export function makeTlsDemo(dir: string, listen: string, plc: string): TlsDemo {
  const ca = TestCa.create(dir);
  ca.issue('server', { cn: 'plcguard-demo', server: true });
  const operator = ca.issue('operator', { cn: 'demo-hmi', role: 'Operator' });
  const viewer = ca.issue('viewer', { cn: 'demo-historian', role: 'Viewer' });
  const policy = path.join(dir, 'demo-tls-policy.yaml');
  fs.writeFileSync(
    policy,
    `# plcguard demo --tls: the demo PLC behind Modbus/TCP Security (mbaps). Paths are relative to
# this file's folder.
version: 1
devices:
  - name: demo-plc
    listen: ${listen}
    upstream: ${plc}
    tls: { cert: server.crt, key: server.key, ca: ca.crt }
    rules:
      - name: monitoring
        roles: [Operator, Viewer]
        units: [1]
        read:
          holding_registers: [0-99]
          input_registers: [0-99]
      - name: setpoints
        roles: [Operator]
        units: [1]
        write:
          holding_registers:
            - { addresses: 10, values: 200-850 }    # supply setpoint: 20.0..85.0 °C
`,
  );
  return { policy, ca: ca.cert, operator, viewer };
}
