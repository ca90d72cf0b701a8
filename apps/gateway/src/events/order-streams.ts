import { randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import { CancellationReason, OrderCancelled, OrderPlaced } from '@repo/contracts/order/v1/events';
import type { Envelope } from '@repo/events/envelope';
import { EventTypes, subjectOf } from '@repo/events/subjects';
import type { Delivery, Subscription, Transport } from '@repo/events/transport';
import { withEventContext } from '@repo/service-kit/event-context';
import type { Logger } from '@repo/service-kit/logger';
import { HttpError, PROBLEM_TYPES } from '../http/problem';
import { RETRY_AFTER_SECONDS } from '../http/middleware';
import { presentItem, presentStatus } from '../routes/present';

/** What an SSE client waits before reconnecting after a stream ends (the `retry:` hint). */
export const SSE_RETRY_MS = 3_000;
/** A client whose unread output passes this much is too slow to follow: its stream is ended. */
const MAX_BUFFERED_BYTES = 1_048_576;
/** Waits between attempts to reach the broker, doubling up to the last. */
const CONNECT_RETRY_MS = { first: 1_000, max: 30_000 };

/** One `text/event-stream` frame of an order event for its owner, or nothing for other events. */
export interface OrderFrame {
  userId: string;
  frame: string;
}

const REASONS: Record<CancellationReason, string> = {
  [CancellationReason.CANCELLATION_REASON_UNSPECIFIED]: 'UNSPECIFIED',
  [CancellationReason.CANCELLATION_REASON_USER_REQUESTED]: 'USER_REQUESTED',
  [CancellationReason.CANCELLATION_REASON_USER_DELETED]: 'USER_DELETED',
  [CancellationReason.UNRECOGNIZED]: 'UNSPECIFIED',
};

const frame = (envelope: Envelope, event: string, data: Record<string, unknown>) =>
  `id: ${envelope.id}\nevent: ${event}\ndata: ${JSON.stringify({
    ...data,
    occurredAt: (envelope.occurredAt ?? new Date(0)).toISOString(),
  })}\n\n`;

/** OrderPlaced / OrderCancelled -> the SSE frame its owner receives (the public JSON shapes). */
export function orderFrameOf(envelope: Envelope): OrderFrame | undefined {
  if (envelope.type === EventTypes.OrderPlaced) {
    const placed = OrderPlaced.decode(envelope.payload);
    return {
      userId: placed.userId.toLowerCase(),
      frame: frame(envelope, 'order.placed', {
        orderId: placed.orderId,
        status: presentStatus(placed.status),
        totalCents: placed.totalCents,
        currency: placed.currency,
        items: placed.items.map(presentItem),
      }),
    };
  }
  if (envelope.type === EventTypes.OrderCancelled) {
    const cancelled = OrderCancelled.decode(envelope.payload);
    return {
      userId: cancelled.userId.toLowerCase(),
      frame: frame(envelope, 'order.cancelled', {
        orderId: cancelled.orderId,
        status: 'CANCELLED',
        reason: REASONS[cancelled.reason],
        previousStatus: presentStatus(cancelled.previousStatus),
      }),
    };
  }
  return undefined;
}

export interface OrderStreamsOptions {
  logger: Logger;
  /** A comment line on every stream this often, so proxies and clients see it is alive. */
  heartbeatMs: number;
  /** Streams this process holds at most; one more is refused with 503. */
  maxStreams: number;
}

/**
 * The gateway's live order events (`GET /v1/orders/events`): one live subscription per process to
 * OrderPlaced and OrderCancelled (a consumer of its own, `gateway-live-<random>`, so every replica
 * gets every event), dispatched in memory to the streams of the order's owner that this process
 * holds. Until the broker is reached (it is retried in the background) new streams are refused
 * with 503 naming the cause; nothing else in the gateway depends on it.
 */
export class OrderStreams {
  private readonly byUser = new Map<string, Set<Response>>();
  private count = 0;
  private unavailable: string | undefined = 'the gateway is not connected to the events broker yet';
  private heartbeat: NodeJS.Timeout | undefined;
  private transport: Transport | undefined;
  private subscription: Subscription | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: () => void = () => undefined;

  constructor(private readonly options: OrderStreamsOptions) {}

  /** Streams open now. */
  get size(): number {
    return this.count;
  }

  /** Why new streams are refused, or undefined while they are served. */
  get unavailableReason(): string | undefined {
    return this.closed ? 'the gateway is shutting down' : this.unavailable;
  }

  /** Streams stay refused with `reason` (a setting is missing): nothing to retry. */
  disable(reason: string): void {
    this.unavailable = reason;
    this.options.logger.warn(`order event stream disabled: ${reason}`);
  }

  /** Connects (and subscribes) in the background, retrying with backoff until it works. */
  start(connect: () => Promise<Transport>): void {
    // Never rejects by design; a bug in it must not become an unhandled rejection (ending the
    // process) but a log line.
    this.connectLoop(connect).catch((error: unknown) =>
      this.options.logger.error({ err: error }, 'order event stream: connecting failed for good'),
    );
  }

  private async connectLoop(connect: () => Promise<Transport>): Promise<void> {
    let delay = CONNECT_RETRY_MS.first;
    while (!this.closed) {
      let transport: Transport | undefined;
      try {
        const connected = (transport = await connect());
        const consumer = `gateway-live-${randomBytes(6).toString('hex')}`;
        const subscription = await transport.subscribe(
          consumer,
          // The transport's prefix: `events`, or its namespace's (EVENTS_NAMESPACE).
          [EventTypes.OrderPlaced, EventTypes.OrderCancelled].map((type) =>
            subjectOf(type, connected.prefix),
          ),
          // As every consumer: a CONSUMER span continuing the trace of the request that placed or
          // cancelled the order, and the event id as the request id of whatever it logs.
          (delivery) =>
            withEventContext(delivery.envelope, () => Promise.resolve(this.dispatch(delivery))),
          { live: true },
        );
        if (this.closed) {
          // Closed while subscribing: a broker failing to close must not reach the catch below
          // (a warning and a retry wait at shutdown) nor escape as a rejection.
          await subscription.stop().catch(() => undefined);
          await transport.close().catch(() => undefined);
          return;
        }
        this.transport = transport;
        this.subscription = subscription;
        this.unavailable = undefined;
        this.options.logger.info(
          { transport: transport.name, consumer },
          'order event stream connected to the events broker',
        );
        return;
      } catch (error) {
        await transport?.close().catch(() => undefined);
        if (this.closed) return; // the failure is the shutdown's: nothing to retry
        this.unavailable = `the events broker cannot be reached (${error instanceof Error ? error.message : String(error)}); retrying`;
        this.options.logger.warn(
          { err: error, retryInMs: delay },
          'order event stream: cannot reach the events broker',
        );
        await new Promise<void>((resolve) => {
          this.wakeRetry = resolve;
          this.retryTimer = setTimeout(resolve, delay);
        });
        delay = Math.min(delay * 2, CONNECT_RETRY_MS.max);
      }
    }
  }

  /** Sends an event to its owner's streams; never throws (a bad event is logged and skipped). */
  private dispatch(delivery: Delivery): void {
    let found: OrderFrame | undefined;
    try {
      found = orderFrameOf(delivery.envelope);
    } catch (error) {
      this.options.logger.warn(
        { err: error, eventId: delivery.envelope.id, type: delivery.envelope.type },
        'order event stream: an event could not be decoded; skipped',
      );
      return;
    }
    if (!found) return;
    for (const res of this.byUser.get(found.userId) ?? []) this.write(res, found.frame);
  }

  private write(res: Response, text: string): void {
    if (res.writableEnded) return; // ended (too slow, or closing): leaves the registry on 'close'
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      // It reconnects (SSE clients do) and starts afresh, instead of holding memory here.
      res.end();
      return;
    }
    res.write(text);
  }

  /**
   * Answers `req` with an event stream of `userId`'s order events, open until the client leaves or
   * the gateway closes it. Throws a 503 HttpError when streams are unavailable or at the cap.
   */
  open(userId: string, req: Request, res: Response): void {
    const reason = this.unavailableReason;
    if (reason) throw unavailable(`the order event stream is unavailable: ${reason}`);
    if (this.count >= this.options.maxStreams) {
      throw unavailable(
        `this gateway holds its maximum of ${this.options.maxStreams} event streams; retry later`,
      );
    }
    const headers = {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'X-Accel-Buffering': 'no',
    };
    if (req.method === 'HEAD') {
      res.writeHead(200, headers).end();
      return;
    }
    const key = userId.toLowerCase();
    let streams = this.byUser.get(key);
    if (!streams) this.byUser.set(key, (streams = new Set()));
    streams.add(res);
    this.count++;
    this.startHeartbeat();
    res.on('close', () => {
      streams.delete(res);
      if (streams.size === 0 && this.byUser.get(key) === streams) this.byUser.delete(key);
      this.count--;
    });

    // The connection belongs to the stream: no keep-alive after it (so ending it on shutdown closes
    // the socket too), no Nagle delay, no buffering by proxies (nginx reads X-Accel-Buffering).
    res.shouldKeepAlive = false;
    req.socket.setNoDelay(true);
    res.writeHead(200, headers);
    res.write(`retry: ${SSE_RETRY_MS}\n: connected\n\n`);
  }

  private startHeartbeat(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      for (const streams of this.byUser.values()) {
        for (const res of streams) this.write(res, ': heartbeat\n\n');
      }
    }, this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Ends every stream (clients reconnect elsewhere), refuses new ones, leaves the broker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wakeRetry();
    clearInterval(this.heartbeat);
    for (const streams of this.byUser.values()) for (const res of streams) res.end();
    await this.subscription?.stop().catch(() => undefined);
    await this.transport?.close().catch(() => undefined);
  }
}

const unavailable = (detail: string) =>
  new HttpError(503, PROBLEM_TYPES.unavailable, detail, {
    headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
  });
