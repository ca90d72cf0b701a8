import { SignJWT } from 'jose';
import request from 'supertest';
import {
  AUDIENCE,
  ISSUER,
  SECRET,
  buildGateway,
  expectProblem,
  forgeToken,
  signUp,
  type TestGateway,
} from './harness';

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('access tokens', () => {
  let gateway: TestGateway;
  let user: Awaited<ReturnType<typeof signUp>>;

  beforeAll(async () => {
    gateway = buildGateway();
    user = await signUp(gateway.app);
  });
  afterAll(() => gateway.close());

  const me = (authorization: string) =>
    request(gateway.app).get('/v1/users/me').set('Authorization', authorization);

  it('accepts a token it issued', async () => {
    await me(user.auth.Authorization).expect(200);
  });

  it('rejects an expired token', async () => {
    const token = await forgeToken({ sub: user.id, exp: Math.floor(Date.now() / 1000) - 10 });
    const response = await me(`Bearer ${token}`);
    expectProblem(response, 401);
    expect(response.body.detail).toBe('the access token has expired');
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });

  it('stops accepting a token once it expires, even after it was verified (and cached) while valid', async () => {
    const token = await forgeToken({ sub: user.id, exp: Math.floor(Date.now() / 1000) + 2 });
    await me(`Bearer ${token}`).expect(200);
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const response = await me(`Bearer ${token}`);
    expectProblem(response, 401);
    expect(response.body.detail).toBe('the access token has expired');
  });

  it('accepts the Bearer scheme in any case (RFC 9110: schemes are case-insensitive)', async () => {
    const token = user.auth.Authorization.slice('Bearer '.length);
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
      await me(`${scheme} ${token}`).expect(200);
    }
  });

  it('rejects a correctly signed token without an expiry (it would never expire)', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .sign(new TextEncoder().encode(SECRET));
    const response = await me(`Bearer ${token}`);
    expectProblem(response, 401);
    expect(response.body.detail).toBe('the access token has no expiry');
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });

  it('rejects a tampered token (payload changed, signature kept)', async () => {
    const [header, , signature] = user.auth.Authorization.slice('Bearer '.length).split('.');
    const payload = b64({
      sub: '00000000-0000-4000-8000-000000000000',
      iss: 'test-issuer',
      aud: 'test-audience',
      exp: 9999999999,
    });
    expectProblem(await me(`Bearer ${header}.${payload}.${signature}`), 401);
  });

  it('rejects alg: none', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: user.id, iss: 'test-issuer', aud: 'test-audience', exp: 9999999999 })}.`;
    expectProblem(await me(`Bearer ${token}`), 401);
  });

  it('rejects a token signed with another secret, issuer or audience', async () => {
    expectProblem(
      await me(
        `Bearer ${await forgeToken({ sub: user.id }, 'another-secret-that-is-long-enough!!')}`,
      ),
      401,
    );
    expectProblem(
      await me(`Bearer ${await forgeToken({ sub: user.id, iss: 'someone-else' })}`),
      401,
    );
    expectProblem(
      await me(`Bearer ${await forgeToken({ sub: user.id, aud: 'another-api' })}`),
      401,
    );
  });

  it('rejects a token without a user id subject, and one for a deleted user', async () => {
    expectProblem(await me(`Bearer ${await forgeToken({})}`), 401);
    expectProblem(await me(`Bearer ${await forgeToken({ sub: 'not-a-uuid' })}`), 401);
    const ghost = await me(
      `Bearer ${await forgeToken({ sub: '00000000-0000-4000-8000-000000000000' })}`,
    );
    expectProblem(ghost, 401);
    expect(ghost.body.detail).toBe('the user this token was issued to no longer exists');
  });

  it.each([
    '',
    'Bearer',
    'Bearer ',
    'Basic dXNlcjpwYXNz',
    'bearer x.y.z',
    'Bearerx.y.z',
    'Bearer a b',
    `Bearer ${'a'.repeat(5000)}`,
    'Bearer not.a.jwt',
  ])('rejects the Authorization header %j', async (header) => {
    expectProblem(await me(header), 401);
  });
});
