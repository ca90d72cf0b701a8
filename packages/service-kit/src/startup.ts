import type { Logger } from 'pino';

/**
 * One clear line for the start-up failures people actually hit, instead of a stack trace: a port
 * already in use, a database that cannot be reached or started. Anything else is logged in full.
 */
export function describeStartupError(error: unknown): string | undefined {
  const cause = error instanceof Error ? (error as { cause?: unknown }).cause : undefined;
  const causeText = cause instanceof Error ? cause.message : typeof cause === 'string' ? cause : '';
  const text = error instanceof Error ? `${error.message} ${causeText}` : String(error);
  const port = /(?:EADDRINUSE|address already in use)[^\d]*(?:[\d.]+:)?(\d+)?/i.exec(text);
  if (port) {
    return `a port this service needs is already in use${port[1] ? ` (${port[1]})` : ''}: stop whatever holds it or choose another port in the environment`;
  }
  if (
    /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|password authentication failed|does not exist/i.test(text) &&
    /5432|postgres|database/i.test(text)
  ) {
    return `cannot reach the database: check DATABASE_URL, or unset it to use the embedded PostgreSQL (${text.split('\n')[0]})`;
  }
  if (/prisma migrate deploy failed/.test(text)) {
    const detail = text
      .split('\n')
      .filter(
        (line) => /error|failed|P\d{4}/i.test(line) && !/prisma migrate deploy failed/.test(line),
      )
      .slice(0, 3)
      .join(' ')
      .trim();
    return `migrations failed to apply: ${detail || text.split('\n').slice(-1)[0]}`;
  }
  if (/initdb|pg_ctl|postgres.*(exited|failed)|lock file .* already exists/i.test(text)) {
    return `the embedded PostgreSQL would not start (${text.split('\n')[0]}); delete the data directory to start afresh, or set DATABASE_URL`;
  }
  return undefined;
}

/** For `main().catch(...)`: log one line (or the full error when unknown) and exit 1. */
export function exitOnStartupError(logger: Logger): (error: unknown) => never {
  return (error) => {
    const line = describeStartupError(error);
    if (line) logger.fatal(line);
    else logger.fatal({ err: error }, 'failed to start');
    process.exit(1);
  };
}
