export default async function globalTeardown(): Promise<void> {
  await globalThis.__eventsPostgres?.stop();
  globalThis.__eventsPostgres = undefined;
}
