import { Client } from 'pg';

/** Replaces the database name in a PostgreSQL connection string. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** The database a connection string names. */
export function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) throw new Error('the connection string names no database');
  return name;
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Runs `fn` with a client connected to the server's maintenance database `postgres`. */
export async function withAdminClient<T>(
  url: string,
  fn: (client: Client) => Promise<T>,
): Promise<T> {
  const client = new Client({ connectionString: withDatabase(url, 'postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates the database unless it exists. Safe to call concurrently. */
export async function ensureDatabase(url: string, name: string, template?: string): Promise<void> {
  await withAdminClient(url, async (client) => {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount) return;
    const templateClause = template ? ` TEMPLATE ${quoteIdent(template)}` : '';
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}${templateClause}`);
    } catch (error) {
      // Someone else created it between our check and our CREATE: 42P04 duplicate_database, or
      // 23505 unique_violation on pg_database when both CREATEs ran at the same moment.
      const code = (error as { code?: string }).code;
      if (code !== '42P04' && code !== '23505') throw error;
    }
  });
}

/** Drops the database, disconnecting anyone still using it. */
export async function dropDatabase(url: string, name: string): Promise<void> {
  await withAdminClient(url, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
}
