// `npm run bench`: runs the benchmark suites and prints a readable table and the JSON, which it
// also writes to bench-results/. Every figure is a ratio against a baseline measured in the same
// run, next to its absolute value.
//   --runtime browser (default): serves the benchmark page with Vite and runs it in headless
//     Chromium (WebGPU), with the tests' flags;
//   --runtime node: runs the same suites in Node on Dawn (the `webgpu` package), via node-run.mjs.
// Usage: npm run bench [-- --suite kernels,models] [--quick] [--runtime node]; `--suite scale`
// (opt-in, browser) generates its models on first use (tests/fixtures/generate_scale.py, Python
// with PyTorch and onnx), `--suite scale-ratios` (its step/forward part) and `--suite
// scale-recompute` (the time of recomputing activations) only the 4×256 one;
// `--suite profile` times each dispatch of a training step and of the forward.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer, runnerImport } from 'vite';
import { chromium } from 'playwright';
import { runInNode } from './node-run.mjs';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const option = (name) => {
  const a = args.find((x) => x === name || x.startsWith(`${name}=`));
  return a === undefined ? undefined : a.includes('=') ? a.slice(name.length + 1) : args[args.indexOf(a) + 1];
};
const suites = option('--suite') ?? '';
const quick = args.includes('--quick');
const runtime = option('--runtime') ?? 'browser';
if (!['browser', 'node'].includes(runtime)) {
  console.error(`--runtime must be browser or node, got '${runtime}'`);
  process.exit(2);
}

const selected = suites.split(',');
if (['scale', 'scale-ratios', 'scale-recompute', 'profile'].some((s) => selected.includes(s))) {
  // The generator needs PyTorch and onnx: Debian's python3-torch / python3-onnx live under
  // /usr/bin/python3, which a pyenv or venv python3 earlier on PATH would hide. PYTHON overrides.
  const python = process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  // --suite scale-ratios, scale-recompute and profile need only the 4×256 model.
  for (const name of selected.includes('scale') ? ['gpt2-4x256', 'gpt2-small'] : ['gpt2-4x256']) {
    if (existsSync(resolve(root, 'tests/fixtures/scale', name, 'onnx/model.onnx_data'))) continue;
    console.log(`generating tests/fixtures/scale/${name} (once)…`);
    execFileSync(python, [resolve(root, 'tests/fixtures/generate_scale.py'), name], { stdio: 'inherit' });
  }
}

const result = runtime === 'node' ? await runNode() : await runBrowser();
let exitCode = 0;
if (result.error) {
  console.error(`benchmark failed: ${result.error}`);
  exitCode = 1;
}
printTable(result);
mkdirSync(resolve(root, 'bench-results'), { recursive: true });
const file = resolve(root, 'bench-results', `bench-${runtime}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(JSON.stringify(result, null, 2));
console.log(`\nwritten to ${file}`);
process.exit(exitCode);

async function runNode() {
  const out = join(mkdtempSync(join(tmpdir(), 'ia3-bench-')), 'result.json');
  // A session of its own, as Playwright gives Chromium: the same share of a busy CPU (node-run.mjs).
  const status = await runInNode('tests/bench/node.ts', [out, suites, ...(quick ? ['--quick'] : [])], { ownSession: true });
  try {
    return JSON.parse(readFileSync(out, 'utf8'));
  } catch {
    return { runtime: 'node', adapter: '', rows: [], done: false, quick, error: `the Node benchmark exited with status ${status} before writing its result` };
  }
}

async function runBrowser() {
  // The same Chromium and flags as the tests (tests/util/chromium.ts, TypeScript: loaded via Vite).
  const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));

  const server = await createServer({
    root,
    configFile: false,
    logLevel: 'warn',
    // No hot reload: an edit elsewhere in the tree must not restart a running benchmark.
    server: { port: 0, host: '127.0.0.1', hmr: false, watch: null },
  });
  await server.listen();
  const { port } = server.httpServer.address();
  // Plus exact JS heap figures and gc() for the scale suite's heap measurement.
  const launch = chromiumUtil.chromiumLaunchOptions();
  const browser = await chromium.launch({ ...launch, args: [...launch.args, '--enable-precise-memory-info', '--js-flags=--expose-gc'], headless: true });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => console.log(`[page] ${m.text()}`));
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
    const url = `http://127.0.0.1:${port}/tests/bench/index.html?suites=${encodeURIComponent(suites)}${quick ? '&quick=1' : ''}`;
    await page.goto(url);
    await page.waitForFunction(() => window.__bench?.done === true, null, { timeout: 0, polling: 1000 });
    return await page.evaluate(() => window.__bench);
  } finally {
    await browser.close();
    await server.close();
  }
}

function printTable(result) {
  const info = result.adapterInfo;
  console.log(`\nruntime: ${result.runtime}; adapter: ${result.adapter}${info ? ` (vendor ${info.vendor || '?'}, architecture ${info.architecture || '?'})` : ''}`);
  for (const row of result.rows ?? []) {
    const cells = [row.suite.padEnd(8), row.name.padEnd(44), String(row.value).padStart(10), (row.unit ?? '').padEnd(8)];
    if (row.ratio !== undefined) cells.push(`${row.ratio.toFixed(2)}× ${row.baseline}`);
    if (row.goal !== undefined) cells.push(`(goal ${row.goal})`);
    console.log(cells.join('  '));
  }
}
