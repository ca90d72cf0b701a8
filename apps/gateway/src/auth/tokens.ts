import { randomUUID } from 'node:crypto';
import { isUuid } from '@repo/service-kit/ids';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { HttpError, PROBLEM_TYPES } from '../http/problem';

export interface TokenOptions {
  secret: string;
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export interface IssuedToken {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
}

const ALGORITHM = 'HS256';

export const invalidToken = (detail: string) =>
  new HttpError(401, PROBLEM_TYPES.unauthenticated, detail, {
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
  });

/**
 * Access tokens: JWTs signed by the gateway with HS256. Verification accepts HS256 only (so
 * `alg: none` and algorithm-confusion tokens fail), and checks signature, issuer, audience and
 * expiry; the subject must be a user id.
 */
export class TokenService {
  private readonly key: Uint8Array;
  /**
   * Tokens already verified, with their subject and expiry. A valid HS256 token stays valid until
   * it expires (there is no revocation), so re-verifying it on every request only burns CPU: a
   * cache hit still checks the expiry. Bounded, oldest evicted first.
   */
  private readonly verified = new Map<string, { userId: string; expiresAt: number }>();
  private static readonly CACHE_SIZE = 10_000;

  constructor(private readonly options: TokenOptions) {
    this.key = new TextEncoder().encode(options.secret);
  }

  async issue(userId: string): Promise<IssuedToken> {
    const accessToken = await new SignJWT({})
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setSubject(userId)
      .setIssuer(this.options.issuer)
      .setAudience(this.options.audience)
      .setIssuedAt()
      .setExpirationTime(`${this.options.ttlSeconds}s`)
      .setJti(randomUUID())
      .sign(this.key);
    return { accessToken, tokenType: 'Bearer', expiresIn: this.options.ttlSeconds };
  }

  /** The user id the token was issued to; HttpError 401 for anything but a valid, current token. */
  async verify(token: string): Promise<string> {
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.expiresAt > Date.now()) return cached.userId;
      this.verified.delete(token);
      throw invalidToken('the access token has expired');
    }
    const userId = await this.verifySignature(token);
    return userId;
  }

  private async verifySignature(token: string): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: [ALGORITHM],
        issuer: this.options.issuer,
        audience: this.options.audience,
      });
      if (typeof payload.sub !== 'string' || !isUuid(payload.sub))
        throw invalidToken('the token has no valid subject');
      // Every token this gateway issues expires; one without `exp` would be valid forever (jose
      // checks `exp` only when present).
      if (typeof payload.exp !== 'number') throw invalidToken('the access token has no expiry');
      if (this.verified.size >= TokenService.CACHE_SIZE) {
        this.verified.delete(this.verified.keys().next().value!);
      }
      this.verified.set(token, { userId: payload.sub, expiresAt: payload.exp * 1000 });
      return payload.sub;
    } catch (error) {
      if (error instanceof HttpError) throw error;
      if (error instanceof joseErrors.JWTExpired)
        throw invalidToken('the access token has expired');
      throw invalidToken('the access token is invalid');
    }
  }
}
