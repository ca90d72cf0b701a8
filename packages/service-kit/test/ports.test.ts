import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { freePort } from '../src/ports';

/** The first port of the kernel's ephemeral range (the tests run on Linux). */
const ephemeralLow = () =>
  Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

/** Listens on `port` of 127.0.0.1 and closes again: rejects if it is taken. */
function listenOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () =>
      server.close(() => resolve()),
    );
  });
}

describe('freePort', () => {
  // First in the file: no port has been handed out yet, so only the check can refuse `held`.
  it('skips a port a server listens on', async () => {
    const below = ephemeralLow();
    // A server of someone else's on a port of that range.
    const server = createServer();
    let held = 0;
    for (let port = 20_000; !held; port++) {
      held = await new Promise<number>((resolve) => {
        server.once('error', () => resolve(0));
        server.listen(port, '127.0.0.1', () => resolve(port));
      });
    }
    // The first random pick lands on it; the next ones are random again.
    const random = jest
      .spyOn(Math, 'random')
      .mockReturnValueOnce((held - 10_000 + 0.5) / (below - 10_000));
    try {
      const port = await freePort();
      expect(port).not.toBe(held);
      expect(random.mock.calls.length).toBeGreaterThanOrEqual(2);
      await listenOnce(port);
    } finally {
      random.mockRestore();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('never hands out one port twice in a process (the kernel repeats its choice within tens)', async () => {
    // Sequential, as the system runner asks for one port after another for apps started side by
    // side: before this, 3,000 calls gave 561 repeats, the first after 10 calls.
    const ports: number[] = [];
    for (let i = 0; i < 1_000; i++) ports.push(await freePort());
    expect(ports.length - new Set(ports).size).toBe(0);
  });

  it('hands out a port that can be listened on, outside the range outgoing connections use', async () => {
    const below = ephemeralLow();
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(below);
      await listenOnce(port);
    }
  });
});
