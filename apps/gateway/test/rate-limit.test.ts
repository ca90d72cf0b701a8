import { FixedWindowLimiter, clientKey } from '../src/http/rate-limit';

describe('FixedWindowLimiter', () => {
  it('allows `limit` requests per client per window, then refuses until the window ends', () => {
    let now = 1_000_000;
    const limiter = new FixedWindowLimiter(3, 60_000, () => now);
    expect([1, 2, 3].map(() => limiter.hit('a').remaining)).toEqual([2, 1, 0]);
    expect(limiter.hit('a')).toEqual({ remaining: -1, resetSeconds: 60 });
    expect(limiter.hit('b').remaining).toBe(2); // another client has its own count

    now += 59_001;
    expect(limiter.hit('a')).toEqual({ remaining: -1, resetSeconds: 1 });
    now += 999; // the window's end
    expect(limiter.hit('a')).toEqual({ remaining: 2, resetSeconds: 60 });
  });

  it('keeps windows aligned after an idle stretch', () => {
    let now = 0;
    const limiter = new FixedWindowLimiter(1, 10_000, () => now);
    limiter.hit('a');
    now = 35_000; // three and a half windows later: the current one ends at 40 s
    expect(limiter.hit('a')).toEqual({ remaining: 0, resetSeconds: 5 });
    expect(limiter.hit('a').remaining).toBe(-1);
  });
});

describe('clientKey', () => {
  it('keys IPv4 clients by address, IPv4-mapped IPv6 as the IPv4 address', () => {
    expect(clientKey('203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey(undefined)).toBe('unknown');
  });

  it('keys IPv6 clients by their /56, however the address is written', () => {
    const key = clientKey('2001:db8:abcd:12ff::1');
    expect(key).toBe('2001:0db8:abcd:1200::/56');
    expect(clientKey('2001:DB8:ABCD:1234:5678:9abc:def0:1')).toBe(key);
    expect(clientKey('2001:db8:abcd:12::1')).toBe('2001:0db8:abcd:0000::/56');
    expect(clientKey('2001:db8:abcd:1300::1')).not.toBe(key);
    expect(clientKey('::1')).toBe('0000:0000:0000:0000::/56');
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0000:0000:0000::/56');
    expect(clientKey('64:ff9b::192.0.2.1')).toBe('0064:ff9b:0000:0000::/56');
  });
});
