import { coalesce } from '@repo/service-kit/coalesce';
import type { Backends } from '../backends';
import { defineRoute, type AnyRoute } from '../http/route';
import { nextToken, pageRequest, presentProduct } from './present';
import { IdParams, PageQuery, Product, ProductList } from './schemas';

export function catalogRoutes(backends: Backends): AnyRoute[] {
  // Concurrent requests for one product share one backend call (see coalesce): the catalog is
  // read-mostly and hot. Nothing is cached, so a product is never older than a call in flight.
  const getProduct = coalesce((id: string) => backends.orders.getProduct({ id }));
  return [
    defineRoute({
      operationId: 'listProducts',
      method: 'get',
      path: '/v1/products',
      tag: 'catalog',
      summary: 'List the catalog, by sku',
      description: 'A page of products ordered by sku; follow `nextPageToken` for the next one.',
      auth: false,
      query: PageQuery,
      status: 200,
      response: { description: 'A page of products.', schema: ProductList },
      handle: async ({ query }) => {
        const page = await backends.orders.listProducts(pageRequest(query));
        return {
          products: page.products.map(presentProduct),
          nextPageToken: nextToken(page.nextPageToken),
        };
      },
    }),
    defineRoute({
      operationId: 'getProduct',
      method: 'get',
      path: '/v1/products/:id',
      tag: 'catalog',
      summary: 'One product',
      description: 'A product with its current price and stock.',
      auth: false,
      params: IdParams,
      status: 200,
      response: { description: 'The product.', schema: Product },
      errors: { 404: 'No such product.' },
      handle: async ({ params }) => presentProduct((await getProduct(params.id)).product),
    }),
  ];
}
