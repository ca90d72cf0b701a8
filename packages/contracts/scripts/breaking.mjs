// `proto:breaking`: the contracts must not break a client built against the last accepted ones.
//
// The accepted contracts are a committed baseline (baseline/contracts.json, a buf image), not the
// previous commit: comparing with HEAD~1 let a rename through as soon as any other commit followed
// it, and a shallow clone (CI) has no previous commit at all. This check never skips:
//   1. `buf breaking` against the baseline (FILE rules): renamed, renumbered, retyped or removed
//      fields, messages, RPCs... fail;
//   2. the baseline must describe proto/ exactly: an additive change is accepted by refreshing it
//      (`pnpm --filter @repo/contracts proto:baseline`, which refuses a breaking change), so a field
//      added today is protected tomorrow;
//   3. when the main branch is known (origin/main or main) and HEAD is not on it, also against the
//      merge base with it, so a branch cannot slip a break in by rewriting the baseline by hand.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  baselineImage,
  baselineName,
  baselinePath,
  breakingAgainst,
  currentImage,
  protoDir,
} from './image.mjs';

const fail = (message) => {
  console.error(`buf breaking: FAILED: ${message}`);
  process.exit(1);
};

if (!existsSync(baselinePath)) {
  fail(
    `no baseline at ${baselineName} to compare against. It is committed with the contracts; ` +
      'restore it from git, or create it from the released contracts with `pnpm --filter @repo/contracts proto:baseline`.',
  );
}
if (breakingAgainst(baselinePath) !== 0) {
  fail(
    `the change above breaks clients built against the accepted contracts (${baselineName}). ` +
      'Make it additive (new fields with new numbers, new RPCs), or add a v2 package beside v1.',
  );
}
if (currentImage() !== baselineImage()) {
  fail(
    `proto/ has changed since ${baselineName} was written. The change is not breaking: accept it with ` +
      '`pnpm --filter @repo/contracts proto:baseline` and commit the baseline with the .proto files.',
  );
}
console.log(`buf breaking: no breaking changes against ${baselineName}`);

// The merge base with the main branch, when there is one to find (a branch or a full clone).
const git = (...args) => {
  try {
    return execFileSync('git', args, {
      cwd: protoDir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
};
const top = git('rev-parse', '--show-toplevel');
const head = git('rev-parse', 'HEAD');
const main = ['refs/remotes/origin/main', 'refs/heads/main'].find((ref) =>
  git('rev-parse', '--verify', '--quiet', ref),
);
const base = top && head && main ? git('merge-base', 'HEAD', main) : undefined;
if (base && base !== head) {
  if (git('cat-file', '-e', `${base}:proto/buf.yaml`) === undefined) {
    fail(
      `the merge base with ${main} (${base.slice(0, 12)}) has no proto/buf.yaml to compare against`,
    );
  }
  if (breakingAgainst(`${join(top, '.git')}#ref=${base},subdir=proto`) !== 0) {
    fail(`the change above breaks the contracts of ${main} (merge base ${base.slice(0, 12)})`);
  }
  console.log(
    `buf breaking: no breaking changes against ${main} (merge base ${base.slice(0, 12)})`,
  );
}
