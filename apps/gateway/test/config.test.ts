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
});
