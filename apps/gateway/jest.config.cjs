const preset = require('@repo/jest-presets/node');

module.exports = {
  ...preset,
  // The real user and order services (processes, on an embedded PostgreSQL), once per run.
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  // Every answer received through supertest is checked against /openapi.json.
  setupFilesAfterEnv: [...(preset.setupFilesAfterEnv ?? []), '<rootDir>/test/conformance-setup.ts'],
};
