import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { SECURITY_HEADERS } from '../src/http/security-headers';

/**
 * Checks HTTP answers against the gateway's OpenAPI document with Ajv (JSON Schema 2020-12, the
 * document's dialect) over the document's own schemas: the status must be documented for the
 * operation, the body must match the schema of its media type, documented headers must be present
 * when required and match their schemas, and no header may appear that the document does not name
 * (besides HTTP's own and the security headers every answer carries, listed below).
 *
 * The test harness runs every supertest answer through this (test/conformance-setup.ts).
 */

type Json = Record<string, unknown>;

export interface Answer {
  method: string;
  /** The request path as sent, without the query. */
  path: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed body (JSON), or the text. */
  body: unknown;
  text: string | undefined;
}

export interface CheckOptions {
  /**
   * Answers of a stand-in backend that returns gRPC codes the real service never gives for the
   * operation (test/errors.test.ts): a status the operation does not document is then allowed as
   * long as the answer is a problem document.
   */
  allowUndocumentedStatus?: boolean;
}

/** Headers every answer may carry without the document naming them. */
const HTTP_HEADERS = new Set([
  // HTTP itself (RFC 9110/9112), set by Node or the compression middleware.
  'connection',
  'content-encoding',
  'content-length',
  'content-type',
  'date',
  'keep-alive',
  'transfer-encoding',
  'vary',
  // The OWASP set every answer carries (src/http/security-headers.ts; the document's description says so).
  ...SECURITY_HEADERS.map(([name]) => name.toLowerCase()),
]);

/** Not API answers: the Swagger UI page and its static assets. */
const NOT_API = /^\/docs(\/|$)/;

const essence = (contentType: string) => contentType.split(';')[0]!.trim().toLowerCase();
/** `base` (a JSON pointer) extended by `parts`, each escaped (RFC 6901). */
const pointer = (base: string, ...parts: string[]) =>
  [
    base,
    ...parts.map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1'))),
  ].join('/');

export class Conformance {
  /** Answers checked so far, for the suite's own sanity check. */
  checked = 0;
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false });
  /** Header values are strings on the wire: `coerceTypes` reads `Retry-After: 5` as the integer 5. */
  private readonly headerAjv = new Ajv2020({ allErrors: true, strict: false, coerceTypes: true });
  private readonly operations: { pattern: RegExp; path: string; item: Json }[];
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(readonly document: Json) {
    addFormats(this.ajv);
    addFormats(this.headerAjv);
    this.ajv.addSchema(document, 'openapi.json');
    this.headerAjv.addSchema(document, 'openapi.json');
    const paths = document.paths as Record<string, Json>;
    this.operations = Object.entries(paths).map(([path, item]) => ({
      path,
      item,
      pattern: new RegExp(
        `^${path
          .split('/')
          .map((segment) => (/^\{.+\}$/.test(segment) ? '[^/]+' : segment))
          .join('/')}/?$`, // Express routes are not strict: `/v1/products/` is `/v1/products`
      ),
    }));
  }

  /** Every way `answer` disagrees with the document; empty when it conforms. */
  check(answer: Answer, options: CheckOptions = {}): string[] {
    if (NOT_API.test(answer.path)) return [];
    const method = answer.method.toLowerCase();
    // A CORS preflight is answered by the CORS protocol, not by an operation.
    if (method === 'options' && answer.headers['access-control-allow-methods'] !== undefined)
      return [];
    this.checked++;
    const found = this.operations.find(({ pattern }) => pattern.test(answer.path));
    // HEAD is answered as the GET, without the body (RFC 9110 section 9.3.2).
    const operationMethod = method === 'head' ? 'get' : method;
    const operation = found?.item[operationMethod] as Json | undefined;
    if (!found || !operation) {
      // No operation: an unknown path (404) or another method on a known one (405); or 400 for a
      // path the router cannot decode (`%ZZ`), or 429 from the rate limit, which come first.
      const expected = found ? 405 : 404;
      const problems = this.checkProblem(answer, method === 'head');
      if (![expected, 400, 429].includes(answer.status))
        problems.unshift(`${answer.status} for an undocumented operation (expected ${expected})`);
      return problems.map((problem) => `${answer.method} ${answer.path}: ${problem}`);
    }
    const responses = operation.responses as Json;
    const key = [String(answer.status), `${String(answer.status)[0]}XX`, 'default'].find(
      (candidate) => candidate in responses,
    );
    const where = `${answer.method} ${answer.path} (${String(operation.operationId)}) -> ${answer.status}`;
    if (!key) {
      if (options.allowUndocumentedStatus && answer.status >= 400)
        return this.checkProblem(answer, method === 'head').map((p) => `${where}: ${p}`);
      return [`${where}: status not documented (documented: ${Object.keys(responses).join(', ')})`];
    }
    const response = responses[key] as Json;
    const base = pointer('#/paths', found.path, operationMethod, 'responses', key);
    return [
      ...this.checkBody(answer, response, base, method === 'head'),
      ...this.checkHeaders(answer, response, base),
    ].map((problem) => `${where}: ${problem}`);
  }

  private checkBody(answer: Answer, response: Json, base: string, head: boolean): string[] {
    const content = response.content as Record<string, Json> | undefined;
    const contentType = answer.headers['content-type'];
    if (!content) {
      return answer.text ? ['a body where the document describes none'] : [];
    }
    if (typeof contentType !== 'string') return ['no Content-Type'];
    const mediaType = Object.keys(content).find((type) => essence(type) === essence(contentType));
    if (!mediaType)
      return [
        `Content-Type ${contentType} not documented (documented: ${Object.keys(content).join(', ')})`,
      ];
    if (head || !content[mediaType]!.schema) return [];
    const body = essence(contentType).endsWith('json') ? answer.body : answer.text;
    return this.validate(this.ajv, pointer(base, 'content', mediaType, 'schema'), body, 'body');
  }

  private checkHeaders(answer: Answer, response: Json, base: string): string[] {
    const problems: string[] = [];
    const documented = new Map<string, string>();
    for (const [name, value] of Object.entries((response.headers ?? {}) as Record<string, Json>)) {
      const ref = typeof value.$ref === 'string' ? value.$ref : undefined;
      const header = ref ? this.resolve(ref) : value;
      const at = ref ?? pointer(base, 'headers', name);
      documented.set(name.toLowerCase(), name);
      const received = answer.headers[name.toLowerCase()];
      if (received === undefined) {
        if (header.required === true) problems.push(`required header ${name} missing`);
        continue;
      }
      if (header.schema) {
        problems.push(
          ...this.validate(
            this.headerAjv,
            `${at}/schema`,
            Array.isArray(received) ? received.join(', ') : received,
            `header ${name}`,
          ),
        );
      }
    }
    for (const name of Object.keys(answer.headers)) {
      if (!documented.has(name) && !HTTP_HEADERS.has(name) && !name.startsWith('access-control-'))
        problems.push(`header ${name} not documented for this answer`);
    }
    return problems;
  }

  /** An answer outside any operation must still be a problem document. */
  private checkProblem(answer: Answer, head: boolean): string[] {
    const contentType = answer.headers['content-type'];
    if (typeof contentType !== 'string' || essence(contentType) !== 'application/problem+json')
      return [`Content-Type ${String(contentType)} is not application/problem+json`];
    if (head) return [];
    return this.validate(this.ajv, '#/components/schemas/Problem', answer.body, 'body');
  }

  private resolve(ref: string): Json {
    let node: unknown = this.document;
    for (const part of ref.replace(/^#\//, '').split('/'))
      node = (node as Json)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    return node as Json;
  }

  private validate(ajv: Ajv2020, at: string, value: unknown, what: string): string[] {
    const key = `${ajv === this.ajv ? 'body' : 'header'} ${at}`;
    let validate = this.validators.get(key);
    if (!validate) {
      validate = ajv.compile({ $ref: `openapi.json${at}` });
      this.validators.set(key, validate);
    }
    if (validate(value)) return [];
    return [
      `${what} does not match ${at}: ${ajv.errorsText(validate.errors, { dataVar: what })} (${JSON.stringify(value)?.slice(0, 300)})`,
    ];
  }
}

/** What this test file's answers are checked with (set by a test file, e.g. errors.test.ts). */
export const conformanceOptions: CheckOptions = {};
