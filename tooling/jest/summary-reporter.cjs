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
    // The failed tests by name, with the gist of their error (its first lines, without the stack:
    // an assertion's expected and received values), so the end of CI's output (often all that is
    // kept of it) says what failed, and how, without the full log.
    const failures = [];
    for (const suite of results.testResults) {
      const file = path.relative(process.cwd(), suite.testFilePath);
      if (suite.testExecError) failures.push(`${file}: ${gist(suite.testExecError.message)}`);
      for (const test of suite.testResults) {
        if (test.status !== 'failed') continue;
        failures.push(`${file} > ${test.fullName}: ${gist(test.failureMessages[0])}`);
      }
    }
    const summary = {
      package: name,
      passed: results.numPassedTests,
      failed: results.numFailedTests,
      failedSuites,
      failures,
    };
    fs.writeFileSync(path.join(dir, `${name}-${process.pid}.json`), JSON.stringify(summary));
  }
}

/** The message's first non-blank lines before its stack trace, one line, at most 1,200 characters. */
function gist(message = '') {
  // Jest's messages carry ANSI colours and blank lines.
  const plain = String(message).replace(/\u001b\[[0-9;]*m/g, '');
  const lines = [];
  for (const line of plain.split('\n')) {
    if (/^\s*at /.test(line)) break;
    if (line.trim() !== '') lines.push(line.trim());
  }
  return lines.join(' / ').slice(0, 1200);
}

module.exports = SummaryReporter;
