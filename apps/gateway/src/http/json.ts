import type { Response } from 'express';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * Answers `status` with `body` as JSON: what `res.status(status).json(body)` does, without Express's
 * per-response MIME lookup, charset rewriting and ETag/freshness checks (the API sets no validators;
 * every answer is `Cache-Control: no-store`). Node sets Content-Length and drops the body for HEAD.
 */
export function sendJson(
  res: Response,
  status: number,
  body: unknown,
  contentType: string = JSON_CONTENT_TYPE,
): void {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.end(JSON.stringify(body));
}
