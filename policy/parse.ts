// Policy text or file → compiled policy, with every error and warning.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { compileWithinBudget } from './compile.js';
import { normalizePolicy } from './document.js';
import type { PolicyDocument } from './document.js';
import { PolicyInvalidError, PolicyReadError, PolicyTooComplexError } from './errors.js';
import type { PolicyIssue, PolicyProblem } from './errors.js';
import type { CompiledPolicy } from './types.js';
import { validatePolicyText } from './validate.js';

export interface ParseResult {
  /** Present when there are no errors. */
  readonly policy?: CompiledPolicy;
  /** The normalized document (also `policy.document`); present when there are no errors. */
  readonly document?: PolicyDocument;
  readonly errors: readonly PolicyProblem[];
  readonly warnings: readonly PolicyIssue[];
}

export interface ParseOptions {
  /** Store version the text came from; 0 (the default) for a file. */
  readonly version?: number;
  /**
   * The policy compiled last (a source's last good one): devices it has unchanged are kept, not
   * compiled again (compileWithinBudget).
   */
  readonly previous?: CompiledPolicy | null;
}

/** sha256 of the policy text, hex: what a loaded policy is identified by in logs and metrics. */
export function policySha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * Validates and compiles policy text. `fileName` prefixes every issue (`FILE:LINE:COL: message`).
 * Never throws on any text; JSON is accepted too (it is YAML). A policy too complex to compile
 * (over MAX_COMPILE_ENTRIES) is an error at the device where the count went over, so `policy
 * validate`, `policy push` and every reload refuse it alike.
 */
export function parsePolicy(text: string, fileName: string, options: ParseOptions = {}): ParseResult {
  const { input, errors, warnings, errorAt } = validatePolicyText(text, fileName);
  if (input === undefined) return { errors, warnings };
  const policy = compileWithinBudget(normalizePolicy(input), { sha256: policySha256(text), version: options.version ?? 0 }, options.previous ?? null);
  if (policy instanceof PolicyTooComplexError) return { errors: [errorAt(input.devices[policy.device]!, policy.message)], warnings };
  return { policy, document: policy.document, errors, warnings };
}

/** Reads and parses a policy file; throws PolicyReadError (ERR_POLICY_READ) when it can't be read. */
export async function loadPolicyFile(path: string, options: ParseOptions = {}): Promise<ParseResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PolicyReadError(path, err);
  }
  return parsePolicy(text, path, options);
}

/** Like loadPolicyFile, but throws PolicyInvalidError (ERR_POLICY_INVALID) unless the policy is valid. */
export async function loadValidPolicyFile(path: string, options: ParseOptions = {}): Promise<CompiledPolicy> {
  const r = await loadPolicyFile(path, options);
  if (r.policy === undefined) throw new PolicyInvalidError(r.errors);
  return r.policy;
}
