// Policy unit tests (`plcguard policy test`, as `promtool test rules` is for alert rules): a YAML
// file naming a policy and requests with the decisions the policy must make, so that a plant keeps
// its intent under version control and CI. The format is written once, in format.ts's schema
// language, and validated like a policy: every error at FILE:LINE:COL. Requests are written in the
// words `plcguard policy check` reads; the CLI, which owns that grammar, turns them into requests.
//
//   policy: plant-policy.yaml             # relative to the test file
//   cases:
//     - name: the HMI reads the status    # optional, for the report
//       device: boiler-plc
//       source: 10.20.0.10
//       unit: 1                           # optional; 1 as in policy check
//       request: read holding_registers 0-9
//       expect: allow                     # allow | deny
//       reason: allowed                   # optional, and so are:
//       exception: 0x02                   #   the exception code a denial earns
//       rule: scada-read                  #   the rule that decided

import { DECISION_REASONS } from './types.js';
import type { DecisionReason } from './types.js';
import { array, enumOf, integer, leaf, MAX_UNIT_ID, NAME_PATTERN, object, optional, pattern, required } from './format.js';
import type { Infer } from './format.js';
import { parseClientAddress } from './net.js';
import { quote, validateYamlText } from './validate.js';
import type { YamlValidation } from './validate.js';

/** Exception codes a reply can carry: the function code byte with its high bit set holds 1..255. */
const MAX_EXCEPTION_CODE = 0xff;
export const EXPECTATIONS = ['allow', 'deny'] as const;
export type Expectation = (typeof EXPECTATIONS)[number];

const testCase = object(
  {
    name: optional(leaf('string', 'a name for the case'), 'Shown in the report; by default the device, source and request.'),
    device: required(pattern(NAME_PATTERN, 'a device name of the policy'), 'The device the request is sent to.'),
    source: required(leaf('string', 'an IPv4 or IPv6 address'), "The client's address."),
    unit: optional(integer(0, MAX_UNIT_ID, `a unit id 0..${MAX_UNIT_ID}`), 'The unit id (default 1).'),
    request: required(leaf('string', 'a request as plcguard policy check reads it (e.g. read holding_registers 0-9)'), 'The request.'),
    expect: required(enumOf(EXPECTATIONS, 'allow or deny'), 'The decision the policy must make.'),
    reason: optional(enumOf(DECISION_REASONS, `a decision reason: ${DECISION_REASONS.join(', ')}`), 'The reason it must give.'),
    exception: optional(integer(1, MAX_EXCEPTION_CODE, `an exception code 1..${MAX_EXCEPTION_CODE} (e.g. 0x02)`), 'The exception code a denial must earn.'),
    rule: optional(pattern(NAME_PATTERN, 'a rule name'), 'The rule that must decide it.'),
  },
  'a test case: a mapping with device, source, request and expect',
);

export const TEST_SCHEMA = object(
  {
    policy: required(leaf('string', 'the policy file, relative to this file'), 'The policy file under test.'),
    cases: required(array(testCase, 'a list of test cases'), 'Requests and the decisions they must get.'),
  },
  'a policy test file: a mapping with policy and cases',
);

export type TestFile = Infer<typeof TEST_SCHEMA>;
export type TestCase = TestFile['cases'][number];

/** The reasons of each expectation: a case expecting allow with a deny's reason could never pass. */
const REASONS_OF: Record<Expectation, (r: DecisionReason) => boolean> = {
  allow: (r) => r === 'allowed',
  deny: (r) => r !== 'allowed',
};

/**
 * Parses and validates a policy test file. Never throws on any text. What needs the policy (the
 * device exists) or the request grammar is the runner's to check, with `errorAt`.
 */
export function parseTestFile(text: string, file: string): YamlValidation<TestFile> {
  return validateYamlText(text, file, TEST_SCHEMA, (spec, error) => {
    // A file that tests nothing would pass in CI for ever.
    if (spec.cases?.length === 0) error(spec, 'cases', 'cases: empty; expected at least one case');
    (spec.cases ?? []).forEach((c, i) => {
      if (c === undefined) return;
      const path = `cases[${i}]`;
      if (c.source !== undefined && parseClientAddress(c.source) === null) {
        error(c, 'source', `${path}.source: ${quote(c.source)} is not an IP address; expected an IPv4 or IPv6 address`);
      }
      if (c.expect === undefined) return;
      if (c.reason !== undefined && !REASONS_OF[c.expect](c.reason)) {
        error(c, 'reason', `${path}.reason: ${c.reason} is never the reason of ${c.expect}; expected ${c.expect === 'allow' ? 'allowed' : 'a reason other than allowed'}`);
      }
      if (c.exception !== undefined && c.expect === 'allow') {
        error(c, 'exception', `${path}.exception: an allowed request earns no exception; expected no exception with expect: allow`);
      }
    });
  });
}
