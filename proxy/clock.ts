/**
 * Time as sessions and upstream links see it: one reading and re-armable timers. Everything they
 * time (frame deadline, idle timeout, response timeout, connect timeout, linger, backoff) goes
 * through a Clock, so tests drive time by hand instead of waiting for it.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (performance.now()'s). */
  now(): number;
  /** A timer that calls `fire` each time it runs out; made once, armed as often as needed. */
  timer(fire: () => void): Timer;
}

export interface Timer {
  /** True from `arm` until it fires or is cancelled. */
  readonly armed: boolean;
  /** (Re)arms it: `fire` runs once, `ms` from now (an armed timer starts over). */
  arm(ms: number): void;
  cancel(): void;
}

class NodeTimer implements Timer {
  private handle: NodeJS.Timeout | null = null;
  private readonly run = (): void => {
    this.handle = null;
    this.fire();
  };

  constructor(private readonly fire: () => void) {}

  get armed(): boolean {
    return this.handle !== null;
  }

  arm(ms: number): void {
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = setTimeout(this.run, ms);
  }

  cancel(): void {
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
  }
}

/** Real time: performance.now() and Node's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  timer: (fire) => new NodeTimer(fire),
};
