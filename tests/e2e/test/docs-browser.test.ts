// The docs page (/docs, Swagger UI over /openapi.json) in a real browser: Debian's Chromium driven
// by playwright-core, against the whole system. It renders every operation of the document, logs
// no console error, page error or CSP violation under the gateway's security headers, and "Try it
// out" -> "Execute" on GET /v1/products gets 200 from the running gateway. A full-page screenshot
// is kept in test-results/docs.png (a CI artifact; not committed).
//
// The browser is Debian's `chromium` (apt-get install chromium), never one Playwright downloads.
// .ci/run installs it when it is missing; in CI (`CI` set) the test fails without it, elsewhere it
// is skipped with a message saying how to install it. CHROMIUM_PATH names another binary.
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { RunningSystem } from '@repo/system/system';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startTestSystem } from './system';

const INSTALL_HINT = 'apt-get install -y chromium (Debian), or set CHROMIUM_PATH';
const RESULTS = join(__dirname, '..', 'test-results');
/** Generous: waits are for conditions, never for time; this only bounds a page that never renders. */
const WAIT_MS = 60_000;

function findChromium(): string | undefined {
  const candidates = process.env.CHROMIUM_PATH
    ? [process.env.CHROMIUM_PATH]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .flatMap((dir) => ['chromium', 'chromium-browser'].map((name) => join(dir, name)));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const executablePath = findChromium();
if (!executablePath && !process.env.CI) {
  process.stderr.write(
    `docs-browser.test.ts: skipped, no Chromium found (${INSTALL_HINT}); in CI it fails instead\n`,
  );
}
const describeWithBrowser = executablePath || process.env.CI ? describe : describe.skip;

interface Operation {
  method: string;
  path: string;
  operationId: string;
}

/**
 * The browser globals the page-side callbacks use, typed here: this package compiles without the DOM
 * library (the callbacks run in the page, where `globalThis` is its window).
 */
interface PageWindow {
  __cspViolations?: string[];
  document: {
    addEventListener(
      type: 'securitypolicyviolation',
      listener: (event: {
        effectiveDirective: string;
        blockedURI: string;
        sourceFile: string;
        lineNumber: number;
      }) => void,
    ): void;
    querySelectorAll(selectors: string): { length: number };
  };
}

/** What a page reported that it should not have: console errors, page errors, CSP violations. */
interface Trouble {
  kind: string;
  text: string;
}

describeWithBrowser(
  executablePath
    ? 'the docs page in Chromium'
    : `the docs page in Chromium (no Chromium: ${INSTALL_HINT})`,
  () => {
    let system: RunningSystem | undefined;
    let context: BrowserContext | undefined;
    let userDataDir: string | undefined;
    let page: Page;
    let operations: Operation[];
    const troubles: Trouble[] = [];

    beforeAll(async () => {
      if (!executablePath) {
        throw new Error(`CI is set and no Chromium was found: ${INSTALL_HINT}`);
      }
      system = await startTestSystem();
      const spec = (await (await fetch(`${system.gatewayUrl}/openapi.json`)).json()) as {
        paths: Record<string, Record<string, { operationId?: string }>>;
      };
      operations = Object.entries(spec.paths).flatMap(([path, item]) =>
        Object.entries(item)
          .filter(([method]) =>
            ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'].includes(method),
          )
          .map(([method, operation]) => ({
            method,
            path,
            operationId: operation.operationId ?? '',
          })),
      );

      userDataDir = mkdtempSync(join(tmpdir(), 'docs-chromium-'));
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath,
        headless: true,
        chromiumSandbox: false, // we run as root
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        viewport: { width: 1280, height: 900 },
        timeout: WAIT_MS,
      });
      context.setDefaultTimeout(WAIT_MS);
      // Runs before the page's own scripts (injected over the DevTools protocol, which the page's
      // CSP does not govern): every CSP violation is kept, including ones the console would not show.
      await context.addInitScript(() => {
        const seen: string[] = [];
        const window = globalThis as unknown as PageWindow;
        window.__cspViolations = seen;
        window.document.addEventListener('securitypolicyviolation', (event) => {
          seen.push(
            `${event.effectiveDirective} blocked ${event.blockedURI || '(inline)'} ` +
              `at ${event.sourceFile}:${event.lineNumber}`,
          );
        });
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.on('console', (message) => {
        if (message.type() === 'error') {
          const { url } = message.location();
          troubles.push({
            kind: 'console error',
            text: `${message.text()}${url ? ` (${url})` : ''}`,
          });
        }
      });
      page.on('pageerror', (error) => troubles.push({ kind: 'page error', text: String(error) }));
      page.on('requestfailed', (request) =>
        troubles.push({
          kind: 'failed request',
          text: `${request.url()}: ${request.failure()?.errorText ?? '?'}`,
        }),
      );
      page.on('response', (response) => {
        if (response.status() >= 400) {
          troubles.push({ kind: 'HTTP error', text: `${response.status()} ${response.url()}` });
        }
      });
    });

    afterAll(async () => {
      try {
        if (context) {
          // The page as the tests left it (every operation, and the executed call's answer).
          mkdirSync(RESULTS, { recursive: true });
          await page
            ?.screenshot({ path: join(RESULTS, 'docs.png'), fullPage: true })
            .catch(() => undefined);
          await context.close();
        }
      } finally {
        if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
        await system?.stop();
      }
    });

    async function cspViolations(): Promise<string[]> {
      return page.evaluate(
        () =>
          (globalThis as unknown as PageWindow).__cspViolations ?? [
            'no securitypolicyviolation listener on the page',
          ],
      );
    }

    it('renders every operation of /openapi.json, with no console error or CSP violation', async () => {
      const response = await page.goto(`${system!.gatewayUrl}/docs`, { waitUntil: 'load' });
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-security-policy']).toMatch(/script-src 'self'/);

      // Swagger UI lists the operations once it has fetched and parsed the document.
      await page.locator('.opblock').first().waitFor({ state: 'visible' });
      await page.waitForFunction(
        (count) =>
          (globalThis as unknown as PageWindow).document.querySelectorAll('.opblock').length >=
          count,
        operations.length,
      );
      const rendered = await page.$$eval('.opblock', (blocks) =>
        blocks.map((block) => ({
          id: block.id,
          method: (block.querySelector('.opblock-summary-method')?.textContent ?? '').toLowerCase(),
          path: block.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '',
        })),
      );
      // Swagger UI lists what it could not resolve or parse in an "Errors" box: there is none.
      expect(await page.locator('.errors-wrapper').count()).toBe(0);
      const key = (o: { method: string; path: string }) => `${o.method} ${o.path}`;
      expect([...new Set(rendered.map(key))].sort()).toEqual(operations.map(key).sort());
      // Each block's id is `operations-<tag>-<operationId>`: every operationId is on the page.
      for (const { method, path, operationId } of operations) {
        expect(operationId).not.toBe('');
        expect({
          operation: `${method} ${path}`,
          rendered: rendered.some(
            (block) => key(block) === `${method} ${path}` && block.id.endsWith(`-${operationId}`),
          ),
        }).toEqual({ operation: `${method} ${path}`, rendered: true });
      }

      expect(await cspViolations()).toEqual([]);
      expect(troubles).toEqual([]);
    });

    it('"Try it out" then "Execute" on GET /v1/products gets 200 from the gateway', async () => {
      const products = operations.find((o) => o.method === 'get' && o.path === '/v1/products');
      expect(products).toBeDefined();
      const block = page.locator(`.opblock[id$="-${products!.operationId}"]`).first();
      await block.locator('.opblock-summary-control').click();
      await block.locator('button.try-out__btn').click();
      const answered = page.waitForResponse(
        (response) =>
          new URL(response.url()).pathname === '/v1/products' &&
          response.request().method() === 'GET',
      );
      await block.locator('button.execute').click();
      expect((await answered).status()).toBe(200);

      // The code Swagger UI shows for the live answer.
      const status = block.locator('.live-responses-table .response .response-col_status').first();
      await status.waitFor({ state: 'visible' });
      expect((await status.textContent())?.trim()).toBe('200');
      await block.locator('.live-responses-table .response-col_description pre').first().waitFor();

      expect(await cspViolations()).toEqual([]);
      expect(troubles).toEqual([]);
    });
  },
);
