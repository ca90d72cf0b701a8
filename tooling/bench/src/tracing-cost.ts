#!/usr/bin/env node
// `pnpm run tracing-cost [--ratio 0.1|off] [--requests 100000]`: the tracing work of S1 requests
// (the gateway's and the order service's calls into @repo/service-kit/tracing, in one process),
// without anything else, so what tracing adds per request is seen apart from the system's noise.
// Prints CPU ns per request. Under `valgrind --tool=callgrind` the instruction count is exact:
// run it with `--requests 0` and with N, and divide the difference by N.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Metadata } from '@grpc/grpc-js';
import { runWithContext } from '@repo/service-kit/context';
import { createLogger } from '@repo/service-kit/logger';
import {
  SpanKind,
  endRpcSpan,
  injectTraceContext,
  rpcAttributes,
  setupTracing,
  startChildSpan,
  startServerSpan,
} from '@repo/service-kit/tracing';

function arg(flag: string, fallback: string): string {
  const index = process.argv.indexOf(flag);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

/** What the data layer attaches to `SELECT products` (built once per statement, as sql.ts does). */
const STATEMENT_ATTRIBUTES = {
  'db.system.name': 'postgresql',
  'db.operation.name': 'SELECT',
  'db.collection.name': 'products',
  'db.query.summary': 'SELECT products',
  'db.query.text': 'select "id", "name", "price_cents", "stock" from "products" where "id" = $1',
  'db.statement.name': 'product-by-id',
};
const RPC = 'order.v1.OrderService/GetProduct';
/** The client span's attributes (made once per method, as grpc-client.ts does). */
const CLIENT_ATTRIBUTES = rpcAttributes('order.v1.OrderService', 'GetProduct');

/** The order service's part: its server span, the statement's span below it. */
function orderService(metadata: Metadata): void {
  const traced = startServerSpan(RPC, metadata);
  const span = traced?.isRecording() ? traced : undefined;
  span?.setAttributes(rpcAttributes('order.v1.OrderService', 'GetProduct', 'r-1'));
  runWithContext({ requestId: 'r-1', trace: traced }, () => {
    startChildSpan('SELECT products', SpanKind.CLIENT, STATEMENT_ATTRIBUTES)?.end();
  });
  if (span) endRpcSpan(span, 0, 'server');
}

/** One S1 request's tracing, in the order the gateway, the client and the order service do it. */
function request(headers: Record<string, string>, response: Map<string, string>): void {
  const traced = startServerSpan('GET', headers);
  if (traced) response.set('x-trace-id', traced.spanContext().traceId);
  const span = traced?.isRecording() ? traced : undefined;
  span?.setAttributes({
    'http.request.method': 'GET',
    'url.path': '/v1/products/1',
    'url.scheme': 'http',
    'request.id': 'r-1',
  });
  const call = startChildSpan(RPC, SpanKind.CLIENT, CLIENT_ATTRIBUTES, traced);
  const metadata = new Metadata();
  injectTraceContext(call ?? traced, metadata);
  orderService(metadata);
  if (call) endRpcSpan(call, 0, 'client', 'OK');
  if (span) {
    span.updateName('GET /v1/products/:id');
    span.setAttribute('http.route', '/v1/products/:id');
    span.setAttribute('http.response.status_code', 200);
    span.end();
  }
}

async function main(): Promise<void> {
  const ratio = arg('--ratio', '0.1');
  const requests = Number(arg('--requests', '100000'));
  // Spans go to a sink in this process, as --compare-tracing's do (serialised and sent, then dropped).
  const sink = createServer((req, res) => req.resume().on('end', () => res.end('{}')));
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const tracing =
    ratio === 'off'
      ? undefined
      : setupTracing(
          {
            OTEL_SERVICE_NAME: 'tracing-cost',
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
            OTEL_TRACES_SAMPLER_ARG: Number(ratio),
          },
          createLogger({ name: 'tracing-cost', level: 'warn', pretty: false }),
        );
  const headers = { host: '127.0.0.1', accept: '*/*' };
  const response = new Map<string, string>();
  const started = process.cpuUsage();
  for (let done = 0; done < requests; done++) {
    request(headers, response);
    // Let the batch processor export now and then, as it does between requests in an app.
    if (done % 100 === 99) await nextTurn();
  }
  await tracing?.shutdown();
  const { user, system } = process.cpuUsage(started);
  sink.close();
  process.stdout.write(
    `tracing ${ratio}: ${requests} requests, ${requests ? Math.round(((user + system) * 1000) / requests) : 0} ns of CPU per request (exports included)\n`,
  );
}

void main();
