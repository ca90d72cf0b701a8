// Shared by breaking.mjs and baseline.mjs: the contracts as a buf image (JSON, without source
// info), and the committed baseline it is compared with.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const protoDir = fileURLToPath(new URL('../../../proto', import.meta.url));
export const baselinePath = fileURLToPath(new URL('../baseline/contracts.json', import.meta.url));
export const baselineName = 'packages/contracts/baseline/contracts.json';

/** The image of proto/ as it is now, as stable, reviewable JSON. */
export function currentImage() {
  const json = execFileSync(
    'buf',
    ['build', protoDir, '--exclude-source-info', '-o', '-#format=json'],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  return `${JSON.stringify(JSON.parse(json), null, 2)}\n`;
}

/** The committed baseline, or undefined when there is none. */
export function baselineImage() {
  if (!existsSync(baselinePath)) return undefined;
  return `${JSON.stringify(JSON.parse(readFileSync(baselinePath, 'utf8')), null, 2)}\n`;
}

/** Runs `buf breaking proto/ --against <against>`; returns buf's exit status (output goes to ours). */
export function breakingAgainst(against) {
  try {
    execFileSync('buf', ['breaking', protoDir, '--against', against], { stdio: 'inherit' });
    return 0;
  } catch (error) {
    if (typeof error.status === 'number') return error.status;
    throw error;
  }
}
