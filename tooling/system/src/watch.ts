// Watch mode for `pnpm dev`: a saved file rebuilds the workspace package it belongs to and the
// packages that depend on it, then restarts only the apps among them, every replica one at a time
// (a rolling restart: the app keeps serving throughout), while PostgreSQL, its data and the other
// apps keep running.
//
// Why the compiler runs in this process: `tsc -p tsconfig.build.json` of one app takes 3-7 s on a
// busy 2-core machine, most of it reading, parsing and type-checking files that did not change
// (node's types, Prisma's, the generated contracts), and turbo adds ~1 s on top. Here each
// package keeps a TypeScript builder program between saves (what `tsc --watch` does), and every
// package shares one cache of parsed files, so a save re-checks and re-emits only the files it can
// affect: 0.1-0.5 s for an app (measured: a save in apps/order/src restarts order ~1 s later). The output is the same as `pnpm build`'s (same compiler, same
// tsconfig.build.json, into dist/); a build with errors writes nothing, so dist/ and the running
// process stay at the last good build.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  statSync,
  watch,
  writeFileSync,
  type FSWatcher,
} from 'node:fs';
import { delimiter, dirname, join, relative, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLogs } from 'node:timers/promises';
import ts from 'typescript';
import { APPS, type AppName, type LogSink, type RunningSystem } from './system';

/** A workspace package under apps/ or packages/, as its package.json describes it. */
export interface WorkspacePackage {
  /** Its directory's name, which is also the app's name: `order`, `service-kit`. */
  name: string;
  dir: string;
  app: AppName | undefined;
  /** The workspace packages it depends on at run time (`dependencies`), by name. */
  deps: string[];
  scripts: Record<string, string>;
}

/** The package generated from proto/ (`generate` runs buf and ts-proto). */
const PROTO_PACKAGE = 'contracts';

/**
 * The workspace packages the apps are made of, dependencies before their dependents (the order to
 * build them in). Only `dependencies` count: devDependencies are for tests.
 */
export function readWorkspace(root: string): WorkspacePackage[] {
  const found: { id: string; pkg: WorkspacePackage; depIds: string[] }[] = [];
  for (const group of ['packages', 'apps']) {
    // Apps in start order (user, order, gateway), so the log lists them that way.
    const rank = (entry: string) => {
      const index = APPS.indexOf(entry);
      return index === -1 ? APPS.length : index;
    };
    const entries = readdirSync(join(root, group)).sort((a, b) => rank(a) - rank(b));
    for (const entry of entries) {
      const dir = join(root, group, entry);
      if (!existsSync(join(dir, 'package.json'))) continue;
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name: string;
        dependencies?: Record<string, string>;
        scripts?: Record<string, string>;
      };
      found.push({
        id: manifest.name,
        pkg: {
          name: entry,
          dir,
          app: group === 'apps' ? APPS.find((app) => app === entry) : undefined,
          deps: [],
          scripts: manifest.scripts ?? {},
        },
        depIds: Object.entries(manifest.dependencies ?? {})
          .filter(([, version]) => version.startsWith('workspace:'))
          .map(([id]) => id),
      });
    }
  }
  const byId = new Map(found.map(({ id, pkg }) => [id, pkg]));
  const ordered: WorkspacePackage[] = [];
  const visit = ({ pkg, depIds }: (typeof found)[number]) => {
    if (ordered.includes(pkg)) return;
    // A workspace dependency outside apps/ and packages/ (none today) is not watched.
    const deps = found.filter(({ id }) => depIds.includes(id) && byId.has(id));
    deps.forEach(visit);
    pkg.deps = deps.map((dep) => dep.pkg.name);
    ordered.push(pkg);
  };
  found.forEach(visit);
  return ordered;
}

/** Editors' temporary and backup files (vim's 4913 and .swp, emacs' #x# and x~, .x.tmp). */
const NOISE = /(^|\/)(\.[^/]*|#[^/]*#|\d+|[^/]*~)$/;

/**
 * What a changed file (relative to the root, `/`-separated) asks for: the package to rebuild, and
 * whether to run its `generate` script first (a .proto, a Prisma schema); undefined for a file no
 * build reads. Generated code is ignored: `generate` writes it, so it would only echo our own work.
 */
export function classify(file: string): { pkg: string; generate: boolean } | undefined {
  if (NOISE.test(file)) return undefined;
  if (file.startsWith('proto/')) return { pkg: PROTO_PACKAGE, generate: true };
  const match = /^(?:apps|packages)\/([^/]+)\/(src|prisma)\/(.+)$/.exec(file);
  if (!match) return undefined;
  const [, pkg, area, rest] = match as unknown as [string, string, string, string];
  if (area === 'src' && (/(^|\/)generated(\/|$)/.test(rest) || rest.endsWith('.test.ts'))) {
    return undefined; // generated code, or a test (tsconfig.build.json leaves them out)
  }
  // A migration needs only a restart (each service applies its migrations as it starts); building
  // anyway costs ~0.1 s and keeps one path through the loop.
  return { pkg, generate: area === 'prisma' && rest === 'schema.prisma' };
}

export interface Plan {
  /** Packages whose `generate` script runs before their build. */
  generate: Set<string>;
  /** Packages to rebuild, in build order: the changed ones and everything depending on them. */
  build: WorkspacePackage[];
  /** The apps among them: these restart. */
  restart: AppName[];
  /** The changed packages (what the log line starts with). */
  changed: string[];
}

/** Work a round could not do (a build failed, an app did not start), left to the next one. */
export interface Owed {
  build: Set<string>;
  generate: Set<string>;
}

/** The work a set of changed files (and what an earlier round could not do) means. */
export function plan(
  workspace: readonly WorkspacePackage[],
  files: Iterable<string>,
  owed: Owed = { build: new Set(), generate: new Set() },
): Plan {
  const generate = new Set(owed.generate);
  const changed = new Set<string>();
  for (const file of files) {
    const what = classify(file);
    if (!what || !workspace.some((pkg) => pkg.name === what.pkg)) continue;
    changed.add(what.pkg);
    if (what.generate) generate.add(what.pkg);
  }
  const dirty = new Set([...changed, ...owed.build, ...generate]);
  const build: WorkspacePackage[] = [];
  for (const pkg of workspace) {
    // In build order, so a dependency's being dirty is known before its dependents are looked at.
    if (dirty.has(pkg.name) || pkg.deps.some((dep) => dirty.has(dep))) {
      dirty.add(pkg.name);
      build.push(pkg);
    }
  }
  return {
    generate,
    build,
    restart: build.flatMap((pkg) => (pkg.app ? [pkg.app] : [])),
    changed: workspace.filter((pkg) => changed.has(pkg.name)).map((pkg) => pkg.name),
  };
}

/**
 * Parsed source files by path, shared by every package's compiler: the types of node, Prisma or the
 * contracts are parsed once, not once per package, and kept until the file's content changes. A
 * file's `version` (what the builder compares to decide what a save affects) is a hash of its
 * text, so a file rewritten with the same content (a touch, a dependency's unchanged .d.ts)
 * affects nothing.
 */
const sourceFiles = new Map<string, { mtimeMs: number; version: string; file: ts.SourceFile }>();

function sourceFile(
  fileName: string,
  target: ts.ScriptTarget | ts.CreateSourceFileOptions,
): ts.SourceFile | undefined {
  const options = typeof target === 'object' ? target : { languageVersion: target };
  const key = `${options.languageVersion}:${options.impliedNodeFormat}:${fileName}`;
  const mtimeMs = statSync(fileName, { throwIfNoEntry: false })?.mtimeMs;
  if (mtimeMs === undefined) return undefined;
  const cached = sourceFiles.get(key);
  if (cached?.mtimeMs === mtimeMs) return cached.file;
  const text = ts.sys.readFile(fileName);
  if (text === undefined) return undefined;
  const version = createHash('sha1').update(text).digest('base64');
  if (cached?.version === version) {
    cached.mtimeMs = mtimeMs;
    return cached.file;
  }
  const file = Object.assign(ts.createSourceFile(fileName, text, target), { version });
  sourceFiles.set(key, { mtimeMs, version, file });
  return file;
}

/** How many files writeOutput has written. */
let written = 0;

/**
 * Writes a compiled file only if its content changed, and atomically: the first build after
 * start-up rewrites nothing (`pnpm build` wrote the same), and an app or test starting from dist/
 * meanwhile reads the old file or the new one, never half of one.
 */
function writeOutput(fileName: string, text: string): void {
  if (existsSync(fileName) && readFileSync(fileName, 'utf8') === text) return;
  written++;
  mkdirSync(dirname(fileName), { recursive: true });
  const partial = `${fileName}.${process.pid}.tmp`;
  writeFileSync(partial, text);
  renameSync(partial, fileName);
}

/** One package's incremental build: tsconfig.build.json into dist/, like its `build` script. */
class Compiler {
  private builder: ts.EmitAndSemanticDiagnosticsBuilderProgram | undefined;

  constructor(private readonly dir: string) {}

  /** Builds; resolves with the errors, if any (then nothing was written). */
  async build(): Promise<readonly ts.Diagnostic[]> {
    // Read the config each time: a new file in src/ joins the build.
    const config = ts.getParsedCommandLineOfConfigFile(
      join(this.dir, 'tsconfig.build.json'),
      undefined,
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
          throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
        },
      },
    )!;
    const host = ts.createCompilerHost(config.options);
    host.getSourceFile = sourceFile;
    const builder = ts.createEmitAndSemanticDiagnosticsBuilderProgram(
      config.fileNames,
      config.options,
      host,
      this.builder,
      ts.getConfigFileParsingDiagnostics(config),
    );
    this.builder = builder;
    try {
      // The order tsc reports in: a file that does not parse is not type-checked.
      let errors = [
        ...builder.getConfigFileParsingDiagnostics(),
        ...builder.getOptionsDiagnostics(),
        ...builder.getSyntacticDiagnostics(),
      ];
      if (errors.length === 0) {
        // One affected file at a time, so the apps' logs and Ctrl-C get through in between.
        while (builder.getSemanticDiagnosticsOfNextAffectedFile()) await yieldToLogs();
        errors = [...builder.getGlobalDiagnostics(), ...builder.getSemanticDiagnostics()];
      }
      errors = errors.filter((diagnostic) => diagnostic.category === ts.DiagnosticCategory.Error);
      if (errors.length > 0) return errors; // emits nothing: the files stay owed to the next build
      const emitted: ts.Diagnostic[] = [];
      for (;;) {
        const next = builder.emitNextAffectedFile(writeOutput);
        if (!next) break;
        emitted.push(...next.result.diagnostics);
        await yieldToLogs();
      }
      return emitted.filter((diagnostic) => diagnostic.category === ts.DiagnosticCategory.Error);
    } finally {
      // What `tsc --build --watch` does between builds: keep the builder's state (file versions,
      // signatures, diagnostics) but drop the program and its type checker, the bulk of the memory
      // (~170 MB instead of ~300 MB of heap for the six packages). The parsed files stay cached.
      (builder as { releaseProgram?: () => void }).releaseProgram?.();
    }
  }
}

/** Runs a package.json script as `pnpm run` would (its and the root's node_modules/.bin on PATH), without pnpm's ~0.5 s start-up. */
function runScript(
  root: string,
  pkg: WorkspacePackage,
  script: string,
): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn(script, {
      cwd: pkg.dir,
      shell: true,
      env: {
        ...process.env,
        // The runner's Node first: scripts run on the same version as the apps.
        PATH: [
          dirname(process.execPath),
          join(pkg.dir, 'node_modules', '.bin'),
          join(root, 'node_modules', '.bin'),
          process.env.PATH,
        ].join(delimiter),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error) => resolveRun({ ok: false, output: error.message }));
    child.on('close', (code) => resolveRun({ ok: code === 0, output }));
  });
}

/** A failed script's output without the stack trace Node adds after the script's own message. */
const withoutStack = (output: string) =>
  output.split(/\n(?=node:internal\/|file:\/\/\/|\/\S+\.m?js:\d+\n)/)[0]!;

/** What a `build` script does besides `tsc -p tsconfig.build.json` (contracts copy a file). */
function afterCompile(pkg: WorkspacePackage): string | undefined {
  return /^tsc -p tsconfig\.build\.json\s*&&\s*(.+)$/.exec(pkg.scripts.build ?? '')?.[1];
}

const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;

export interface WatchOptions {
  /** The repository whose apps/, packages/ and proto/ are watched (the runner's ROOT). */
  root: string;
  system: RunningSystem;
  onLog: LogSink;
  /** Quiet time after a change before building: an editor's save is often several writes. */
  debounceMs?: number;
}

export interface Watcher {
  /** Resolves once every package has its compiler (the first build of each, at start-up). */
  readonly ready: Promise<void>;
  /** Stops watching; resolves once a rebuild or restart in progress has ended. */
  close(): Promise<void>;
}

/**
 * Watches apps/(name)/src, apps/(name)/prisma, packages/(name)/src and proto/, and after each
 * change rebuilds and restarts what it affects (see `plan`). One round of work at a time: changes
 * saved meanwhile make one more round when it ends. A package that does not build prints its
 * errors, is not restarted (nor is anything depending on it), and is built again with the next save.
 */
export function watchSystem(options: WatchOptions): Watcher {
  const { root, system } = options;
  const log = (line: string) => options.onLog('system', line);
  const workspace = readWorkspace(root);
  const compilers = new Map(workspace.map((pkg) => [pkg.name, new Compiler(pkg.dir)]));
  const changedFiles = new Set<string>();
  let owed: Owed = { build: new Set(), generate: new Set() };
  const lastErrors = new Map<string, string>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let working: Promise<void> | undefined;
  let warmedUp = false;

  const format = (errors: readonly ts.Diagnostic[]) =>
    ts.formatDiagnostics(errors, {
      getCanonicalFileName: (name) => name,
      getCurrentDirectory: () => root,
      getNewLine: () => '\n',
    });
  const printLines = (text: string) => {
    for (const line of text.trimEnd().split('\n')) log(`  ${line}`);
  };

  /** Generates and builds, in order; a package whose dependency failed is not built. Returns the failures. */
  const build = async (work: Plan): Promise<Map<string, string>> => {
    const failures = new Map<string, string>();
    for (const pkg of work.build) {
      if (closed || pkg.deps.some((dep) => failures.has(dep))) {
        failures.set(pkg.name, '');
        continue;
      }
      const generate = work.generate.has(pkg.name) && pkg.scripts.generate;
      const writes = written;
      const steps = [
        async () => (generate ? runScript(root, pkg, generate) : { ok: true, output: '' }),
        async () => {
          const errors = await compilers.get(pkg.name)!.build();
          return { ok: errors.length === 0, output: format(errors) };
        },
        async () => {
          // Like the compile, it leaves dist/ alone when nothing changed (the build at start-up).
          const script = afterCompile(pkg);
          return script && (generate || written > writes)
            ? runScript(root, pkg, script)
            : { ok: true, output: '' };
        },
      ];
      for (const step of steps) {
        const { ok, output } = await step();
        if (!ok) {
          failures.set(pkg.name, withoutStack(output) || '(no output)');
          break;
        }
      }
    }
    return failures;
  };

  /**
   * A rolling restart of each app in turn, in start order: a new process starts beside each old one
   * and takes its place once ready. One that does not start leaves the old process serving the
   * last good build; a save retries it.
   */
  const restart = async (apps: readonly AppName[]): Promise<AppName[]> => {
    const failed: AppName[] = [];
    for (const app of apps) {
      if (closed) break;
      try {
        await system.rollingRestart([app]);
      } catch (error) {
        // (Closing: the runner is stopping, which aborts a start in progress.)
        if (closed) break;
        failed.push(app);
        log(`${app} did not start: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return failed;
  };

  const round = async (saved: string[]) => {
    const work = plan(workspace, saved, owed);
    if (work.build.length === 0) return;
    const begun = performance.now();
    // What was saved, files still there first: an editor's or sed's temporary file is gone by now.
    const shown = saved
      .filter((file) => classify(file))
      .sort((a, b) => Number(existsSync(join(root, b))) - Number(existsSync(join(root, a))));
    const why =
      shown.length > 0
        ? `${plan(workspace, shown).changed.join(', ')}: ${shown[0]}${shown.length > 1 ? ` and ${shown.length - 1} more` : ''} changed`
        : 'retrying';
    const failures = await build(work);
    if (closed) return;

    // What does not build is owed to the next round (with its `generate`); its apps keep running
    // the last good build. What did build restarts.
    owed = {
      build: new Set(failures.keys()),
      generate: new Set([...work.generate].filter((name) => failures.has(name))),
    };
    if (failures.size > 0) {
      const kept = work.build
        .filter((pkg) => pkg.app && failures.has(pkg.name) && system.apps[pkg.app]?.running)
        .map((pkg) => pkg.name);
      // The ones that failed (a package whose dependency failed was not built at all).
      const broken = [...failures].filter(([, output]) => output).map(([name]) => name);
      log(
        `${why} -> ${broken.join(', ')} ${broken.length > 1 ? 'do' : 'does'} not build` +
          (kept.length > 0
            ? `; ${kept.join(', ')} ${kept.length > 1 ? 'keep' : 'keeps'} running the last good build`
            : ''),
      );
      for (const [name, output] of failures) {
        if (!output) continue; // not built: a dependency failed
        // Saving again without fixing it (or saving another file) does not repeat the same errors.
        if (lastErrors.get(name) === output) log(`  ${name}: the same errors as before`);
        else printLines(output);
        lastErrors.set(name, output);
      }
    }
    for (const name of lastErrors.keys()) if (!failures.has(name)) lastErrors.delete(name);
    const built = work.build.filter((pkg) => !failures.has(pkg.name));
    if (built.length === 0) return;

    const generated = built.filter((pkg) => work.generate.has(pkg.name)).map((pkg) => pkg.name);
    const summary = `${why} -> ${generated.length > 0 ? `regenerated ${generated.join(', ')}, ` : ''}rebuilt ${built.map((pkg) => pkg.name).join(', ')} in ${seconds(begun)}`;
    const apps = built.flatMap((pkg) => (pkg.app ? [pkg.app] : []));
    if (apps.length === 0) return log(summary);
    const restarting = performance.now();
    const failed = await restart(apps);
    if (closed) return;
    // An app that did not start is owed a restart: the next save (of anything) tries again.
    for (const app of failed) owed.build.add(app);
    const restarted = apps.filter((app) => !failed.includes(app));
    log(
      `${summary}, ${restarted.length > 0 ? `restarted ${restarted.join(', ')} in ${seconds(restarting)}` : 'restarted nothing'}` +
        (failed.length > 0 ? ` (${failed.join(', ')} did not start; the next save retries)` : ''),
    );
  };

  // The first build of every package, now rather than at the first save, so that the first save
  // takes as long as any other. The sources are those `pnpm build` just compiled: this checks them,
  // and finds nothing to write. A change saved meanwhile waits for it.
  const ready = Promise.withResolvers<void>();
  const warmUp = async () => {
    const started = performance.now();
    const failures = await build({
      generate: new Set(),
      build: workspace,
      restart: [],
      changed: [],
    });
    if (closed) return;
    if (failures.size > 0) {
      owed = { build: new Set(failures.keys()), generate: new Set() };
      log('watch: the sources do not build:');
      for (const output of failures.values()) if (output) printLines(output);
    }
    log(
      `watching apps/*/src, apps/*/prisma, packages/*/src and proto/ (compilers ready in ${seconds(started)})`,
    );
  };

  const guarded = async (job: () => Promise<void>) => {
    try {
      await job();
    } catch (error) {
      log(`watch: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    }
  };
  /** Runs the warm-up, then rounds until no change is left; never two at once. */
  const work = () => {
    working ??= (async () => {
      if (!warmedUp) {
        warmedUp = true;
        await guarded(warmUp);
        ready.resolve();
      }
      while (changedFiles.size > 0 && !closed) {
        const files = [...changedFiles];
        changedFiles.clear();
        await guarded(() => round(files));
      }
    })().finally(() => (working = undefined));
  };

  const watchers: FSWatcher[] = [];
  const roots = [
    join(root, 'proto'),
    ...workspace.flatMap((pkg) => [join(pkg.dir, 'src'), join(pkg.dir, 'prisma')]),
  ];
  for (const dir of roots.filter((dir) => existsSync(dir))) {
    // Recursive watching works on Linux since Node 20 (one inotify watch per directory).
    const watcher = watch(dir, { recursive: true }, (_event, name) => {
      if (!name || closed) return;
      const file = relative(root, join(dir, name)).split(sep).join('/');
      if (!classify(file)) return;
      changedFiles.add(file);
      clearTimeout(timer);
      timer = setTimeout(work, options.debounceMs ?? 150);
    });
    watcher.on('error', (error) => log(`watch ${relative(root, dir)}: ${error.message}`));
    watchers.push(watcher);
  }
  work();

  return {
    ready: ready.promise,
    close: async () => {
      closed = true;
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
      await working;
    },
  };
}
