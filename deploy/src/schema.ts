import { dirname, join } from 'node:path';
import ts from 'typescript';
import type { KubeObject } from './objects';

/**
 * Validates Kubernetes objects against the API's types, offline, refusing unknown fields at every
 * depth. `kubectl apply --validate=strict` needs a cluster's OpenAPI; `kubernetes-models` checks
 * types and required fields but lets an unknown field (a typo like `imagee`) through, and the API
 * server would drop such a field silently (or refuse it, depending on its settings): neither is good
 * enough for manifests nobody applies before they reach a cluster.
 *
 * `kubernetes-types` is the API's OpenAPI definitions as TypeScript interfaces (required fields are
 * required, `apiVersion` and `kind` are literal types). Each object becomes an object literal
 * annotated with its kind's interface, and the TypeScript compiler checks it: a wrong type, a
 * missing required field and an unknown field (TypeScript's excess-property check on object
 * literals, applied at every nesting level) are all errors. Each error is reported with the object
 * and the path of the field it is about.
 */

export interface SchemaProblem {
  /** `Kind/name`. */
  object: string;
  /** Where in the object, e.g. `spec.template.spec.containers[0].imagee`; '' for the object itself. */
  path: string;
  message: string;
}

/** `apps/v1` -> `kubernetes-types/apps/v1`; `v1` (the core group) -> `kubernetes-types/core/v1`. */
function typesModule(apiVersion: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
  // Groups are named by their first label: networking.k8s.io -> networking, rbac.authorization.k8s.io -> rbac.
  return `kubernetes-types/${group!.split('.')[0]}/${version}`;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Writes `value` as a TypeScript expression and records where each value starts in it, with its
 * path, so that a compiler diagnostic can be traced back to the field it is about.
 */
function writeLiteral(value: unknown, path: string, out: { text: string; marks: Mark[] }): void {
  out.marks.push({ offset: out.text.length, path });
  if (Array.isArray(value)) {
    out.text += '[';
    value.forEach((item, index) => {
      if (index > 0) out.text += ', ';
      writeLiteral(item, `${path}[${index}]`, out);
    });
    out.text += ']';
  } else if (value !== null && typeof value === 'object') {
    out.text += '{';
    Object.entries(value).forEach(([key, item], index) => {
      if (index > 0) out.text += ', ';
      const child = path ? `${path}.${key}` : key;
      out.marks.push({ offset: out.text.length, path: child });
      out.text += `${IDENTIFIER.test(key) ? key : JSON.stringify(key)}: `;
      writeLiteral(item, child, out);
    });
    out.text += '}';
  } else {
    out.text += JSON.stringify(value) ?? 'undefined';
  }
}

interface Mark {
  offset: number;
  path: string;
}

const COMPILER_OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10,
  types: [],
  skipLibCheck: true,
};

/** Checks every object; returns every problem found (none: all valid). */
export function validateObjects(objects: readonly KubeObject[]): SchemaProblem[] {
  // The file sits in this package, so `kubernetes-types` resolves from its node_modules.
  const fileName = join(dirname(__dirname), '__manifests__.ts');
  const modules = new Map<string, string>();
  const out = { text: '', marks: [] as Mark[] };
  /** Per object: where its declaration starts, where its literal starts, and where it ends. */
  const spans: { declared: number; start: number; end: number; object: string; marks: Mark[] }[] =
    [];
  const problems: SchemaProblem[] = [];

  objects.forEach((object, index) => {
    const name = `${object.kind}/${object.metadata?.name ?? '(no name)'}`;
    if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') {
      problems.push({ object: name, path: '', message: 'apiVersion and kind are required' });
      return;
    }
    const module = typesModule(object.apiVersion);
    if (!modules.has(module)) modules.set(module, `api${modules.size}`);
    const declared = out.text.length;
    out.text += `export const object${index}: ${modules.get(module)}.${object.kind} = `;
    const start = out.text.length;
    const marks: Mark[] = [];
    const literal = { text: '', marks };
    writeLiteral(object, '', literal);
    out.text += `${literal.text};\n`;
    spans.push({
      declared,
      start,
      end: out.text.length,
      object: name,
      marks: marks.map((mark) => ({ offset: start + mark.offset, path: mark.path })),
    });
  });

  const imports = [...modules]
    .map(([module, alias]) => `import type * as ${alias} from '${module}';\n`)
    .join('');
  const source = imports + out.text;
  const shift = imports.length;

  const host = ts.createCompilerHost(COMPILER_OPTIONS);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) =>
    name === fileName
      ? ts.createSourceFile(name, source, languageVersion, true)
      : getSourceFile(name, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], COMPILER_OPTIONS, host);

  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    const position = (diagnostic.start ?? 0) - shift;
    if (diagnostic.file?.fileName !== fileName || position < 0) {
      // An import that does not resolve: an apiVersion kubernetes-types does not know.
      const line =
        diagnostic.file && diagnostic.start !== undefined
          ? source.slice(diagnostic.start).split('\n')[0]
          : '';
      problems.push({ object: '(manifests)', path: line ?? '', message });
      continue;
    }
    const span = spans.find(
      (candidate) => position >= candidate.declared && position < candidate.end,
    );
    if (!span) {
      problems.push({ object: '(manifests)', path: '', message });
      continue;
    }
    // The innermost value or key that starts at or before the error's position ('' when the error
    // is about the declaration: an unknown kind, a required top-level field missing).
    const mark = span.marks.filter((candidate) => candidate.offset <= position).at(-1);
    problems.push({ object: span.object, path: mark?.path ?? '', message });
  }
  return problems;
}
