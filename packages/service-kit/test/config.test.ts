import { z } from 'zod';
import { ConfigError, env, eventsEnv, loadConfig } from '../src/config';

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

describe('eventsEnv', () => {
  const events = z.object(eventsEnv());

  it('gives the NATS streams 1 replica unless told, and takes 1 to 5', () => {
    expect(loadConfig(events, {}).EVENTS_STREAM_REPLICAS).toBe(1);
    expect(loadConfig(events, { EVENTS_STREAM_REPLICAS: '' }).EVENTS_STREAM_REPLICAS).toBe(1);
    expect(loadConfig(events, { EVENTS_STREAM_REPLICAS: '3' }).EVENTS_STREAM_REPLICAS).toBe(3);
    for (const bad of ['0', '6', '2.5', 'three']) {
      expect(() => loadConfig(events, { EVENTS_STREAM_REPLICAS: bad })).toThrow(
        /EVENTS_STREAM_REPLICAS: must be a number of servers from 1 to 5/,
      );
    }
  });
});
