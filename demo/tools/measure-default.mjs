// Measures the demo's FULL default spam-filter run on the built page, in headless Chromium with
// the project's WebGPU flags: validation accuracy before training, the training run, validation
// accuracy after, then test accuracy. Prints one JSON object (the figures the README quotes).
// With --task style it measures the Style tab's default run instead: the preset text, the sample
// before, held-out perplexity before, training, held-out perplexity after, the sample after.
//
//   node demo/tools/measure-default.mjs              # builds demo-dist/, runs the defaults
//   node demo/tools/measure-default.mjs --task style # the Style tab's default run
//   node demo/tools/measure-default.mjs --no-build   # uses the existing demo-dist/
//   node demo/tools/measure-default.mjs --query '?steps=20&eval=64'   # other settings
import { resolve } from 'node:path';
import { build, preview, runnerImport } from 'vite';
import { chromium } from 'playwright';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const query = args.includes('--query') ? args[args.indexOf('--query') + 1] ?? '' : '';
const task = args.includes('--task') ? args[args.indexOf('--task') + 1] : 'spam';
if (task !== 'spam' && task !== 'style') throw new Error(`--task: '${task}' is neither 'spam' nor 'style'`);
const configFile = resolve(root, 'vite.config.ts');
// The same Chromium and flags as the tests (tests/util/chromium.ts, TypeScript: loaded via Vite).
const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));

if (!args.includes('--no-build')) await build({ configFile, logLevel: 'warn' });
const server = await preview({ configFile, preview: { port: 0, host: '127.0.0.1' }, logLevel: 'warn' });
const origin = `http://127.0.0.1:${server.httpServer.address().port}`;
const browser = await chromium.launch({ ...chromiumUtil.chromiumLaunchOptions(), headless: true });
const log = (s) => process.stderr.write(`[measure] ${s}\n`);
const HOUR = 3_600_000;

/** Progress to stderr once a minute, so a long run shows it is alive; returns the stop function. */
function ticker(page, selector) {
  const id = setInterval(() => void page.locator(selector).textContent().then((t) => log(t), () => undefined), 60_000);
  return () => clearInterval(id);
}

const textOf = async (page, sel) => (await page.locator(sel).textContent()) ?? '';

/** "N steps in m:ss" of a finished run. */
function stepsAndClock(progress) {
  const clock = /steps in (\d+):(\d+)/.exec(progress);
  return { steps: Number(/(\d+) steps in/.exec(progress)?.[1]), trainingSeconds: clock ? Number(clock[1]) * 60 + Number(clock[2]) : null };
}

/** The spam tab: Train with the settings (validation before and after), then the test set. */
async function measureSpam(page) {
  const t0 = Date.now();
  await page.click('#train');
  const stop = ticker(page, '#progress-text');
  await page.waitForSelector('#progress-text[data-state=completed]', { timeout: HOUR });
  stop();
  const runSeconds = (Date.now() - t0) / 1000;
  const pct = (s) => {
    const m = /([\d.]+)% of (\d+)/.exec(s);
    return m ? { accuracy: Number(m[1]) / 100, examples: Number(m[2]) } : null;
  };
  const { steps, trainingSeconds } = stepsAndClock(await textOf(page, '#progress-text'));

  const t1 = Date.now();
  await page.click('#eval-test');
  await page.waitForFunction(() => /%/.test(document.getElementById('acc-test')?.textContent ?? ''), null, { timeout: HOUR });
  const testSeconds = (Date.now() - t1) / 1000;
  const chart = page.locator('#loss-chart');
  return {
    validationBefore: pct(await textOf(page, '#acc-before')),
    validationAfter: pct(await textOf(page, '#acc-after')),
    test: pct(await textOf(page, '#acc-test')),
    steps,
    lossFirst: Number(await chart.getAttribute('data-first')),
    lossLast: Number(await chart.getAttribute('data-last')),
    trainingSeconds,
    runSeconds,
    testSeconds,
  };
}

/** The Style tab as it opens (its preset text, prompt, sample length and step count): Train. */
async function measureStyle(page) {
  await page.click('#tab-style');
  const style = {
    text: (await page.locator('#style-preset option:checked').textContent()) ?? '',
    prompt: await page.inputValue('#prompt'),
    tokens: Number(await page.inputValue('#gen-tokens')),
    steps: Number(await page.inputValue('#style-steps')),
  };
  log(`style ${JSON.stringify(style)}`);
  const t0 = Date.now();
  await page.click('#style-train');
  const stop = ticker(page, '#style-progress-text');
  await page.waitForSelector('#style-progress-text[data-state=completed]', { timeout: HOUR });
  // The sample after training follows the run; the Train button comes back when it is done.
  await page.waitForSelector('#style-train:not([disabled])', { timeout: HOUR });
  stop();
  const runSeconds = (Date.now() - t0) / 1000;
  const ppl = (s) => {
    const m = /([\d.]+) on (\d+) windows/.exec(s);
    return m ? { perplexity: Number(m[1]), windows: Number(m[2]) } : null;
  };
  const chart = page.locator('#style-chart');
  return {
    style,
    perplexityBefore: ppl(await textOf(page, '#ppl-before')),
    perplexityAfter: ppl(await textOf(page, '#ppl-after')),
    ...stepsAndClock(await textOf(page, '#style-progress-text')),
    lossFirst: Number(await chart.getAttribute('data-first')),
    lossLast: Number(await chart.getAttribute('data-last')),
    runSeconds,
    sampleBefore: await textOf(page, '#sample-before'),
    sampleAfter: await textOf(page, '#sample-after'),
  };
}

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
  const result = task === 'style' ? await measureStyle(page) : await measureSpam(page);
  console.log(JSON.stringify({ task, adapter, settings, ...result, foreignRequests: foreign, date: new Date().toISOString() }, null, 2));
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await browser.close();
  await new Promise((done) => server.httpServer.close(() => done()));
}
process.exit(exitCode);
