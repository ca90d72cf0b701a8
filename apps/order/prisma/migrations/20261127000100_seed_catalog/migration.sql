-- The starter catalog, applied once, on the first start of a new database (as a migration, so it
-- is versioned with the schema and never re-applied). Fixed ids keep demos and docs reproducible.
INSERT INTO "products" ("id", "sku", "name", "price_cents", "currency", "stock") VALUES
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000001', 'KB-001', 'Mechanical keyboard', 8900, 'EUR', 250),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000002', 'MS-002', 'Wireless mouse', 2900, 'EUR', 400),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000003', 'MN-003', '27-inch monitor', 27900, 'EUR', 120),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000004', 'HS-004', 'USB headset', 5900, 'EUR', 300),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000005', 'WC-005', 'HD webcam', 4900, 'EUR', 200),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000006', 'DK-006', 'USB-C dock', 12900, 'EUR', 150),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000007', 'LS-007', 'Laptop stand', 3900, 'EUR', 350),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000008', 'DM-008', 'Desk mat', 1900, 'EUR', 500),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000009', 'CB-009', 'Cable kit', 1500, 'EUR', 600),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000010', 'LT-010', 'Desk lamp', 4500, 'EUR', 220),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000011', 'SP-011', 'Speakers', 9900, 'EUR', 90),
  ('0b7d3e4a-1c2f-4a5b-8c6d-000000000012', 'CH-012', 'Ergonomic chair', 34900, 'EUR', 60);
