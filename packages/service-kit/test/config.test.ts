import { z } from 'zod';
import { ConfigError, env, loadConfig } from '../src/config';

const schema = z.object({
  PORT: env.port(50051),
  LOG_LEVEL: env.logLevel(),
  PEER: env.address('127.0.0.1:50051'),
  DATABASE_URL: env.optionalDatabaseUrl(),
  FLAG: env.boolean(false),
});

describe('loadConfig', () => {
  it('applies defaults', () => {
    expect(loadConfig(schema, {})).toEqual({
      PORT: 50051,
      LOG_LEVEL: 'info',
      PEER: '127.0.0.1:50051',
      DATABASE_URL: undefined,
      FLAG: false,
    });
  });

  it('parses given values', () => {
    const config = loadConfig(schema, {
      PORT: '0',
      LOG_LEVEL: 'warn',
      PEER: 'user:50051',
      DATABASE_URL: 'postgresql://u:p@db:5432/user',
      FLAG: 'true',
    });
    expect(config).toMatchObject({ PORT: 0, LOG_LEVEL: 'warn', PEER: 'user:50051', FLAG: true });
  });

  it('treats an empty DATABASE_URL as absent', () => {
    expect(loadConfig(schema, { DATABASE_URL: '' }).DATABASE_URL).toBeUndefined();
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '1.5'],
    ['LOG_LEVEL', 'loud'],
    ['PEER', 'no-port'],
    ['DATABASE_URL', 'mysql://x'],
    ['FLAG', 'yes'],
  ])('rejects %s=%s with a message naming the variable and the value', (name, value) => {
    expect(() => loadConfig(schema, { [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig(schema, { [name]: value })).toThrow(
      new RegExp(`${name}: .*\\(got "${value}"\\)`),
    );
  });

  it('names every bad variable at once', () => {
    expect(() => loadConfig(schema, { PORT: 'x', LOG_LEVEL: 'y' })).toThrow(/PORT[\s\S]*LOG_LEVEL/);
  });
});
