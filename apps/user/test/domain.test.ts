import { DomainError } from '@repo/service-kit/errors';
import { hashPassword, verifyPassword } from '../src/domain/password';
import { isUuid } from '@repo/service-kit/ids';
import { normalizeEmail, validateName, validateNewUser } from '../src/domain/validation';

const valid = {
  email: '  Ada@Example.COM ',
  name: ' Ada Lovelace ',
  password: 'correct horse battery',
};

function violationsOf(fn: () => unknown) {
  try {
    fn();
  } catch (error) {
    if (error instanceof DomainError)
      return {
        code: error.code,
        fields: error.violations.map((v) => v.field),
        violations: error.violations,
      };
    throw error;
  }
  throw new Error('expected a DomainError');
}

describe('validateNewUser', () => {
  it('trims, keeps the typed email for display and normalizes it for uniqueness', () => {
    expect(validateNewUser(valid)).toEqual({
      email: 'Ada@Example.COM',
      emailNormalized: 'ada@example.com',
      name: 'Ada Lovelace',
      password: 'correct horse battery',
    });
  });

  it.each([
    '',
    'plain',
    'a@b',
    'a b@example.com',
    '@example.com',
    'a@example.',
    'a@.com',
    `${'a'.repeat(250)}@example.com`,
  ])('rejects the email %j', (email) => {
    expect(violationsOf(() => validateNewUser({ ...valid, email }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      fields: ['email'],
    });
  });

  it('accepts a name of exactly 100 characters, counting emoji as one', () => {
    expect(validateNewUser({ ...valid, name: 'x'.repeat(100) }).name).toHaveLength(100);
    expect(validateNewUser({ ...valid, name: '🙂'.repeat(100) }).name).toBe('🙂'.repeat(100));
  });

  it.each([
    ['', 'REQUIRED'],
    ['   ', 'REQUIRED'],
    ['x'.repeat(101), 'TOO_LONG'],
  ])('rejects the name %j (%s)', (name, reason) => {
    expect(violationsOf(() => validateNewUser({ ...valid, name })).violations).toEqual([
      expect.objectContaining({ field: 'name', reason }),
    ]);
  });

  it('enforces 12 to 256 password characters', () => {
    expect(() => validateNewUser({ ...valid, password: 'x'.repeat(12) })).not.toThrow();
    expect(() => validateNewUser({ ...valid, password: 'x'.repeat(256) })).not.toThrow();
    expect(
      violationsOf(() => validateNewUser({ ...valid, password: 'x'.repeat(11) })).violations,
    ).toEqual([expect.objectContaining({ field: 'password', reason: 'TOO_SHORT' })]);
    expect(
      violationsOf(() => validateNewUser({ ...valid, password: 'x'.repeat(257) })).violations,
    ).toEqual([expect.objectContaining({ field: 'password', reason: 'TOO_LONG' })]);
  });

  it.each([
    ['email', 'a\u0000b@example.com'],
    ['email', 'ada@exa\u0000mple.com'],
    ['email', 'ada\ud800@example.com'],
    ['name', 'Ada\u0000'],
    ['name', 'Ada \udc00'],
    ['password', 'correct horse battery\u0000'],
    ['password', 'correct horse battery\ud83d'],
  ] as const)('refuses NUL and unpaired surrogates in the %s (%j)', (field, value) => {
    expect(violationsOf(() => validateNewUser({ ...valid, [field]: value })).violations).toEqual([
      {
        field,
        description: 'must be well-formed Unicode without NUL characters',
        reason: 'INVALID_FORMAT',
      },
    ]);
  });

  it('normalizes the composed and decomposed spellings of an email to one form (NFC)', () => {
    const composed = validateNewUser({ ...valid, email: 'Jos\u00e9@example.com' });
    const decomposed = validateNewUser({ ...valid, email: 'JOSE\u0301@example.com' });
    expect(decomposed.emailNormalized).toBe('jos\u00e9@example.com');
    expect(decomposed.emailNormalized).toBe(composed.emailNormalized);
  });

  it('reports one violation per bad field, all at once', () => {
    expect(
      violationsOf(() => validateNewUser({ email: 'nope', name: '', password: 'short' })).fields,
    ).toEqual(['email', 'name', 'password']);
  });

  it('validates a new name on its own', () => {
    expect(validateName('  Grace ')).toBe('Grace');
    expect(violationsOf(() => validateName('')).fields).toEqual(['name']);
  });
});

describe('helpers', () => {
  it('normalizes emails case-insensitively', () => {
    expect(normalizeEmail(' Ada@EXAMPLE.com ')).toBe('ada@example.com');
  });
  it('normalizes emails to NFC', () => {
    expect(normalizeEmail('E\u0301mile@example.com')).toBe('\u00e9mile@example.com');
    expect(normalizeEmail('\u00c9mile@example.com')).toBe('\u00e9mile@example.com');
  });
  it('refuses to normalize an email no account can have (NUL, unpaired surrogate)', () => {
    expect(violationsOf(() => normalizeEmail('a\u0000@example.com')).fields).toEqual(['email']);
    expect(violationsOf(() => normalizeEmail('a\ud800@example.com')).fields).toEqual(['email']);
  });
  it('recognises UUIDs only', () => {
    expect(isUuid('7d444840-9dc0-11d1-b245-5ffdce74fad2')).toBe(true);
    expect(isUuid('7d444840-9dc0-11d1-b245-5ffdce74fad')).toBe(false);
    expect(isUuid("1' OR '1'='1")).toBe(false);
  });
});

describe('password hashing', () => {
  it('stores scrypt parameters and a per-user salt with the hash', async () => {
    const [a, b] = await Promise.all([
      hashPassword('correct horse battery'),
      hashPassword('correct horse battery'),
    ]);
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(a).not.toBe(b); // different salts
  });

  it('verifies the right password and rejects a wrong one', async () => {
    const hash = await hashPassword('correct horse battery');
    await expect(verifyPassword('correct horse battery', hash)).resolves.toBe(true);
    await expect(verifyPassword('correct horse batterY', hash)).resolves.toBe(false);
  });

  it('verifies hashes made with other parameters (they can be raised later)', async () => {
    const hash = await hashPassword('correct horse battery', { N: 1024, r: 8, p: 1 });
    await expect(verifyPassword('correct horse battery', hash)).resolves.toBe(true);
  });

  it('treats a malformed stored hash as a mismatch, not a crash', async () => {
    await expect(verifyPassword('x', 'not-a-hash')).resolves.toBe(false);
    await expect(verifyPassword('x', 'scrypt$a$b$c$d$e')).resolves.toBe(false);
  });
});
