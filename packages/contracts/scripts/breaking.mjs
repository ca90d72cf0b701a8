// `buf breaking` against the previous commit: a change to a .proto file must not break clients that
// were built against the last commit (field numbers, names, types, removed RPCs...).
// Skipped, with a message, when there is no previous commit holding proto/ (first commit, shallow clone).
import { execFileSync } from 'node:child_process';

const root = execFileSync('git', ['rev-parse', '--show-toplevel'], { encoding: 'utf8' }).trim();
let hasPrevious = false;
try {
  execFileSync('git', ['cat-file', '-e', 'HEAD~1:proto/buf.yaml'], { cwd: root, stdio: 'ignore' });
  hasPrevious = true;
} catch {
  hasPrevious = false;
}
if (!hasPrevious) {
  console.log('buf breaking: skipped (no previous commit with proto/buf.yaml to compare against)');
  process.exit(0);
}
execFileSync('buf', ['breaking', 'proto', '--against', '.git#ref=HEAD~1,subdir=proto'], {
  cwd: root,
  stdio: 'inherit',
});
console.log('buf breaking: no breaking changes against HEAD~1');
