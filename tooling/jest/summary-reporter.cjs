// Records this package's Jest totals so `.ci/run` can print one `N passed, N failed` line for the
// whole workspace. Writes only when JEST_SUMMARY_DIR is set.
const fs = require('node:fs');
const path = require('node:path');

class SummaryReporter {
  onRunComplete(_contexts, results) {
    const dir = process.env.JEST_SUMMARY_DIR;
    if (!dir) return;
    fs.mkdirSync(dir, { recursive: true });
    const name = path.basename(process.cwd());
    // Suites that could not run at all (a crash in setup); their tests are not in the counts.
    const failedSuites = results.numRuntimeErrorTestSuites ?? 0;
    const summary = {
      package: name,
      passed: results.numPassedTests,
      failed: results.numFailedTests,
      failedSuites,
    };
    fs.writeFileSync(path.join(dir, `${name}-${process.pid}.json`), JSON.stringify(summary));
  }
}

module.exports = SummaryReporter;
