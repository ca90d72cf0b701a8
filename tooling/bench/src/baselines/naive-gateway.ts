// B1, HTTP half: a minimal Express 5 route making one grpc-js unary call to the naive backend.
// No auth, no validation, no request ids, no metrics, no logging, no rate limiting.
import { credentials } from '@grpc/grpc-js';
import { OrderServiceClient } from '@repo/contracts/order/v1';
import express from 'express';

const client = new OrderServiceClient(process.env.BACKEND_ADDR!, credentials.createInsecure());
const app = express();

app.get('/v1/products/:id', (req, res) => {
  client.getProduct({ id: req.params.id }, (error, response) => {
    if (error) {
      res.status(500).json({ error: error.details });
      return;
    }
    res.json(response.product);
  });
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`READY ${typeof address === 'object' && address ? address.port : 0}\n`);
});
server.keepAliveTimeout = 65_000;
process.on('SIGTERM', () => server.close(() => process.exit(0)));
