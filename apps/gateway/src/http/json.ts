import type { Response } from 'express';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * Answers `status` with `body` as JSON: what `res.status(status).json(body)` does, without Express's
 * per-response MIME lookup, charset rewriting and ETag/freshness checks (the API sets no validators;
 * every answer is `Cache-Control: no-store`). Node drops the body for HEAD.
 */
export function sendJson(
  res: Response,
  status: number,
  body: unknown,
  contentType: string = JSON_CONTENT_TYPE,
): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  // Node would count it for a GET, but not for a HEAD, whose answer must match the GET's headers.
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
