import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  const running = globalThis.__gatewayTestSystem;
  if (!running) return;
  await running.system.stop();
  rmSync(running.dataDir, { recursive: true, force: true });
}
