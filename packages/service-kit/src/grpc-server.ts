import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  Server,
  ServerCredentials,
  status,
  type Metadata,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { descriptorSetPath } from '@repo/contracts/descriptor';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { DEADLINE_KEY, REQUEST_ID_KEY, requestIdOrNew, runWithContext } from './context';
import { abortReason, cancelled, deadlineExceeded } from './deadline';
import { DomainError, toStatusObject } from './errors';
import { endRpcSpan, rpcAttributes, startServerSpan } from './tracing';

/** What a handler knows about the call it serves, besides the request message. */
export interface CallContext {
  requestId: string;
  /** The caller's deadline, if it set one. */
  deadline: Date | undefined;
  /** Aborted when the caller's deadline passes or it cancels the call. */
  signal: AbortSignal;
  metadata: Metadata;
}

/** A unary handler as we write them: a promise in, typed errors out. */
export type UnaryHandler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

/** The promise-based handlers of a ts-proto generated `XServiceServer` interface. */
export type UnaryHandlers<S> = {
  [K in keyof S as string extends K ? never : K]: S[K] extends handleUnaryCall<infer Req, infer Res>
    ? UnaryHandler<Req, Res>
    : never;
};

export interface ServiceRegistration {
  /** Fully-qualified name, e.g. `user.v1.UserService`; the name health and reflection report. */
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** The earlier of gRPC's deadline (from `grpc-timeout`) and the caller's absolute one (see DEADLINE_KEY). */
function deadlineOf(call: ServerUnaryCall<unknown, unknown>): Date | undefined {
  const grpcDeadline = call.getDeadline();
  let deadline = grpcDeadline instanceof Date ? grpcDeadline.getTime() : Number(grpcDeadline);
  const absolute = Number(call.metadata.get(DEADLINE_KEY)[0]);
  if (Number.isFinite(absolute) && absolute > 0) deadline = Math.min(deadline, absolute);
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

/**
 * Adapts promise handlers to grpc-js. For every call it: takes (or creates) the request id and puts
 * it with the deadline into the async request context (so logs and outgoing calls carry them),
 * maps a thrown DomainError to its gRPC status with field violations, turns anything else into
 * INTERNAL without leaking it, and logs each call once.
 */
export interface UnaryServiceOptions {
  logger: Logger;
  /**
   * Turns an infrastructure failure the service recognises (its database being unreachable, say)
   * into a DomainError, e.g. UNAVAILABLE. Return undefined for anything else (it becomes INTERNAL).
   */
  translateError?: (error: unknown) => DomainError | undefined;
  /** Told about every finished call, where it is logged: for metrics. */
  onCallEnd?: (event: CallEndEvent) => void;
}

export interface CallEndEvent {
  /** The full service name (`user.v1.UserService`). */
  service: string;
  /** As on the wire (`GetUser`). */
  method: string;
  /** The status code's name (`OK`, `NOT_FOUND`). */
  code: string;
  durationMs: number;
}

export function unaryService<S>(
  serviceName: string,
  handlers: UnaryHandlers<S>,
  { logger, translateError, onCallEnd }: UnaryServiceOptions,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(
    handlers as Record<string, UnaryHandler<unknown, unknown>>,
  )) {
    const wireMethod = `${method.charAt(0).toUpperCase()}${method.slice(1)}`;
    const rpc = `${serviceName}/${wireMethod}`;
    const wrapped = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const requestId = requestIdOrNew(call.metadata.get(REQUEST_ID_KEY)[0]);
      const deadline = deadlineOf(call);
      // The caller is gone once its deadline passes or it cancels: everything below can see that
      // through the context (throwIfDone, the bounded queue, database transactions, outgoing calls).
      const controller = new AbortController();
      const remaining = deadline ? deadline.getTime() - Date.now() : Infinity;
      const timer =
        Number.isFinite(remaining) && remaining > 0
          ? setTimeout(() => controller.abort(deadlineExceeded()), remaining)
          : undefined;
      const onCancelled = () => controller.abort(cancelled());
      call.once('cancelled', onCancelled);
      // Continues the caller's trace (its traceparent); logs and calls made below carry it.
      const traced = startServerSpan(rpc, call.metadata);
      const span = traced?.isRecording() ? traced : undefined;
      span?.setAttributes(rpcAttributes(serviceName, wireMethod, requestId));
      const context = { requestId, deadline, signal: controller.signal, trace: traced };
      runWithContext(context, () => {
        const started = performance.now();
        // A call that arrives after its deadline (it waited in a socket buffer while this process
        // was paused, say) or already cancelled does no work at all.
        const work =
          remaining <= 0
            ? Promise.reject(deadlineExceeded())
            : call.cancelled
              ? Promise.reject(cancelled())
              : handler(call.request, {
                  requestId,
                  deadline,
                  signal: controller.signal,
                  metadata: call.metadata,
                });
        work
          .then(
            (response) => {
              const durationMs = performance.now() - started;
              onCallEnd?.({ service: serviceName, method: wireMethod, code: 'OK', durationMs });
              if (span) endRpcSpan(span, status.OK, 'server');
              if (logger.isLevelEnabled('debug')) {
                logger.debug({ rpc, code: 'OK', ms: +durationMs.toFixed(1) }, 'rpc');
              }
              callback(null, response);
            },
            (error: unknown) => {
              // Work that failed after its caller left (deadline passed, or cancelled) failed
              // because of that, whatever it threw on the way out: say so, not INTERNAL.
              const translated =
                error instanceof DomainError
                  ? error
                  : controller.signal.aborted
                    ? abortReason(controller.signal)
                    : translateError?.(error);
              const { status: wire, expected } = toStatusObject(translated ?? error);
              const durationMs = performance.now() - started;
              const ms = +durationMs.toFixed(1);
              const code = status[wire.code ?? status.INTERNAL];
              onCallEnd?.({ service: serviceName, method: wireMethod, code, durationMs });
              if (span) endRpcSpan(span, wire.code ?? status.INTERNAL, 'server', code);
              if (translated && translated !== error)
                logger.warn({ rpc, code, ms, err: error }, 'rpc failed');
              else if (expected) logger.info({ rpc, code, ms, detail: wire.details }, 'rpc failed');
              else
                logger.error({ rpc, code, ms, err: error }, 'rpc failed with an unexpected error');
              callback(wire, null);
            },
          )
          .finally(() => {
            clearTimeout(timer);
            call.off('cancelled', onCancelled);
          });
      });
    };
    implementation[method] = wrapped;
  }
  return implementation;
}

/**
 * The encoded `FileDescriptorProto`s of a `FileDescriptorSet`, byte for byte as they are in it. The
 * set is `repeated FileDescriptorProto file = 1;` and nothing else, so splitting it needs only the
 * wire format: a key (field 1, length-delimited) and a varint length before each file.
 */
function fileDescriptorProtosOf(set: Uint8Array): Uint8Array[] {
  const files: Uint8Array[] = [];
  let offset = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      if (offset >= set.length || shift > 28) throw new Error('malformed descriptor set');
      const byte = set[offset++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (offset < set.length) {
    const key = varint();
    if (key !== ((1 << 3) | 2)) throw new Error(`unexpected field in descriptor set (key ${key})`);
    const length = varint();
    if (offset + length > set.length) throw new Error('truncated descriptor set');
    files.push(set.subarray(offset, offset + length));
    offset += length;
  }
  return files;
}

/**
 * Everything reflection can describe: our contracts, the standard health service and the files they
 * import (google/protobuf/timestamp.proto...), all in the descriptor set `buf build` made from
 * proto/. The files are served exactly as buf wrote them: same names, `dependency` lists and
 * fully-qualified type names, so a client that resolves imports (buf curl, grpcurl) finds every
 * type. (`protoLoader.loadFileDescriptorSetFromBuffer` would regenerate them through protobufjs: one
 * file per package, no dependencies, relative type names, which such clients refuse.)
 * `ReflectionService` reads nothing from a package definition but the `fileDescriptorProtos` of its
 * entries, so one entry carrying every file is all it needs.
 */
function reflectionPackageDefinition(): protoLoader.PackageDefinition {
  const fileDescriptorProtos = fileDescriptorProtosOf(readFileSync(descriptorSetPath)).map((file) =>
    Buffer.from(file),
  );
  return {
    descriptorSet: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos },
  } as unknown as protoLoader.PackageDefinition;
}

export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

export interface GrpcServerOptions {
  services: ServiceRegistration[];
  logger: Logger;
}

/**
 * Every client connection is closed gracefully (GOAWAY) after about 30 s (grpc-js adds +-10%
 * jitter). Clients then reconnect and re-resolve the service's name: behind DNS (a Kubernetes
 * headless Service, compose replicas) that is how a replica added by a scale-up gets calls from
 * clients that connected before it existed, within about 30 s. New calls go to the new connection
 * at once; the calls in flight on the old one may finish for up to 30 s more (the grace), far
 * longer than any call's deadline. A short grace cut calls that were still running with
 * RST_STREAM, which the caller sees as INTERNAL (5 s did, on a loaded machine, for registrations
 * queued behind password hashing: apps/user/test/grpc.test.ts).
 */
export const SERVER_CONNECTION_AGE = {
  'grpc.max_connection_age_ms': 30_000,
  'grpc.max_connection_age_grace_ms': 30_000,
} as const;

/**
 * A gRPC server with what every service needs: `grpc.health.v1.Health` (NOT_SERVING until told
 * otherwise), server reflection (so `buf curl` and grpcurl work without .proto files), and a
 * bounded graceful shutdown. It never listens until `listen()` is called, so tests can build one.
 */
export class GrpcServer {
  readonly server: Server;
  private readonly health: HealthImplementation;
  /** Open Health.Watch streams: ended on shutdown, or they would hold it open until its grace. */
  private readonly watches = new Set<ServerWritableStream<unknown, unknown>>();
  private readonly names: string[];
  private port: number | undefined;

  constructor(private readonly options: GrpcServerOptions) {
    this.server = new Server({
      // Let clients keep idle connections alive with pings every 10 s or more.
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      ...SERVER_CONNECTION_AGE,
    });
    this.names = options.services.map((service) => service.name);
    // '' is the whole server's status, by the health protocol's convention.
    this.health = new HealthImplementation(
      Object.fromEntries(['', ...this.names].map((name) => [name, 'NOT_SERVING' as const])),
    );
    this.addHealthService();
    new ReflectionService(reflectionPackageDefinition(), {
      services: [...this.names, HEALTH_SERVICE_NAME],
    }).addToServer(this.server);
    for (const service of options.services) {
      this.server.addService(service.definition, service.implementation);
    }
  }

  /**
   * grpc-health-check's Check and Watch, with Watch streams tracked: a Watch never ends by itself,
   * and a graceful shutdown waits for open calls, so every load balancer watching this server
   * would hold the shutdown open for its whole grace period.
   */
  private addHealthService(): void {
    let implementation: UntypedServiceImplementation | undefined;
    let definition: ServiceDefinition | undefined;
    this.health.addToServer({
      addService: (def: ServiceDefinition, impl: UntypedServiceImplementation) => {
        definition = def;
        implementation = impl;
      },
    });
    const watch = implementation!.watch as handleServerStreamingCall<unknown, unknown>;
    this.server.addService(definition!, {
      ...implementation!,
      watch: (call: ServerWritableStream<unknown, unknown>) => {
        this.watches.add(call);
        call.on('cancelled', () => this.watches.delete(call));
        watch(call);
      },
    });
  }

  /** Binds and starts serving; resolves with the bound port (pass 0 for an ephemeral one). */
  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(
        `${host}:${port}`,
        ServerCredentials.createInsecure(),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      );
    });
    return this.port;
  }

  /** What health checks report for every service of this server (and for the server, ''). */
  setServing(serving: boolean): void {
    const state = serving ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...this.names]) this.health.setStatus(name, state);
  }

  /**
   * Reports NOT_SERVING and keeps serving for `drainDelayMs`, so that load balancers and clients
   * watching health stop sending calls here before any is refused; then stops accepting calls, lets
   * in-flight calls finish for up to `graceMs`, and cancels whatever is left. Resolves when the
   * server is closed.
   */
  async shutdown(graceMs: number, drainDelayMs = 0): Promise<void> {
    this.setServing(false);
    if (drainDelayMs > 0) {
      this.options.logger.info({ drainDelayMs }, 'reporting NOT_SERVING before refusing calls');
      await new Promise((resolve) => setTimeout(resolve, drainDelayMs));
    }
    // Watchers have heard NOT_SERVING; end their streams so they do not hold the shutdown open.
    for (const call of this.watches) call.end();
    this.watches.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.options.logger.warn(
          { graceMs },
          'in-flight calls did not finish in time; cancelling them',
        );
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  return new GrpcServer(options);
}
