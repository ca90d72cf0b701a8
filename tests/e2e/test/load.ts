/** Steady load for fault tests: a few clients in closed loops against the gateway, all recorded. */

export interface Outcome {
  /** HTTP status, or 0 when no response came (connection refused or reset). */
  status: number;
  ms: number;
  /** When it was sent, in ms since the load started. */
  at: number;
  error?: string;
  /** The start of a non-2xx answer's body. */
  body?: string;
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

export interface Load {
  outcomes: Outcome[];
  /** Ends the loops and resolves once every request in flight has an outcome. */
  stop(): Promise<Outcome[]>;
}

/**
 * `clients` loops, each sending `request()` again as soon as the previous one is answered, with a
 * pause of `pauseMs` between, until stopped. Only to 127.0.0.1, and always stopped by the test.
 */
export function startLoad(
  request: (i: number) => Promise<Response>,
  { clients = 4, pauseMs = 5 }: { clients?: number; pauseMs?: number } = {},
): Load {
  const outcomes: Outcome[] = [];
  const started = performance.now();
  let running = true;
  let sent = 0;
  const loop = async () => {
    while (running) {
      const at = performance.now();
      try {
        const response = await request(sent++);
        const text = await response.text();
        outcomes.push({
          status: response.status,
          ms: performance.now() - at,
          at: at - started,
          ...(response.ok ? {} : { body: text.slice(0, 200) }),
        });
      } catch (error) {
        outcomes.push({
          status: 0,
          ms: performance.now() - at,
          at: at - started,
          error: String((error as Error).cause ?? error),
        });
      }
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  };
  const loops = Array.from({ length: clients }, loop);
  return {
    outcomes,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

/** The outcomes that are not 2xx, summarised for an assertion message. */
export function failures(outcomes: Outcome[]): string[] {
  return outcomes
    .filter((outcome) => outcome.status < 200 || outcome.status >= 300)
    .map(
      (outcome) =>
        `${outcome.status} at ${outcome.at.toFixed(0)} ms: ${outcome.error ?? outcome.body ?? ''}`,
    );
}
