import { ConfigError, loadConfig } from '@repo/service-kit/config';
import { configSchema } from '../src/config';

describe('gateway config', () => {
  it('starts in development without a JWT secret', () => {
    expect(loadConfig(configSchema, {}).JWT_SECRET).toBeUndefined();
  });

  it('refuses to start in production without a JWT secret, naming it', () => {
    expect(() => loadConfig(configSchema, { NODE_ENV: 'production' })).toThrow(ConfigError);
    expect(() => loadConfig(configSchema, { NODE_ENV: 'production' })).toThrow(
      /JWT_SECRET: is required in production/,
    );
  });

  it('refuses a short secret and bad addresses', () => {
    expect(() => loadConfig(configSchema, { JWT_SECRET: 'short' })).toThrow(
      /JWT_SECRET: must be at least 32 characters/,
    );
    expect(() => loadConfig(configSchema, { ORDER_SERVICE_ADDR: 'nowhere' })).toThrow(
      /ORDER_SERVICE_ADDR/,
    );
  });

  it('takes a redis:// URL for the shared rate-limit store, and refuses anything else, naming it', () => {
    expect(loadConfig(configSchema, {}).REDIS_URL).toBeUndefined();
    expect(loadConfig(configSchema, { REDIS_URL: '' }).REDIS_URL).toBeUndefined();
    for (const url of [
      'redis://127.0.0.1:6379',
      'redis://redis:6379/2',
      'redis://:secret@redis.internal:6379/0',
      'rediss://user:secret@cache.example:6380',
    ]) {
      expect(loadConfig(configSchema, { REDIS_URL: url }).REDIS_URL).toBe(url);
    }
    for (const url of [
      '127.0.0.1:6379',
      'http://127.0.0.1:6379',
      'redis://:6379',
      'redis://127.0.0.1:99999',
      'redis://127.0.0.1:6379/cache',
      'redis://127.0.0.1:6379/0?timeout=1',
    ]) {
      expect(() => loadConfig(configSchema, { REDIS_URL: url })).toThrow(
        /REDIS_URL: must be redis:\/\/host:port\[\/db\]/,
      );
    }
  });

  it('shares the port with other gateways only when GATEWAY_REUSE_PORT says so', () => {
    expect(loadConfig(configSchema, {}).GATEWAY_REUSE_PORT).toBe(false);
    expect(loadConfig(configSchema, { GATEWAY_REUSE_PORT: 'true' }).GATEWAY_REUSE_PORT).toBe(true);
    expect(() => loadConfig(configSchema, { GATEWAY_REUSE_PORT: 'yes' })).toThrow(
      /GATEWAY_REUSE_PORT: must be true or false/,
    );
  });
});
