import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { UserServiceClient } from '@repo/contracts/user/v1';
import { createServiceClient } from '../src/grpc-client';
import { checkHealth } from '../src/health-client';

const FIXTURE = join(__dirname, 'fixtures', 'slow-server.cjs');

function startFixture(env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [FIXTURE], {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<number>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /LISTENING (\d+)/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', (code) => reject(new Error(`fixture exited with ${code}: ${stderr}`)));
  });
  listening.catch(() => undefined); // awaited only by the tests that expect a start
  return { child, exited, listening, stderr: () => stderr };
}

describe('a service process', () => {
  let running: ChildProcess | undefined;
  afterEach(() => running?.kill('SIGKILL'));

  it('on SIGTERM lets an in-flight slow call finish, refuses new ones, and exits 0', async () => {
    const fixture = startFixture();
    running = fixture.child;
    const port = await fixture.listening;
    const address = `127.0.0.1:${port}`;
    expect(await checkHealth(address)).toBe('SERVING');

    const client = createServiceClient(UserServiceClient, address, {
      deadlineMs: 5000,
      retry: false, // this test is about the server draining one call
    });
    const slow = client.getUser({ id: 'slow-1500' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    fixture.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));

    // New calls are refused while the old one drains (a fresh channel: the old one got GOAWAY).
    const late = createServiceClient(UserServiceClient, address, { deadlineMs: 1000 });
    await expect(late.getUser({ id: 'late' })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    late.close();

    await expect(slow).resolves.toMatchObject({ user: { id: 'slow-1500' } });
    expect(await fixture.exited).toBe(0);
    client.close();
  });

  it('stops at start-up with a message naming a bad environment variable', async () => {
    const fixture = startFixture({ FIXTURE_GRPC_PORT: 'not-a-port' });
    running = fixture.child;
    expect(await fixture.exited).toBe(1);
    expect(fixture.stderr()).toContain('FIXTURE_GRPC_PORT');
    expect(fixture.stderr()).toContain('"not-a-port"');
    expect(fixture.stderr()).not.toMatch(/\bat .*\.js:\d+/); // no stack trace
  });
});
