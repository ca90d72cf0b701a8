const preset = require('@repo/jest-presets/node');

module.exports = {
  ...preset,
  // One embedded PostgreSQL for the run (started outside Jest's module sandbox).
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 120_000,
  // The system tests start real processes on this 2-core machine: one file at a time.
  maxWorkers: 1,
};
