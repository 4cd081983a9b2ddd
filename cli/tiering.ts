import v8 from 'node:v8';

/**
 * V8 flags `plcguard run` and `plcguard demo` set for themselves, by V8 version.
 *
 * V8 compiles a function to optimized code only after it has run a while; on Node 20's V8 (11.x)
 * "a while" is 66 KB of its bytecode executed (--interrupt-budget). At saturation that takes a
 * blink, but an HMI polling at 50 req/s runs the request path 50 times a second: its functions
 * stayed in the interpreter for minutes, each request took ~90 µs of cold interpreted JS on top
 * of the syscalls, and the optimizing compiles (~3 ms each on a background thread, on a 2-core
 * box) kept landing among the polls for a minute after start. A quarter of the budget finishes
 * that within seconds of the first requests; from then on plcguard's p50/p99 at 50 req/s equal
 * the bare pipe relay's (bench/RESULTS.md, "HMI rate": the measurements and the smaller budgets
 * tried, which compiled too much and cost more than they saved).
 *
 * Newer V8s (Node 22, 24) tier up by invocation count through Maglev, which gets there in
 * seconds at 50 req/s; measured as close to the relay with their defaults, so nothing is set.
 */
export function tieringFlags(v8Version: string): string[] {
  return Number.parseInt(v8Version, 10) <= 11 ? ['--interrupt-budget=16384'] : [];
}

/** Sets tieringFlags() for the V8 this process runs on; before the proxy's code first runs. */
export function tuneTiering(): void {
  // One string of flags, as a command line has them (none: an empty string, which sets nothing).
  v8.setFlagsFromString(tieringFlags(process.versions.v8).join(' '));
}
