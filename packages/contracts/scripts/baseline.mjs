// `proto:baseline`: accepts the current contracts as the baseline `proto:breaking` compares with
// (baseline/contracts.json). Refuses when the change is breaking against the current baseline:
// that needs a v2 package, not a new baseline.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  baselineImage,
  baselineName,
  baselinePath,
  breakingAgainst,
  currentImage,
} from './image.mjs';

if (existsSync(baselinePath) && breakingAgainst(baselinePath) !== 0) {
  console.error(
    `proto:baseline: refused: the change above breaks clients built against ${baselineName}; ` +
      'make it additive, or add a v2 package beside v1.',
  );
  process.exit(1);
}
const image = currentImage();
if (image === baselineImage()) {
  console.log(`proto:baseline: ${baselineName} already describes proto/`);
} else {
  mkdirSync(dirname(baselinePath), { recursive: true });
  writeFileSync(baselinePath, image);
  console.log(`proto:baseline: wrote ${baselineName}; commit it with the .proto files`);
}
