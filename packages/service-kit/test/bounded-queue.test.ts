import { BoundedQueue } from '../src/bounded-queue';
import { runWithContext } from '../src/context';
import { rejectionOf } from '../src/testing';

/** A job that runs until released, so the test decides when slots free up. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const ran: number[] = [];
  return {
    job: (id: number) => async () => {
      ran.push(id);
      await opened;
      return id;
    },
    open,
    ran,
  };
}

const queue = (overrides: Partial<ConstructorParameters<typeof BoundedQueue>[0]> = {}) =>
  new BoundedQueue({
    name: 'test work',
    concurrency: 1,
    maxQueued: 2,
    maxWaitMs: 60_000,
    initialEstimateMs: 10,
    ...overrides,
  });

const within = <T>(deadline: Date | undefined, fn: () => Promise<T>) =>
  runWithContext({ requestId: 'q', deadline }, fn);

describe('BoundedQueue', () => {
  it('runs up to its concurrency at once, queues up to its bound, and refuses the rest at once', async () => {
    const q = queue();
    const g = gate();
    const accepted = [1, 2, 3].map((id) => q.run(g.job(id)));
    const refused = await rejectionOf(q.run(g.job(4)));
    expect(refused).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect(g.ran).toEqual([1]);
    g.open();
    expect(await Promise.all(accepted)).toEqual([1, 2, 3]);
    expect(g.ran).toEqual([1, 2, 3]);
    expect(q.stats).toMatchObject({ running: 0, queued: 0 });
  });

  it('refuses at once what would wait longer than maxWaitMs', async () => {
    const q = queue({ maxQueued: 100, maxWaitMs: 25, initialEstimateMs: 10 });
    const g = gate();
    const accepted = [1, 2, 3].map((id) => q.run(g.job(id)));
    // Two queued jobs of ~10 ms each are ahead of the next: 30 ms > 25 ms.
    await expect(q.run(g.job(4))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    g.open();
    await Promise.all(accepted);
  });

  it('refuses at once a job that could not finish before its deadline', async () => {
    const q = queue({ maxQueued: 100, initialEstimateMs: 1_000 });
    const g = gate();
    const first = q.run(g.job(1));
    const late = within(new Date(Date.now() + 500), () => q.run(g.job(2)));
    await expect(late).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    g.open();
    await first;
    expect(g.ran).toEqual([1]);
  });

  it('drops a queued job whose deadline passed while it waited, without running it', async () => {
    const q = queue({ initialEstimateMs: 1 });
    const g = gate();
    const first = q.run(g.job(1));
    const deadline = new Date(Date.now() + 50);
    const queued = within(deadline, () => q.run(g.job(2)));
    const after = q.run(g.job(3));
    await new Promise((resolve) => setTimeout(resolve, 80));
    g.open();
    await expect(queued).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(await after).toBe(3);
    await first;
    expect(g.ran).toEqual([1, 3]);
  });

  it('drops a queued job whose caller cancelled', async () => {
    const q = queue();
    const g = gate();
    const first = q.run(g.job(1));
    const controller = new AbortController();
    const queued = runWithContext({ requestId: 'c', signal: controller.signal }, () =>
      q.run(g.job(2)),
    );
    controller.abort();
    g.open();
    await expect(queued).rejects.toMatchObject({ code: 'CANCELLED' });
    await first;
    expect(g.ran).toEqual([1]);
  });

  it('refuses without running when the deadline has already passed', async () => {
    const q = queue();
    const g = gate();
    await expect(within(new Date(Date.now() - 1), () => q.run(g.job(1)))).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(g.ran).toEqual([]);
  });
});
