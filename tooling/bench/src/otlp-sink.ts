import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the sink received. */
export interface SinkStats {
  /** Export requests (`POST /v1/traces`), each a batch of spans. */
  requests: number;
  bytes: number;
}

/**
 * A stand-in for an OpenTelemetry Collector: accepts OTLP/HTTP trace exports and drops them, so
 * --compare-tracing measures what exporting costs the apps (serialising, sending) and nothing of
 * what a collector does with the spans. In the bench's process, on 127.0.0.1 only.
 */
export async function startOtlpSink(): Promise<{
  url: string;
  stats(): SinkStats;
  close(): Promise<void>;
}> {
  const stats: SinkStats = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => (stats.bytes += chunk.length));
    req.on('end', () => {
      stats.requests++;
      res.writeHead(req.method === 'POST' && req.url === '/v1/traces' ? 200 : 404, {
        'Content-Type': 'application/json',
      });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats: () => ({ ...stats }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
