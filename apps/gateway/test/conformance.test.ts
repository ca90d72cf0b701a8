import request from 'supertest';
import { Conformance, type Answer } from './conformance';
import { buildGateway, type TestGateway } from './harness';

// The checker every gateway test's answers go through (test/conformance-setup.ts) must catch each
// kind of disagreement with the document, or the suite proves nothing.

const REQUEST_ID = { 'x-request-id': '3f1c6a52-6d4e-4f43-9d5e-2a7c6b1e9f00' };
const PROBLEM = { 'content-type': 'application/problem+json; charset=utf-8', ...REQUEST_ID };
const USER = {
  id: '3f1c6a52-6d4e-4f43-9d5e-2a7c6b1e9f01',
  email: 'ada@example.com',
  name: 'Ada',
  createdAt: '2026-01-01T00:00:00.000Z',
};

describe('the conformance check', () => {
  let gateway: TestGateway;
  let conformance: Conformance;
  beforeAll(async () => {
    gateway = buildGateway();
    conformance = new Conformance((await request(gateway.app).get('/openapi.json')).body);
  });
  afterAll(() => gateway.close());

  const created = (overrides: Partial<Answer> = {}): Answer => ({
    method: 'POST',
    path: '/v1/users',
    status: 201,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      location: `/v1/users/${USER.id}`,
      ...REQUEST_ID,
    },
    body: USER,
    text: JSON.stringify(USER),
    ...overrides,
  });

  it('passes an answer that matches the document', () => {
    expect(conformance.check(created())).toEqual([]);
  });

  it.each([
    ['a status the operation does not document', { status: 202 }, /status not documented/],
    ['a body that does not match', { body: { ...USER, password: 'x' } }, /body does not match/],
    [
      'a wrong media type',
      { headers: { ...created().headers, 'content-type': 'text/html' } },
      /Content-Type text\/html not documented/,
    ],
    [
      'a missing required header',
      { headers: { 'content-type': 'application/json', ...REQUEST_ID } },
      /required header Location missing/,
    ],
    [
      'a header that does not match its schema',
      { headers: { ...created().headers, 'x-request-id': 'not allowed!' } },
      /header X-Request-Id does not match/,
    ],
    [
      'an undocumented header',
      { headers: { ...created().headers, 'x-debug': '1' } },
      /header x-debug not documented/,
    ],
  ])('refuses %s', (_label, overrides, expected) => {
    const problems = conformance.check(created(overrides));
    expect(problems).toEqual([expect.stringMatching(expected)]);
  });

  it('checks problem documents: their status and type are pinned per answer', () => {
    const problem = (status: number, type: string): Answer => ({
      method: 'GET',
      path: '/v1/products/3f1c6a52-6d4e-4f43-9d5e-2a7c6b1e9f02',
      status,
      headers: PROBLEM,
      body: { type, title: 'Not Found', status, detail: 'no such product' },
      text: '{}',
    });
    expect(conformance.check(problem(404, '/problems/not-found'))).toEqual([]);
    expect(conformance.check(problem(404, '/problems/conflict'))).toEqual([
      expect.stringMatching(/body does not match/),
    ]);
    // Outside any operation: still a problem document, with the status routing gives.
    expect(
      conformance.check({ ...problem(404, '/problems/not-found'), path: '/v2/nothing' }),
    ).toEqual([]);
    expect(
      conformance.check({
        ...problem(404, '/problems/not-found'),
        path: '/v2/nothing',
        body: { status: 404 },
      }),
    ).toEqual([expect.stringMatching(/body does not match/)]);
  });

  it('reads integer headers as HTTP sends them (strings)', () => {
    const unavailable = (retryAfter: string): Answer => ({
      method: 'GET',
      path: '/v1/products',
      status: 503,
      headers: { ...PROBLEM, 'retry-after': retryAfter },
      body: {
        type: '/problems/service-unavailable',
        title: 'Service Unavailable',
        status: 503,
        detail: 'the order service is unavailable; retry later',
      },
      text: '{}',
    });
    expect(conformance.check(unavailable('5'))).toEqual([]);
    expect(conformance.check(unavailable('soon'))).toEqual([
      expect.stringMatching(/header Retry-After does not match/),
    ]);
  });
});
