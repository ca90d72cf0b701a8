// B0: the ceiling of the platform. A bare node:http server answering GET /v1/products/:id with the
// same JSON shape the gateway returns, with no I/O behind it.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 0);
const product = (id: string) =>
  JSON.stringify({
    id,
    sku: 'KB-001',
    name: 'Mechanical keyboard',
    priceCents: 8900,
    currency: 'EUR',
    stock: 250,
  });

const server = createServer((req, res) => {
  const match = /^\/v1\/products\/([^/?]+)/.exec(req.url ?? '');
  if (req.method !== 'GET' || !match) {
    res.writeHead(404).end();
    return;
  }
  const body = product(match[1]!);
  res.writeHead(200, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`READY ${typeof address === 'object' && address ? address.port : port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
