// The policy layer: format, validation, compiled matcher, dry run.
export * from './types.js';
export * from './errors.js';
export { parsePolicy, loadPolicyFile, loadValidPolicyFile, policySha256 } from './parse.js';
export type { ParseResult, ParseOptions } from './parse.js';
export { validatePolicyText, MAX_POLICY_NODES } from './validate.js';
export type { ValidationResult } from './validate.js';
export { compilePolicy, MAX_COMPILE_ENTRIES } from './compile.js';
export type { CompileMeta } from './compile.js';
export { normalizePolicy, BUILTIN_LIMITS_YAML } from './document.js';
export type { PolicyDocument, DeviceDocument, RuleDocument, RateLimitDocument, NormalizedPolicy } from './document.js';
export { POLICY_SCHEMA, POLICY_VERSION, LIMIT_FIELDS, FUNCTION_LIST_NAMES, DEFAULT_MODE, DEFAULT_ON_DENY } from './format.js';
export type { PolicyInput, Mode, OnDeny } from './format.js';
export { generateJsonSchema, jsonSchemaText, writeJsonSchema, defaultSchemaPath, SCHEMA_FILE } from './schema-gen.js';
