// Policy text → validated document, with every error and warning at its line and column.
// Two passes: the schema walk (types, ranges, addresses, names: everything one value can get wrong)
// and the cross-checks (duplicates, combinations, rules that can never match). Both run even when
// the other finds errors, so one run reports everything.

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { Alias, Document, Node as YamlNode, Scalar } from 'yaml';
import { FUNCTION_NAMES, FunctionCode } from '../modbus/index.js';
import { PolicyIssue } from './errors.js';
import type { PolicyIssueSeverity } from './errors.js';
import { invariant } from '../modbus/errors.js';
import {
  ADDRESS_MODEL_FUNCTIONS,
  FUNCTION_CODE_BY_NAME,
  FUNCTION_LIST_NAMES,
  LIMIT_FIELDS,
  MAX_FUNCTION_CODE,
  MAX_UNIT_ID,
  MIN_FUNCTION_CODE,
  NARROWABLE,
  POLICY_SCHEMA,
  READ_DEVICE_IDENTIFICATION,
  READ_TABLES,
  span,
  WRITE_TABLES,
} from './format.js';
import type { PolicyInput, Schema, SchemaNode, Written } from './format.js';
import { formatEndpoint, listenConflict, parseCidr, parseEndpoint } from './net.js';
import type { Endpoint, Parsed } from './net.js';

/**
 * YAML nodes visited, aliases expanded. A legitimate policy of 1,000 rules is ~50,000; the cap
 * stops alias bombs (an anchor of anchors) from turning a small file into minutes of work.
 */
export const MAX_POLICY_NODES = 1_000_000;
/** Values quoted in messages are cut to this many characters. */
const MAX_QUOTED = 60;
/** Suggest a known name when a typo is at most this many edits away. */
const MAX_SUGGESTION_DISTANCE = 2;

export interface ValidationResult {
  /** Present when there are no errors. */
  readonly input?: PolicyInput;
  readonly errors: PolicyIssue[];
  readonly warnings: PolicyIssue[];
  /** An error at `obj`, an object of `input`: how a later stage (compile) reports what it found. */
  readonly errorAt: (obj: object, message: string) => PolicyIssue;
}

/** Parses and validates policy text. Never throws on any input. */
export function validatePolicyText(text: string, file: string): ValidationResult {
  const { value, walker, report } = walkYaml(text, file, POLICY_SCHEMA.node);
  if (walker !== undefined && value !== INVALID && value !== undefined) crossCheck(value as Loose<PolicyInput>, walker, report);
  // A later stage (compile) reports what it finds at the objects of `input` it was given.
  const errorAt = (obj: object, message: string): PolicyIssue => report.issue('error', walker!.at(obj), message);
  return { ...report.result(value as PolicyInput), errorAt };
}

/** Reports an error of a check made after the walk at `obj[key]`'s value, or at `obj`: a part of the walk's output. */
export type Place = (obj: object, key: string | number | undefined, message: string) => void;

/** A YAML file validated against a schema written in format.ts's language. */
export interface YamlValidation<T> {
  /** Present when there are no errors. */
  readonly value?: T;
  readonly errors: PolicyIssue[];
  readonly warnings: PolicyIssue[];
  /** Where `obj[key]`'s value (or `obj`) is in the file, for checks made later on `value`'s parts. */
  at(obj: object, key?: string | number): { line: number; col: number };
}

/**
 * Validates YAML text against `schema` as a policy is validated (positions, unknown keys with a
 * "did you mean", the node cap), for the project's other YAML files (policy unit tests). `check`
 * runs after the walk, on what it let through (any part may be missing), and reports with `error`.
 * Never throws on any input.
 */
export function validateYamlText<T>(
  text: string,
  file: string,
  schema: Schema<T>,
  check?: (value: Loose<T>, error: Place) => void,
): YamlValidation<T> {
  const { value, walker, report } = walkYaml(text, file, schema.node);
  if (check !== undefined && walker !== undefined && value !== INVALID && value !== undefined) {
    check(value as Loose<T>, (obj, key, message) => report.error(walker.at(obj, key), message));
  }
  const { input, errors, warnings } = report.result(value as T);
  const at = (obj: object, key?: string | number): { line: number; col: number } => report.position(walker!.at(obj, key));
  return input === undefined ? { errors, warnings, at } : { value: input, errors, warnings, at };
}

/** The schema walk of YAML text; `walker` is there when the text parsed well enough to walk. */
function walkYaml(text: string, file: string, schema: SchemaNode): { value: unknown; walker?: Walker; report: Reporter } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const report = new Reporter(file, lines);
  for (const e of doc.errors) report.error(e.pos[0], yamlMessage(e.message));
  for (const w of doc.warnings) report.warning(w.pos[0], yamlMessage(w.message));
  // Only duplicate keys leave a tree worth checking; other syntax errors make everything after
  // them guesswork, and guesses would bury the real error.
  if (doc.errors.some((e) => e.code !== 'DUPLICATE_KEY')) return { value: undefined, report };

  const walker = new Walker(doc, report);
  if (doc.contents === null) {
    report.error(0, `the file is empty; expected ${schema.expected}`);
    return { value: undefined, walker, report };
  }
  return { value: walker.walk(doc.contents, schema, ''), walker, report };
}

function yamlMessage(message: string): string {
  return `YAML: ${message}`;
}

// ---------------------------------------------------------------------------------------------

class Reporter {
  private readonly errors: { at: number; seq: number; issue: PolicyIssue }[] = [];
  private readonly warnings: { at: number; seq: number; issue: PolicyIssue }[] = [];
  private seq = 0;

  constructor(
    private readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  error(at: number, message: string): void {
    this.errors.push({ at, seq: this.seq++, issue: this.issue('error', at, message) });
  }
  warning(at: number, message: string): void {
    this.warnings.push({ at, seq: this.seq++, issue: this.issue('warning', at, message) });
  }
  line(at: number): number {
    return this.position(at).line;
  }
  position(at: number): { line: number; col: number } {
    return this.lines.linePos(at);
  }

  issue(severity: PolicyIssueSeverity, at: number, message: string): PolicyIssue {
    const { line, col } = this.position(at);
    return new PolicyIssue(severity, this.file, line, col, message);
  }

  result<T>(input: T | undefined): { input?: T; errors: PolicyIssue[]; warnings: PolicyIssue[] } {
    // File order reads best; the walk and the cross-checks each report in order, so merge them.
    const sort = (xs: { at: number; seq: number; issue: PolicyIssue }[]) =>
      xs.sort((a, b) => a.at - b.at || a.seq - b.seq).map((x) => x.issue);
    const errors = sort(this.errors);
    const warnings = sort(this.warnings);
    return errors.length === 0 && input !== undefined ? { input, errors, warnings } : { errors, warnings };
  }
}

// ---------------------------------------------------------------------------------------------
// Pass 1: the schema walk
// ---------------------------------------------------------------------------------------------

const INVALID: unique symbol = Symbol('invalid');

/** Where each key and value of an output object or array came from (source offsets). */
interface Origin {
  readonly self: number;
  readonly keys: Map<string | number, number>;
  readonly values: Map<string | number, number>;
}

class Walker {
  private readonly origins = new WeakMap<object, Origin>();
  /**
   * Each alias's anchor: the last node before it with that anchor, in document order (YAML 1.2
   * §3.2.2.2). Found in one pass: yaml's own `Alias.resolve` walks the whole document per alias,
   * which made a file of many aliases quadratic to validate.
   */
  private readonly anchors = new Map<Alias, YamlNode>();
  private nodes = 0;
  /**
   * While walking an alias's target: where the alias itself is. Problems inside an alias are
   * problems of the place that uses it, so they are reported there, not at the anchor.
   */
  private aliasAt = -1;

  constructor(
    doc: Document,
    private readonly report: Reporter,
  ) {
    const last = new Map<string, YamlNode>();
    visit(doc, {
      Node: (_key, node) => {
        if (isAlias(node)) {
          const target = last.get(node.source);
          if (target !== undefined) this.anchors.set(node, target);
        } else if (node.anchor !== undefined) {
          last.set(node.anchor, node);
        }
      },
    });
  }

  /** Whether `obj` had `key` in the file (even if its value was invalid and left out). */
  has(obj: object, key: string): boolean {
    return this.origins.get(obj)!.keys.has(key);
  }

  /** Offset of `obj[key]`'s value (or of the key itself), else of `obj`. */
  at(obj: object, key?: string | number, which: 'key' | 'value' = 'value'): number {
    const o = this.origins.get(obj)!;
    if (key === undefined) return o.self;
    // Only keys present in the file are asked for.
    return (which === 'key' ? o.keys.get(key) : o.values.get(key))!;
  }

  private start(node: YamlNode): number {
    return this.aliasAt >= 0 ? this.aliasAt : start(node);
  }

  walk(node: YamlNode, schema: SchemaNode, path: string): unknown {
    if (++this.nodes > MAX_POLICY_NODES) {
      if (this.nodes === MAX_POLICY_NODES + 1) {
        this.report.error(this.start(node), `${label(path)}: the policy has more than ${MAX_POLICY_NODES} YAML nodes once aliases are expanded; expected a smaller policy`);
      }
      return INVALID;
    }
    if (isAlias(node)) {
      const target = this.anchors.get(node);
      if (target === undefined) {
        this.report.error(this.start(node), `${label(path)}: alias *${node.source} has no anchor; expected an anchor &${node.source} defined before it`);
        return INVALID;
      }
      const outer = this.aliasAt;
      if (outer < 0) this.aliasAt = this.start(node);
      const v = this.walk(target, schema, path);
      this.aliasAt = outer;
      return v;
    }
    switch (schema.kind) {
      case 'object':
        return this.object(node, schema, path);
      case 'array':
        return this.array(node, schema, path);
      case 'oneOf':
        return this.oneOf(node, schema, path);
      default:
        return this.scalar(node, schema, path);
    }
  }

  private object(node: YamlNode, schema: Extract<SchemaNode, { kind: 'object' }>, path: string): unknown {
    if (!isMap(node)) return this.typeError(node, schema, path);
    const out: Record<string, unknown> = {};
    const origin: Origin = { self: this.start(node), keys: new Map(), values: new Map() };
    this.origins.set(out, origin);
    const fieldNames = Object.keys(schema.fields);
    const seen = new Set<string>();
    for (const pair of node.items) {
      // The parser gives every pair a key node (an empty key is a null scalar).
      const keyNode = pair.key as YamlNode;
      if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
        this.report.error(this.start(keyNode), `${label(path)}: a key is ${describe(keyNode)}; expected a plain key (${fieldNames.join(', ')})`);
        continue;
      }
      const key = String(keyNode.value);
      const childPath = path === '' ? key : `${path}.${key}`;
      const field = schema.fields[key];
      if (field === undefined && schema.extensionKeys?.test(key) === true) continue;
      if (field === undefined) {
        const ext = schema.extensionKeys === undefined ? '' : ' (or x-… for anchors)';
        this.report.error(this.start(keyNode), `${childPath}: unknown key${suggest(key, fieldNames)}; expected one of ${fieldNames.join(', ')}${ext}`);
        continue;
      }
      seen.add(key);
      const valueNode = pair.value as YamlNode | null;
      origin.keys.set(key, this.start(keyNode));
      origin.values.set(key, valueNode === null ? this.start(keyNode) : this.start(valueNode));
      // `? key` without a value has no node of its own to point at: point at the key.
      const v = valueNode === null ? this.typeError(keyNode, field.schema, childPath, null) : this.walk(valueNode, field.schema, childPath);
      if (v !== INVALID) out[key] = v;
    }
    for (const [key, field] of Object.entries(schema.fields)) {
      if (field.required && !seen.has(key)) {
        const childPath = path === '' ? key : `${path}.${key}`;
        this.report.error(origin.self, `${childPath}: missing; expected ${field.schema.expected}`);
      }
    }
    return out;
  }

  private array(node: YamlNode, schema: Extract<SchemaNode, { kind: 'array' }>, path: string): unknown {
    if (!isSeq(node)) return this.typeError(node, schema, path);
    // Invalid items stay as holes so indexes in later messages match the file.
    const out: unknown[] = [];
    const origin: Origin = { self: this.start(node), keys: new Map(), values: new Map() };
    this.origins.set(out, origin);
    node.items.forEach((item, i) => {
      // Even an empty item (`- `) is a node: a null scalar.
      const itemNode = item as YamlNode;
      origin.values.set(i, this.start(itemNode));
      const v = this.walk(itemNode, schema.items, `${path}[${i}]`);
      out.push(v === INVALID ? undefined : v);
    });
    return out;
  }

  private oneOf(node: YamlNode, schema: Extract<SchemaNode, { kind: 'oneOf' }>, path: string): unknown {
    const kind = nodeKind(node);
    const option = schema.options.find((o) => OPTION_KIND[o.kind] === kind);
    if (option === undefined) return this.typeError(node, schema, path);
    return this.walk(node, option, path);
  }

  private scalar(node: YamlNode, schema: Exclude<SchemaNode, { kind: 'object' | 'array' | 'oneOf' }>, path: string): unknown {
    const want = OPTION_KIND[schema.kind];
    if (nodeKind(node) !== want) return this.typeError(node, schema, path);
    const at = this.start(node);
    const fail = (problem: string, expected = schema.expected): typeof INVALID => {
      this.report.error(at, `${label(path)}: ${problem}; expected ${expected}`);
      return INVALID;
    };
    if (want === 'number') {
      const n = (node as Scalar).value as number;
      if (!Number.isInteger(n)) return this.typeError(node, schema, path);
      if (schema.kind === 'integer') {
        return n < schema.min || n > schema.max ? fail(`${n} is out of range`) : n;
      }
      if (n < MIN_FUNCTION_CODE || n > MAX_FUNCTION_CODE) {
        return fail(`${n} is out of range`, `${schema.expected} (128..255 mark exception responses)`);
      }
      return ADDRESS_MODEL_FUNCTIONS.has(n) ? fail(...addressModelProblem(String(n), n)) : n;
    }
    if (want === 'boolean') return (node as Scalar).value;
    const s = (node as Scalar).value as string;
    const q = quote(s);
    switch (schema.kind) {
      case 'range': {
        const m = RANGE_RE.exec(s.trim());
        if (m === null) return fail(`${q} is not a range a-b`);
        const lo = Number(m[1]);
        const hi = Number(m[2]);
        if (lo > schema.max || hi > schema.max) return fail(`${q} is out of range`);
        if (lo > hi) return fail(`${q} is reversed`);
        return `${lo}-${hi}`;
      }
      case 'enum':
        return schema.values.includes(s) ? s : fail(`${q} is unknown${suggest(s, schema.values)}`);
      case 'pattern':
        return schema.pattern.test(s) ? s : fail(`${q} is invalid`);
      case 'string':
        return s;
      case 'cidr':
        return written(s, parseCidr(s), fail);
      case 'endpoint':
        return written(s, parseEndpoint(s), fail);
      case 'functionName': {
        if (FUNCTION_LIST_NAMES.includes(s)) return s;
        const code = FUNCTION_CODE_BY_NAME.get(s);
        if (code !== undefined) return fail(...addressModelProblem(q, code));
        return fail(`${q} is not a function name${suggest(s, FUNCTION_LIST_NAMES)}`, `one of ${FUNCTION_LIST_NAMES.join(', ')}, or a code ${MIN_FUNCTION_CODE}..${MAX_FUNCTION_CODE}`);
      }
    }
  }

  /** `shown` is what the message says was found (default: `at` itself). */
  private typeError(at: YamlNode, schema: SchemaNode, path: string, shown: YamlNode | null = at): typeof INVALID {
    this.report.error(this.start(at), `${label(path)}: got ${describe(shown)}; expected ${schema.expected}`);
    return INVALID;
  }
}

const RANGE_RE = /^(\d+)\s*-\s*(\d+)$/;

/** A parsed string as the walk hands it on: its meaning for compile, its text for the document. */
function written<T>(text: string, r: Parsed<T>, fail: (problem: string) => typeof INVALID): Written<T> | typeof INVALID {
  return r.ok ? { text, value: r.value } : fail(`${quote(text)} ${r.problem}`);
}

type NodeKind = 'number' | 'string' | 'boolean' | 'null' | 'map' | 'list' | 'alias' | 'other';
const OPTION_KIND: Record<SchemaNode['kind'], NodeKind> = {
  object: 'map',
  array: 'list',
  oneOf: 'other',
  integer: 'number',
  functionCode: 'number',
  range: 'string',
  enum: 'string',
  pattern: 'string',
  string: 'string',
  boolean: 'boolean',
  cidr: 'string',
  endpoint: 'string',
  functionName: 'string',
};

function nodeKind(node: YamlNode | null): NodeKind {
  if (node === null) return 'null';
  if (isMap(node)) return 'map';
  if (isSeq(node)) return 'list';
  // Only where the walk has not resolved it: a key (`*k : v`).
  if (isAlias(node)) return 'alias';
  invariant(isScalar(node), 'a YAML tree holds only mappings, lists, scalars and aliases');
  const v = node.value;
  if (v === null) return 'null';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  return 'other';
}

/** Source offset of a node (the parser sets every node's range). */
function start(node: YamlNode): number {
  return node.range![0];
}

function label(path: string): string {
  return path === '' ? '(top level)' : path;
}

function describe(node: YamlNode | null): string {
  switch (nodeKind(node)) {
    case 'map':
      return 'a mapping';
    case 'list':
      return 'a list';
    case 'null':
      return 'an empty value';
    case 'alias':
      return `the alias *${(node as Alias).source}`;
    case 'number':
    case 'string':
    case 'boolean': {
      const v = (node as { value: unknown }).value;
      return `the ${typeof v} ${typeof v === 'string' ? quote(v) : String(v)}`;
    }
    default:
      // A scalar of a YAML 1.1 type (!!binary, !!timestamp): name its class.
      return `a ${(node as { value: object }).value.constructor.name}`;
  }
}

/** JSON-quoted, cut to MAX_QUOTED characters: messages name the value without drowning in it. */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}…` : s);
}

/** The problem and expectation for an address-model function where a function list is. */
function addressModelProblem(shown: string, code: number): [string, string] {
  const name = FUNCTION_NAMES.get(code)!;
  const reads = code === FunctionCode.READ_WRITE_MULTIPLE_REGISTERS ? 'reads and writes' : READ_CODES.has(code) ? 'reads' : 'writes';
  const where = code === FunctionCode.READ_WRITE_MULTIPLE_REGISTERS ? 'read: and write: tables' : READ_CODES.has(code) ? 'read: tables' : 'write: tables';
  const what = shown === String(code) ? `${code} (${name})` : `${shown} (FC${code})`;
  return [`${what} ${reads} table addresses, which a function list can't grant`, `${where} for it`];
}
const READ_CODES: ReadonlySet<number> = new Set([
  FunctionCode.READ_COILS,
  FunctionCode.READ_DISCRETE_INPUTS,
  FunctionCode.READ_HOLDING_REGISTERS,
  FunctionCode.READ_INPUT_REGISTERS,
  FunctionCode.READ_FIFO_QUEUE,
]);

/** ` (did you mean "x"?)` when a known word is close to `s`, else ''. */
function suggest(s: string, known: readonly string[]): string {
  let best = '';
  let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
  for (const k of known) {
    const d = editDistance(s, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best === '' ? '' : ` (did you mean ${quote(best)}?)`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Pass 2: cross-checks over what pass 1 let through (anything may be missing here)
// ---------------------------------------------------------------------------------------------

/** The walk's output: the input's shape with any part possibly missing. */
export type Loose<T> = T extends Written<unknown> ? T : T extends (infer U)[] ? (Loose<U> | undefined)[] : T extends object ? { [K in keyof T]?: Loose<T[K]> } : T;
type LooseDevice = Loose<PolicyInput['devices'][number]>;
type LooseRule = Loose<NonNullable<PolicyInput['devices'][number]['rules']>[number]>;
type LooseLimits = Loose<NonNullable<PolicyInput['devices'][number]['limits']>>;

function crossCheck(policy: Loose<PolicyInput>, w: Walker, report: Reporter): void {
  const devices = policy.devices ?? [];
  if (policy.devices !== undefined && devices.length === 0) {
    report.warning(w.at(policy, 'devices'), 'devices: empty; this policy serves nothing');
  }
  const names = new Map<string, number>();
  const listens: { listen: Written<Endpoint>; index: number }[] = [];
  checkBackoff(policy.defaults?.limits, undefined, 'defaults.limits', w, report);
  devices.forEach((device, i) => {
    if (device === undefined) return;
    const path = `devices[${i}]`;
    if (device.name !== undefined) {
      const first = names.get(device.name);
      if (first === undefined) names.set(device.name, i);
      else {
        report.error(w.at(device, 'name'), `${path}.name: ${quote(device.name)} is already the name of devices[${first}] (line ${lineOf(devices[first]!, 'name', w, report)}); expected a unique device name`);
      }
    }
    const listen = device.listen;
    if (listen !== undefined) {
      const clash = listens.find((l) => listenConflict(l.listen.value, listen.value));
      if (clash !== undefined) {
        report.error(w.at(device, 'listen'), `${path}.listen: ${quote(listen.text)} conflicts with devices[${clash.index}].listen ${quote(clash.listen.text)} (line ${lineOf(devices[clash.index]!, 'listen', w, report)}); expected a listen address no other device uses`);
      } else listens.push({ listen, index: i });
    }
    checkBackoff(device.limits, policy.defaults?.limits, `${path}.limits`, w, report);
    checkSharing(device, path, w, report);
    checkRoutes(device, path, w, report);
    checkRules(device, (device.mode ?? policy.defaults?.mode) === 'learn', path, w, report);
    if (device.tls === undefined && !w.has(device, 'tls')) {
      // Without tls there is no certificate, so a rule with roles could never match.
      (device.rules ?? []).forEach((rule, j) => {
        if (rule?.roles !== undefined) {
          report.error(w.at(rule, 'roles', 'key'), `${path}.rules[${j}].roles: the device has no tls, so no client has a role; expected tls: { cert, key, ca } on the device, or no roles`);
        }
      });
    }
  });
}

/** upstream_max_in_flight bounds a shared connection: on a device or a route, only beside upstream_connections. */
function checkSharing(keys: { upstream_connections?: number; upstream_max_in_flight?: number }, path: string, w: Walker, report: Reporter): void {
  if (keys.upstream_max_in_flight !== undefined && keys.upstream_connections === undefined) {
    report.error(w.at(keys, 'upstream_max_in_flight'), `${path}.upstream_max_in_flight: set without upstream_connections; expected upstream_connections beside it (it bounds requests on a shared PLC connection)`);
  }
}

/**
 * A unit goes to one upstream: routes may not share units. One route per upstream, and none to
 * the device's own: two routes to one gateway would each open (or share) connections of their own
 * to it, which is what sharing settings are meant to bound.
 */
function checkRoutes(device: LooseDevice, path: string, w: Walker, report: Reporter): void {
  const routes = device.routes ?? [];
  const routeOf = new Array<number | undefined>(MAX_UNIT_ID + 1);
  const upstreams = new Map<string, string>();
  if (device.upstream !== undefined) upstreams.set(endpointKey(device.upstream), `the device (line ${lineOf(device, 'upstream', w, report)})`);
  routes.forEach((r, i) => {
    if (r === undefined) return;
    const rPath = `${path}.routes[${i}]`;
    checkSharing(r, rPath, w, report);
    if (r.units?.length === 0) report.warning(w.at(r, 'units'), `${rPath}.units: empty; this route takes no unit`);
    (r.units ?? []).forEach((u, k) => {
      if (u === undefined) return;
      const [lo, hi] = span(u);
      for (let unit = lo; unit <= hi; unit++) {
        const first = routeOf[unit];
        if (first === undefined) routeOf[unit] = i;
        else if (first !== i) {
          report.error(w.at(r.units!, k), `${rPath}.units[${k}]: unit ${unit} is already routed by ${path}.routes[${first}] (line ${lineOf(routes[first]!, 'units', w, report)}); expected each unit in one route`);
          return;
        }
      }
    });
    if (r.upstream === undefined) return;
    const key = endpointKey(r.upstream);
    const other = upstreams.get(key);
    if (other === undefined) upstreams.set(key, `${path}.routes[${i}] (line ${lineOf(r, 'upstream', w, report)})`);
    else report.error(w.at(r, 'upstream'), `${rPath}.upstream: ${quote(r.upstream.text)} is already the upstream of ${other}; expected one route per upstream (list all its units in that one)`);
  });
}

function endpointKey(e: Written<Endpoint>): string {
  return formatEndpoint(e.value.host, e.value.port);
}

function lineOf(obj: object, key: string, w: Walker, report: Reporter): number {
  return report.line(w.at(obj, key));
}

/** The reconnect backoff must not start above its own ceiling, whichever level set each end. */
function checkBackoff(own: LooseLimits | undefined, inherited: LooseLimits | undefined, path: string, w: Walker, report: Reporter): void {
  if (own === undefined) return;
  const minOwn = own.reconnect_backoff_min_ms;
  const maxOwn = own.reconnect_backoff_max_ms;
  if (minOwn === undefined && maxOwn === undefined) return;
  const pick = (key: 'reconnect_backoff_min_ms' | 'reconnect_backoff_max_ms'): [number, string] => {
    const o = own[key];
    if (o !== undefined) return [o, ''];
    const d = inherited?.[key];
    if (d !== undefined) return [d, ' from defaults'];
    return [LIMIT_FIELDS[key].default, ' (built-in default)'];
  };
  const [min, minFrom] = pick('reconnect_backoff_min_ms');
  const [max, maxFrom] = pick('reconnect_backoff_max_ms');
  if (min <= max) return;
  if (maxOwn !== undefined) {
    report.error(w.at(own, 'reconnect_backoff_max_ms'), `${path}.reconnect_backoff_max_ms: ${max} is below reconnect_backoff_min_ms ${min}${minFrom}; expected at least ${min}`);
  } else {
    report.error(w.at(own, 'reconnect_backoff_min_ms'), `${path}.reconnect_backoff_min_ms: ${min} is above reconnect_backoff_max_ms ${max}${maxFrom}; expected at most ${max}`);
  }
}

function checkRules(device: LooseDevice, learning: boolean, path: string, w: Walker, report: Reporter): void {
  const rules = device.rules ?? [];
  // An invalid rules value already has its error; "no rules" would only repeat it. A device in
  // learn mode ignores its rules: none is the usual start.
  if (rules.length === 0 && !learning && !(device.rules === undefined && w.has(device, 'rules'))) {
    const at = device.rules === undefined ? w.at(device) : w.at(device, 'rules');
    report.warning(at, `${path}${device.rules === undefined ? '' : '.rules'}: no rules; this device denies everything`);
  }
  // Effective names: explicit, else rule-<index>; each must be unique in the device.
  const taken = new Map<string, number>();
  rules.forEach((rule, j) => {
    if (rule === undefined) return;
    const rulePath = `${path}.rules[${j}]`;
    const name = rule.name ?? `rule-${j}`;
    const first = taken.get(name);
    if (first === undefined) taken.set(name, j);
    else {
      const firstRule = rules[first]!;
      const firstAt = firstRule.name === undefined ? w.at(firstRule) : w.at(firstRule, 'name');
      const where = `${path}.rules[${first}] (line ${report.line(firstAt)})`;
      if (rule.name !== undefined) {
        report.error(w.at(rule, 'name'), `${rulePath}.name: ${quote(name)} is already the name of ${where}; expected a unique rule name`);
      } else {
        report.error(w.at(rule), `${rulePath}: its default name ${quote(name)} is already the name of ${where}; expected a name: to tell them apart`);
      }
    }
    checkRule(rule, rulePath, w, report);
  });
}

function checkRule(rule: LooseRule, path: string, w: Walker, report: Reporter): void {
  if (rule.sources?.length === 0) {
    report.warning(w.at(rule, 'sources'), `${path}.sources: empty; this rule can never match (omit sources to match any source)`);
  }
  if (rule.roles?.length === 0) {
    report.warning(w.at(rule, 'roles'), `${path}.roles: empty; this rule can never match (omit roles to match any authenticated client)`);
  }
  if (rule.units?.length === 0) {
    report.warning(w.at(rule, 'units'), `${path}.units: empty; this rule can never match (omit units to match any unit)`);
  }
  // A grant whose value was invalid already has its error: don't add "grants nothing" to it.
  let grants = (['read', 'write', 'functions'] as const).some((k) => rule[k] === undefined && w.has(rule, k));
  for (const t of READ_TABLES) if ((rule.read?.[t]?.length ?? 0) > 0) grants = true;
  for (const t of WRITE_TABLES) if ((rule.write?.[t]?.length ?? 0) > 0) grants = true;
  (rule.functions ?? []).forEach((f, k) => {
    if (f === undefined || typeof f !== 'object') {
      grants = true;
      return;
    }
    const fPath = `${path}.functions[${k}]`;
    const code = typeof f.code === 'string' ? FUNCTION_CODE_BY_NAME.get(f.code) : f.code;
    let narrowedToNothing = false;
    for (const key of ['subfunctions', 'mei_types'] as const) {
      const list = f[key];
      if (list === undefined) continue;
      if (code !== undefined && (code !== NARROWABLE[key] || f.code === READ_DEVICE_IDENTIFICATION)) {
        const name = FUNCTION_NAMES.get(code);
        const shown = typeof f.code === 'string' ? f.code : name === undefined ? String(code) : `${code} (${name})`;
        const why = f.code === READ_DEVICE_IDENTIFICATION ? ', which is already MEI type 14 only' : '';
        const target = FUNCTION_NAMES.get(NARROWABLE[key])!;
        report.error(w.at(f, key, 'key'), `${fPath}.${key}: not allowed with code ${shown}${why}; expected ${key} only with ${target} (${NARROWABLE[key]})`);
      }
      if (list.length === 0) {
        narrowedToNothing = true;
        report.warning(w.at(f, key), `${fPath}.${key}: empty; this entry allows nothing (omit ${key} to allow all)`);
      }
    }
    if (f.subfunctions !== undefined && f.mei_types !== undefined) {
      report.error(w.at(f, 'mei_types', 'key'), `${fPath}.mei_types: given together with subfunctions; expected one of them`);
    }
    if (!narrowedToNothing) grants = true;
  });
  if (!grants) {
    report.warning(w.at(rule), `${path}: grants nothing (no read, write or functions entries); this rule can never match`);
  }
}
