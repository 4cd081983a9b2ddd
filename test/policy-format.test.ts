// The policy format: the corpus of valid and invalid files with their exact messages, the
// normalized document, the generated JSON Schema, and YAML corner cases.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import {
  BUILTIN_LIMITS_YAML,
  compilePolicy,
  LIMIT_FIELDS,
  loadPolicyFile,
  loadValidPolicyFile,
  MAX_POLICY_NODES,
  normalizePolicy,
  parsePolicy,
  POLICY_SCHEMA,
  PolicyError,
  PolicyInvalidError,
  PolicyIssue,
  PolicyReadError,
  SCHEMA_FILE,
  validatePolicyText,
  writeJsonSchema,
} from '../policy/index.js';
import type { SchemaNode } from '../policy/format.js';
import { defaultSchemaPath, generateJsonSchema, jsonSchemaText, projectRoot } from '../policy/schema-gen.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CORPUS = join(ROOT, 'test/fixtures/policies');

function issues(text: string, file = 'p.yaml'): string[] {
  const r = parsePolicy(text, file);
  return [...r.errors, ...r.warnings].map((i) => i.format());
}

/** Each fixture's .expected file holds every message it must produce, in order, exactly. */
for (const kind of ['valid', 'invalid'] as const) {
  const dir = join(CORPUS, kind);
  for (const file of readdirSync(dir).filter((f) => /\.(yaml|json)$/.test(f))) {
    void t.test(`${kind}/${file}`, (t) => {
      const text = readFileSync(join(dir, file), 'utf8');
      const expected = readFileSync(join(dir, file.replace(/\.(yaml|json)$/, '.expected')), 'utf8').split('\n').filter((l) => l !== '');
      const r = parsePolicy(text, file);
      t.strictSame([...r.errors, ...r.warnings].map((i) => i.format()), expected);
      if (kind === 'valid') {
        t.equal(r.errors.length, 0);
        t.ok(r.policy, 'compiled');
        t.ok(r.document, 'normalized');
      } else {
        t.ok(r.errors.length > 0, 'has errors');
        t.equal(r.policy, undefined, 'no policy from an invalid file');
        t.equal(r.document, undefined);
      }
      t.end();
    });
  }
}

void t.test('the examples validate without warnings', async (t) => {
  for (const [file, devices, rules] of [
    ['examples/demo-policy.yaml', 1, 2],
    ['examples/plant-policy.yaml', 3, 9],
  ] as const) {
    const r = await loadPolicyFile(join(ROOT, file));
    t.strictSame(r.errors.map((e) => e.format()), [], file);
    t.strictSame(r.warnings.map((e) => e.format()), [], file);
    t.equal(r.policy!.devices.size, devices);
    t.equal([...r.policy!.devices.values()].reduce((n, d) => n + d.ruleCount, 0), rules);
  }
});

void t.test('PolicyIssue formats FILE:LINE:COL', (t) => {
  const e = new PolicyIssue('error', 'a.yaml', 3, 7, 'x: bad');
  t.equal(e.format(), 'a.yaml:3:7: x: bad');
  t.equal(new PolicyIssue('warning', 'a.yaml', 1, 2, 'hm').format(), 'a.yaml:1:2: warning: hm');
  t.match(e, { severity: 'error', file: 'a.yaml', line: 3, col: 7, message: 'x: bad' });
  t.end();
});

void t.test('load errors are classes with stable codes', async (t) => {
  const missing = join(CORPUS, 'no-such-file.yaml');
  await t.rejects(loadPolicyFile(missing), { name: 'PolicyReadError', code: 'ERR_POLICY_READ', file: missing });
  const err = await loadPolicyFile(missing).catch((e: unknown) => e);
  t.ok(err instanceof PolicyReadError && err instanceof PolicyError);
  t.match((err as Error).message, /no-such-file\.yaml: cannot read: ENOENT \(/);
  t.equal(new PolicyReadError('f', 'plain').message, 'f: cannot read: plain');
  t.equal(new PolicyReadError('f', new Error('boom')).message, 'f: cannot read: boom');

  const bad = join(CORPUS, 'invalid/wrong-version.yaml');
  const invalid = await loadValidPolicyFile(bad).catch((e: unknown) => e);
  t.ok(invalid instanceof PolicyInvalidError);
  t.equal((invalid as PolicyInvalidError).code, 'ERR_POLICY_INVALID');
  t.equal((invalid as PolicyInvalidError).issues.length, 1);
  t.equal((invalid as Error).message, `${bad}:1:10: version: 2 is out of range; expected the integer 1`);
  const good = await loadValidPolicyFile(join(ROOT, 'examples/demo-policy.yaml'), { version: 4 });
  t.equal(good.version, 4);
});

void t.test('the compiled policy: sha256, version, frozen, devices', (t) => {
  const text = readFileSync(join(CORPUS, 'valid/everything.yaml'), 'utf8');
  const r = parsePolicy(text, 'everything.yaml');
  const p = r.policy!;
  t.equal(p.sha256, createHash('sha256').update(text).digest('hex'));
  t.equal(p.version, 0);
  t.equal(parsePolicy(text, 'x', { version: 12 }).policy!.version, 12);
  t.ok(Object.isFrozen(p));
  t.ok(Object.isFrozen(p.document) && Object.isFrozen(p.document.devices[0]!.rules[0]!), 'the document is frozen deep');
  t.equal(r.document, p.document);
  t.strictSame([...p.devices.keys()], ['plc-1', 'plc_2', '3']);

  const d1 = p.devices.get('plc-1')!;
  t.ok(Object.isFrozen(d1) && Object.isFrozen(d1.limits) && Object.isFrozen(d1.listen));
  t.strictSame(d1.listen, { host: '::', port: 5020 });
  t.strictSame(d1.upstream, { host: 'plc1.example.com', port: 502 });
  t.equal(d1.mode, 'monitor');
  t.equal(d1.onDeny, 'drop');
  t.equal(d1.ruleCount, 2);
  t.strictSame(d1.limits, {
    connectTimeoutMs: 1000,
    responseTimeoutMs: 1500,
    idleTimeoutMs: 60000,
    frameTimeoutMs: 2000,
    maxConnections: 4,
    maxConnectionsPerSource: 2,
    maxOutstanding: 16,
    maxBufferedBytes: 260,
    reconnectBackoffMinMs: 50,
    reconnectBackoffMaxMs: 50,
  });
  t.strictSame(d1.rateLimit, { requestsPerSecond: 100, writesPerSecond: 100, burst: 100 }, 'writes and burst default to the request rate');

  const d2 = p.devices.get('plc_2')!;
  t.equal(d2.mode, 'enforce', 'a device overrides defaults');
  t.equal(d2.onDeny, 'close');
  t.equal(d2.limits.reconnectBackoffMinMs, 1000);
  t.equal(d2.limits.reconnectBackoffMaxMs, 60000);
  t.equal(d2.limits.maxConnections, 4, 'unset keys come from defaults');
  t.equal(d2.rateLimit, null, 'rate_limit: none switches the defaults off');
  t.strictSame(d2.upstream, { host: 'fd00::2', port: 502 });

  const d3 = p.devices.get('3')!;
  t.strictSame(d3.rateLimit, { requestsPerSecond: 10, writesPerSecond: 1, burst: 20 });
  t.strictSame(d3.listen, { host: 'localhost.', port: 5022 });
  t.end();
});

void t.test('built-in defaults when nothing is set', (t) => {
  const r = parsePolicy(readFileSync(join(CORPUS, 'valid/minimal.yaml'), 'utf8'), 'minimal.yaml');
  const d = r.policy!.devices.get('plc')!;
  t.equal(d.mode, 'enforce');
  t.equal(d.onDeny, 'exception');
  t.equal(d.rateLimit, null);
  t.equal(d.logWrites, false);
  t.strictSame(d.limits, {
    connectTimeoutMs: 3000,
    responseTimeoutMs: 3000,
    idleTimeoutMs: 300000,
    frameTimeoutMs: 5000,
    maxConnections: 32,
    maxConnectionsPerSource: 8,
    maxOutstanding: 32,
    maxBufferedBytes: 65536,
    reconnectBackoffMinMs: 100,
    reconnectBackoffMaxMs: 5000,
  });
  t.strictSame(r.document, {
    version: 1,
    devices: [
      {
        name: 'plc',
        listen: '127.0.0.1:5020',
        upstream: '127.0.0.1:502',
        mode: 'enforce',
        on_deny: 'exception',
        limits: BUILTIN_LIMITS_YAML,
        rate_limit: 'none',
        log_writes: false,
        rules: [{ name: 'rule-0', read: { holding_registers: ['0-9'] } }],
      },
    ],
  });
  t.equal(Object.keys(LIMIT_FIELDS).length, 10);
  t.end();
});

void t.test('log_writes: from defaults, overridden per device; only true or false', (t) => {
  const policy = (defaults: string, own: string): string => `version: 1
${defaults}devices:
  - { name: a, listen: 127.0.0.1:5020, upstream: 127.0.0.1:502${own} }
  - { name: b, listen: 127.0.0.1:5021, upstream: 127.0.0.1:503 }
`;
  const logs = (text: string): [boolean, boolean] => {
    const r = parsePolicy(text, 'p.yaml');
    return [r.policy!.devices.get('a')!.logWrites, r.document!.devices[1]!.log_writes];
  };
  t.strictSame(logs(policy('', ', log_writes: true')), [true, false], 'one device asks');
  t.strictSame(logs(policy('defaults: { log_writes: true }\n', ', log_writes: false')), [false, true], 'defaults, and a device opting out');
  const wrong = parsePolicy(policy('', ', log_writes: yes'), 'p.yaml');
  t.strictSame(
    wrong.errors.map((e) => e.format()),
    ['p.yaml:3:77: devices[0].log_writes: got the string "yes"; expected true or false'],
    'YAML 1.2: yes is a string',
  );
  t.end();
});

void t.test('the normalized document: defaults folded in, names filled, ranges canonical', (t) => {
  const r = parsePolicy(readFileSync(join(CORPUS, 'valid/everything.yaml'), 'utf8'), 'everything.yaml');
  const [d1, d2] = r.document!.devices;
  t.strictSame(d1!.rules[0], {
    name: 'hmi',
    description: 'HMI reads',
    sources: ['10.0.0.0/24', 'fd00::/64', '::ffff:192.168.0.0/112'],
    units: [0, 1, '10-20', 255],
    read: { holding_registers: ['0-99', 200, '300-310'], input_registers: [16, 100] },
  });
  t.strictSame(d1!.rules[1]!.name, 'rule-1');
  t.strictSame(d1!.rules[1]!.write, {
    holding_registers: [30, '31-32', { addresses: 10 }, { addresses: [11, '12-13'], values: [0, '5-6'] }, { addresses: '14-15', values: 1000 }],
    coils: [{ addresses: '0-7', values: 0 }, 8],
  });
  t.equal(d1!.description, 'inherits every default');
  t.equal(d1!.rate_limit !== 'none' && d1!.rate_limit.burst, 100);
  t.equal(d2!.rate_limit, 'none');
  t.equal(d2!.description, undefined);
  t.strictSame(d2!.limits, { ...BUILTIN_LIMITS_YAML, ...d1!.limits, reconnect_backoff_min_ms: 1000, reconnect_backoff_max_ms: 60000 });
  t.end();
});

void t.test('the normalized document is itself a valid policy that compiles the same', (t) => {
  for (const file of ['valid/everything.yaml', 'valid/warnings.yaml', '../../../examples/plant-policy.yaml']) {
    const r = parsePolicy(readFileSync(join(CORPUS, file), 'utf8'), file);
    const again = parsePolicy(JSON.stringify(r.document), 'normalized.json');
    t.strictSame(again.errors, [], file);
    t.strictSame(again.document, r.document, `${file}: normalizing is idempotent`);
    t.equal(again.warnings.length, r.warnings.length);
  }
  t.end();
});

void t.test('compilePolicy is usable on its own', (t) => {
  const v = validatePolicyText(readFileSync(join(CORPUS, 'valid/minimal.yaml'), 'utf8'), 'm.yaml');
  const p = compilePolicy(normalizePolicy(v.input!), { sha256: 'abc', version: 3 });
  t.equal(p.sha256, 'abc');
  t.equal(p.version, 3);
  t.ok(p.devices.get('plc'));
  t.strictSame(validatePolicyText('version: 2', 'x').input, undefined);
  t.end();
});

void t.test('YAML corner cases', (t) => {
  t.strictSame(issues('version: 1\ndevices: []\nversion: 1\n'), [
    'p.yaml:3:1: YAML: Map keys must be unique',
    'p.yaml:2:10: warning: devices: empty; this policy serves nothing',
  ]);
  t.strictSame(issues('%YAML 1.1\n---\nversion: !foo 1\ndevices: !!binary aGVsbG8=\n'), [
    'p.yaml:3:15: version: got the string "1"; expected the integer 1',
    'p.yaml:4:19: devices: got a Buffer; expected a list of devices',
    'p.yaml:3:10: warning: YAML: Unresolved tag: !foo',
  ]);
  t.strictSame(issues('version: 1\n[1]: 2\ntrue: 3\ndevices: []\n'), [
    'p.yaml:2:1: (top level): a key is a list; expected a plain key (version, defaults, devices)',
    'p.yaml:3:1: (top level): a key is the boolean true; expected a plain key (version, defaults, devices)',
    'p.yaml:4:10: warning: devices: empty; this policy serves nothing',
  ]);
  t.strictSame(issues('version: 1\n? devices\n'), ['p.yaml:2:3: devices: got an empty value; expected a list of devices']);
  // An alias as a key is named, not resolved (the validator used to throw on it).
  t.strictSame(issues('x-k: &k name\nversion: 1\ndevices:\n  - *k : plc\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n'), [
    'p.yaml:4:5: devices[0]: a key is the alias *k; expected a plain key (name, description, listen, upstream, upstream_connections, upstream_max_in_flight, routes, tls, upstream_tls, mode, on_deny, limits, rate_limit, log_writes, rules)',
    'p.yaml:4:5: devices[0].name: missing; expected a name of lowercase letters, digits, _ and -, starting with a letter or digit, at most 63 characters',
    'p.yaml:4:5: warning: devices[0]: no rules; this device denies everything',
  ]);
  t.strictSame(issues('version: 1\ndevices: []\nx-note: anything goes here\nx-: 1\n'), [
    'p.yaml:2:10: warning: devices: empty; this policy serves nothing',
  ]);
  t.strictSame(issues('version: 1\ndevices:\n  - name: a\n    x-note: 1\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n'), [
    'p.yaml:4:5: devices[0].x-note: unknown key; expected one of name, description, listen, upstream, upstream_connections, upstream_max_in_flight, routes, tls, upstream_tls, mode, on_deny, limits, rate_limit, log_writes, rules',
    'p.yaml:3:5: warning: devices[0]: no rules; this device denies everything',
  ], 'x- keys only at the top level');
  // A long value is cut in the message.
  const long = 'a'.repeat(100);
  t.strictSame(issues(`version: 1\ndevices:\n  - name: ${long}\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules: []\n`)[0],
    `p.yaml:3:11: devices[0].name: "${'a'.repeat(60)}…" is invalid; expected a name of lowercase letters, digits, _ and -, starting with a letter or digit, at most 63 characters`);
  t.equal(issues(`version: 1\ndevices:\n  - name: ${'a'.repeat(63)}\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules: []\n`).length, 1, 'a 63-character name is fine (one warning)');
  t.end();
});

void t.test('an alias bomb stops at MAX_POLICY_NODES', (t) => {
  // 400 addresses per rule, 100 rules per list, the list used by 30 devices: 1.2 million nodes
  // once expanded, from a few kilobytes of text.
  const addresses = `[${Array.from({ length: 100 }, (_, i) => i).join(', ')}]`;
  const rules = `[${Array(100).fill('*r').join(', ')}]`;
  const devices = Array.from({ length: 30 }, (_, i) => `  - { name: d${i}, listen: "127.0.0.1:${i + 1}", upstream: "127.0.0.1:1", rules: *rs }`);
  const text = [
    'version: 1',
    `x-c: &c ${addresses}`,
    'x-r: &r { read: { coils: *c, discrete_inputs: *c, holding_registers: *c, input_registers: *c } }',
    `x-rs: &rs ${rules}`,
    'devices:',
    ...devices,
  ].join('\n');
  t.ok(text.length < 8000);
  // How long it takes is bench/decide.ts's business (validate time); here, that it stops at the cap.
  const msgs = issues(text);
  const over = msgs.filter((m) => m.includes('YAML nodes'));
  t.equal(over.length, 1, 'reported once');
  t.match(over[0], new RegExp(`^p\\.yaml:\\d+:\\d+: devices\\[\\d+\\]\\.rules\\[\\d+\\]\\.read\\.\\w+\\[\\d+\\]: the policy has more than ${MAX_POLICY_NODES} YAML nodes once aliases are expanded; expected a smaller policy$`));
  t.end();
});

// ---------------------------------------------------------------------------------------------
// The JSON Schema
// ---------------------------------------------------------------------------------------------

void t.test('the committed JSON Schema is the generated one', async (t) => {
  t.equal(readFileSync(join(ROOT, SCHEMA_FILE), 'utf8'), jsonSchemaText(), 'run `node dist/policy/schema-gen.js` after changing policy/format.ts');
  t.equal(projectRoot(join(ROOT, 'policy')), ROOT);
  if (!existsSync('/package.json')) t.throws(() => projectRoot('/'), { message: 'no package.json above /' });
  t.equal(defaultSchemaPath(), join(ROOT, SCHEMA_FILE));
  const dir = mkdtempSync(join(tmpdir(), 'plcguard-schema-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = await writeJsonSchema(join(dir, 's.json'));
  t.equal(readFileSync(out, 'utf8'), jsonSchemaText());
});

/** Every oneOf picks its option by YAML node type, so no two options may share one. */
void t.test('schema alternatives are told apart by node type', (t) => {
  const kindOf: Record<string, string> = { object: 'map', array: 'list', integer: 'number', functionCode: 'number' };
  let count = 0;
  const walk = (n: SchemaNode): void => {
    if (n.kind === 'object') Object.values(n.fields).forEach((f) => walk(f.schema));
    if (n.kind === 'array') walk(n.items);
    if (n.kind === 'oneOf') {
      count++;
      const kinds = n.options.map((o) => kindOf[o.kind] ?? 'string');
      t.equal(new Set(kinds).size, kinds.length, n.expected);
      n.options.forEach(walk);
    }
  };
  walk(POLICY_SCHEMA.node);
  t.ok(count >= 10);
  t.end();
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** A small JSON Schema checker for exactly the keywords the generator emits. */
function conforms(schema: JsonObject, value: unknown, root: JsonObject): boolean {
  if (typeof schema.$ref === 'string') {
    const def = (root.definitions as JsonObject)[schema.$ref.replace('#/definitions/', '')] as JsonObject;
    return conforms(def, value, root);
  }
  if (Array.isArray(schema.allOf) && !schema.allOf.every((s) => conforms(s as JsonObject, value, root))) return false;
  if (Array.isArray(schema.oneOf) && schema.oneOf.filter((s) => conforms(s as JsonObject, value, root)).length !== 1) return false;
  if (schema.not !== undefined && conforms(schema.not as JsonObject, value, root)) return false;
  if (Array.isArray(schema.enum) && !schema.enum.includes(value as Json)) return false;
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
      const o = value as Record<string, unknown>;
      const props = schema.properties as JsonObject;
      const patterns = Object.keys((schema.patternProperties as JsonObject | undefined) ?? {}).map((p) => new RegExp(p));
      for (const k of (schema.required as string[] | undefined) ?? []) if (!(k in o)) return false;
      for (const [k, v] of Object.entries(o)) {
        if (k in props) {
          if (!conforms(props[k] as JsonObject, v, root)) return false;
        } else if (!patterns.some((p) => p.test(k))) return false;
      }
      return true;
    }
    case 'array':
      return Array.isArray(value) && value.every((v) => conforms(schema.items as JsonObject, v, root));
    case 'integer':
      return Number.isInteger(value) && (value as number) >= (schema.minimum as number) && (value as number) <= (schema.maximum as number);
    case 'string':
      return typeof value === 'string' && (schema.pattern === undefined || new RegExp(schema.pattern as string).test(value));
    default:
      return true;
  }
}

void t.test('the JSON Schema accepts every valid policy and rejects structural mistakes', (t) => {
  const schema = generateJsonSchema();
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  const files = [
    ...readdirSync(join(CORPUS, 'valid')).filter((f) => !f.endsWith('.expected')).map((f) => join(CORPUS, 'valid', f)),
    join(ROOT, 'examples/demo-policy.yaml'),
    join(ROOT, 'examples/plant-policy.yaml'),
  ];
  for (const f of files) {
    const value: unknown = parseYaml(readFileSync(f, 'utf8'));
    t.ok(conforms(schema, value, schema), `accepts ${f.slice(ROOT.length + 1)}`);
    const normalized = parsePolicy(readFileSync(f, 'utf8'), f).document;
    t.ok(conforms(schema, JSON.parse(JSON.stringify(normalized)), schema), `accepts the normalized ${f.slice(ROOT.length + 1)}`);
  }
  // What the schema can't see (reversed ranges, host bits, duplicates, combinations) is the
  // validator's; everything else it rejects as well.
  const rejected = readdirSync(join(CORPUS, 'invalid'))
    .filter((f) => f.endsWith('.yaml'))
    .filter((f) => {
      let value: unknown;
      try {
        value = parseYaml(readFileSync(join(CORPUS, 'invalid', f), 'utf8'));
      } catch {
        return true;
      }
      return !conforms(schema, value, schema);
    });
  t.strictSame(rejected.sort(), [
    'aliases.yaml',
    'bad-endpoints.yaml',
    'bad-functions.yaml',
    'bad-ranges.yaml',
    'bad-sources.yaml',
    'duplicate-keys.yaml',
    'empty.yaml',
    'limits.yaml',
    'missing-version.yaml',
    'multiple-documents.yaml',
    'not-a-mapping.yaml',
    'unknown-keys.yaml',
    'version-string.yaml',
    'wrong-types-2.yaml',
    'wrong-types.yaml',
    'wrong-version.yaml',
    'yaml-syntax.yaml',
  ]);
  t.end();
});

void t.test('tls and roles', (t) => {
  const head = 'version: 1\ndevices:\n  - name: a\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n';
  t.strictSame(issues(`${head}    rules:\n      - { roles: [Operator], read: { coils: [0] } }\n`), [
    'p.yaml:7:11: devices[0].rules[0].roles: the device has no tls, so no client has a role; expected tls: { cert, key, ca } on the device, or no roles',
  ]);
  t.strictSame(issues(`${head}    tls: { cert: s.crt, key: s.key, ca: [a.crt, b.crt], crl: c.crl }\n    upstream_tls: { ca: plc-ca.crt, cert: me.crt, key: me.key }\n    rules:\n      - { roles: [Operator], read: { coils: [0] } }\n      - { roles: [], read: { coils: [0] } }\n`), [
    'p.yaml:10:18: warning: devices[0].rules[1].roles: empty; this rule can never match (omit roles to match any authenticated client)',
  ]);
  t.strictSame(issues(`${head}    tls: { cert: s.crt, ca: 5 }\n    rules:\n      - { roles: [' Operator'], read: { coils: [0] } }\n`), [
    'p.yaml:6:10: devices[0].tls.key: missing; expected a file path',
    'p.yaml:6:29: devices[0].tls.ca: got the number 5; expected a file path or a list of them',
    'p.yaml:8:19: devices[0].rules[0].roles[0]: " Operator" is invalid; expected a role name (no leading or trailing space)',
  ]);
  t.strictSame(issues(`${head}    tls: [s.crt]\n    rules:\n      - { roles: [Operator], read: { coils: [0] } }\n`).length, 1, 'a broken tls: its own error only');
  t.end();
});
