#!/usr/bin/env node
// ackbar-guest-build: builds a handler module into an Ackbar component, against the WIT this
// package ships. The engines are the project's own devDependencies, so their versions stay
// pinned by the project's lockfile:
//   quickjs (default)  componentize-qjs
//   starlingmonkey     @bytecodealliance/componentize-js and esbuild
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const USAGE = `usage: ackbar-guest-build <handler.js> [-o <out.wasm>] [--engine quickjs|starlingmonkey]
                          [--tools <node_modules dir>] [--module-root <dir>]

Builds the module exporting \`handle\` into a Wasm component (default: target/<name>.wasm).
  --engine   quickjs (default; componentize-qjs) or starlingmonkey (componentize-js + esbuild);
             also ACKBAR_JS_ENGINE
  --tools    where to load the engine packages from instead of the project's node_modules;
             also ACKBAR_JS_TOOLS
  --module-root
             quickjs: the directory the handler's imports may be read from (default: the
             project, widened to hold the packages node_modules links to)`;

const sdkRoot = fileURLToPath(new URL('..', import.meta.url));
const wit = join(sdkRoot, 'wit');

function fail(message) {
  console.error(`ackbar-guest-build: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {
    engine: process.env.ACKBAR_JS_ENGINE || 'quickjs',
    tools: process.env.ACKBAR_JS_TOOLS || null,
    moduleRoot: null,
    out: null,
    entry: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => argv[++i] ?? fail(`${arg} needs a value`);
    if (arg === '-o' || arg === '--output') opts.out = value();
    else if (arg === '--engine') opts.engine = value();
    else if (arg === '--tools') opts.tools = value();
    else if (arg === '--module-root') opts.moduleRoot = resolve(value());
    else if (arg === '-h' || arg === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (arg.startsWith('-')) fail(`unknown option ${arg}\n${USAGE}`);
    else if (opts.entry === null) opts.entry = arg;
    else fail(`one handler at a time\n${USAGE}`);
  }
  if (opts.entry === null) fail(`no handler given\n${USAGE}`);
  if (!['quickjs', 'starlingmonkey'].includes(opts.engine)) {
    fail(`unknown engine '${opts.engine}' (quickjs or starlingmonkey)`);
  }
  opts.entry = resolve(opts.entry);
  opts.out = resolve(opts.out ?? join('target', `${basename(opts.entry, extname(opts.entry))}.wasm`));
  return opts;
}

// The directory of the nearest package.json above `file`.
function projectRoot(file) {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return dirname(file);
  }
}

// Loads an engine package from --tools, else from the project, the way Node would import it
// from there (some are ESM-only, out of require.resolve's reach).
async function load(name, opts) {
  const start = opts.tools ? dirname(resolve(opts.tools)) : dirname(opts.entry);
  for (let dir = start; ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', name);
    if (existsSync(join(pkgDir, 'package.json'))) {
      const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
      return import(pathToFileURL(join(pkgDir, entryPoint(pkg))).href);
    }
    if (dirname(dir) === dir) break;
  }
  fail(
    `cannot find ${name} from ${start}: add it to the project's devDependencies ` +
      `(npm install --save-dev --save-exact ${name}) or pass --tools`,
  );
}

// The file `import(pkg.name)` loads: package.json "exports" for ".", else "main".
function entryPoint(pkg) {
  let target = pkg.exports;
  if (target && typeof target === 'object' && '.' in target) target = target['.'];
  while (target && typeof target === 'object' && !Array.isArray(target)) {
    const key = ['node', 'import', 'default'].find((k) => k in target);
    target = key ? target[key] : undefined;
  }
  return typeof target === 'string' ? target : pkg.main ?? 'index.js';
}

// The deepest directory holding all `paths`.
function commonAncestor(paths) {
  const split = paths.map((p) => p.split(sep));
  const common = [];
  for (let i = 0; split.every((s) => i < s.length && s[i] === split[0][i]); i++) common.push(split[0][i]);
  return common.join(sep) || sep;
}

// Where the packages the project links to really are: `file:` dependencies and workspaces are
// symlinks in node_modules.
function linkedPackages(project) {
  const found = [];
  const scan = (dir, depth) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isSymbolicLink()) {
        try {
          found.push(realpathSync(path));
        } catch {
          // A dangling link is not ours to report.
        }
      } else if (depth === 0 && e.isDirectory() && e.name.startsWith('@')) {
        scan(path, 1);
      }
    }
  };
  scan(join(project, 'node_modules'), 0);
  return found;
}

// componentize-qjs resolves imports itself (node_modules, package.json "exports" with the
// "import"/"default" conditions) but only to files under its module root, symlinks followed.
function moduleRoot(entry) {
  const project = realpathSync(projectRoot(entry));
  const roots = [project, ...linkedPackages(project)];
  try {
    // Installed above the project (a workspace) or linked there.
    roots.push(dirname(realpathSync(createRequire(entry).resolve('@ackbar/guest/package.json'))));
  } catch {
    // A handler without the SDK.
  }
  return commonAncestor(roots);
}

// The module the component is built from: the handler's `handle`, and `handleBatch` (world
// `batch-handler`), which runs `handle` on each message of the batch
// and reports each result through `batch.finish` as `handle`'s export would return it, so that
// a batch costs one call into the sandbox instead of one per message. A thrown Error (or
// anything that is not a handler error) is a trap, as from `handle`; the host then settles the
// message under way and delivers the rest again.
function batchEntry(handlerPath) {
  return `import * as handler from ${JSON.stringify(handlerPath)};
import * as batch from 'ackbar:plugin/batch@0.1.0';
if (typeof handler.handle !== 'function') {
  throw new TypeError(${JSON.stringify(`${basename(handlerPath)} does not export a function \`handle\``)});
}
export const handle = handler.handle;
export function handleBatch(msgs) {
  for (const msg of msgs) {
    let returned;
    try {
      returned = { tag: 'ok', val: handler.handle(msg) ?? null };
    } catch (e) {
      if (e === null || typeof e !== 'object' || e instanceof Error) throw e;
      returned = { tag: 'err', val: e };
    }
    if (!batch.finish(returned)) return;
  }
}
`;
}

async function buildQuickJs(opts) {
  const qjs = await load('componentize-qjs', opts);
  const componentize = qjs.componentize ?? qjs.default.componentize;
  // componentize-qjs resolves relative imports from the entry file, which must exist: the
  // entry stands beside the handler while the build runs.
  const entry = join(dirname(opts.entry), `.ackbar-entry-${process.pid}-${basename(opts.entry)}`);
  const source = batchEntry(`./${basename(opts.entry)}`);
  writeFileSync(entry, source);
  try {
    const { component } = await componentize({
      witPath: wit,
      world: 'batch-handler',
      jsSource: source,
      jsPath: entry,
      moduleRoot: opts.moduleRoot ?? moduleRoot(opts.entry),
      // Ackbar runs components without the component-model async ABI.
      sync: true,
    });
    return component;
  } finally {
    rmSync(entry, { force: true });
  }
}

async function buildStarlingMonkey(opts) {
  // StarlingMonkey resolves only relative paths: bundle the handler and its packages first,
  // with the WIT imports left to the engine.
  const esm = await load('esbuild', opts);
  const esbuild = esm.build ? esm : esm.default;
  const { componentize } = await load('@bytecodealliance/componentize-js', opts);
  const work = mkdtempSync(join(tmpdir(), 'ackbar-guest-build-'));
  try {
    const bundle = join(work, 'handler.js');
    await esbuild.build({
      stdin: {
        contents: batchEntry(opts.entry),
        resolveDir: dirname(opts.entry),
        sourcefile: 'ackbar-batch-entry.js',
      },
      bundle: true,
      format: 'esm',
      // No "node" condition: the package entry points that call the host, not the recorders.
      platform: 'neutral',
      mainFields: ['module', 'main'],
      external: ['ackbar:plugin/*', 'wasi:*'],
      outfile: bundle,
      logLevel: 'warning',
    });
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: wit,
      worldName: 'batch-handler',
      // Ackbar does not provide wasi:http.
      disableFeatures: ['http', 'fetch-event'],
    });
    return component;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const opts = parseArgs(process.argv.slice(2));
const component = await (opts.engine === 'quickjs' ? buildQuickJs(opts) : buildStarlingMonkey(opts)).catch(
  (err) => fail(`${relative(process.cwd(), opts.entry)}: ${err?.message ?? err}`),
);
mkdirSync(dirname(opts.out), { recursive: true });
const tmp = `${opts.out}.tmp`;
writeFileSync(tmp, component);
renameSync(tmp, opts.out);
console.log(`ackbar-guest-build: ${relative(process.cwd(), opts.out)} (${opts.engine}, ${component.length} bytes)`);
