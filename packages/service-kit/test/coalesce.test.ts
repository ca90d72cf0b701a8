import { coalesce } from '../src/coalesce';

describe('coalesce', () => {
  it('shares one call among concurrent callers for the same key, and none across keys', async () => {
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const load = coalesce(async (key: string) => {
      calls.push(key);
      await gate;
      return `value of ${key}`;
    });
    const results = Promise.all([load('a'), load('a'), load('b'), load('a')]);
    release();
    expect(await results).toEqual(['value of a', 'value of a', 'value of b', 'value of a']);
    expect(calls).toEqual(['a', 'b']);
  });

  it('keeps nothing once a call settles: the next caller starts a fresh call', async () => {
    let n = 0;
    const load = coalesce(async (_key: string) => ++n);
    expect(await load('a')).toBe(1);
    expect(await load('a')).toBe(2);
  });

  it('shares failures too, and recovers after them', async () => {
    let fail = true;
    const load = coalesce(async (key: string) => {
      if (fail) throw new Error(`no ${key}`);
      return key;
    });
    await expect(Promise.all([load('x'), load('x')])).rejects.toThrow('no x');
    fail = false;
    await expect(load('x')).resolves.toBe('x');
  });
});
