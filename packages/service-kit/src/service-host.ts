import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { createGrpcServer, type GrpcServer } from './grpc-server';
import { monitorDependency, type DependencyMonitor } from './health';

export interface ServiceHostOptions {
  /** Fully-qualified service name, e.g. `user.v1.UserService`. */
  name: string;
  definition: ServiceDefinition;
  /** Usually built with `unaryService()`. */
  implementation: UntypedServiceImplementation;
  logger: Logger;
  /** The dependency health follows (the service's database): resolves when it answers. */
  dependency: { name: string; check: () => Promise<void> };
  healthCheckIntervalMs: number;
}

/** One gRPC service whose health follows its dependency, with the lifecycle main.ts and tests use. */
export interface ServiceHost {
  readonly grpc: GrpcServer;
  readonly dependency: DependencyMonitor;
  /** Binds, checks the dependency once, and starts serving. Resolves with the bound port. */
  start(port: number, host?: string): Promise<number>;
  /**
   * Stops health polling, reports NOT_SERVING while still serving for `drainDelayMs` (so that
   * callers watching health move away first), then drains in-flight calls for up to `graceMs`.
   */
  stop(graceMs: number, drainDelayMs?: number): Promise<void>;
}

/**
 * Builds (never listens) a gRPC server for one service: health reports NOT_SERVING while the
 * dependency does not answer and SERVING again once it does.
 */
export function createServiceHost(options: ServiceHostOptions): ServiceHost {
  const grpc = createGrpcServer({
    logger: options.logger,
    services: [
      {
        name: options.name,
        definition: options.definition,
        implementation: options.implementation,
      },
    ],
  });
  const dependency = monitorDependency({
    name: options.dependency.name,
    check: options.dependency.check,
    onChange: (healthy) => grpc.setServing(healthy),
    intervalMs: options.healthCheckIntervalMs,
    timeoutMs: Math.max(1_000, options.healthCheckIntervalMs),
    logger: options.logger,
  });
  return {
    grpc,
    dependency,
    async start(port, host = '0.0.0.0') {
      const bound = await grpc.listen(port, host);
      await dependency.checkNow();
      return bound;
    },
    async stop(graceMs, drainDelayMs = 0) {
      dependency.stop();
      await grpc.shutdown(graceMs, drainDelayMs);
    },
  };
}
