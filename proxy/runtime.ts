import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CompiledPolicy, Endpoint } from '../policy/types.js';
import type { Logger } from './audit.js';
import { startAdminServer } from './http.js';
import { PolicyStats, createRegistry } from './metrics.js';
import { PolicyInvalidError } from '../policy/errors.js';
import { PlcguardError } from '../modbus/errors.js';
import type { ParseResult } from '../policy/parse.js';
import type { PolicySource } from '../policy/source/source.js';
import { ProxyServer } from './server.js';
import { learnStats, liveProposal } from '../policy/learn/live.js';
import type { LearnStore } from '../policy/learn/store.js';
import { toSnapshot } from '../policy/learn/snapshot.js';
import { LearnSync } from './learnsync.js';

export interface ProxyOptions {
  source: PolicySource;
  /** Serve only these devices of the policy (several instances can split a plant). */
  devices?: readonly string[];
  /** Admin HTTP endpoint; null for none. */
  admin: Endpoint | null;
  logger: Logger;
  /** How long SIGTERM waits for outstanding requests. */
  graceMs?: number;
  version?: string;
  /**
   * With Redis: where learn mode's observations are merged (periodically and at stop). The
   * runtime owns its connection and closes it at stop. (A Redis source's start fails only at the
   * admin server, and stops the runtime then.)
   */
  learnStore?: LearnStore;
  /** How often they are written (default LEARN_SYNC_INTERVAL_MS). */
  learnSyncMs?: number;
  /**
   * What relative certificate paths in the policy resolve against; default: the policy file's
   * folder (a file source), else the working directory.
   */
  tlsDir?: string;
}

/**
 * The device filter (`--devices`) names none of the policy's devices. At start that is an error:
 * an instance that serves nothing while looking healthy hides a typo.
 */
export class NoDeviceSelectedError extends PlcguardError {
  override readonly name = 'NoDeviceSelectedError';
  constructor(
    readonly asked: readonly string[],
    readonly has: readonly string[],
  ) {
    super('ERR_NO_DEVICE_SELECTED', `none of the devices to serve (${asked.join(', ')}) is in the policy; it has: ${has.join(', ')}`);
  }
}

export const DEFAULT_ADMIN: Endpoint = { host: '127.0.0.1', port: 9502 };
export const DEFAULT_GRACE_MS = 5000;

/** A running plcguard: listeners, file watch, admin endpoints. */
export class ProxyRuntime {
  readonly server: ProxyServer;
  readonly policyStats = new PolicyStats();
  private admin: http.Server | null = null;
  private readonly logger: Logger;
  private applying: Promise<void> = Promise.resolve();
  /** The device filter; null to serve every device of the policy. */
  private readonly only: readonly string[] | null;
  /** Devices of the policy in force this instance serves. */
  private served = 0;
  private stopping = false;
  private readonly sync: LearnSync | null;

  private constructor(private readonly opts: ProxyOptions) {
    this.logger = opts.logger;
    this.only = opts.devices?.length ? opts.devices : null;
    this.server = new ProxyServer(this.logger, opts.tlsDir ?? opts.source.baseDir ?? '.');
    this.sync = opts.learnStore ? new LearnSync(opts.learnStore, this.server.learners, this.logger, opts.learnSyncMs) : null;
  }

  /**
   * Starts following the policy source. A file must parse now (else PolicyInvalidError with every
   * error), and a device filter must select some of it (else NoDeviceSelectedError); with Redis
   * nothing listens until a valid version arrives (fail closed).
   */
  static async start(opts: ProxyOptions): Promise<ProxyRuntime> {
    const rt = new ProxyRuntime(opts);
    rt.sync?.start();
    if (opts.source.redisUp) rt.policyStats.redisUp = () => opts.source.redisUp!();
    const first = opts.source.start((r) => rt.onChange(r));
    if (first !== null) {
      if (!first.policy) {
        await opts.source.stop();
        throw new PolicyInvalidError(first.errors);
      }
      for (const w of first.warnings) rt.logger.log('policy_warning', { message: w.format() });
      try {
        await rt.use(first.policy, true);
      } catch (err) {
        await opts.source.stop();
        await rt.server.shutdown(0);
        throw err;
      }
      rt.loaded(first.policy);
    }
    if (opts.admin) {
      // /readyz and plcguard_ready say the same.
      const checks = (): Record<string, boolean> => ({
        policy_loaded: rt.policyStats.loaded,
        listeners_up: rt.server.ready,
        ...(rt.only ? { devices_served: rt.served > 0 } : {}),
        ...opts.source.checks(),
      });
      const register = createRegistry(rt.server.stats, rt.policyStats, opts.version ?? '0.0.0', checks);
      try {
        const learners = rt.server.learners;
        rt.admin = await startAdminServer(opts.admin, register, { checks }, {
          proposal: (mode) => liveProposal(learners.values(), { mode })?.text ?? null,
          stats: () => ({ devices: [...learners.values()].map(learnStats) }),
          observations: () => ({ devices: [...learners.values()].map((l) => toSnapshot(l.learned())) }),
        });
        rt.adminPort = (rt.admin.address() as AddressInfo).port;
      } catch (err) {
        await rt.stop();
        throw err;
      }
    }
    return rt;
  }

  /**
   * Applies the devices of `policy` this instance serves. A filter that selects none of them
   * throws at start (`strict`); on a later change the policy is applied all the same (its
   * author removed or renamed this instance's devices: serving their old rules would ignore
   * that), readiness turns false (devices_served) and the log says why.
   */
  private async use(policy: CompiledPolicy, strict: boolean): Promise<void> {
    let selected = policy;
    if (this.only) {
      const only = this.only;
      const devices = new Map([...policy.devices].filter(([name]) => only.includes(name)));
      const missing = only.filter((n) => !policy.devices.has(n));
      if (devices.size === 0) {
        const none = new NoDeviceSelectedError(only, [...policy.devices.keys()]);
        if (strict) throw none;
        this.logger.log('policy_warning', { message: `${none.message}; this instance serves nothing` });
      } else if (missing.length > 0) {
        this.logger.log('policy_warning', { message: `devices not in this policy: ${missing.join(', ')}` });
      }
      selected = Object.freeze({ ...policy, devices });
    }
    await this.server.apply(selected);
    this.served = selected.devices.size;
  }

  /** Listening port per device. */
  ports(): Map<string, number> {
    return this.server.ports();
  }

  /** The admin endpoint's port (0 without one). */
  adminPort = 0;

  private loaded(policy: CompiledPolicy): void {
    const ps = this.policyStats;
    ps.loaded = true;
    ps.version = policy.version;
    ps.sha256 = policy.sha256;
    ps.reloadsOk++;
    ps.lastReloadSeconds = Date.now() / 1000;
    // This line and every one after it name the policy in force.
    this.logger.setPolicy(policy.version, policy.sha256);
    this.logger.log('policy_loaded', {
      source: this.opts.source.name,
      version: policy.version,
      sha256: policy.sha256,
      devices: [...policy.devices.values()].map((d) => ({
        name: d.name,
        listen: `${d.listen.host}:${d.listen.port}`,
        upstream: `${d.upstream.host}:${d.upstream.port}`,
        mode: d.mode,
        rules: d.ruleCount,
      })),
    });
  }

  private onChange(r: ParseResult): void {
    // Reloads apply one after another, in the order the file changed.
    this.applying = this.applying.then(() => this.applyChange(r));
  }

  private async applyChange(r: ParseResult): Promise<void> {
    if (!r.policy) {
      this.policyStats.reloadsFailed++;
      this.logger.log('policy_rejected', {
        source: this.opts.source.name,
        errors: r.errors.map((e) => e.format()),
        kept: this.policyStats.loaded ? 'last good policy' : 'nothing (not listening)',
      });
      return;
    }
    for (const w of r.warnings) this.logger.log('policy_warning', { message: w.format() });
    try {
      await this.use(r.policy, false);
      this.loaded(r.policy);
    } catch (err) {
      this.policyStats.reloadsFailed++;
      this.logger.log('policy_rejected', { source: this.opts.source.name, errors: [(err as Error).message], kept: 'last good policy' });
    }
  }

  /**
   * Reads the policy again now and applies it, as SIGHUP asks: a file as it is (without waiting
   * for it to settle, and even if unchanged: a reload that failed for a reason outside the file,
   * a port in use, is retried), or the version in force in Redis. Ignored once stopping.
   */
  reload(): void {
    if (this.stopping) return;
    this.logger.log('reload_requested', { source: this.opts.source.name });
    this.opts.source.reload();
  }

  /** Writes learn mode's observations to Redis now (tests; otherwise periodic). */
  flushLearned(): Promise<void> {
    return this.sync?.flush() ?? Promise.resolve();
  }

  /** Waits until reloads triggered so far are applied (tests). */
  settled(): Promise<void> {
    return this.applying;
  }

  /** Stops accepting, lets outstanding requests finish (bounded), closes everything. */
  async stop(): Promise<void> {
    this.stopping = true;
    // Stop accepting first, in this tick; then let what is in flight finish.
    const shutdown = this.server.shutdown(this.opts.graceMs ?? DEFAULT_GRACE_MS);
    await this.opts.source.stop();
    await this.applying;
    await shutdown;
    // Every session has ended: nothing more is learned, so what is left goes to Redis now.
    if (this.sync !== null) {
      await this.sync.stop();
      this.opts.learnStore!.connection.client.disconnect();
    }
    const admin = this.admin;
    this.admin = null;
    if (admin) {
      admin.closeAllConnections();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
    }
  }
}
