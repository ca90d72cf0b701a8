// The contract check (`proto:breaking`) run in a throwaway git repository holding a copy of proto/
// and this package's scripts, so each test can commit whatever history it needs.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

const packageDir = resolve(__dirname, '..');
const root = resolve(packageDir, '..', '..');
const binDir = join(packageDir, 'node_modules', '.bin');

interface Repo {
  dir: string;
  git(...args: string[]): string;
  commit(message: string): void;
  edit(path: string, from: string, to: string): void;
  /** Runs `node scripts/<script>` in the copy of packages/contracts, as `pnpm` would. */
  run(script: string): { status: number | null; output: string };
}

function makeRepo(): Repo {
  const dir = mkdtempSync(join(tmpdir(), 'contracts-breaking-'));
  cpSync(join(root, 'proto'), join(dir, 'proto'), { recursive: true });
  cpSync(join(packageDir, 'scripts'), join(dir, 'packages/contracts/scripts'), { recursive: true });
  if (existsSync(join(packageDir, 'baseline'))) {
    cpSync(join(packageDir, 'baseline'), join(dir, 'packages/contracts/baseline'), {
      recursive: true,
    });
  }
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: dir,
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 'test',
        GIT_AUTHOR_EMAIL: 'test@example.com',
        GIT_COMMITTER_NAME: 'test',
        GIT_COMMITTER_EMAIL: 'test@example.com',
      },
    });
  git('init', '--quiet', '--initial-branch=main');
  const repo: Repo = {
    dir,
    git,
    commit(message) {
      git('add', '--all');
      git('commit', '--quiet', '--allow-empty', '-m', message);
    },
    edit(path, from, to) {
      const file = join(dir, path);
      const text = readFileSync(file, 'utf8');
      if (!text.includes(from)) throw new Error(`${path} does not contain ${from}`);
      writeFileSync(file, text.replace(from, to));
    },
    run(script) {
      const result = spawnSync(process.execPath, [`scripts/${script}`], {
        cwd: join(dir, 'packages/contracts'),
        encoding: 'utf8',
        env: { ...process.env, PATH: `${binDir}${delimiter}${process.env.PATH ?? ''}` },
      });
      return { status: result.status, output: `${result.stdout}${result.stderr}` };
    },
  };
  repo.commit('contracts as on main');
  return repo;
}

describe('proto:breaking', () => {
  const repos: Repo[] = [];
  const repo = () => {
    const made = makeRepo();
    repos.push(made);
    return made;
  };
  afterAll(() => {
    for (const made of repos) rmSync(made.dir, { recursive: true, force: true });
  });

  it('passes on the committed contracts', () => {
    const result = repo().run('breaking.mjs');
    expect(result).toMatchObject({ status: 0 });
  });

  it('fails on a field rename even when another commit came after it', () => {
    const r = repo();
    r.edit('proto/user/v1/user.proto', 'string email = 2;', 'string email_address = 2;');
    r.commit('rename a field');
    writeFileSync(join(r.dir, 'NOTES.md'), 'an unrelated change\n');
    r.commit('something else');
    const result = r.run('breaking.mjs');
    expect(result.status).not.toBe(0);
    expect(result.output).toMatch(/email/);
  });

  it('fails on the rename in a shallow clone of that history, instead of skipping', () => {
    const r = repo();
    r.edit('proto/user/v1/user.proto', 'string email = 2;', 'string email_address = 2;');
    r.commit('rename a field');
    writeFileSync(join(r.dir, 'NOTES.md'), 'an unrelated change\n');
    r.commit('something else');
    const clone = mkdtempSync(join(tmpdir(), 'contracts-shallow-'));
    repos.push({ ...r, dir: clone });
    execFileSync('git', ['clone', '--quiet', '--depth=1', `file://${r.dir}`, clone]);
    const result = spawnSync(process.execPath, ['scripts/breaking.mjs'], {
      cwd: join(clone, 'packages/contracts'),
      encoding: 'utf8',
      env: { ...process.env, PATH: `${binDir}${delimiter}${process.env.PATH ?? ''}` },
    });
    expect(result.status).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).not.toMatch(/skipped/);
  });

  it('fails on a branch that renames a field and rewrites the baseline to match', () => {
    const r = repo();
    r.git('checkout', '--quiet', '-b', 'feature');
    r.edit('proto/user/v1/user.proto', 'string email = 2;', 'string email_address = 2;');
    rmSync(join(r.dir, 'packages/contracts/baseline'), { recursive: true });
    expect(r.run('baseline.mjs')).toMatchObject({ status: 0 });
    r.commit('rename a field, new baseline');
    const result = r.run('breaking.mjs');
    expect(result.status).not.toBe(0);
    expect(result.output).toMatch(/merge base/);
  });

  it('fails when the baseline is missing', () => {
    const r = repo();
    rmSync(join(r.dir, 'packages/contracts/baseline'), { recursive: true });
    r.commit('no baseline');
    const result = r.run('breaking.mjs');
    expect(result.status).not.toBe(0);
    expect(result.output).toMatch(/baseline/);
  });

  it('accepts an additive change only once the baseline is refreshed, and refuses to refresh it over a breaking one', () => {
    const r = repo();
    r.edit(
      'proto/user/v1/user.proto',
      'string email = 2;',
      'string email = 2;\n  // Added later.\n  string nickname = 99;',
    );
    const stale = r.run('breaking.mjs');
    expect(stale.status).not.toBe(0);
    expect(stale.output).toMatch(/proto:baseline/);
    expect(r.run('baseline.mjs')).toMatchObject({ status: 0 });
    expect(r.run('breaking.mjs')).toMatchObject({ status: 0 });

    r.edit('proto/user/v1/user.proto', 'string nickname = 99;', 'string nick = 99;');
    const refused = r.run('baseline.mjs');
    expect(refused.status).not.toBe(0);
    expect(refused.output).toMatch(/nickname/);
  });
});
