import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { startTestSystem, type TestSystem } from './system';

/** One span as OTLP/JSON has it, with the service that sent it. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  /** The spans it is linked to (none unless it has links). */
  links: { traceId: string; spanId: string }[];
}

/** OTLP's span kinds. */
export const SPAN_KIND = { SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean };
const valueOf = (value: AnyValue): unknown =>
  value.stringValue ?? (value.intValue === undefined ? value.boolValue : Number(value.intValue));
const attributesOf = (list: { key: string; value: AnyValue }[] = []) =>
  Object.fromEntries(list.map(({ key, value }) => [key, valueOf(value)]));

/**
 * A real OTLP/HTTP trace receiver: `POST /v1/traces` with the JSON encoding (what the apps' exporter
 * sends), answering as a collector does. Keeps every span it is sent.
 */
export async function startReceiver(): Promise<{
  url: string;
  spans: ReceivedSpan[];
  server: Server;
}> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const request = JSON.parse(body.toString('utf8')) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: AnyValue }[] };
          scopeSpans: {
            spans: (Omit<ReceivedSpan, 'service' | 'attributes' | 'links'> & {
              attributes?: { key: string; value: AnyValue }[];
              links?: { traceId: string; spanId: string }[];
            })[];
          }[];
        }[];
      };
      for (const resourceSpans of request.resourceSpans) {
        const service = String(attributesOf(resourceSpans.resource.attributes)['service.name']);
        for (const scope of resourceSpans.scopeSpans) {
          for (const span of scope.spans) {
            spans.push({
              ...span,
              service,
              attributes: attributesOf(span.attributes),
              links: (span.links ?? []).map(({ traceId, spanId }) => ({ traceId, spanId })),
            });
          }
        }
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, server };
}

/** A JSON log line of one app (replica numbers dropped from the source: `user#2` is `user`). */
export interface AppLogLine {
  source: string;
  line: Record<string, unknown>;
}

/**
 * The whole system exporting every trace (ratio 1) to `receiver`, with every app's JSON log lines
 * (at debug: each call logs one, the lines to find a trace id on) collected in `logs`. Deadlines
 * are generous: what is tested is where traces go, not how fast a login's password hashing answers
 * (at the default 2 s, a loaded machine turns it into 504s).
 */
export function startTracedSystem(
  receiver: { url: string },
  logs: AppLogLine[],
): Promise<TestSystem> {
  const tracing = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_TRACES_SAMPLER_ARG: '1',
    LOG_LEVEL: 'debug',
  };
  return startTestSystem(
    { ...tracing, ROUTE_DEADLINE_MS: '30000', BACKEND_DEADLINE_MS: '25000' },
    {
      env: { user: tracing, order: tracing },
      onLog: (source, line) => {
        try {
          logs.push({ source: source.replace(/#\d+$/, ''), line: JSON.parse(line) });
        } catch {
          // not a JSON log line
        }
      },
    },
  );
}
