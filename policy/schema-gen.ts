// The JSON Schema for editors (VS Code's YAML extension: `# yaml-language-server: $schema=…`),
// generated from the one format definition in format.ts. Run `node dist/policy/schema-gen.js`
// to rewrite policy/plcguard-policy.schema.json; a test checks the committed file is current.
//
// The schema checks shape, types, bounds and name lists. What only code can check (reversed
// ranges, host bits in a CIDR, duplicates, combinations) is left to `plcguard policy validate`;
// the patterns here accept a superset, so an editor never flags a valid policy.

import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDRESS_MODEL_FUNCTIONS, FUNCTION_LIST_NAMES, MAX_FUNCTION_CODE, MIN_FUNCTION_CODE, POLICY_SCHEMA } from './format.js';
import type { FieldSpec, SchemaNode } from './format.js';

/** Where the schema lives, relative to the project root. */
export const SCHEMA_FILE = 'policy/plcguard-policy.schema.json';
const JSON_SCHEMA_DRAFT = 'http://json-schema.org/draft-07/schema#';

/** Loose on purpose (see above): the validator has the exact rules. */
const RANGE_PATTERN = '^\\s*[0-9]+\\s*-\\s*[0-9]+\\s*$';
const CIDR_PATTERN = '^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(/[0-9]{1,3})?$';
const ENDPOINT_PATTERN = '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** The JSON Schema (draft-07) of the policy format. */
export function generateJsonSchema(): JsonObject {
  const definitions: JsonObject = {};
  const root = body(POLICY_SCHEMA.node, definitions);
  return {
    $schema: JSON_SCHEMA_DRAFT,
    title: 'plcguard policy',
    ...root,
    definitions: Object.fromEntries(Object.entries(definitions).sort(([a], [b]) => a.localeCompare(b))),
  };
}

/** The schema file's exact text. */
export function jsonSchemaText(): string {
  return `${JSON.stringify(generateJsonSchema(), null, 2)}\n`;
}

function gen(node: SchemaNode, defs: JsonObject): JsonObject {
  if (node.ref === undefined) return body(node, defs);
  if (!(node.ref in defs)) defs[node.ref] = body(node, defs);
  return { $ref: `#/definitions/${node.ref}` };
}

function body(node: SchemaNode, defs: JsonObject): JsonObject {
  const out: JsonObject = node.description === undefined ? {} : { description: node.description };
  switch (node.kind) {
    case 'object': {
      const required = Object.entries(node.fields)
        .filter(([, f]) => f.required)
        .map(([k]): Json => k);
      return {
        type: 'object',
        ...out,
        properties: Object.fromEntries(Object.entries(node.fields).map(([k, f]) => [k, field(f, defs)])),
        ...(required.length > 0 ? { required } : {}),
        ...(node.extensionKeys === undefined ? {} : { patternProperties: { [node.extensionKeys.source]: {} } }),
        additionalProperties: false,
      };
    }
    case 'array':
      return { type: 'array', ...out, items: gen(node.items, defs) };
    case 'oneOf':
      return { ...out, oneOf: node.options.map((o) => gen(o, defs)) };
    case 'integer':
      return { type: 'integer', ...out, minimum: node.min, maximum: node.max };
    case 'range':
      return { type: 'string', ...out, pattern: RANGE_PATTERN };
    case 'enum':
      return { type: 'string', ...out, enum: [...node.values] };
    case 'pattern':
      return { type: 'string', ...out, pattern: node.pattern.source };
    case 'string':
      return { type: 'string', ...out };
    case 'boolean':
      return { type: 'boolean', ...out };
    case 'cidr':
      return { type: 'string', ...out, pattern: CIDR_PATTERN };
    case 'endpoint':
      return { type: 'string', ...out, pattern: ENDPOINT_PATTERN };
    case 'functionCode':
      return {
        type: 'integer',
        ...out,
        minimum: MIN_FUNCTION_CODE,
        maximum: MAX_FUNCTION_CODE,
        not: { enum: [...ADDRESS_MODEL_FUNCTIONS].sort((a, b) => a - b) },
      };
    case 'functionName':
      return { type: 'string', ...out, enum: [...FUNCTION_LIST_NAMES] };
  }
}

/** A property: its schema plus the field's own description and default. */
function field(f: FieldSpec, defs: JsonObject): JsonObject {
  const s = gen(f.schema, defs);
  const notes: JsonObject = {};
  if (f.description !== undefined) notes.description = f.description;
  if (f.default !== undefined) notes.default = f.default;
  if (Object.keys(notes).length === 0) return s;
  // Draft-07 ignores keywords next to $ref; allOf keeps both the reference and the notes.
  if ('$ref' in s) return { ...notes, allOf: [s] };
  return { ...s, ...notes };
}

/** The nearest directory at or above `from` holding package.json. */
export function projectRoot(from: string): string {
  let dir = from;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

/** SCHEMA_FILE in the project this module belongs to (from policy/ or dist/policy/ alike). */
export function defaultSchemaPath(): string {
  return path.join(projectRoot(path.dirname(fileURLToPath(import.meta.url))), SCHEMA_FILE);
}

/** Writes the schema (default: defaultSchemaPath()); returns the path written. */
export async function writeJsonSchema(file: string = defaultSchemaPath()): Promise<string> {
  await writeFile(file, jsonSchemaText());
  return file;
}

/* c8 ignore start: the script entry point; writeJsonSchema itself is tested */
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeJsonSchema(process.argv[2]).then(
    (p) => console.log(`wrote ${p}`),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
/* c8 ignore stop */
