import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import request from 'supertest';
import { freePort } from '@repo/service-kit/ports';
import {
  MOUSE,
  buildGateway,
  expectProblem,
  readinessChecks,
  signUp,
  type TestGateway,
} from './harness';

// Issue 12, "the document and the server agree". Every answer of every gateway test is also checked
// against /openapi.json (test/conformance-setup.ts); these tests are about the document itself.

type Json = Record<string, any>;

/** Runs an npm-installed CLI with this Node, offline, in `cwd`. */
function runCli(pkg: string, bin: string, args: string[], cwd: string) {
  const manifest = require.resolve(`${pkg}/package.json`);
  const { bin: bins } = JSON.parse(readFileSync(manifest, 'utf8')) as {
    bin: Record<string, string>;
  };
  const result = spawnSync(process.execPath, [join(dirname(manifest), bins[bin]!), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    env: {
      ...process.env,
      REDOCLY_TELEMETRY: 'off',
      REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
      NO_COLOR: '1',
    },
  });
  if (result.error) throw result.error;
  return result;
}

const HAND_WRITTEN_TAGS = ['users', 'auth', 'catalog', 'orders', 'operations'];

let counter = 0;
const unique = () => `${process.pid}x${Date.now()}x${++counter}`;

describe('the OpenAPI document', () => {
  let gateway: TestGateway;
  let doc: Json;

  beforeAll(async () => {
    gateway = buildGateway();
    doc = (await request(gateway.app).get('/openapi.json').expect(200)).body;
  });
  afterAll(() => gateway.close());

  describe('linters', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'openapi-lint-'));
      writeFileSync(join(dir, 'openapi.json'), JSON.stringify(doc, null, 2));
      writeFileSync(join(dir, '.spectral.yaml'), 'extends: ["spectral:oas"]\n');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    // Warnings accepted on purpose: the project has no licence or contact to publish yet, and the
    // operations endpoints (/healthz, /readyz, /metrics, /openapi.json) have no 4xx answer.
    const OPERATIONS = ['/healthz', '/readyz', '/metrics', '/openapi.json'].map(
      (path) => `#/paths/${path.replace(/\//g, '~1')}/get/responses`,
    );

    it('passes `redocly lint` (recommended rules) with no error', () => {
      const result = runCli(
        '@redocly/cli',
        'redocly',
        ['lint', 'openapi.json', '--format=json'],
        dir,
      );
      const report = JSON.parse(result.stdout) as {
        totals: { errors: number };
        problems: {
          ruleId: string;
          severity: string;
          message: string;
          location: { pointer: string }[];
        }[];
      };
      const unexpected = report.problems.filter(
        (problem) =>
          problem.severity === 'error' ||
          !(
            problem.ruleId === 'info-license' ||
            (problem.ruleId === 'operation-4xx-response' &&
              OPERATIONS.includes(problem.location[0]!.pointer))
          ),
      );
      expect(unexpected).toEqual([]);
      expect(report.totals.errors).toBe(0);
      expect(result.status).toBe(0);
    });

    it('passes Spectral `spectral:oas` with no error', () => {
      const result = runCli(
        '@stoplight/spectral-cli',
        'spectral',
        ['lint', 'openapi.json', '--ruleset', '.spectral.yaml', '--format', 'json', '--quiet'],
        dir,
      );
      const problems = JSON.parse(result.stdout || '[]') as { code: string; severity: number }[];
      // severity 0 is an error; info-contact is the one warning accepted (see above).
      expect(problems.filter((problem) => problem.code !== 'info-contact')).toEqual([]);
      expect(result.status).toBe(0);
    });
  });

  it('declares security on every operation: the bearer scheme, or `[]` for the public ones', () => {
    const security = Object.fromEntries(
      Object.values(doc.paths as Json).flatMap((item: Json) =>
        Object.values(item).map((operation: Json) => [operation.operationId, operation.security]),
      ),
    );
    const bearer = [{ bearerAuth: [] }];
    // The route groups `pnpm gen service` writes (tagged with their service's name) need a token.
    const generated = Object.values(doc.paths as Json)
      .flatMap((item: Json) => Object.values(item))
      .filter((operation: Json) => !HAND_WRITTEN_TAGS.includes(operation.tags[0]))
      .map((operation: Json) => [operation.operationId, bearer]);
    expect(security).toEqual({
      ...Object.fromEntries(generated),
      createUser: [],
      createToken: [],
      getCurrentUser: bearer,
      deleteCurrentUser: bearer,
      getUser: bearer,
      listProducts: [],
      getProduct: [],
      createOrder: bearer,
      listOrders: bearer,
      getOrder: bearer,
      streamOrderEvents: bearer,
      cancelOrder: bearer,
      liveness: [],
      readiness: [],
      metrics: [],
      openapi: [],
    });
  });

  describe('the request schemas carry the limits the server enforces', () => {
    const ajv = new Ajv2020({ strict: false });
    addFormats(ajv);
    const schemaOf = () =>
      doc.paths['/v1/users'].post.requestBody.content['application/json'].schema as Json;

    it('documents the registration rules (lengths in characters, email format)', () => {
      const { properties } = schemaOf();
      expect(properties.email).toMatchObject({ maxLength: 254, format: 'email' });
      expect(properties.name).toMatchObject({ minLength: 1, maxLength: 100 });
      expect(properties.password).toMatchObject({ minLength: 12, maxLength: 256 });
    });

    it('accepts registrations at every documented limit (a document-valid body is never refused)', async () => {
      const { properties } = schemaOf();
      const at = (max: number, suffix: string) => `${'a'.repeat(max - suffix.length)}${suffix}`;
      const bodies = [
        // The longest values the document allows; a name of astral characters counts code points.
        {
          email: at(properties.email.maxLength, `${unique()}@example.com`),
          name: '𝒜'.repeat(properties.name.maxLength),
          password: 'p'.repeat(properties.password.maxLength),
        },
        // The shortest.
        {
          email: `${unique()}@example.com`,
          name: 'N'.repeat(properties.name.minLength ?? 0),
          password: 'p'.repeat(properties.password.minLength ?? 0),
        },
      ];
      const valid = ajv.compile(schemaOf());
      for (const body of bodies) {
        expect(valid(body) ? [] : valid.errors).toEqual([]);
        const response = await request(gateway.app).post('/v1/users').send(body);
        expect(response.body).toMatchObject({ email: body.email });
        expect(response.status).toBe(201);
      }
    });

    it('refuses one character past a limit, naming the field as the service does', async () => {
      const { properties } = schemaOf();
      const response = await request(gateway.app)
        .post('/v1/users')
        .send({
          email: `${unique()}@example.com`,
          name: 'n'.repeat(properties.name.maxLength + 1),
          password: 'p'.repeat(properties.password.minLength - 1),
        });
      expectProblem(response, 400);
      expect(response.body.errors).toEqual([
        { field: 'name', message: 'must be at most 100 characters' },
        { field: 'password', message: 'must be at least 12 characters' },
      ]);
    });
  });

  describe('problem documents', () => {
    it('name fields in `detail` as in `errors` (camelCase), never as the gRPC service does', async () => {
      const user = await signUp(gateway.app);
      const answers = [
        await request(gateway.app).get('/v1/products?pageToken=forged!'),
        await request(gateway.app)
          .post('/v1/orders')
          .set(user.auth)
          .send({ items: [{ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }] }),
      ];
      expect(answers.map((answer) => [answer.body.detail, answer.body.errors[0].field])).toEqual([
        ['invalid request: pageToken', 'pageToken'],
        ['invalid request: items[0].productId', 'items[0].productId'],
      ]);
    });

    it('/readyz answers 503 with `checks`, as its schema says', async () => {
      const down = buildGateway({ orderAddress: `127.0.0.1:${await freePort()}` });
      try {
        const response = await request(down.app).get('/readyz');
        expectProblem(response, 503);
        expect(response.body.checks).toEqual(readinessChecks({ order: expect.any(String) }));
        expect(response.headers['retry-after']).toBe('5');
      } finally {
        down.close();
      }
    });

    it('documents the 422 (Idempotency-Key reused) and the 503 (shedding) of the writes', async () => {
      for (const operation of [
        doc.paths['/v1/users'].post,
        doc.paths['/v1/orders'].post,
        doc.paths['/v1/auth/token'].post,
      ]) {
        const responses = operation.responses as Json;
        expect(responses[503].headers['Retry-After']).toEqual({
          $ref: '#/components/headers/Retry-After',
        });
        expect(responses[503].description).toMatch(/shedding/);
        if (operation.operationId === 'createToken') continue;
        const schema = responses[422].content['application/problem+json'].schema;
        expect(schema.allOf[1].properties).toEqual({
          status: { const: 422 },
          type: { const: '/problems/idempotency-key-reused' },
        });
      }
      // And the real answer conforms (checked by the conformance setup).
      const user = await signUp(gateway.app);
      const key = `reuse-${unique()}`;
      const place = (quantity: number) =>
        request(gateway.app)
          .post('/v1/orders')
          .set(user.auth)
          .set('Idempotency-Key', key)
          .send({ items: [{ productId: MOUSE, quantity }] });
      await place(1).expect(201);
      const reused = await place(2);
      expectProblem(reused, 422);
      expect(reused.body.type).toBe('/problems/idempotency-key-reused');
    });
  });

  describe('201 Created', () => {
    it('POST /v1/orders answers with the Location of the order, which GET reads', async () => {
      const user = await signUp(gateway.app);
      const created = await request(gateway.app)
        .post('/v1/orders')
        .set(user.auth)
        .send({ items: [{ productId: MOUSE, quantity: 1 }] })
        .expect(201);
      expect(created.headers.location).toBe(`/v1/orders/${created.body.id}`);
      const read = await request(gateway.app).get(created.headers.location!).set(user.auth);
      expect(read.status).toBe(200);
      expect(read.body).toEqual(created.body);
    });

    it('POST /v1/users answers with the Location of the user, which only that user can GET', async () => {
      const email = `located-${unique()}@example.com`;
      const password = 'correct horse battery staple';
      const created = await request(gateway.app)
        .post('/v1/users')
        .send({ email, name: 'Located', password })
        .expect(201);
      expect(created.headers.location).toBe(`/v1/users/${created.body.id}`);
      const token = await request(gateway.app)
        .post('/v1/auth/token')
        .send({ email, password })
        .expect(200);
      const auth = { Authorization: `Bearer ${token.body.accessToken}` };
      const read = await request(gateway.app).get(created.headers.location!).set(auth);
      expect(read.status).toBe(200);
      expect(read.body).toEqual(created.body);
      // Another user's account is not found, as an unknown one is; without a token, 401.
      const other = await signUp(gateway.app);
      expectProblem(await request(gateway.app).get(created.headers.location!).set(other.auth), 404);
      expectProblem(await request(gateway.app).get(created.headers.location!), 401);
    });
  });
});
