// What Linux's /proc says about a process: CPU time, system calls, resident memory. For the
// benchmark's attribution of cost to each process and the soak's memory watch.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const CLOCK_TICKS_PER_SECOND = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** The fields of /proc/PID/stat after the command name (which may contain spaces): [0] is the state. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a process, in seconds (clock-tick resolution). */
export function cpuSeconds(pid: number): number {
  const fields = statFields(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds used by every process except `ours`, plus what they reaped from exited children (so
 * a short-lived job that ends mid-window still counts). Per process rather than /proc/stat: on
 * this kind of VM the guest's halt-polling idle loop is accounted as busy system time, which would
 * read as a phantom core whenever one of ours sleeps briefly (the 1×1 ping-pong).
 */
export function foreignCpuSeconds(ours: Iterable<number>): number {
  const skip = new Set(ours);
  let ticks = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || skip.has(Number(name))) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile: its time moves to its parent's cutime
    }
    const f = statFields(stat);
    // utime stime cutime cstime
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** read()/write() system calls a process has made (readv/writev count too). */
export function syscalls(pid: number): { reads: number; writes: number } {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  return { reads: Number(/^syscr:\s+(\d+)/m.exec(io)?.[1] ?? NaN), writes: Number(/^syscw:\s+(\d+)/m.exec(io)?.[1] ?? NaN) };
}

/** Resident memory of a process, in bytes (throws once it is gone). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A process's open-file limits (soft, hard), from /proc/PID/limits. */
export function fileLimits(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  const n = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/**
 * Times a process's main thread went to sleep and was woken (voluntary context switches): for an
 * event loop, its wake-ups. Per request at HMI rate this shows how much of the round trip is
 * spent waking up rather than working, whatever else runs on the machine.
 */
export function wakeups(pid: number): number {
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}
