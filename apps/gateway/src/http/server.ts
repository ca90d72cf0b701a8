import { createServer, type RequestListener, type Server } from 'node:http';

/** Time a client has to send its request headers, then its whole request. */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** Idle keep-alive sockets outlive typical load balancer idle timeouts (60 s). */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/**
 * How often Node checks the two timeouts above. They are enforced only when a check runs, and the
 * default (30 s) let a client that sends half a header hold its socket for up to 40 s instead of
 * 10; every second keeps the overshoot under a second, for a walk over the open sockets.
 */
export const CONNECTIONS_CHECKING_INTERVAL_MS = 1_000;

/** The gateway's HTTP server (not listening): slow clients cannot hold sockets for long. */
export function createHttpServer(listener: RequestListener): Server {
  const server = createServer(
    { connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS },
    listener,
  );
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  return server;
}
