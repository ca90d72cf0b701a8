// Replicas as the runner starts them (`pnpm dev -- --replicas user=2,order=2,gateway=2`): each
// service's ready replicas listed in its discovery file, listed only once ready and unlisted before
// SIGTERM, added, removed and replaced one at a time, and nothing left once the system stops.
import { existsSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { pathToFileURL } from 'node:url';
import { parseAddressFile } from '@repo/service-kit/discovery';
import { checkHealth, watchHealth, type ServingStatus } from '@repo/service-kit/health-client';
import { parseReplicas, replicasFromCommandLine } from '@repo/system/replicas';
import {
  MAX_REPLICAS,
  PROPAGATION_DELAY_MS,
  SERVICES,
  listensOn,
  type AppName,
  type AppProcess,
  type RunningSystem,
  type ServiceName,
} from '@repo/system/system';
import { api, signUp, sleep, startTestSystem } from './system';

describe('--replicas', () => {
  it('reads app=count pairs; apps left out are not mentioned (they run once)', () => {
    expect(parseReplicas('user=2,order=3,gateway=2')).toEqual({ user: 2, order: 3, gateway: 2 });
    expect(parseReplicas(' order = 2 ')).toEqual({ order: 2 });
    expect(parseReplicas(`user=1,gateway=${MAX_REPLICAS}`)).toEqual({
      user: 1,
      gateway: MAX_REPLICAS,
    });
  });

  it.each([
    ['', /takes app=count pairs .* \(got nothing\)/],
    ['user', /takes app=count pairs .* \(got "user"\)/],
    ['user=2,', /takes app=count pairs .* \(got ""\)/],
    ['users=2', /no app is called "users" \(the apps are user, order, gateway\)/],
    ['postgres=2', /no app is called "postgres"/],
    ['user=0', /user=0 is not a whole number from 1 to 8/],
    ['user=-1', /user=-1 is not a whole number/],
    ['user=1.5', /user=1\.5 is not a whole number/],
    ['user=two', /user=two is not a whole number/],
    ['user=', /user= is not a whole number/],
    [`order=${MAX_REPLICAS + 1}`, /order=9 is not a whole number from 1 to 8/],
    ['user=2,user=3', /user is given twice/],
  ])('refuses %j with one line saying why', (text, message) => {
    let error: unknown;
    try {
      parseReplicas(text);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toMatchObject({ name: 'SystemError', message: expect.stringMatching(message) });
    expect((error as Error).message).not.toContain('\n');
    expect((error as Error).message).toMatch(/^--replicas/);
  });

  it('comes from --replicas (either form), else from REPLICAS; the flag wins', () => {
    expect(replicasFromCommandLine(['--watch', '--replicas', 'user=2'], {})).toEqual({ user: 2 });
    expect(replicasFromCommandLine(['--replicas=order=2', '--watch'], {})).toEqual({ order: 2 });
    expect(replicasFromCommandLine([], { REPLICAS: 'gateway=2' })).toEqual({ gateway: 2 });
    expect(replicasFromCommandLine(['--replicas', 'user=3'], { REPLICAS: 'user=2' })).toEqual({
      user: 3,
    });
    expect(replicasFromCommandLine(['--watch'], { REPLICAS: '' })).toEqual({});
    expect(() => replicasFromCommandLine([], { REPLICAS: 'user=x' })).toThrow(
      /^REPLICAS: user=x is not a whole number/,
    );
    expect(() => replicasFromCommandLine(['--replicas'], {})).toThrow(/--replicas needs a value/);
    expect(() => replicasFromCommandLine(['--replicas', '--watch'], {})).toThrow(
      /--replicas needs a value/,
    );
  });
});

/** The addresses a discovery file lists now. */
const listed = (file: string) => parseAddressFile(readFileSync(file, 'utf8'));

/** Waits until `condition` holds (checked every 20 ms), failing after `timeoutMs` with `what`. */
async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await sleep(20);
  }
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

describe('replicas of every app', () => {
  let system: RunningSystem;
  const file = (service: ServiceName) => system.discovery.files[service]!;
  const addresses = (app: AppName) => system.replicas[app]!.map((replica) => replica.address);

  beforeAll(async () => {
    system = await startTestSystem({}, { replicas: { user: 2, order: 2, gateway: 2 } });
  });

  afterAll(async () => {
    await system?.stop();
  });

  it('starts every replica, each service on a port of its own and the gateways on one; every service replica is listed', () => {
    for (const app of ['user', 'order', 'gateway'] as const) {
      expect(system.replicas[app]!).toHaveLength(2);
      expect(system.replicas[app]!.every((replica) => replica.running)).toBe(true);
      expect(new Set(system.replicas[app]!.map((replica) => replica.pid)).size).toBe(2);
      expect(system.apps[app]).toBe(system.replicas[app]![0]);
    }
    expect(system.replicas.user!.map((replica) => replica.label)).toEqual(['user', 'user#2']);
    for (const service of SERVICES) {
      expect(new Set(addresses(service)).size).toBe(2);
      expect(listed(file(service)).sort()).toEqual([...addresses(service)].sort());
    }
    // Both gateways accept connections on the one public port.
    const [first, second] = system.replicas.gateway!;
    expect(second!.port).toBe(first!.port);
    expect(system.gatewayUrl).toBe(first!.url);
    for (const gateway of system.replicas.gateway!) {
      expect(listensOn(gateway.pid!, gateway.port)).toBe(true);
    }
    // The clients are given the files, always (one replica or many).
    expect(system.envs.order!.USER_SERVICE_ADDR).toBe(pathToFileURL(file('user')).href);
    expect(system.envs.gateway!.USER_SERVICE_ADDR).toBe(pathToFileURL(file('user')).href);
    expect(system.envs.gateway!.ORDER_SERVICE_ADDR).toBe(pathToFileURL(file('order')).href);
  });

  it('removeReplica unlists the replica before it is sent SIGTERM, then waits for it to exit', async () => {
    const replica = system.replicas.user![1]!;
    const pid = replica.pid!;
    // On SIGTERM a service reports NOT_SERVING at once (its drain delay is 0 here): whenever the
    // watcher hears it, the address must already be gone from the file.
    const heard: { status: ServingStatus; listedThen: boolean }[] = [];
    let serving = false;
    const stopWatching = watchHealth(replica.address, 'user.v1.UserService', (status) => {
      if (status === 'SERVING') serving = true;
      heard.push({ status, listedThen: listed(file('user')).includes(replica.address) });
    });
    try {
      await until(() => serving, 'the health watch says SERVING');
      const began = Date.now();
      await system.removeReplica(replica);
      expect(Date.now() - began).toBeGreaterThanOrEqual(PROPAGATION_DELAY_MS);
    } finally {
      stopWatching();
    }
    const notServing = heard.filter((entry) => entry.status === 'NOT_SERVING');
    expect(notServing.length).toBeGreaterThan(0);
    expect(notServing.every((entry) => !entry.listedThen)).toBe(true);
    expect(alive(pid)).toBe(false);
    expect(system.replicas.user!).toEqual([system.apps.user]);
    expect(listed(file('user'))).toEqual([system.apps.user!.address]);
  });

  it('addReplica lists the new replica only once it is ready, on a port of its own', async () => {
    const before = addresses('user');
    // Each address that appears in the file while the replica starts must already answer SERVING.
    const checked: { address: string; status: string }[] = [];
    let adding = true;
    const watcher = (async () => {
      while (adding) {
        for (const address of listed(file('user'))) {
          if (before.includes(address) || checked.some((entry) => entry.address === address)) {
            continue;
          }
          const status = await checkHealth(address, 'user.v1.UserService', 2_000).catch(
            (error: Error) => error.message,
          );
          checked.push({ address, status });
        }
        await sleep(5);
      }
    })();
    let added: AppProcess;
    try {
      added = await system.addReplica('user');
    } finally {
      adding = false;
      await watcher;
    }
    expect(added.running).toBe(true);
    expect(before).not.toContain(added.address);
    expect(system.replicas.user!).toHaveLength(2);
    expect(system.replicas.user![1]).toBe(added);
    expect(added.label).toBe('user#3');
    expect(listed(file('user'))).toEqual([...before, added.address]);
    // Seen in the file while adding (or right after): it was serving by then.
    for (const entry of checked)
      expect(entry).toEqual({ address: added.address, status: 'SERVING' });
  });

  it('a replica that dies is unlisted; started again in place, it is listed again', async () => {
    const replica = system.replicas.order![1]!;
    const crashed = replica.crashed();
    process.kill(replica.pid!, 'SIGKILL');
    expect(await crashed).toBeNull(); // killed by a signal: no exit code
    await until(
      () => !listed(file('order')).includes(replica.address),
      'the dead replica is unlisted',
    );
    expect(system.replicas.order!).toContain(replica); // still a member, until replaced or removed

    await replica.start();
    expect(listed(file('order')).sort()).toEqual([...addresses('order')].sort());
    // And a stop in place unlists it as removeReplica does (it stays a member).
    await replica.stop();
    expect(listed(file('order'))).toEqual([system.apps.order!.address]);
    await replica.start();
    expect(listed(file('order')).sort()).toEqual([...addresses('order')].sort());
  });

  it('a token one gateway replica issued is good at the other (one signing secret)', async () => {
    const { token } = await signUp(api(system.gatewayUrl!), 'replicas');
    // A new connection each time: the kernel picks a gateway per connection, so 20 reach both.
    const statuses = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<number>((resolve, reject) => {
            get(
              `${system.gatewayUrl}/v1/users/me`,
              { agent: false, headers: { Authorization: `Bearer ${token}` } },
              (response) => {
                response.resume();
                resolve(response.statusCode!);
              },
            ).on('error', reject);
          }),
      ),
    );
    expect(statuses).toEqual(statuses.map(() => 200));
  });

  it('rollingRestart replaces every replica of every app: new processes, as many, all listed, still serving', async () => {
    const old = Object.fromEntries(
      (['user', 'order', 'gateway'] as const).map((app) => [app, [...system.replicas[app]!]]),
    ) as Record<AppName, AppProcess[]>;
    const oldPids = (app: AppName) => old[app]!.map((replica) => replica.pid!);
    await system.rollingRestart();
    for (const app of ['user', 'order', 'gateway'] as const) {
      const now = system.replicas[app]!;
      expect(now).toHaveLength(2);
      expect(now.every((replica) => replica.running)).toBe(true);
      for (const replica of now) expect(oldPids(app)).not.toContain(replica.pid);
      for (const pid of oldPids(app)) expect(alive(pid)).toBe(false);
      // Each old one was stopped, gracefully: none crashed while the others were replaced.
      const exits = old[app]!.map(async (replica) => `${replica.label}: ${await replica.exited()}`);
      expect(await Promise.all(exits)).toEqual(old[app]!.map((replica) => `${replica.label}: 0`));
    }
    for (const service of SERVICES) {
      expect(listed(file(service)).sort()).toEqual([...addresses(service)].sort());
    }
    for (const gateway of system.replicas.gateway!) {
      expect(listensOn(gateway.pid!, gateway.port)).toBe(true);
    }
    const products = await fetch(`${system.gatewayUrl}/v1/products`);
    expect(products.status).toBe(200);
  });

  it('stop() leaves no process and no discovery files', async () => {
    const pids = (['user', 'order', 'gateway'] as const).flatMap((app) =>
      system.replicas[app]!.map((replica) => replica.pid!),
    );
    expect(pids).toHaveLength(6);
    const { dir } = system.discovery;
    expect(existsSync(dir)).toBe(true);
    await system.stop();
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });
});
