import { randomBytes } from 'node:crypto';
import { dropDatabase, ensureDatabase, withDatabase } from './admin';

/** Set by the Jest global setup: a migrated database that test databases are copied from. */
export const TEMPLATE_URL_ENV = 'TEST_DATABASE_TEMPLATE_URL';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh, fully migrated database for one test file, copied from the template the Jest global
 * setup migrated (CREATE DATABASE ... TEMPLATE takes milliseconds; running migrations per file
 * would take seconds).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const templateUrl = process.env[TEMPLATE_URL_ENV];
  if (!templateUrl) {
    throw new Error(
      `${TEMPLATE_URL_ENV} is not set: add @repo/database/jest-global-setup to this package's jest config`,
    );
  }
  const template = new URL(templateUrl).pathname.slice(1);
  const name = `test_${randomBytes(6).toString('hex')}`;
  await ensureDatabase(templateUrl, name, template);
  return {
    url: withDatabase(templateUrl, name),
    drop: () => dropDatabase(templateUrl, name),
  };
}
