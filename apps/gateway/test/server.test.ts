import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { createHttpServer, HEADERS_TIMEOUT_MS } from '../src/http/server';

describe('the gateway HTTP server', () => {
  // Node enforces headersTimeout only when it checks its connections; with the default check
  // interval (30 s) a client sending half a header kept its socket for up to 40 s.
  it('answers 408 and closes a connection whose headers are not complete in time (10 s)', async () => {
    const server = createHttpServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const started = performance.now();
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '); // never finished
        });
        let received = '';
        socket.setEncoding('latin1');
        socket.on('data', (chunk: string) => (received += chunk));
        socket.on('close', () => resolve(received));
        socket.on('error', reject);
        // Give up well after the bound asserted below, so a regression fails rather than hangs.
        setTimeout(() => socket.destroy(), 20_000).unref();
      });
      const seconds = (performance.now() - started) / 1000;
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(seconds).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS / 1000 - 0.1);
      expect(seconds).toBeLessThanOrEqual(12.5);
    } finally {
      server.close();
    }
  });
});
