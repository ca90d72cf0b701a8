import { join } from 'node:path';
import express, { type Router } from 'express';

/**
 * /docs: Swagger UI, served from the swagger-ui-dist package (no CDN), rendering /openapi.json. The
 * page loads only same-origin scripts, so helmet's default Content-Security-Policy holds.
 */
export function docsRouter(): Router {
  const router = express.Router();
  const assets = join(require.resolve('swagger-ui-dist/package.json'), '..');
  router.get('/docs', (_req, res) => {
    res.type('html').send(`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Microservices reference API</title>
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>`);
  });
  router.get('/docs/init.js', (_req, res) => {
    res
      .type('application/javascript')
      .send("window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });\n");
  });
  router.use('/docs/assets', express.static(assets, { index: false, maxAge: '1h' }));
  return router;
}
