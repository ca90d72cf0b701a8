// Generates TypeScript (ts-proto) and a binary descriptor set (for gRPC server reflection) from
// ../../proto. Both land in src/generated/, which is git-ignored: the `generate` turbo task runs
// this before anything that builds, type-checks or tests code that imports the contracts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';

const out = 'src/generated';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const run = (...args) => execFileSync('buf', args, { stdio: 'inherit' });
run('generate', '../../proto', '--template', 'buf.gen.yaml');
run('build', '../../proto', '-o', `${out}/descriptor.binpb`);
