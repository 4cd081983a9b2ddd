import { spawnSync } from 'node:child_process';
import t from 'tap';
import { tieringFlags } from '../cli/tiering.js';

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

void t.test('tuneTiering sets flags this V8 knows (an unknown one would only be a line on stderr)', (t) => {
  // The built module, in a process of its own: what `plcguard run` calls, on the V8 it runs on.
  const tiering = new URL('../dist/cli/tiering.js', import.meta.url).href;
  const code = `import(${JSON.stringify(tiering)}).then((m) => m.tuneTiering());`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r.status, 0);
  t.equal(r.stderr, '');
  t.end();
});
