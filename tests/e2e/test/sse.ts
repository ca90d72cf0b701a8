import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { get, type ClientRequest, type IncomingMessage } from 'node:http';
import { sleep } from './system';

/** One Server-Sent Event as received: its name and its parsed data. */
export interface SseEvent {
  id: string;
  event: string;
  data: Record<string, any>;
}

/**
 * A client of `GET /v1/orders/events` that keeps every event it receives. It reads over node:http
 * rather than fetch() (what the README shows), on a connection of its own (no agent): the socket's
 * port is what tells which gateway process, of several sharing one port, serves the stream.
 */
export class OrderStream {
  readonly events: SseEvent[] = [];
  private buffer = '';

  private constructor(
    private readonly req: ClientRequest,
    readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.take(chunk));
    // A stream cut (the gateway stopping, the test closing it) is not an error to report.
    res.on('error', () => undefined);
  }

  /** Opens the stream and resolves once its answer's head has arrived. */
  static open(gatewayUrl: string, token: string): Promise<OrderStream> {
    return new Promise((resolve, reject) => {
      const req = get(
        `${gatewayUrl}/v1/orders/events`,
        {
          agent: false,
          headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
        },
        (res) => resolve(new OrderStream(req, res)),
      );
      req.on('error', reject);
    });
  }

  get status(): number | undefined {
    return this.res.statusCode;
  }

  /** The client side's port of the stream's connection. */
  get localPort(): number {
    return this.req.socket!.localPort!;
  }

  private take(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}: `))
          ?.slice(name.length + 2);
      const event = field('event');
      if (event) this.events.push({ id: field('id')!, event, data: JSON.parse(field('data')!) });
    }
  }

  /** Waits (generously) for an event that `match` accepts, and returns it. */
  async next(what: string, match: (event: SseEvent) => boolean, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}; the stream received ${JSON.stringify(this.events)}`,
        );
      }
      await sleep(50);
    }
  }

  close(): void {
    this.req.destroy();
  }
}

/**
 * The process, among `pids`, that holds the server side of the TCP connection from client port
 * `clientPort` to `port`, from Linux's /proc (as @repo/system's listensOn reads it): the socket
 * inodes of each process's descriptors, and the connections of /proc/<pid>/net/tcp{,6} with their
 * remote port and inode.
 */
export function serverPidOf(pids: number[], port: number, clientPort: number): number | undefined {
  const portOf = (address: string | undefined) => Number.parseInt(address?.split(':')[1] ?? '', 16);
  for (const pid of pids) {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode) inodes.add(inode);
      } catch {
        // closed meanwhile
      }
    }
    for (const table of ['tcp', 'tcp6']) {
      // sl local_address rem_address st ... inode: state 01 is ESTABLISHED.
      for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
        const fields = line.trim().split(/\s+/);
        if (
          fields[3] === '01' &&
          portOf(fields[1]) === port &&
          portOf(fields[2]) === clientPort &&
          inodes.has(fields[9] ?? '')
        ) {
          return pid;
        }
      }
    }
  }
  return undefined;
}
