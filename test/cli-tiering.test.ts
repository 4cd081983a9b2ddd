import { spawnSync } from 'node:child_process';
import t from 'tap';
import { tieringFlags, tuneTiering } from '../cli/tiering.js';

void t.test("Node 20's V8 (11.x): the request path tiers up after a quarter of the default budget", (t) => {
  t.same(tieringFlags('11.3.244.8-node.33'), ['--interrupt-budget=16384']);
  t.same(tieringFlags('10.2.154.26-node.26'), ['--interrupt-budget=16384']);
  t.end();
});

void t.test("Node 22's and 24's V8s (12.x, 13.x) keep their defaults: they tier up by invocation count", (t) => {
  t.same(tieringFlags('12.4.254.21-node.33'), []);
  t.same(tieringFlags('13.6.233.17-node.37'), []);
  t.end();
});

void t.test('this V8 knows every flag chosen for it (an unknown one is only a line on stderr)', (t) => {
  const flags = tieringFlags(process.versions.v8);
  const code = `require('node:v8').setFlagsFromString(${JSON.stringify(flags.join(' '))});`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r.status, 0);
  t.equal(r.stderr, '');
  t.end();
});

void t.test('tuneTiering sets them in this process', (t) => {
  t.doesNotThrow(() => tuneTiering());
  t.end();
});
