// The policies plcguard is benchmarked with, as YAML in plcguard's policy format (policy/format.ts). The 10-rule one is
// what a plant writes for one PLC; the 1,000-rule one is a large site's worth of clients, units
// and ranges, generated from a fixed seed, with the bench traffic's rule buried in the middle.
// What the bench traffic (bench/scenarios.ts) expects allowed or denied follows from these rules.
// No I/O.

export interface DeviceOptions {
  listenPort: number;
  upstreamPort: number;
  /** Connections the bench opens at once (the idle-connection measurement is the most). */
  maxConnections: number;
  /** PLC connections all clients share (`upstream_connections`); omitted: one per client. */
  sharedConnections?: number;
}

/** Where in the 1,000-rule policy the rule that allows the bench traffic sits. */
export const TRAFFIC_RULE_INDEX = 637;
export const LARGE_RULE_COUNT = 1000;
/** Fixed, so every run judges the same policy. */
const LARGE_POLICY_SEED = 0x5eed_2024;

function header(name: string, description: string, o: DeviceOptions): string {
  return `version: 1
defaults:
  mode: enforce
  on_deny: exception
devices:
  - name: ${name}
    description: ${description}
    listen: 127.0.0.1:${o.listenPort}
    upstream: 127.0.0.1:${o.upstreamPort}
${o.sharedConnections === undefined ? '' : `    upstream_connections: ${o.sharedConnections}\n`}    limits:
      max_connections: ${o.maxConnections}
      max_connections_per_source: ${o.maxConnections}
    rules:
`;
}

/** The same device in learn mode: no rules, everything well-formed forwarded and learned. */
export function learnPolicy(o: DeviceOptions): string {
  return header('bench-plc', 'boiler house PLC, learning (benchmark)', o).replace('    rules:\n', '    mode: learn\n');
}

/**
 * One PLC's realistic allow-list: HMIs read process values and write bounded setpoints, a
 * historian, an engineering station, an alarm panel, a meter on another unit, an IPv6 HMI.
 * The bench client (127.0.0.1) is an HMI: `hmi-read`, `hmi-setpoints` and `energy-meter` match it.
 */
export function realisticPolicy(o: DeviceOptions): string {
  return (
    header('bench-plc', 'boiler house PLC (benchmark)', o) +
    `      - name: hmi-read
        description: control-room HMIs poll process values
        sources: [127.0.0.1, 10.20.0.0/24]
        units: [1]
        read:
          holding_registers: [0-99]
          input_registers: [0-99]
          coils: [0-63]
          discrete_inputs: [0-63]
      - name: hmi-setpoints
        description: operators change supply setpoints within bounds
        sources: [127.0.0.1, 10.20.0.10]
        units: [1]
        write:
          holding_registers:
            - { addresses: 10-19, values: 0-1000 }
            - 30
          coils: [0-7]
      - name: historian
        sources: [10.20.5.10]
        units: [1-4]
        read:
          holding_registers: [0-499]
          input_registers: [0-499]
      - name: engineering
        sources: [10.20.9.50]
        read:
          holding_registers: [0-999]
        write:
          holding_registers: [0-999]
        functions: [report_server_id, read_device_identification, { code: diagnostics, subfunctions: [0] }]
      - name: scada-units
        sources: [10.20.1.0/24]
        units: [2-10]
        read:
          holding_registers: [0-199]
      - name: alarm-panel
        sources: [10.20.2.0/24]
        units: [1]
        read:
          coils: [100-199]
          discrete_inputs: [100-199]
      - name: energy-meter
        sources: [127.0.0.1, 10.20.3.3]
        units: [5]
        read:
          input_registers: [1000-1099]
      - name: recipe-download
        sources: [10.20.4.4]
        units: [1]
        write:
          holding_registers:
            - { addresses: 200-299, values: 0-5000 }
      - name: maintenance-laptop
        sources: [10.30.0.7]
        units: [1]
        read:
          holding_registers: [0-999]
          coils: [0-999]
      - name: ipv6-hmi
        sources: ["fd00:20::/64"]
        units: [1]
        read:
          holding_registers: [0-99]
`
  );
}

/** mulberry32: a tiny seeded generator; the policy must be the same on every run. */
function seeded(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

const PURPOSES = ['hmi', 'historian', 'scada', 'meter', 'recipe', 'alarm', 'maint', 'eng'] as const;
const READ_TABLES = ['holding_registers', 'input_registers', 'coils', 'discrete_inputs'] as const;
const WRITE_TABLES = ['holding_registers', 'coils'] as const;
/** Largest address a generated range starts at: PLC maps rarely reach far into the 16-bit space. */
const GENERATED_ADDRESS_SPAN = 10_000;
const MAX_GENERATED_RANGE = 200;

/**
 * A 1,000-rule policy for one device: clients by host, subnet and IPv6 prefix; about one rule in
 * ten also matches the bench client (127.0.0.1), on other units or other ranges, so its per-source
 * view is large too; the rule that allows the bench traffic is rule TRAFFIC_RULE_INDEX.
 */
export function largePolicy(o: DeviceOptions, ruleCount = LARGE_RULE_COUNT): string {
  const r = seeded(LARGE_POLICY_SEED);
  const lines: string[] = [];
  const ranges = (): string => {
    const out: string[] = [];
    for (let k = 0, n = 1 + r(4); k < n; k++) {
      const start = r(GENERATED_ADDRESS_SPAN);
      out.push(`${start}-${start + r(MAX_GENERATED_RANGE)}`);
    }
    return `[${out.join(', ')}]`;
  };
  for (let i = 0; i < ruleCount; i++) {
    const name = `r${String(i).padStart(4, '0')}-${PURPOSES[i % PURPOSES.length]}`;
    lines.push(`      - name: ${name}`);
    if (i === TRAFFIC_RULE_INDEX) {
      lines.push(
        '        description: the bench HMI (the traffic this benchmark sends)',
        '        sources: [127.0.0.1]',
        '        units: [1]',
        '        read:',
        '          holding_registers: [0-99]',
        '          input_registers: [0-99]',
      );
      continue;
    }
    const pick = r(100);
    let sources: string;
    if (pick < 60) sources = `10.${r(256)}.${r(256)}.${1 + r(254)}`;
    else if (pick < 80) sources = r(2) === 0 ? `10.${r(256)}.${r(256)}.0/24` : `192.168.${r(256)}.0/24`;
    else if (pick < 90) sources = `"fd00:${r(0x10000).toString(16)}::/64"`;
    else if (pick < 98) sources = `127.0.0.1, 10.${r(256)}.${r(256)}.${1 + r(254)}`;
    else sources = '';
    if (sources !== '') lines.push(`        sources: [${sources}]`);
    const unit = 1 + r(247);
    lines.push(`        units: [${r(4) === 0 ? `${unit}-${Math.min(247, unit + r(10))}` : unit}]`);
    // Every rule grants something, so none is reported as never matching.
    const readTables = READ_TABLES.filter(() => r(2) === 0);
    if (readTables.length === 0) readTables.push(READ_TABLES[r(READ_TABLES.length)]!);
    lines.push('        read:');
    for (const t of readTables) lines.push(`          ${t}: ${ranges()}`);
    if (r(3) === 0) {
      lines.push('        write:');
      const table = WRITE_TABLES[r(WRITE_TABLES.length)]!;
      if (table === 'holding_registers' && r(2) === 0) {
        const start = r(GENERATED_ADDRESS_SPAN);
        lines.push(`          ${table}:`, `            - { addresses: ${start}-${start + r(MAX_GENERATED_RANGE)}, values: 0-${1 + r(65535)} }`);
      } else {
        lines.push(`          ${table}: ${ranges()}`);
      }
    }
    if (r(20) === 0) lines.push('        functions: [report_server_id, { code: diagnostics, subfunctions: [0] }]');
  }
  return header('bench-plc-1k', `${ruleCount}-rule site policy (benchmark)`, o) + lines.join('\n') + '\n';
}
