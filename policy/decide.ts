// The per-frame decision: one decoded request against a connection's resolved view. compile.ts
// builds the views (frozen, shared); this file defines their layout and reads it. A decision is an
// array index, a switch and one or two binary searches, and fills the caller's Decision in place:
// nothing here allocates.

import { ExceptionCode, FunctionCode } from '../modbus/index.js';
import type { ModbusRequest, Table, Violation } from '../modbus/index.js';
import type { IntervalSet, WriteSet } from './intervals.js';
import type { CompiledDevice, Decision, DecisionReason, SourceView } from './types.js';

/** Indexed by the raw function code byte, so any request indexes in bounds. */
export const FUNCTION_SLOTS = 256;
/** Table order in the per-unit arrays. */
export const TABLE_COUNT = 4;
const COILS = 0;
const DISCRETE_INPUTS = 1;
const HOLDING_REGISTERS = 2;
const INPUT_REGISTERS = 3;

export function tableIndex(t: Table): number {
  switch (t) {
    case 'coils':
      return COILS;
    case 'discrete_inputs':
      return DISCRETE_INPUTS;
    case 'holding_registers':
      return HOLDING_REGISTERS;
    case 'input_registers':
      return INPUT_REGISTERS;
  }
}

/** Who may call one function code in a unit. */
export class FunctionGrant {
  constructor(
    /** First rule granting it without narrowing, or null. */
    readonly allRule: string | null,
    /** First rule granting it at all: named when a narrowed grant doesn't fit. */
    readonly firstRule: string,
    /** FC8/FC43: sub-functions or MEI types, "all" grants included as the full range. */
    readonly sub: IntervalSet | null,
  ) {}
}

/** Everything the rules of one rule set allow in one unit. */
export class UnitPolicy {
  constructor(
    /** Per table (tableIndex); null: no rule grants it. */
    readonly read: readonly (IntervalSet | null)[],
    readonly write: readonly (WriteSet | null)[],
    /** Per function code byte (FUNCTION_SLOTS); null: not granted. */
    readonly functions: readonly (FunctionGrant | null)[],
  ) {}
}

/** The rules of one device matching one source address, per unit id. */
export class CompiledSourceView implements SourceView {
  constructor(
    /** The device that resolved it: a view is only good for that device's decisions. */
    readonly device: CompiledDevice,
    readonly matches: boolean,
    /** Indexed by unit id; null: no matching rule covers the unit. */
    readonly units: readonly (UnitPolicy | null)[],
  ) {
    Object.freeze(this);
  }
}

function deny(out: Decision, reason: DecisionReason, exception: number, rule: string | null, violation: Violation): Decision {
  out.allow = false;
  out.reason = reason;
  out.exception = exception;
  out.rule = rule;
  out.violation = violation;
  return out;
}

function allow(out: Decision, rule: string | null): Decision {
  out.allow = true;
  out.reason = 'allowed';
  out.exception = 0;
  out.rule = rule;
  out.violation = 'none';
  return out;
}

function malformed(out: Decision, req: ModbusRequest, rule: string | null): Decision {
  return deny(out, 'malformed', req.exception, rule, req.violation);
}

/**
 * Decides `req` from the source `view` was resolved for, on `device`. Check order (MB-AP §4.4
 * server order, with plcguard's gateway checks first): source → unit (0A) → function (01) →
 * malformed (decoder's 03/02/01) → address (02) → value (03). Denials name the rule that came
 * closest: the first rule granting that kind of access to that table (or that function); value
 * denials name the first rule with a grant at the failing address.
 */
export function decide(device: CompiledDevice, view: SourceView, req: ModbusRequest, out: Decision): Decision {
  if (!(view instanceof CompiledSourceView) || view.device !== device) {
    return deny(out, 'no_policy', ExceptionCode.GATEWAY_PATH_UNAVAILABLE, null, 'none');
  }
  if (!view.matches) return deny(out, 'source_not_allowed', ExceptionCode.GATEWAY_PATH_UNAVAILABLE, null, 'none');
  const unit = view.units[req.unitId];
  if (unit === null || unit === undefined) return deny(out, 'unit_not_allowed', ExceptionCode.GATEWAY_PATH_UNAVAILABLE, null, 'none');
  switch (req.kind) {
    case 'read':
      return decideRead(unit, req, out);
    case 'write':
      return decideWrite(unit, req, out);
    case 'mask_write':
      return decideMaskWrite(unit, req, out);
    case 'read_write':
      return decideReadWrite(unit, req, out);
    default:
      return decideFunction(unit, req, out);
  }
}

/**
 * A device in learn mode: its rules are not consulted. Every well-formed request is allowed (no
 * rule named); a malformed one is denied with the decoder's code, as any device denies it.
 */
export function decideLearning(req: ModbusRequest, out: Decision): Decision {
  return req.exception !== 0 ? malformed(out, req, null) : allow(out, null);
}

const NOT_ALLOWED = ExceptionCode.ILLEGAL_FUNCTION;

/** FC1–4 and FC24 (the FIFO pointer is a one-register read). */
function decideRead(unit: UnitPolicy, req: ModbusRequest, out: Decision): Decision {
  const set = unit.read[tableIndex(req.readTable!)]!;
  if (set === null) return deny(out, 'function_not_allowed', NOT_ALLOWED, null, 'none');
  if (req.exception !== 0) return malformed(out, req, set.firstRule);
  const lo = req.readStart;
  if (!set.covers(lo, lo + req.readQuantity - 1)) {
    return deny(out, 'address_not_allowed', ExceptionCode.ILLEGAL_DATA_ADDRESS, set.firstRule, 'none');
  }
  return allow(out, set.ruleAt(lo));
}

/** FC5, 6, 15, 16. */
function decideWrite(unit: UnitPolicy, req: ModbusRequest, out: Decision): Decision {
  const set = unit.write[tableIndex(req.writeTable!)]!;
  if (set === null) return deny(out, 'function_not_allowed', NOT_ALLOWED, null, 'none');
  if (req.exception !== 0) return malformed(out, req, set.firstRule);
  return checkWritePart(set, req, out);
}

/** Address coverage of the write part, then every written value; allows naming the first rule. */
function checkWritePart(set: WriteSet, req: ModbusRequest, out: Decision): Decision {
  const lo = req.writeStart;
  const hi = lo + req.writeQuantity - 1;
  if (!set.covers(lo, hi)) return deny(out, 'address_not_allowed', ExceptionCode.ILLEGAL_DATA_ADDRESS, set.firstRule, 'none');
  const first = set.segmentOf(lo);
  let seg = first;
  for (let a = lo; a <= hi; a++) {
    seg = set.advance(seg, a);
    if (set.anyValueRule(seg) !== null) {
      // Any value goes in this whole segment: skip to its end.
      a = Math.min(set.segmentEnd(seg), hi);
      continue;
    }
    if (set.valueRule(seg, req.valueAt(a - lo)) === null) {
      return deny(out, 'value_not_allowed', ExceptionCode.ILLEGAL_DATA_VALUE, set.firstRuleOf(seg), 'none');
    }
  }
  return allow(out, set.valueRule(first, req.valueAt(0)));
}

/** FC22: the result depends on the PLC's current value, so only where any value may be written. */
function decideMaskWrite(unit: UnitPolicy, req: ModbusRequest, out: Decision): Decision {
  const set = unit.write[HOLDING_REGISTERS]!;
  if (set === null) return deny(out, 'function_not_allowed', NOT_ALLOWED, null, 'none');
  if (req.exception !== 0) return malformed(out, req, set.firstRule);
  const a = req.writeStart;
  if (!set.covers(a, a)) return deny(out, 'address_not_allowed', ExceptionCode.ILLEGAL_DATA_ADDRESS, set.firstRule, 'none');
  const seg = set.segmentOf(a);
  const rule = set.anyValueRule(seg);
  if (rule === null) return deny(out, 'value_not_allowed', ExceptionCode.ILLEGAL_DATA_VALUE, set.firstRuleOf(seg), 'none');
  return allow(out, rule);
}

/** FC23: the read part must be readable and the write part writable (values checked). */
function decideReadWrite(unit: UnitPolicy, req: ModbusRequest, out: Decision): Decision {
  const r = unit.read[HOLDING_REGISTERS]!;
  const w = unit.write[HOLDING_REGISTERS]!;
  if (r === null || w === null) return deny(out, 'function_not_allowed', NOT_ALLOWED, null, 'none');
  if (req.exception !== 0) return malformed(out, req, w.firstRule);
  const lo = req.readStart;
  if (!r.covers(lo, lo + req.readQuantity - 1)) {
    return deny(out, 'address_not_allowed', ExceptionCode.ILLEGAL_DATA_ADDRESS, r.firstRule, 'none');
  }
  return checkWritePart(w, req, out);
}

/** Everything without an address model: allowed only through `functions`. */
function decideFunction(unit: UnitPolicy, req: ModbusRequest, out: Decision): Decision {
  const fc = req.functionCode;
  const g = unit.functions[fc];
  if (g === null || g === undefined) return deny(out, 'function_not_allowed', NOT_ALLOWED, null, 'none');
  let rule: string | null = g.allRule;
  if (g.sub !== null) {
    const key = fc === FunctionCode.DIAGNOSTICS ? req.subFunction : req.meiType;
    // key < 0: the PDU ended before the sub-function; only an unnarrowed grant lets it reach
    // the malformed check.
    if (key >= 0) rule = g.sub.ruleAt(key);
    if (rule === null) return deny(out, 'function_not_allowed', NOT_ALLOWED, g.firstRule, 'none');
  }
  if (req.exception !== 0) return malformed(out, req, rule);
  return allow(out, rule);
}
