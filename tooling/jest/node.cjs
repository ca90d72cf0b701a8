// Jest preset for Node packages.
//
// Why @swc/jest rather than ts-jest: it only strips types (type checking is the `typecheck` turbo
// task's job), which makes a cold run several times faster on 2-core machines, and it needs no
// TypeScript version pin of its own.
const path = require('node:path');

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/src', '<rootDir>/test'].filter((dir) =>
    require('node:fs').existsSync(dir.replace('<rootDir>', process.cwd())),
  ),
  testMatch: ['**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  // TypeScript sources may import siblings as './x.js' (NodeNext style, e.g. Prisma's generated client).
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': [
      require.resolve('@swc/jest'),
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
        sourceMaps: 'inline',
      },
    ],
  },
  reporters: ['default', path.join(__dirname, 'summary-reporter.cjs')],
  // Generous: a test's time limit is never its subject (tests about time set their own, much
  // shorter, deadlines), and `pnpm test:busy` must pass on a machine whose every core is busy.
  testTimeout: 120_000,
};
