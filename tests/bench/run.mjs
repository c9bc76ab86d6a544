// `npm run bench`: serves the benchmark page with Vite, runs it in headless Chromium (WebGPU),
// prints a readable table and the JSON, and writes the JSON to bench-results/.
// Every figure is a ratio against a baseline measured in the same page and run.
// Usage: npm run bench [-- --suite kernels,models] [--quick]; `--suite scale` (opt-in) generates its
// models on first use (tests/fixtures/generate_scale.py, Python with PyTorch and onnx).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createServer, runnerImport } from 'vite';
import { chromium } from 'playwright';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const suiteArg = args.find((a) => a.startsWith('--suite'));
const suites = suiteArg ? (suiteArg.includes('=') ? suiteArg.split('=')[1] : args[args.indexOf(suiteArg) + 1]) : '';
const quick = args.includes('--quick');

if (suites.split(',').includes('scale')) {
  for (const name of ['gpt2-4x256', 'gpt2-small']) {
    if (existsSync(resolve(root, 'tests/fixtures/scale', name, 'onnx/model.onnx_data'))) continue;
    console.log(`generating tests/fixtures/scale/${name} (once)…`);
    execFileSync('python3', [resolve(root, 'tests/fixtures/generate_scale.py'), name], { stdio: 'inherit' });
  }
}

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
let exitCode = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  const url = `http://127.0.0.1:${port}/tests/bench/index.html?suites=${encodeURIComponent(suites)}${quick ? '&quick=1' : ''}`;
  await page.goto(url);
  await page.waitForFunction(() => window.__bench?.done === true, null, { timeout: 0, polling: 1000 });
  const result = await page.evaluate(() => window.__bench);
  if (result.error) {
    console.error(`benchmark failed: ${result.error}`);
    exitCode = 1;
  }
  printTable(result);
  mkdirSync(resolve(root, 'bench-results'), { recursive: true });
  const file = resolve(root, 'bench-results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result, null, 2));
  console.log(`\nwritten to ${file}`);
} finally {
  await browser.close();
  await server.close();
}
process.exit(exitCode);

function printTable(result) {
  console.log(`\nadapter: ${result.adapter}`);
  for (const row of result.rows ?? []) {
    const cells = [row.suite.padEnd(8), row.name.padEnd(44), String(row.value).padStart(10), (row.unit ?? '').padEnd(8)];
    if (row.ratio !== undefined) cells.push(`${row.ratio.toFixed(2)}× ${row.baseline}`);
    if (row.goal !== undefined) cells.push(`(goal ${row.goal})`);
    console.log(cells.join('  '));
  }
}
