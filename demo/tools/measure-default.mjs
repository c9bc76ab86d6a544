// Measures the demo's default runs on the built page, in headless Chromium with the project's
// WebGPU flags, for both presets (quick, full) and both tasks, and prints the figures the README
// quotes as one JSON object:
//   spam   the naive-Bayes baseline and the fine-tuned model on the same test split (accuracy,
//          spam precision and recall), validation accuracy before and after training, the sample
//          mail's P(spam) with and without the adapter, mean loss of the first and last steps,
//          training and wall time;
//   style  held-out perplexity before and after, the samples before and after, training and wall time.
//
//   node demo/tools/measure-default.mjs                          # builds demo-dist/, all four runs
//   node demo/tools/measure-default.mjs --preset quick           # one preset (both tasks)
//   node demo/tools/measure-default.mjs --task style --preset full
//   node demo/tools/measure-default.mjs --no-build               # uses the existing demo-dist/
//   node demo/tools/measure-default.mjs --query '&steps=20'      # appended to each run's URL
//
// Waits follow the page's progress (a run may take as long as it needs; a page that shows no
// progress for ten minutes is an error).
import { resolve } from 'node:path';
import { build, preview, runnerImport } from 'vite';
import { chromium } from 'playwright';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const extra = option('--query') ?? '';
const tasks = option('--task') ? [option('--task')] : ['spam', 'style'];
const presets = option('--preset') ? [option('--preset')] : ['quick', 'full'];
for (const t of tasks) if (t !== 'spam' && t !== 'style') throw new Error(`--task: '${t}' is neither 'spam' nor 'style'`);
for (const p of presets) if (p !== 'quick' && p !== 'full') throw new Error(`--preset: '${p}' is neither 'quick' nor 'full'`);
const configFile = resolve(root, 'vite.config.ts');
// The same Chromium and flags as the tests (tests/util/chromium.ts, TypeScript: loaded via Vite).
const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));

if (!args.includes('--no-build')) await build({ configFile, logLevel: 'warn' });
const server = await preview({ configFile, preview: { port: 0, host: '127.0.0.1' }, logLevel: 'warn' });
const origin = `http://127.0.0.1:${server.httpServer.address().port}`;
const browser = await chromium.launch({ ...chromiumUtil.chromiumLaunchOptions(), headless: true });
const log = (s) => process.stderr.write(`[measure] ${s}\n`);
const STALL_MS = 600_000;
const MOVING = ['#status', '#progress', '#progress-text', '#acc-test', '#style-progress', '#style-progress-text', '#sample-before', '#sample-after', '#classify-result'];

const textOf = async (page, sel) => (await page.locator(sel).textContent()) ?? '';

/** Resolves when `done()` holds; throws when nothing on the page moved for STALL_MS. Logs the status once a minute. */
async function waitFor(page, what, done, statusSelector) {
  const snap = () => page.evaluate((sels) => sels.map((s) => {
    const el = document.querySelector(s);
    return el instanceof HTMLProgressElement ? `${el.value}/${el.max}` : (el?.textContent ?? '');
  }).join('|'), MOVING);
  let last = await snap();
  let since = Date.now();
  let logged = Date.now();
  for (;;) {
    if (await done()) return;
    const now = await snap();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since > STALL_MS) throw new Error(`${what}: no progress for ${STALL_MS / 1000} s (${now})`);
    if (statusSelector && Date.now() - logged > 60_000) {
      log(await textOf(page, statusSelector));
      logged = Date.now();
    }
    await page.waitForTimeout(500);
  }
}

const present = (page, sel) => async () => (await page.locator(sel).count()) > 0;

/** A scores cell's figures (data attributes written by the page). */
async function scores(page, sel) {
  const d = await page.locator(sel).evaluate((el) => ({ ...el.dataset }));
  return d.accuracy === undefined ? null : { accuracy: Number(d.accuracy), precision: Number(d.precision), recall: Number(d.recall), examples: Number(d.examples) };
}

/** "N steps in m:ss" of a finished run. */
function stepsAndClock(progress) {
  const clock = /steps in (\d+):(\d+)/.exec(progress);
  return { steps: Number(/(\d+) steps in/.exec(progress)?.[1]), trainingSeconds: clock ? Number(clock[1]) * 60 + Number(clock[2]) : null };
}

/** The spam tab: Train (validation before and after, the sample mail), then the test set. */
async function measureSpam(page) {
  const t0 = Date.now();
  await page.click('#train');
  await waitFor(page, 'training', present(page, '#progress-text[data-state=completed]'), '#progress-text');
  await waitFor(page, 'the sample mail', async () => /with the adapter/.test(await textOf(page, '#classify-result')));
  const runSeconds = (Date.now() - t0) / 1000;
  const { steps, trainingSeconds } = stepsAndClock(await textOf(page, '#progress-text'));
  const m = /with the adapter ([\d.]+)% · without \(base model\) ([\d.]+)%/.exec(await textOf(page, '#classify-result'));
  const t1 = Date.now();
  await page.click('#eval-test');
  await waitFor(page, 'the test set', present(page, '#acc-test[data-state=completed]'), '#progress-text');
  const testSeconds = (Date.now() - t1) / 1000;
  const chart = page.locator('#loss-chart');
  return {
    baselineTest: await scores(page, '#base-test'),
    test: await scores(page, '#acc-test'),
    baselineValidation: await scores(page, '#base-val'),
    validationBefore: await scores(page, '#acc-before'),
    validationAfter: await scores(page, '#acc-after'),
    sampleMailPSpam: m ? { without: Number(m[2]) / 100, with: Number(m[1]) / 100 } : null,
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
    text: await textOf(page, '#style-preset option:checked'),
    prompt: await page.inputValue('#prompt'),
    tokens: Number(await page.inputValue('#gen-tokens')),
    steps: Number(await page.inputValue('#style-steps')),
  };
  log(`style ${JSON.stringify(style)}`);
  const t0 = Date.now();
  await page.click('#style-train');
  await waitFor(page, 'style training', present(page, '#style-progress-text[data-state=completed]'), '#style-progress-text');
  // The sample after training follows the run; the Train button comes back when it is done.
  await waitFor(page, 'the sample after training', async () => page.locator('#style-train').isEnabled());
  const runSeconds = (Date.now() - t0) / 1000;
  const ppl = (s) => {
    const m = /([\d.]+) on (\d+) windows/.exec(s);
    return m ? { perplexity: Number(m[1]), windows: Number(m[2]) } : null;
  };
  const chart = page.locator('#style-chart');
  const before = ppl(await textOf(page, '#ppl-before'));
  const after = ppl(await textOf(page, '#ppl-after'));
  return {
    style,
    perplexityBefore: before,
    perplexityAfter: after,
    perplexityChange: before && after ? after.perplexity / before.perplexity - 1 : null,
    ...stepsAndClock(await textOf(page, '#style-progress-text')),
    lossFirst: Number(await chart.getAttribute('data-first')),
    lossLast: Number(await chart.getAttribute('data-last')),
    runSeconds,
    sampleBefore: await textOf(page, '#sample-before'),
    sampleAfter: await textOf(page, '#sample-after'),
  };
}

/** One run on a fresh page: the preset by URL, then the task's measurement. */
async function measure(preset, task) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1500 } });
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !/^(data|blob):/.test(r.url())) foreign.push(r.url());
  });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  try {
    await page.goto(`${origin}/?preset=${preset}${extra}`);
    await waitFor(page, 'the page to open', present(page, '#status.ok, #status.error'));
    if ((await page.locator('#status').getAttribute('class')) !== 'ok') throw new Error(`the page did not open: ${await textOf(page, '#status')}`);
    const adapter = await textOf(page, '#adapter');
    const settings = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#settings-form input, #style-steps, #style-lr')].map((i) => [i.name, i.value])));
    log(`${preset} ${task}: adapter ${adapter}; settings ${JSON.stringify(settings)}`);
    const result = task === 'style' ? await measureStyle(page) : await measureSpam(page);
    const run = { preset, task, adapter, settings, ...result, foreignRequests: foreign, date: new Date().toISOString() };
    log(JSON.stringify(run));
    return run;
  } finally {
    await page.close();
  }
}

let exitCode = 0;
try {
  const runs = [];
  for (const preset of presets) for (const task of tasks) runs.push(await measure(preset, task));
  console.log(JSON.stringify(runs, null, 2));
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await browser.close();
  await new Promise((done) => server.httpServer.close(() => done()));
}
process.exit(exitCode);
