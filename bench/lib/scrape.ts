// Scraping plcguard's /metrics the way Prometheus would while traffic runs: every scrape timed
// and checked, counted whatever happens to it.
import { httpGet } from './http.js';

export interface ScrapeFigures {
  count: number;
  failures: number;
  /** The slowest scrape, request to last byte. */
  maxMs: number;
  /** The largest body. */
  bytes: number;
  /**
   * The longest event-loop stall plcguard reported (nodejs_eventloop_lag_max_seconds, which each
   * scrape resets, so the max over them covers the whole time scraped), ms; 0 when none said.
   */
  loopStallMs: number;
}

/** plcguard's longest event-loop stall since its last scrape, ms, from a /metrics body; null when absent. */
export function loopStallOf(body: string): number | null {
  const v = Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(body)?.[1]);
  return Number.isFinite(v) ? v * 1000 : null;
}

/** A metric every plcguard scrape must contain. */
const EXPECTED_METRIC = 'plcguard_requests_total';

export interface Scraper {
  /** Stops scraping; resolves once every scrape in flight is over. */
  stop(): Promise<ScrapeFigures>;
}

/** Scrapes /metrics on 127.0.0.1:adminPort at once and then every `everyMs`, each bounded by `timeoutMs`, until stopped. */
export function startScraper(adminPort: number, everyMs: number, timeoutMs: number): Scraper {
  const fig: ScrapeFigures = { count: 0, failures: 0, maxMs: 0, bytes: 0, loopStallMs: 0 };
  const inFlight = new Set<Promise<void>>();
  const scrape = (): void => {
    const t0 = performance.now();
    const p = httpGet(adminPort, '/metrics', timeoutMs).then(
      (r) => {
        fig.count++;
        fig.maxMs = Math.max(fig.maxMs, performance.now() - t0);
        fig.bytes = Math.max(fig.bytes, r.body.length);
        fig.loopStallMs = Math.max(fig.loopStallMs, loopStallOf(r.body) ?? 0);
        if (r.status !== 200 || !r.body.includes(EXPECTED_METRIC)) fig.failures++;
      },
      () => {
        fig.count++;
        fig.failures++;
      },
    );
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  };
  scrape();
  const timer = setInterval(scrape, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
      return fig;
    },
  };
}
