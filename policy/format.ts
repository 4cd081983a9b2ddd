// The policy file format, defined once. The validator (validate.ts) walks these nodes over the YAML
// tree and the JSON Schema generator (schema-gen.ts) turns them into the editor schema, so the two
// can't drift apart. The builders carry the TypeScript type of what each node validates to, which
// gives `PolicyInput` without writing it twice.

import { FUNCTION_NAMES, FunctionCode, MAX_ADDRESS, MAX_ADU_LENGTH, MEI_READ_DEVICE_IDENTIFICATION } from '../modbus/index.js';
import type { Table } from '../modbus/index.js';
import type { Cidr, Endpoint } from './net.js';

// ---------------------------------------------------------------------------------------------
// Numbers of the format
// ---------------------------------------------------------------------------------------------

/** The only `version` this code reads. */
export const POLICY_VERSION = 1;
export const MAX_UNIT_ID = 255;
/** Request function codes: 128..255 mark exception responses, 0 is never valid. */
export const MIN_FUNCTION_CODE = 1;
export const MAX_FUNCTION_CODE = 127;
export const MAX_REGISTER_VALUE = 0xffff;
/** A coil is written as 0 (off) or 1 (on), whatever the frame's encoding (FC5 uses 0xFF00). */
export const MAX_COIL_VALUE = 1;
export const MAX_SUBFUNCTION = 0xffff;
export const MAX_MEI_TYPE = 0xff;
/** Device and rule names end up in Redis keys and metric labels: keep them short and plain. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/**
 * Top-level keys starting `x-` are ignored: somewhere to define YAML anchors (`x-hmi: &hmi [...]`)
 * without an unknown-key error. Only at the top: no typo of a real key starts with `x-`.
 */
export const EXTENSION_KEYS = /^x-/;

export const READ_TABLES = ['coils', 'discrete_inputs', 'holding_registers', 'input_registers'] as const satisfies readonly Table[];
export const WRITE_TABLES = ['coils', 'holding_registers'] as const satisfies readonly Table[];
export type ReadTable = (typeof READ_TABLES)[number];
export type WriteTable = (typeof WRITE_TABLES)[number];

/**
 * Functions whose requests carry table addresses. They are governed by `read:`/`write:` only; a
 * `functions` entry for one of them is an error, so a function list can never silently widen
 * table access (e.g. `functions: [write_multiple_registers]` granting every register).
 */
export const ADDRESS_MODEL_FUNCTIONS: ReadonlySet<number> = new Set([
  FunctionCode.READ_COILS,
  FunctionCode.READ_DISCRETE_INPUTS,
  FunctionCode.READ_HOLDING_REGISTERS,
  FunctionCode.READ_INPUT_REGISTERS,
  FunctionCode.WRITE_SINGLE_COIL,
  FunctionCode.WRITE_SINGLE_REGISTER,
  FunctionCode.WRITE_MULTIPLE_COILS,
  FunctionCode.WRITE_MULTIPLE_REGISTERS,
  FunctionCode.MASK_WRITE_REGISTER,
  FunctionCode.READ_WRITE_MULTIPLE_REGISTERS,
  FunctionCode.READ_FIFO_QUEUE,
]);

/** FC43 narrowed to MEI type 14: the name engineers know from vendor tools. */
export const READ_DEVICE_IDENTIFICATION = 'read_device_identification';

/** Every function name the format knows (address-model ones included, to explain their error). */
export const FUNCTION_CODE_BY_NAME: ReadonlyMap<string, number> = new Map([
  ...[...FUNCTION_NAMES].map(([code, name]): [string, number] => [name, code]),
  [READ_DEVICE_IDENTIFICATION, FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT],
]);
/** The names allowed in `functions`. */
export const FUNCTION_LIST_NAMES: readonly string[] = [...FUNCTION_CODE_BY_NAME]
  .filter(([, code]) => !ADDRESS_MODEL_FUNCTIONS.has(code))
  .map(([name]) => name);
/** Function codes that can be narrowed, and what by. */
export const NARROWABLE = {
  subfunctions: FunctionCode.DIAGNOSTICS,
  mei_types: FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT,
} as const;
export { MEI_READ_DEVICE_IDENTIFICATION };

/**
 * Device limits: YAML key → camelCase key of `Limits`, built-in default, bounds and meaning.
 * Bounds are sanity bounds: a typo like an extra digit is caught, real deployments fit.
 */
export const LIMIT_FIELDS = {
  connect_timeout_ms: {
    key: 'connectTimeoutMs',
    default: 3000,
    min: 1,
    max: 600_000,
    description: 'Time allowed to open the connection to the PLC, in ms.',
  },
  response_timeout_ms: {
    key: 'responseTimeoutMs',
    default: 3000,
    min: 1,
    max: 600_000,
    description: 'Time the PLC has to answer a request before the client gets exception 0B, in ms.',
  },
  idle_timeout_ms: {
    key: 'idleTimeoutMs',
    default: 300_000,
    min: 1,
    max: 86_400_000,
    description: 'A client connection with nothing outstanding and nothing received for this long is closed, in ms.',
  },
  frame_timeout_ms: {
    key: 'frameTimeoutMs',
    default: 5000,
    min: 1,
    max: 600_000,
    description: 'A partly received frame must be completed within this (slowloris), in ms.',
  },
  max_connections: {
    key: 'maxConnections',
    default: 32,
    min: 1,
    max: 10_000,
    description: 'Client connections open at once to this device.',
  },
  max_connections_per_source: {
    key: 'maxConnectionsPerSource',
    default: 8,
    min: 1,
    max: 10_000,
    description: 'Client connections open at once to this device from one source address.',
  },
  max_outstanding: {
    key: 'maxOutstanding',
    default: 32,
    min: 1,
    max: 4096,
    description: 'Requests forwarded to the PLC and not yet answered, per client connection.',
  },
  max_buffered_bytes: {
    key: 'maxBufferedBytes',
    default: 65_536,
    // One whole frame must fit, or a connection could never make progress.
    min: MAX_ADU_LENGTH,
    max: 64 * 1024 * 1024,
    description: 'Bytes queued towards one side before the other side stops being read.',
  },
  reconnect_backoff_min_ms: {
    key: 'reconnectBackoffMinMs',
    default: 100,
    min: 1,
    max: 600_000,
    description: 'First delay before reconnecting to a PLC that failed, in ms.',
  },
  reconnect_backoff_max_ms: {
    key: 'reconnectBackoffMaxMs',
    default: 5000,
    min: 1,
    max: 3_600_000,
    description: 'Largest delay between reconnection attempts, in ms (at least reconnect_backoff_min_ms).',
  },
} as const;
export type LimitKey = keyof typeof LIMIT_FIELDS;

export const MAX_RATE = 1_000_000;

/**
 * Connection sharing (proxy/pool.ts): the device keys that make its clients share PLC connections.
 * `upstream_connections` omitted keeps one PLC connection per client connection.
 */
export const SHARING_FIELDS = {
  upstream_connections: {
    min: 1,
    max: 64,
    description:
      'All client connections of the device share at most this many PLC connections (transaction ids remapped, clients served round robin). Omitted: one PLC connection per client connection.',
  },
  upstream_max_in_flight: {
    min: 1,
    max: 256,
    default: 1,
    description:
      'With upstream_connections: requests in flight on one shared PLC connection (1: the PLC answers one at a time; more only for a PLC that pipelines).',
  },
} as const;

/**
 * Device modes and what each does. The `Mode` type, the validator's list, its message and the
 * JSON Schema's enum and description all come from here: a new mode is one entry.
 */
export const MODES = {
  enforce: 'deny what the policy does not allow',
  monitor: 'forward everything, log and count what would be denied',
  learn: 'forward every well-formed request (malformed ones are denied as in enforce), ignore the rules and record what is seen; `plcguard policy learn --admin` (or `--redis`) turns it into a proposed policy',
} as const;
export type Mode = keyof typeof MODES;
export const DEFAULT_MODE: Mode = 'enforce';
/** What a denied request gets, per `on_deny` value; everything else derives from it as for MODES. */
export const ON_DENY = {
  exception: 'a Modbus exception reply',
  drop: 'no reply',
  close: 'a closed client connection',
} as const;
export type OnDeny = keyof typeof ON_DENY;
export const DEFAULT_ON_DENY: OnDeny = 'exception';
/** Allowed writes are not logged unless a device asks (`log_writes: true`). */
export const DEFAULT_LOG_WRITES = false;
/** `rate_limit: none` on a device switches off a rate limit set in `defaults`. */
export const RATE_LIMIT_NONE = 'none';

/** `5` → [5, 5]; `"10-20"` → [10, 20]: a list item as validated (ranges in canonical `a-b` form). */
export function span(x: number | string): [number, number] {
  if (typeof x === 'number') return [x, x];
  const dash = x.indexOf('-');
  return [Number(x.slice(0, dash)), Number(x.slice(dash + 1))];
}

// ---------------------------------------------------------------------------------------------
// The schema language
// ---------------------------------------------------------------------------------------------

interface NodeBase {
  /** What a valid value looks like, for error messages ("a unit id 0..255"). */
  readonly expected: string;
  /** Hover text in editors. */
  readonly description?: string;
  /** Emit once under `definitions` in the JSON Schema and refer to it. */
  readonly ref?: string;
}
export interface FieldSpec {
  readonly schema: SchemaNode;
  readonly required: boolean;
  readonly description?: string;
  readonly default?: number | string | boolean;
}
export interface ObjectNode extends NodeBase {
  readonly kind: 'object';
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** Keys matching this are accepted and ignored (a place for YAML anchors). */
  readonly extensionKeys?: RegExp;
}
export interface ArrayNode extends NodeBase {
  readonly kind: 'array';
  readonly items: SchemaNode;
}
/** Alternatives told apart by YAML node type (number, string, mapping, list): at most one each. */
export interface OneOfNode extends NodeBase {
  readonly kind: 'oneOf';
  readonly options: readonly SchemaNode[];
}
export interface IntegerNode extends NodeBase {
  readonly kind: 'integer';
  readonly min: number;
  readonly max: number;
}
/** An inclusive range written `a-b` (spaces around `-` allowed), both ends in min..max. */
export interface RangeNode extends NodeBase {
  readonly kind: 'range';
  readonly min: number;
  readonly max: number;
}
export interface EnumNode extends NodeBase {
  readonly kind: 'enum';
  readonly values: readonly string[];
}
export interface PatternNode extends NodeBase {
  readonly kind: 'pattern';
  readonly pattern: RegExp;
}
/** Any string. */
export interface TextNode extends NodeBase {
  readonly kind: 'string';
}
/** true or false (YAML 1.2 core schema: `yes`/`on` are strings, not booleans). */
export interface BooleanNode extends NodeBase {
  readonly kind: 'boolean';
}
/** An IP address or CIDR (net.ts parseCidr); validates to `Written<Cidr>`. */
export interface CidrNode extends NodeBase {
  readonly kind: 'cidr';
}
/** host:port (net.ts parseEndpoint); validates to `Written<Endpoint>`. */
export interface EndpointNode extends NodeBase {
  readonly kind: 'endpoint';
}
/** A function code 1..127 without an address model. */
export interface FunctionCodeNode extends NodeBase {
  readonly kind: 'functionCode';
}
/** One of FUNCTION_LIST_NAMES. */
export interface FunctionNameNode extends NodeBase {
  readonly kind: 'functionName';
}
export type SchemaNode =
  | ObjectNode
  | ArrayNode
  | OneOfNode
  | IntegerNode
  | RangeNode
  | EnumNode
  | PatternNode
  | TextNode
  | BooleanNode
  | CidrNode
  | EndpointNode
  | FunctionCodeNode
  | FunctionNameNode;

declare const TYPE: unique symbol;
/** A schema node and, at the type level only, the type of the value it validates to. */
export interface Schema<T> {
  readonly node: SchemaNode;
  readonly [TYPE]?: T;
}
export type Infer<S> = S extends Schema<infer T> ? T : never;

/**
 * What a parsed string validates to: its meaning, parsed once by the validator for compile, and
 * the text as written, which is what the normalized document keeps.
 */
export interface Written<T> {
  readonly text: string;
  readonly value: T;
}
/** A validated type as it is written in a file: every `Written` back to its text. */
export type AsWritten<T> = T extends Written<unknown>
  ? string
  : T extends (infer U)[]
    ? AsWritten<U>[]
    : T extends object
      ? { [K in keyof T]: AsWritten<T[K]> }
      : T;

export interface Field<T, R extends boolean> {
  readonly spec: FieldSpec;
  readonly [TYPE]?: T;
  readonly required: R;
}
type RequiredKeys<F> = { [K in keyof F]: F[K] extends Field<unknown, true> ? K : never }[keyof F];
type OptionalKeys<F> = Exclude<keyof F, RequiredKeys<F>>;
type FieldType<X> = X extends Field<infer T, boolean> ? T : never;
type Flatten<T> = { [K in keyof T]: T[K] };
type ObjectType<F> = Flatten<{ [K in RequiredKeys<F>]: FieldType<F[K]> } & { [K in OptionalKeys<F>]?: FieldType<F[K]> }>;

type Doc = Omit<NodeBase, 'expected'> & { readonly extensionKeys?: RegExp };

function schema<T>(node: SchemaNode): Schema<T> {
  return { node };
}
export function integer(min: number, max: number, expected: string, doc: Doc = {}): Schema<number> {
  return schema({ kind: 'integer', min, max, expected, ...doc });
}
export function range(min: number, max: number, expected: string, doc: Doc = {}): Schema<string> {
  return schema({ kind: 'range', min, max, expected, ...doc });
}
export function enumOf<const V extends string>(values: readonly V[], expected: string, doc: Doc = {}): Schema<V> {
  return schema({ kind: 'enum', values, expected, ...doc });
}
export function pattern(re: RegExp, expected: string, doc: Doc = {}): Schema<string> {
  return schema({ kind: 'pattern', pattern: re, expected, ...doc });
}
export function leaf(kind: 'string' | 'functionName', expected: string, doc: Doc = {}): Schema<string> {
  return schema({ kind, expected, ...doc });
}
export function boolean(expected: string, doc: Doc = {}): Schema<boolean> {
  return schema({ kind: 'boolean', expected, ...doc });
}
export function cidr(expected: string, doc: Doc = {}): Schema<Written<Cidr>> {
  return schema({ kind: 'cidr', expected, ...doc });
}
export function endpoint(expected: string, doc: Doc = {}): Schema<Written<Endpoint>> {
  return schema({ kind: 'endpoint', expected, ...doc });
}
export function functionCode(expected: string, doc: Doc = {}): Schema<number> {
  return schema({ kind: 'functionCode', expected, ...doc });
}
export function array<T>(items: Schema<T>, expected: string, doc: Doc = {}): Schema<T[]> {
  return schema({ kind: 'array', items: items.node, expected, ...doc });
}
export function oneOf<const S extends readonly Schema<unknown>[]>(options: S, expected: string, doc: Doc = {}): Schema<Infer<S[number]>> {
  return schema({ kind: 'oneOf', options: options.map((o) => o.node), expected, ...doc });
}
export function object<F extends Record<string, Field<unknown, boolean>>>(
  fields: F,
  expected: string,
  doc: Doc = {},
): Schema<ObjectType<F>> {
  const specs: Record<string, FieldSpec> = {};
  for (const [k, f] of Object.entries(fields)) specs[k] = f.spec;
  return schema({ kind: 'object', fields: specs, expected, ...doc });
}
export function required<T>(s: Schema<T>, description?: string): Field<T, true> {
  return { spec: { schema: s.node, required: true, description }, required: true };
}
export function optional<T>(s: Schema<T>, description?: string, defaultValue?: number | string | boolean): Field<T, false> {
  return { spec: { schema: s.node, required: false, description, default: defaultValue }, required: false };
}

/** The keys of a literal table with their literal types (Object.keys widens them to string). */
function keysOf<T extends object>(table: T): (keyof T & string)[] {
  return Object.keys(table) as (keyof T & string)[];
}

/** `a, b{last}c` (`last` is ' or ' in messages): a list of words for people. */
function listOf(items: readonly string[], last: string): string {
  return items.map((x, i) => (i === 0 ? x : `${i === items.length - 1 ? last : ', '}${x}`)).join('');
}

// ---------------------------------------------------------------------------------------------
// The policy format
// ---------------------------------------------------------------------------------------------

const ADDRESS_EXPECTED = `an address 0..${MAX_ADDRESS} or a range a-b`;
const address = integer(0, MAX_ADDRESS, `an address 0..${MAX_ADDRESS}`);
const addressRange = range(0, MAX_ADDRESS, `an address range a-b with a ≤ b, both 0..${MAX_ADDRESS}`);
const addressItem = oneOf([address, addressRange], ADDRESS_EXPECTED);
const addressList = array(addressItem, 'a list of addresses and ranges (e.g. [0-99, 200])', {
  description: '0-based PDU addresses as on the wire ("40001" in a manual is holding register 0); ranges are inclusive.',
  ref: 'addressList',
});

function valueSpec(max: number, what: string): Schema<number | string | (number | string)[]> {
  const one = integer(0, max, `a ${what} 0..${max}`);
  const r = range(0, max, `a ${what} range a-b with a ≤ b, both 0..${max}`);
  return oneOf([one, r, array(oneOf([one, r], `a ${what} 0..${max} or a range a-b`), `a list of ${what}s and ranges`)],
    `a ${what} 0..${max}, a range a-b or a list of them`);
}

function writeEntry(table: WriteTable) {
  const [max, what] = table === 'coils' ? [MAX_COIL_VALUE, 'coil value'] : [MAX_REGISTER_VALUE, 'register value'];
  const bounded = object(
    {
      addresses: required(
        oneOf([address, addressRange, addressList], `${ADDRESS_EXPECTED} or a list of them`),
        'The addresses this entry allows writing.',
      ),
      values: optional(
        valueSpec(max, what),
        `Every value written to these addresses must lie in one of these (omitted: any value). ${
          table === 'coils' ? 'Coils: 0 = off, 1 = on.' : 'Registers: 0..65535, unsigned.'
        }`,
      ),
    },
    `a mapping with addresses and values`,
  );
  return array(oneOf([address, addressRange, bounded], `${ADDRESS_EXPECTED}, or { addresses, values }`), `a list of addresses, ranges and { addresses, values } entries`, {
    ref: `write_${table}`,
    description: 'Addresses (any value) or { addresses, values } entries (values bounded).',
  });
}

const functionName = leaf('functionName', 'a function name', {
  description: 'snake_case of the Modbus spec name; read_device_identification is FC43 with MEI type 14 only.',
});
const functionNumber = functionCode(`a function code ${MIN_FUNCTION_CODE}..${MAX_FUNCTION_CODE} without an address model`, {
  description: 'Any function code, including user-defined (65-72, 100-110) and vendor ones (90 is Schneider UMAS).',
});
const functionRef = oneOf([functionNumber, functionName], 'a function name or code');
const narrowList = (max: number, what: string) =>
  array(
    oneOf([integer(0, max, `a ${what} 0..${max}`), range(0, max, `a ${what} range a-b with a ≤ b, both 0..${max}`)], `a ${what} 0..${max} or a range a-b`),
    `a list of ${what}s and ranges`,
  );
const functionObject = object(
  {
    code: required(functionRef, 'The function, by name or code.'),
    subfunctions: optional(narrowList(MAX_SUBFUNCTION, 'sub-function'), 'Diagnostics (FC8) only: the sub-functions allowed (4 = Force Listen Only).'),
    mei_types: optional(narrowList(MAX_MEI_TYPE, 'MEI type'), 'Encapsulated interface transport (FC43) only: the MEI types allowed (14 = Read Device Identification).'),
  },
  'a mapping with code and subfunctions or mei_types',
);
const functionList = array(
  oneOf([functionNumber, functionName, functionObject], 'a function name, a code 1..127, or { code, subfunctions | mei_types }'),
  'a list of functions',
  { ref: 'functions', description: 'Functions without an address model this rule allows.' },
);

const limitFields = Object.fromEntries(
  Object.entries(LIMIT_FIELDS).map(([k, f]) => [k, optional(integer(f.min, f.max, `an integer ${f.min}..${f.max}`), f.description, f.default)]),
) as { [K in LimitKey]: Field<number, false> };
const limits = object(limitFields, 'a mapping of limits', {
  ref: 'limits',
  description: 'Connection and resource limits; a device\'s own keys override defaults, which override the built-ins.',
});

function sharingField<K extends keyof typeof SHARING_FIELDS>(k: K): Field<number, false> {
  const f: { min: number; max: number; description: string; default?: number } = SHARING_FIELDS[k];
  return optional(integer(f.min, f.max, `an integer ${f.min}..${f.max}`), f.description, f.default);
}

const rate = (what: string) => integer(1, MAX_RATE, `${what} 1..${MAX_RATE}`);
const rateLimitObject = object(
  {
    requests_per_second: required(rate('a rate'), 'Requests per second allowed from one source address.'),
    writes_per_second: optional(rate('a rate'), 'Write requests per second from one source address (default: requests_per_second).'),
    burst: optional(rate('a burst size'), 'Requests a source may send at once above the rate (default: requests_per_second).'),
  },
  'a mapping with requests_per_second, writes_per_second and burst',
);
// Built outside the oneOf: inside it, contextual typing would widen 'none' to string.
const rateLimitNone = enumOf([RATE_LIMIT_NONE], 'none (or a rate limit mapping)');
const rateLimit = oneOf([rateLimitObject, rateLimitNone], 'a rate limit mapping, or none', {
  ref: 'rateLimit',
  description: 'Per source address; omitted: no rate limit. `none` on a device switches off one set in defaults.',
});

const modeField = enumOf(keysOf(MODES), listOf(keysOf(MODES), ' or '), {
  description: Object.entries(MODES)
    .map(([mode, what]) => `${mode}: ${what}.`)
    .join(' '),
});
const onDenyField = enumOf(keysOf(ON_DENY), listOf(keysOf(ON_DENY), ' or '), {
  description: `What a denied request gets: ${listOf(Object.values(ON_DENY), ', or ')}.`,
});
const description = leaf('string', 'a string', { description: 'Free text for people; ignored by the proxy.' });

// Modbus/TCP Security (mbaps). Paths, not PEM text: keys are secrets of the host and a policy
// travels (Redis, diffs, logs). A relative path resolves against the policy file's folder, or for a
// policy from Redis against each instance's --tls-dir (docs/tls.md).
const pemFile = leaf('string', 'a file path', { description: 'A PEM file; relative: to the policy file\'s folder (from Redis: to --tls-dir).' });
const pemFiles = oneOf([pemFile, array(pemFile, 'a list of file paths')], 'a file path or a list of them');
const tlsListen = object(
  {
    cert: required(pemFile, 'This listener\'s certificate (PEM), followed by its intermediate CAs: the whole chain is sent.'),
    key: required(pemFile, 'Its private key (PEM, unencrypted).'),
    ca: required(pemFiles, 'The CA certificates (PEM) a client certificate must chain to.'),
    crl: optional(pemFiles, 'Certificate revocation lists (PEM) of those CAs; a revoked client certificate is refused.'),
  },
  'a mapping with cert, key, ca and crl',
  {
    ref: 'tls',
    description: 'Modbus/TCP Security (mbaps): this listener speaks TLS 1.2 or newer only and requires a client certificate chaining to ca. Replacing the files applies to new connections.',
  },
);
const tlsUpstream = object(
  {
    ca: required(pemFiles, 'The CA certificates (PEM) the PLC\'s certificate must chain to.'),
    cert: required(pemFile, 'plcguard\'s client certificate toward the PLC (PEM), followed by its intermediate CAs.'),
    key: required(pemFile, 'Its private key (PEM, unencrypted).'),
  },
  'a mapping with ca, cert and key',
  { ref: 'upstreamTls', description: 'The PLC speaks Modbus/TCP Security: plcguard connects with TLS and its own certificate.' },
);
/** A role as written in a client certificate's role extension (compared exactly). */
export const ROLE_PATTERN = /^\S(.*\S)?$/u;

const upstreamEndpoint = endpoint('host:port, [IPv6]:port or hostname:port with port 1..65535');
const unitItem = oneOf([integer(0, MAX_UNIT_ID, `a unit id 0..${MAX_UNIT_ID}`), range(0, MAX_UNIT_ID, `a unit id range a-b with a ≤ b, both 0..${MAX_UNIT_ID}`)], `a unit id 0..${MAX_UNIT_ID} or a range a-b`);
const unitList = array(unitItem, 'a list of unit ids and ranges');

const rule = object(
  {
    name: optional(pattern(NAME_PATTERN, 'a name of lowercase letters, digits, _ and -, starting with a letter or digit, at most 63 characters'), 'Unique in the device; default rule-<index> (0-based).'),
    description: optional(description),
    sources: optional(
      array(cidr('an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/64)'), 'a list of IP addresses and CIDRs'),
      'Client addresses this rule applies to; omitted: any source. IPv4 and IPv6 are apart: ::/0 is every IPv6 address, not every address; an IPv4-mapped client (::ffff:10.0.0.1) is IPv4.',
    ),
    roles: optional(
      array(pattern(ROLE_PATTERN, 'a role name (no leading or trailing space)'), 'a list of role names'),
      'Devices with tls only: the client certificate roles (extension 1.3.6.1.4.1.50316.802.1, exact match) this rule applies to; omitted: any authenticated client.',
    ),
    units: optional(unitList, 'Unit ids this rule applies to; omitted: any.'),
    read: optional(
      object(Object.fromEntries(READ_TABLES.map((t) => [t, optional(addressList)])) as { [K in ReadTable]: Field<(number | string)[], false> }, `a mapping of tables (${READ_TABLES.join(', ')})`),
      'Readable addresses per table (FC1-4, FC23 read part, FC24 pointer).',
    ),
    write: optional(
      object({ coils: optional(writeEntry('coils')), holding_registers: optional(writeEntry('holding_registers')) }, `a mapping of tables (${WRITE_TABLES.join(', ')})`),
      'Writable addresses per table (FC5, 6, 15, 16, 22, FC23 write part), optionally with value bounds.',
    ),
    functions: optional(
      functionList,
      'Functions without an address model (FC7, 8, 11, 12, 17, 20, 21, 43, user-defined, vendor codes) this rule allows. Functions with addresses (FC1-6, 15, 16, 22-24) go under read:/write:.',
    ),
  },
  'a rule (a mapping)',
  { ref: 'rule' },
);

const deviceSettings = {
  mode: optional(modeField, undefined, DEFAULT_MODE),
  on_deny: optional(onDenyField, undefined, DEFAULT_ON_DENY),
  limits: optional(limits),
  rate_limit: optional(rateLimit),
  log_writes: optional(
    boolean('true or false'),
    'Log every allowed write (a `write` line: source, connection, address and values): who changed what, for forensics. Off by default: an HMI writing setpoints often would fill the log.',
    DEFAULT_LOG_WRITES,
  ),
};


/**
 * Unit routing (gateways): a device whose units sit behind different Modbus/TCP gateways, one per
 * serial line. Each route takes the units it names to its own upstream, shared (or not) as its own
 * keys say; units no route names go to the device's upstream.
 */
const route = object(
  {
    units: required(unitList, 'The unit ids this route takes (no two routes of a device share one).'),
    upstream: required(upstreamEndpoint, 'The gateway (or PLC) those units are behind.'),
    upstream_connections: sharingField('upstream_connections'),
    upstream_max_in_flight: sharingField('upstream_max_in_flight'),
  },
  'a route (a mapping with units, upstream, upstream_connections and upstream_max_in_flight)',
  { ref: 'route' },
);

const device = object(
  {
    name: required(pattern(NAME_PATTERN, 'a name of lowercase letters, digits, _ and -, starting with a letter or digit, at most 63 characters'), 'Unique; used in Redis keys, metric labels and logs.'),
    description: optional(description),
    listen: required(endpoint('host:port, [IPv6]:port or hostname:port with port 1..65535'), 'Where clients (HMIs) connect.'),
    upstream: required(upstreamEndpoint, 'The PLC (with routes: where the units no route names go).'),
    upstream_connections: sharingField('upstream_connections'),
    upstream_max_in_flight: sharingField('upstream_max_in_flight'),
    routes: optional(
      array(route, 'a list of routes'),
      'Unit routing for gateways: units sent to other upstreams, each shared (or not) by its own keys; upstream_tls applies to every route.',
    ),
    tls: optional(tlsListen),
    upstream_tls: optional(tlsUpstream),
    ...deviceSettings,
    rules: optional(array(rule, 'a list of rules'), 'Allow rules; a request passes when the rules matching its source and unit together cover everything it touches. No rules: everything is denied.'),
  },
  'a device (a mapping)',
  { ref: 'device' },
);

export const POLICY_SCHEMA = object(
  {
    version: required(integer(POLICY_VERSION, POLICY_VERSION, `the integer ${POLICY_VERSION}`), 'Format version.'),
    defaults: optional(object(deviceSettings, 'a mapping with mode, on_deny, limits, rate_limit and log_writes'), 'Settings for every device; a device\'s own keys override them.'),
    devices: required(array(device, 'a list of devices'), 'One entry per PLC: where clients connect, where the PLC is, and what is allowed.'),
  },
  'a policy (a mapping with version and devices)',
  {
    description: 'plcguard allow-list policy: which clients may read and write what on each PLC.',
    extensionKeys: EXTENSION_KEYS,
  },
);

/**
 * The document as written, once validated: ranges are canonical `a-b` strings; sources, listen and
 * upstream are `Written` (parsed, text kept). `AsWritten<PolicyInput>` is its JSON form.
 */
export type PolicyInput = Infer<typeof POLICY_SCHEMA>;
export type DeviceInput = PolicyInput['devices'][number];
export type RuleInput = NonNullable<DeviceInput['rules']>[number];
export type LimitsInput = NonNullable<DeviceInput['limits']>;
export type RateLimitInput = NonNullable<DeviceInput['rate_limit']>;
export type FunctionInput = NonNullable<RuleInput['functions']>[number];
export type TlsInput = NonNullable<DeviceInput['tls']>;
export type RouteInput = NonNullable<DeviceInput['routes']>[number];
export type UpstreamTlsInput = NonNullable<DeviceInput['upstream_tls']>;
export type WriteEntryInput = NonNullable<NonNullable<RuleInput['write']>['holding_registers']>[number];
