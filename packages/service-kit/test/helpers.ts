import { credentials, makeClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/** A plain grpc.health.v1.Health client: checks a server the way an orchestrator would. */
export async function checkHealth(address: string, serviceName = ''): Promise<string> {
  const HealthClient = makeClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new HealthClient(address, credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) => {
      (
        client as unknown as {
          check: (
            req: { service: string },
            opts: { deadline: Date },
            cb: (err: ServiceError | null, res: { status: string }) => void,
          ) => void;
        }
      ).check(
        { service: serviceName },
        { deadline: new Date(Date.now() + 2000) },
        (error, response) => (error ? reject(error) : resolve(response.status)),
      );
    });
  } finally {
    client.close();
  }
}
