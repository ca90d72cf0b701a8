import { idempotencyKeyViolation } from '@repo/service-kit/idempotency';
import { DomainError, type FieldViolation } from '@repo/service-kit/errors';
import { isStorableText, STORABLE_TEXT_RULE } from '@repo/service-kit/text';

export const NAME_MAX = 100;
export const PASSWORD_MIN = 12;
export const PASSWORD_MAX = 256;
export const EMAIL_MAX = 254;

// Pragmatic, not RFC 5322: one @, no spaces, a dot in the domain, no empty labels.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;
/** Length in characters as people count them (code points), not UTF-16 units. */
const length = (value: string) => [...value].length;

/** NUL (PostgreSQL cannot store it) or an unpaired surrogate (not text): refused in every field. */
const notTextViolation = (field: string): FieldViolation => ({
  field,
  description: STORABLE_TEXT_RULE,
  reason: 'INVALID_FORMAT',
});

/**
 * Trimmed, lower-cased, NFC: the form uniqueness is checked on, so the composed and decomposed
 * spellings of one address (é as U+00E9 or as e + U+0301) are one account. INVALID_ARGUMENT when
 * the email cannot be text this service stores (see `isStorableText`): such an address can be no
 * account's, and a lookup with NUL would fail in PostgreSQL.
 */
export function normalizeEmail(email: string): string {
  if (!isStorableText(email)) throw DomainError.invalid([notTextViolation('email')]);
  return email.trim().toLowerCase().normalize('NFC');
}

function emailViolation(email: string): FieldViolation | undefined {
  if (!isStorableText(email)) return notTextViolation('email');
  const trimmed = email.trim();
  if (trimmed === '') return { field: 'email', description: 'is required', reason: 'REQUIRED' };
  if (length(trimmed) > EMAIL_MAX) {
    return {
      field: 'email',
      description: `must be at most ${EMAIL_MAX} characters`,
      reason: 'TOO_LONG',
    };
  }
  if (!EMAIL_PATTERN.test(trimmed)) {
    return { field: 'email', description: 'must be an email address', reason: 'INVALID_FORMAT' };
  }
  return undefined;
}

function nameViolation(name: string): FieldViolation | undefined {
  if (!isStorableText(name)) return notTextViolation('name');
  const trimmed = name.trim();
  if (trimmed === '') return { field: 'name', description: 'is required', reason: 'REQUIRED' };
  if (length(trimmed) > NAME_MAX) {
    return {
      field: 'name',
      description: `must be at most ${NAME_MAX} characters`,
      reason: 'TOO_LONG',
    };
  }
  return undefined;
}

function passwordViolation(password: string): FieldViolation | undefined {
  // Never stored, but hashed as UTF-8: an unpaired surrogate would hash as U+FFFD.
  if (!isStorableText(password)) return notTextViolation('password');
  const chars = length(password);
  if (chars < PASSWORD_MIN) {
    return {
      field: 'password',
      description: `must be at least ${PASSWORD_MIN} characters`,
      reason: 'TOO_SHORT',
    };
  }
  if (chars > PASSWORD_MAX) {
    return {
      field: 'password',
      description: `must be at most ${PASSWORD_MAX} characters`,
      reason: 'TOO_LONG',
    };
  }
  return undefined;
}

export interface NewUserInput {
  email: string;
  name: string;
  password: string;
  /** '' or absent: no key. */
  idempotencyKey?: string;
}

export interface ValidNewUser {
  /** Trimmed, as typed. */
  email: string;
  emailNormalized: string;
  /** Trimmed. */
  name: string;
  password: string;
  idempotencyKey: string | undefined;
}

/** Checks every field and reports every bad one at once (one violation per field). */
export function validateNewUser(input: NewUserInput): ValidNewUser {
  const violations = [
    emailViolation(input.email),
    nameViolation(input.name),
    passwordViolation(input.password),
    idempotencyKeyViolation(input.idempotencyKey ?? ''),
  ].filter((violation): violation is FieldViolation => violation !== undefined);
  if (violations.length > 0) throw DomainError.invalid(violations);
  const email = input.email.trim();
  return {
    email,
    emailNormalized: normalizeEmail(email),
    name: input.name.trim(),
    password: input.password,
    idempotencyKey: input.idempotencyKey || undefined,
  };
}

export function validateName(name: string): string {
  const violation = nameViolation(name);
  if (violation) throw DomainError.invalid([violation]);
  return name.trim();
}
