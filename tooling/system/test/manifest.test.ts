import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ManifestError,
  inStartOrder,
  loadManifest,
  parseAppManifest,
  serviceAddressVariable,
  type AppManifest,
} from '../src/manifest';

const grpc = (overrides: Record<string, unknown> = {}) => ({
  kind: 'grpc',
  port: 50051,
  portVariable: 'USER_GRPC_PORT',
  grpcService: 'user.v1.UserService',
  database: 'user',
  calls: [],
  replicas: 2,
  nodeOptions: '--max-old-space-size=64',
  ...overrides,
});

/** A manifest of apps that differ only by name, port, variable and calls. */
const app = (name: string, calls: string[] = [], index = 0): AppManifest =>
  parseAppManifest(
    name,
    `@repo/${name}`,
    grpc({
      port: 50_100 + index,
      portVariable: `${name.toUpperCase()}_PORT`,
      database: undefined,
      calls,
    }),
  );

describe('the repository manifest', () => {
  it('lists user, order and gateway in start order (among any others), with what the code hard-coded before', () => {
    const apps = loadManifest();
    const names = apps.map((each) => each.name);
    expect(names).toEqual(expect.arrayContaining(['user', 'order', 'gateway']));
    expect(names.indexOf('user')).toBeLessThan(names.indexOf('order'));
    expect(names.indexOf('order')).toBeLessThan(names.indexOf('gateway'));
    expect(apps.find((each) => each.name === 'order')).toEqual({
      name: 'order',
      packageName: '@repo/order',
      kind: 'grpc',
      port: 50052,
      portVariable: 'ORDER_GRPC_PORT',
      grpcService: 'order.v1.OrderService',
      database: 'order',
      calls: ['user'],
      replicas: 2,
      nodeOptions: '--max-semi-space-size=4 --max-old-space-size=64',
    });
    const gateway = apps.find((each) => each.name === 'gateway')!;
    expect(gateway.kind).toBe('gateway');
    expect(gateway.grpcService).toBeUndefined();
    expect(gateway.database).toBeUndefined();
  });
});

describe('parseAppManifest', () => {
  it('accepts a full gRPC service', () => {
    expect(parseAppManifest('user', '@repo/user', grpc())).toMatchObject({
      name: 'user',
      grpcService: 'user.v1.UserService',
    });
  });

  it.each([
    [{ kind: 'http' }, '"service".kind must be "grpc" or "gateway"'],
    [{ port: 70000 }, '"service".port must be a port number'],
    [{ port: '3000' }, '"service".port must be a port number'],
    [{ portVariable: 'user-port' }, '"service".portVariable must be'],
    [
      { portVariable: 'USER_GRPC' },
      '"service".portVariable must be an environment variable\'s name ending in _PORT',
    ],
    [{ grpcService: undefined }, '"service".grpcService must be the fully qualified'],
    [{ database: 'User DB' }, '"service".database must be a database name'],
    [{ calls: 'order' }, '"service".calls must be a list'],
    [{ calls: ['order', 'order'] }, '"service".calls names an app twice'],
    [{ calls: ['user'] }, '"service".calls names the app itself'],
    [{ replicas: 0 }, '"service".replicas must be a whole number'],
    [{ nodeOptions: 64 }, '"service".nodeOptions must be a string'],
    [{ prot: 1 }, '"service".prot is not a known field'],
  ])('refuses %j, naming the app and the field', (overrides, message) => {
    const parse = () => parseAppManifest('user', '@repo/user', grpc(overrides));
    expect(parse).toThrow(ManifestError);
    expect(parse).toThrow(message);
    expect(() => parseAppManifest('user', '@repo/user', grpc(overrides))).toThrow(
      /^apps\/user\/package\.json: /,
    );
  });

  it('refuses a gRPC service name on the gateway', () => {
    expect(() => parseAppManifest('gateway', '@repo/gateway', grpc({ kind: 'gateway' }))).toThrow(
      'apps/gateway/package.json: "service".grpcService is for the grpc kind only',
    );
  });
});

describe('inStartOrder', () => {
  it('puts every app after the apps it calls, ties by name', () => {
    const apps = [
      app('gateway', ['user', 'order'], 0),
      app('order', ['user', 'stock'], 1),
      app('user', [], 2),
      app('stock', [], 3),
      app('audit', [], 4),
    ];
    expect(inStartOrder(apps).map((each) => each.name)).toEqual([
      'audit',
      'stock',
      'user',
      'order',
      'gateway',
    ]);
  });

  it('names an unknown callee', () => {
    expect(() => inStartOrder([app('order', ['usr'])])).toThrow(
      'apps/order/package.json: "service".calls names "usr", which is no app (the apps are order)',
    );
  });

  it('names a cycle', () => {
    expect(() =>
      inStartOrder([app('a', ['b'], 0), app('b', ['c'], 1), app('c', ['a'], 2)]),
    ).toThrow('the apps call each other in a cycle: a -> b -> c -> a');
  });

  it('refuses a port used twice, and two gateways', () => {
    expect(() => inStartOrder([app('a', [], 0), app('b', [], 0)])).toThrow(
      'apps/a and apps/b have the same "service".port (50100)',
    );
    const gateway = (name: string, port: number) =>
      parseAppManifest(name, `@repo/${name}`, {
        kind: 'gateway',
        port,
        portVariable: `${name.toUpperCase()}_PORT`,
        calls: [],
        replicas: 1,
        nodeOptions: '',
      });
    expect(() => inStartOrder([gateway('a', 1), gateway('b', 2)])).toThrow(
      'more than one app is of kind "gateway": a, b',
    );
  });
});

describe('loadManifest', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'manifest-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const write = (dir: string, json: unknown) => {
    mkdirSync(join(root, 'apps', dir), { recursive: true });
    writeFileSync(join(root, 'apps', dir, 'package.json'), JSON.stringify(json));
  };

  it('reads the apps with a service key, in start order, and skips the others', () => {
    write('order', {
      name: '@repo/order',
      service: grpc({ port: 2, portVariable: 'B_PORT', database: 'order', calls: ['user'] }),
    });
    write('user', { name: '@repo/user', service: grpc({ port: 1, portVariable: 'A_PORT' }) });
    write('docs', { name: '@repo/docs' });
    mkdirSync(join(root, 'apps', 'empty'));
    expect(loadManifest(root).map((each) => each.name)).toEqual(['user', 'order']);
  });

  it('names the app whose package.json is broken', () => {
    mkdirSync(join(root, 'apps', 'user'), { recursive: true });
    writeFileSync(join(root, 'apps', 'user', 'package.json'), '{');
    expect(() => loadManifest(root)).toThrow(/^apps\/user\/package\.json is not valid JSON/);
  });
});

it('names the address variable after the callee', () => {
  expect(serviceAddressVariable('user')).toBe('USER_SERVICE_ADDR');
  expect(serviceAddressVariable('stock-level')).toBe('STOCK_LEVEL_SERVICE_ADDR');
});
