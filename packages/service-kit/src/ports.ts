import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1, for a server about to start (an app the system runner starts, a
 * test's proxy). The port is free when it is returned, not reserved: whoever asked binds it soon.
 *
 * Not the kernel's choice (`listen(0)`), for two reasons the bench and CI ran into:
 * - The kernel hands the same port out again within tens of calls (measured here: 561 repeats in
 *   3,000 calls, the first after 10), so two apps started side by side could be given one port
 *   and one of them "exited during start-up", port in use. This process never hands a port out
 *   twice.
 * - `listen(0)` picks from the ephemeral range, the one outgoing connections take their local port
 *   from: between the check and the bind, one of the many connections of a loaded machine could
 *   take it, and a client reconnecting to a server that is down can be given its very port and
 *   connect to itself. The port is chosen at random below that range instead, where no outgoing
 *   connection goes; the check that it is free covers servers that listen there.
 */
export async function freePort(): Promise<number> {
  const below = ephemeralRangeStart();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST_PORT + Math.floor(Math.random() * (below - LOWEST_PORT));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  // That range is full (unlikely): the kernel's choice, still never one handed out before.
  for (;;) {
    const port = await kernelChoice();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Ports freePort has returned in this process. */
const handedOut = new Set<number>();

/** Below this are well-known and registered services' usual ports. */
const LOWEST_PORT = 10_000;

/** The first port of the kernel's ephemeral range (Linux: 32768 unless configured otherwise). */
function ephemeralRangeStart(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    );
    if (Number.isInteger(low) && low > LOWEST_PORT + 1000) return low;
  } catch {
    // not Linux: macOS's range starts at 49152, Windows' too
  }
  return 32_768;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

function kernelChoice(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}
