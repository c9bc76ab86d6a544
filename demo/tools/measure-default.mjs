// Measures the demo's FULL default spam-filter run on the built page, in headless Chromium with
// the project's WebGPU flags: validation accuracy before training, the training run, validation
// accuracy after, then test accuracy. Prints one JSON object (the figures the README quotes).
//
//   node demo/tools/measure-default.mjs              # builds demo-dist/, runs the defaults
//   node demo/tools/measure-default.mjs --no-build   # uses the existing demo-dist/
//   node demo/tools/measure-default.mjs --query '?steps=20&eval=64'   # other settings
import { resolve } from 'node:path';
import { build, preview, runnerImport } from 'vite';
import { chromium } from 'playwright';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const query = args.includes('--query') ? args[args.indexOf('--query') + 1] ?? '' : '';
const configFile = resolve(root, 'vite.config.ts');
// The same Chromium and flags as the tests (tests/util/chromium.ts, TypeScript: loaded via Vite).
const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));

if (!args.includes('--no-build')) await build({ configFile, logLevel: 'warn' });
const server = await preview({ configFile, preview: { port: 0, host: '127.0.0.1' }, logLevel: 'warn' });
const origin = `http://127.0.0.1:${server.httpServer.address().port}`;
const browser = await chromium.launch({ ...chromiumUtil.chromiumLaunchOptions(), headless: true });
const log = (s) => process.stderr.write(`[measure] ${s}\n`);
const HOUR = 3_600_000;
let exitCode = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1500 } });
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !/^(data|blob):/.test(r.url())) foreign.push(r.url());
  });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(`${origin}/${query}`);
  await page.waitForSelector('#status.ok, #status.error', { timeout: 600_000 });
  const status = await page.locator('#status').textContent();
  if ((await page.locator('#status').getAttribute('class')) !== 'ok') throw new Error(`the page did not open: ${status}`);
  const adapter = await page.locator('#adapter').textContent();
  const settings = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#settings-form input')].map((i) => [i.name, i.value])));
  log(`adapter ${adapter}; settings ${JSON.stringify(settings)}`);

  const t0 = Date.now();
  await page.click('#train');
  // Progress to stderr once a minute, so a long run shows it is alive.
  const ticker = setInterval(() => void page.locator('#progress-text').textContent().then((t) => log(t), () => undefined), 60_000);
  await page.waitForSelector('#progress-text[data-state=completed]', { timeout: HOUR });
  clearInterval(ticker);
  const runSeconds = (Date.now() - t0) / 1000;
  const text = async (sel) => (await page.locator(sel).textContent()) ?? '';
  const pct = (s) => {
    const m = /([\d.]+)% of (\d+)/.exec(s);
    return m ? { accuracy: Number(m[1]) / 100, examples: Number(m[2]) } : null;
  };
  const progress = await text('#progress-text');
  const steps = Number(/(\d+) steps in/.exec(progress)?.[1]);
  const trainClock = /steps in (\d+):(\d+)/.exec(progress);

  const t1 = Date.now();
  await page.click('#eval-test');
  await page.waitForFunction(() => /%/.test(document.getElementById('acc-test')?.textContent ?? ''), null, { timeout: HOUR });
  const testSeconds = (Date.now() - t1) / 1000;
  const chart = page.locator('#loss-chart');
  const result = {
    adapter,
    settings,
    validationBefore: pct(await text('#acc-before')),
    validationAfter: pct(await text('#acc-after')),
    test: pct(await text('#acc-test')),
    steps,
    lossFirst: Number(await chart.getAttribute('data-first')),
    lossLast: Number(await chart.getAttribute('data-last')),
    trainingSeconds: trainClock ? Number(trainClock[1]) * 60 + Number(trainClock[2]) : null,
    runSeconds,
    testSeconds,
    foreignRequests: foreign,
    date: new Date().toISOString(),
  };
  console.log(JSON.stringify(result, null, 2));
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await browser.close();
  await new Promise((done) => server.httpServer.close(() => done()));
}
process.exit(exitCode);
