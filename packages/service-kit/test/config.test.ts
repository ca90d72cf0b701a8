import { z } from 'zod';
import { ConfigError, env, eventsEnv, loadConfig, tracingEnv } from '../src/config';

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

describe('tracingEnv', () => {
  const tracing = z.object(tracingEnv('gateway'));

  it('reads OTLP headers as OpenTelemetry’s SDKs do: name=value pairs, values percent-decoded', () => {
    const config = loadConfig(tracing, {
      OTEL_EXPORTER_OTLP_HEADERS: ' Api-Key = abc%3D%3D , x-tenant=a%2Cb,,',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: '',
    });
    expect(config.OTEL_EXPORTER_OTLP_HEADERS).toEqual({ 'api-key': 'abc==', 'x-tenant': 'a,b' });
    expect(config.OTEL_EXPORTER_OTLP_TRACES_HEADERS).toEqual({});
    expect(loadConfig(tracing, {}).OTEL_EXPORTER_OTLP_HEADERS).toEqual({});
  });

  it.each([
    ['a pair without =', 'x-tenant=a,secret-without-name', 'pair 2 is not one'],
    ['a name that is no header name', 'bad name=secret', 'pair 1 \\(bad name\\) is not one'],
    ['a value that does not decode', 'api-key=%E0%A4%A', 'pair 1 \\(api-key\\) is not one'],
    ['a line break in a value', 'api-key=a%0D%0Ab', 'pair 1 \\(api-key\\) is not one'],
  ])('refuses %s, naming the pair and never repeating its value', (_, value, message) => {
    const attempt = () => loadConfig(tracing, { OTEL_EXPORTER_OTLP_TRACES_HEADERS: value });
    expect(attempt).toThrow(new RegExp(`OTEL_EXPORTER_OTLP_TRACES_HEADERS: .*${message}`));
    expect(attempt).not.toThrow(/secret|%E0|%0D/);
  });

  it('takes an export timeout in milliseconds and gzip or none as compression', () => {
    expect(
      loadConfig(tracing, {
        OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
      }),
    ).toMatchObject({
      OTEL_EXPORTER_OTLP_TIMEOUT: 2500,
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
    });
    expect(() => loadConfig(tracing, { OTEL_EXPORTER_OTLP_TIMEOUT: '0' })).toThrow(
      /OTEL_EXPORTER_OTLP_TIMEOUT: must be positive/,
    );
    expect(() => loadConfig(tracing, { OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' })).toThrow(
      /OTEL_EXPORTER_OTLP_COMPRESSION: must be gzip or none \(got "zstd"\)/,
    );
    expect(() => loadConfig(tracing, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector' })).toThrow(
      /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http:\/\/ or https:\/\/ URL/,
    );
  });
});
