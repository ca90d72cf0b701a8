// The shared preset, plus a real PostgreSQL for the whole run (test/global-setup.ts): an embedded
// server in a temporary directory, or the server TEST_DATABASE_URL names. NATS is expected at
// NATS_URL (default nats://127.0.0.1:4222); its tests fail, saying so, when it is not there.
const preset = require('@repo/jest-presets/node');

module.exports = {
  ...preset,
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
};
