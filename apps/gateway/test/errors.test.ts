import request from 'supertest';
import { conformanceOptions } from './conformance';
import { buildGateway, expectProblem, type TestGateway } from './harness';
import { StandInOrderService } from './stand-in';

// The stand-in answers GetProduct with every gRPC code, including ones the real order service never
// gives for it (403, 409, 499, 501...): the document does not list those statuses for the
// operation, so here the conformance check only requires them to be problem documents.
conformanceOptions.allowUndocumentedStatus = true;

describe('gRPC status -> HTTP, code by code', () => {
  const standIn = new StandInOrderService();
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = buildGateway({
      orderAddress: await standIn.start(),
      routeDeadlineMs: 1_000,
      backendDeadlineMs: 800,
    });
  });
  afterAll(async () => {
    gateway.close();
    await standIn.stop();
  });

  // Written out by hand (not read from the table under test).
  it.each([
    ['CANCELLED', 1, 499],
    ['UNKNOWN', 2, 500],
    ['INVALID_ARGUMENT', 3, 400],
    ['DEADLINE_EXCEEDED', 4, 504],
    ['NOT_FOUND', 5, 404],
    ['ALREADY_EXISTS', 6, 409],
    ['PERMISSION_DENIED', 7, 403],
    ['RESOURCE_EXHAUSTED', 8, 503], // a backend shedding load: not the client's fault
    ['FAILED_PRECONDITION', 9, 409],
    ['ABORTED', 10, 409],
    ['OUT_OF_RANGE', 11, 400],
    ['UNIMPLEMENTED', 12, 501],
    ['INTERNAL', 13, 500],
    ['UNAVAILABLE', 14, 503],
    ['DATA_LOSS', 15, 500],
    ['UNAUTHENTICATED', 16, 401],
  ])('%s (%i) becomes HTTP %i with a problem document', async (name, code, httpStatus) => {
    const response = await request(gateway.app).get(`/v1/products/${code}`);
    expectProblem(response, httpStatus);
    if (httpStatus === 500) {
      expect(response.body.detail).toBe('an internal error occurred'); // nothing from the backend leaks
    } else if (name === 'UNAVAILABLE') {
      expect(response.headers['retry-after']).toBe('5');
      expect(response.body.detail).toBe('the order service is unavailable; retry later');
    } else if (name === 'RESOURCE_EXHAUSTED') {
      expect(response.headers['retry-after']).toBe('5');
      expect(response.body.detail).toBe(`stand-in detail for ${name}`);
    } else if (httpStatus === 501) {
      expect(response.body.detail).toBe('the order service does not implement this operation');
    } else if (httpStatus === 504) {
      expect(response.body.detail).toMatch(/^the order service did not answer in time/);
    } else {
      expect(response.body.detail).toBe(`stand-in detail for ${name}`);
    }
  });

  it('answers 504 within the route deadline when the backend is slow', async () => {
    standIn.delayMs = 5_000;
    const started = Date.now();
    const response = await request(gateway.app).get('/v1/products/ok');
    standIn.delayMs = 0;
    expectProblem(response, 504);
    expect(Date.now() - started).toBeLessThan(2_500); // the 1 s route deadline, plus slack for a loaded CI machine
  });
});
