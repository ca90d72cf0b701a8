const preset = require('@repo/jest-presets/node');

module.exports = {
  ...preset,
  // One real PostgreSQL for the run, with a migrated template database that test files copy.
  globalSetup: require.resolve('@repo/database/jest-global-setup'),
  globalTeardown: require.resolve('@repo/database/jest-global-teardown'),
};
