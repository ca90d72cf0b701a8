import { join } from 'node:path';
import express, { type Router } from 'express';

/**
 * The page's Content-Security-Policy, in place of the API's `default-src 'none'`: same-origin
 * scripts and styles only (Swagger UI also sets inline styles and data: images), nothing framed.
 */
const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
].join('; ');

/**
 * Swagger UI, mounted at /docs, served from the swagger-ui-dist package (no CDN), rendering /openapi.json. The
 * page loads only same-origin scripts, so a strict Content-Security-Policy holds; its static assets
 * may be cached for an hour (the API's responses are `no-store`).
 */
export function docsRouter(): Router {
  const router = express.Router();
  const assets = join(require.resolve('swagger-ui-dist/package.json'), '..');
  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', DOCS_CSP);
    res.removeHeader('Cache-Control');
    next();
  });
  router.get('/', (_req, res) => {
    res.type('html').send(`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Microservices reference API</title>
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css" />
    <!-- Named, so the browser does not ask for /favicon.ico, a 404 logged as a console error. -->
    <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>`);
  });
  router.get('/init.js', (_req, res) => {
    res.type('application/javascript').send(
      // validatorUrl: null — no badge fetched from validator.swagger.io (the CSP would block it).
      "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', validatorUrl: null });\n",
    );
  });
  router.use('/assets', express.static(assets, { index: false, maxAge: '1h' }));
  return router;
}
