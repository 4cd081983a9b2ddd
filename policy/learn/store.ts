// Learn mode's observations in Redis, beside the policy store's keys (policy/store.ts) and under
// the same prefix:
// | key                      | type   | holds                                                       |
// |--------------------------|--------|-------------------------------------------------------------|
// | {p}learn:devices         | set    | names of devices with observations                          |
// | {p}learn:device:{name}   | string | the device's observations (snapshot.ts JSON)                |
// Instances merge what they learned since their last write into the stored snapshot (WATCH, read,
// merge, MULTI/EXEC, retried when another instance wrote in between), so counts are summed once
// and two instances in front of one PLC learn together.

import { RedisStore, StoreError } from '../store.js';
import { mergeSnapshots, type DeviceSnapshot } from './snapshot.js';

/** Attempts at one merge when other instances keep writing the same key in between. */
export const MERGE_ATTEMPTS = 10;

export class LearnStore extends RedisStore {
  private key(name: string): string {
    return `${this.prefix}learn:device:${name}`;
  }

  /**
   * Merges `snap` into what is stored for device `name`. One at a time per connection: WATCH
   * belongs to the connection, and a second merge's EXEC would clear the first one's watch.
   */
  async merge(name: string, snap: DeviceSnapshot): Promise<void> {
    const key = this.key(name);
    for (let i = 0; i < MERGE_ATTEMPTS; i++) {
      await this.redis.watch(key).catch(this.failed);
      const stored = await this.redis.get(key).catch(this.failed);
      const merged = stored === null ? snap : mergeSnapshots(parseSnapshot(name, stored), snap);
      const done = await this.redis.multi().set(key, JSON.stringify(merged)).sadd(`${this.prefix}learn:devices`, name).exec().catch(this.failed);
      if (done !== null) return;
    }
    throw new StoreError('ERR_STORE_REDIS', `${this.connection.server}: ${key} changed under each of ${MERGE_ATTEMPTS} attempts to merge into it`);
  }

  /** The stored snapshots of `names` (default: every device with some), by name. */
  async read(names?: readonly string[]): Promise<Map<string, DeviceSnapshot>> {
    const all = names ?? (await this.redis.smembers(`${this.prefix}learn:devices`).catch(this.failed)).sort();
    const out = new Map<string, DeviceSnapshot>();
    for (const name of all) {
      const stored = await this.redis.get(this.key(name)).catch(this.failed);
      if (stored !== null) out.set(name, parseSnapshot(name, stored));
    }
    return out;
  }
}

function parseSnapshot(name: string, text: string): DeviceSnapshot {
  try {
    return JSON.parse(text) as DeviceSnapshot;
  } catch (err) {
    throw new StoreError('ERR_STORE_CORRUPT', `the observations of ${name} in Redis are not JSON`, { cause: err });
  }
}
