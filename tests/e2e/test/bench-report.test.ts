// The bench's saved report (tooling/bench/results/*.md) is written the way Prettier formats it, so
// `pnpm format:check` (part of `pnpm test`) passes on whatever the bench last wrote.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT } from '@repo/system/system';

/** Prettier, run as `pnpm format:check` runs it (in its own process: it loads ES modules). */
const prettier = (markdown: string) =>
  execFileSync(join(ROOT, 'node_modules/.bin/prettier'), ['--stdin-filepath', 'report.md'], {
    cwd: ROOT,
    input: markdown,
    encoding: 'utf8',
  });

describe('bench report', () => {
  // The compiled bench (this test runs after its build), not another package's sources.
  let renderMarkdown: (report: unknown) => string;
  beforeAll(async () => {
    ({ renderMarkdown } = (await import(join(ROOT, 'tooling/bench/dist/report.js'))) as {
      renderMarkdown: typeof renderMarkdown;
    });
  });
  const latest = JSON.parse(
    readFileSync(join(ROOT, 'tooling/bench/results/latest.json'), 'utf8'),
  ) as { scenarios: { id: string }[] };

  it.each([
    ['a full run', latest],
    [
      'a run of some scenarios (ratios and targets not run)',
      { ...latest, scenarios: latest.scenarios.filter((s) => s.id === 's2') },
    ],
  ])('renders %s as Prettier formats it', (_label, report) => {
    const markdown = renderMarkdown(report);
    expect(markdown).toBe(prettier(markdown));
  });
});
