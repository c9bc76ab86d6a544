// End to end: build the demo page, serve the build, and drive it in headless Chromium (WebGPU).
// The page must open ready (shipped model and data, adapter shown, the naive-Bayes baseline
// scored; the model's load shown on a bar that reaches the file's bytes and tensors), run the quick preset of the spam filter in its worker — a seeded run that learns:
// validation accuracy strictly up, loss down — through a Stop and a Resume, keep the main thread
// free while training (long tasks recorded and printed), measure the test set with progress and a
// working Stop, download an adapter that parses and loads back with the same accuracy, and reach no
// host but its own. A short Style run must lower the held-out perplexity and produce both samples.
// Bad input must get messages for people: which setting, which line, which module, which file.
//
// Waiting: every wait is on the page's progress (fail only when nothing moves for STALL_MS), never
// on a wall-clock budget, so a slow or busy machine makes the test slower, not red. The tests
// therefore run without vitest's per-test timeout.
// Screenshots go to test-results/ (CI artifacts).
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { build, preview, type PreviewServer } from 'vite';
import { chromium, type Browser, type Page } from 'playwright';
import { chromiumLaunchOptions } from '../util/chromium.js';
import { singleOpModel } from '../util/onnx-build.js';

const root = resolve(import.meta.dirname, '../..');
const out = resolve(root, 'test-results');
/** The quick preset, named (a GPU machine would open on the full one), with its seed. */
const QUICK = '?preset=quick';
/** The style run: the quick preset's settings with fewer steps and held-out windows. */
const STYLE_RUN = '?preset=quick&stylesteps=8&eval=16';
/** A tiny spam run for the checkpoint tests: ten steps of 2 × 16 tokens, a checkpoint after each, 8 validation mails. */
const TINY = '?preset=quick&steps=10&batch=2&seqlen=16&eval=8';
/** The lost-device run: 16 such steps, a checkpoint every 2, so a loss between two redoes steps. */
const LOST_RUN = '?preset=quick&steps=16&batch=2&seqlen=16&eval=8&debug';
/**
 * How long the page may show no progress at all before a wait fails. The longest still phase is
 * compiling the training step (a minute or two on SwiftShader when the machine is busy).
 */
const STALL_MS = 300_000;
/** The stall check above is what fails a test; vitest's own timeout is off (0). */
const NO_TIMEOUT = 0;
let server: PreviewServer;
let browser: Browser;
let origin: string;

beforeAll(async () => {
  mkdirSync(out, { recursive: true });
  await build({ configFile: resolve(root, 'vite.config.ts'), logLevel: 'warn' });
  server = await preview({ configFile: resolve(root, 'vite.config.ts'), preview: { port: 0, host: '127.0.0.1' }, logLevel: 'warn' });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('preview server has no port');
  origin = `http://127.0.0.1:${address.port}`;
  browser = await chromium.launch({ ...chromiumLaunchOptions(), headless: true });
}, NO_TIMEOUT);

afterAll(async () => {
  await browser?.close();
  if (server) await new Promise<void>((done) => server.httpServer.close(() => done()));
});

/** What moves on the page while it works: progress bars and status lines. */
const PROGRESS = ['#status', '#load-progress', '#load-text', '#resume-offer', '#recovery', '#progress', '#progress-text', '#acc-test', '#style-progress', '#style-progress-text', '#sample-before', '#sample-after', '#files-status', '#classify-result'];

async function snapshot(page: Page): Promise<string> {
  return page.evaluate((sels) => sels.map((s) => {
    const el = document.querySelector(s);
    return el instanceof HTMLProgressElement ? `${el.value}/${el.max}` : (el?.textContent ?? '');
  }).join('\u0001'), PROGRESS);
}

/**
 * Resolves when `done` holds; rejects only when the page's progress has not changed for STALL_MS
 * (naming what it waited for and what the page last showed).
 */
async function waitFor(page: Page, what: string, done: () => Promise<boolean>): Promise<void> {
  let last = await snapshot(page);
  let since = Date.now();
  for (;;) {
    if (await done()) return;
    const now = await snapshot(page);
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > STALL_MS) {
      throw new Error(`waiting for ${what}: no progress for ${STALL_MS / 1000} s; the page shows: ${now.split('\u0001').filter(Boolean).join(' | ')}`);
    }
    await page.waitForTimeout(250);
  }
}

const visible = (page: Page, selector: string) => async (): Promise<boolean> => (await page.locator(selector).count()) > 0;
const text = async (page: Page, selector: string): Promise<string> => (await page.locator(selector).textContent()) ?? '';

/** A page that records every request and error, and the main thread's long tasks. */
async function openPage(query: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1500 }, acceptDownloads: true });
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.addInitScript(() => {
    const w = window as unknown as { __longTasks: { start: number; duration: number }[] };
    w.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(`${origin}/${query}`);
  await waitFor(page, 'the page to open', visible(page, '#status.ok, #status.error'));
  expect(await page.locator('#status').getAttribute('class'), await text(page, '#status')).toBe('ok');
  return { page, requests, errors };
}

/** The figures of a scores cell (accuracy, spam precision and recall, mails), from its data attributes. */
async function scoresOf(page: Page, selector: string): Promise<{ accuracy: number; precision: number; recall: number; examples: number }> {
  const d = await page.locator(selector).evaluate((el) => ({ ...(el as HTMLElement).dataset }));
  if (d.accuracy === undefined) throw new Error(`${selector} shows no scores: '${await text(page, selector)}'`);
  return { accuracy: Number(d.accuracy), precision: Number(d.precision), recall: Number(d.recall), examples: Number(d.examples) };
}

/** P(spam) of the Classify box with the adapter and without, in percent. */
async function classifyResult(page: Page): Promise<{ withAdapter: number; without: number }> {
  const m = /with the adapter ([\d.]+)% · without \(base model\) ([\d.]+)%/.exec(await text(page, '#classify-result'));
  if (!m) throw new Error(`no classification shown: '${await text(page, '#classify-result')}'`);
  return { withAdapter: Number(m[1]), without: Number(m[2]) };
}

/** "N steps in m:ss" of a finished or stopped run, in seconds. */
function runSeconds(status: string): number {
  const m = /steps in (\d+):(\d+)/.exec(status);
  if (!m) throw new Error(`no run time in '${status}'`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** The chart spans its container (it was half as wide when drawn in a hidden tab). */
async function expectFullWidthChart(page: Page, id: string): Promise<void> {
  const { chart, box } = await page.locator(`#${id}`).evaluate((el) => ({ chart: el.querySelector('canvas')?.getBoundingClientRect().width ?? 0, box: el.getBoundingClientRect().width }));
  expect(box).toBeGreaterThan(300);
  expect(chart).toBeGreaterThan(0.9 * box);
}

/** safetensors: u64 little-endian header length, then the JSON header. */
function safetensorsHeader(bytes: Uint8Array): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  expect(n).toBeLessThan(bytes.length);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  delete header.__metadata__;
  return header as ReturnType<typeof safetensorsHeader>;
}

it('shows the model load: bytes and tensors up to the totals, then hides the bar', { timeout: NO_TIMEOUT }, async () => {
  const { page, errors } = await openPage(QUICK);
  const row = page.locator('#load-row');
  expect(await row.isHidden()).toBe(true);
  const d = await row.evaluate((el) => ({ ...(el as HTMLElement).dataset }));
  // The last load of the page's start: the style task's language model (no external data).
  expect(d).toMatchObject({ task: 'style', file: 'model.onnx', done: 'true' });
  expect(Number(d.totalBytes)).toBe(statSync(resolve(root, 'demo/public/models/sotu-gpt2/onnx/model.onnx')).size);
  expect(d.loadedBytes).toBe(d.totalBytes);
  expect(Number(d.totalTensors)).toBeGreaterThan(0);
  expect(d.tensors).toBe(d.totalTensors);
  // At least one report while it loaded (the first is posted at once), then the closing one.
  expect(Number(d.events)).toBeGreaterThanOrEqual(2);
  expect(errors).toEqual([]);
  await page.close();
});

it('runs the quick preset of the spam filter: it learns, beside the baseline; Stop and Resume; the test set with progress and Stop; the adapter round-trips', { timeout: NO_TIMEOUT }, async () => {
  const { page, requests, errors } = await openPage(QUICK);
  const adapter = await text(page, '#adapter');
  console.log(`[demo] WebGPU adapter: ${adapter}`);
  expect(adapter).not.toMatch(/Error|not available/);
  expect(await page.inputValue('#preset')).toBe('quick');
  // The page says what the full run would cost on a software adapter.
  const note = await text(page, '#preset-note');
  console.log(`[demo] preset: ${note}`);
  if (/software/.test(adapter)) expect(note).toMatch(/full preset .* would take about \d+ (min|s)/);
  const modelLine = await text(page, '#model-line');
  expect(modelLine).toMatch(/gpt2, \d+ layers, [\d,]+ parameters/);
  // The model line and the summary count the same parameters.
  const summaryCount = /Parameters: ([\d,]+)/.exec(await text(page, '#summary'))?.[1];
  expect(modelLine).toContain(`${summaryCount} parameters`);
  const trainable = await text(page, '#trainable');
  console.log(`[demo] ${trainable}`);
  expect(trainable).toMatch(/^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: [\d.]+$/);
  expect(await page.inputValue('input[name=targetModules]')).toMatch(/c_attn/);
  // The chart waits for a run rather than showing an empty frame.
  expect(await page.locator('#loss-chart').isHidden()).toBe(true);

  // The baseline, trained on the training split when the page opened.
  const baseTest = await scoresOf(page, '#base-test');
  console.log(`[demo] baseline ${await text(page, '#base-time')}: test ${JSON.stringify(baseTest)}; validation ${JSON.stringify(await scoresOf(page, '#base-val'))}`);
  expect(baseTest.examples).toBe(584);
  expect(baseTest.accuracy).toBeGreaterThan(0.9);

  // Train, Stop after a few steps, Resume to the end.
  const t0 = await page.evaluate(() => performance.now());
  await page.click('#train');
  await waitFor(page, 'three training steps', async () => /^step ([3-9]|\d\d+) \//.test(await text(page, '#progress-text')));
  await page.click('#stop');
  await waitFor(page, 'the run to stop', visible(page, '#progress-text[data-state=stopped]'));
  const stoppedAt = await text(page, '#progress-text');
  console.log(`[demo] ${stoppedAt}`);
  await waitFor(page, 'Resume', async () => page.locator('#resume').isEnabled());
  await page.click('#resume');
  await waitFor(page, 'the run to complete', visible(page, '#progress-text[data-state=completed]'));
  await waitFor(page, 'the sample mail to be classified', async () => /with the adapter/.test(await text(page, '#classify-result')));
  const t1 = await page.evaluate(() => performance.now());
  const done = await text(page, '#progress-text');
  // The run's time counts both parts, like its step count.
  expect(runSeconds(done)).toBeGreaterThanOrEqual(runSeconds(stoppedAt));
  const before = await scoresOf(page, '#acc-before');
  const after = await scoresOf(page, '#acc-after');
  const chart = page.locator('#loss-chart');
  const first = Number(await chart.getAttribute('data-first'));
  const last = Number(await chart.getAttribute('data-last'));
  const points = Number(await chart.getAttribute('data-points'));
  const steps = Number(await page.inputValue('input[name=steps]'));
  const longTasks = await page.evaluate(([a, b]) => (window as unknown as { __longTasks: { start: number; duration: number }[] }).__longTasks.filter((t) => t.start >= a! && t.start <= b!), [t0, t1]);
  const maxLong = Math.max(0, ...longTasks.map((t) => t.duration));
  const p = await classifyResult(page);
  console.log(`[demo] ${done}`);
  console.log(`[demo] validation accuracy ${before.accuracy} → ${after.accuracy} (of ${after.examples}); loss ${first} → ${last} over ${points} points; sample mail P(spam) ${p.without}% → ${p.withAdapter}%; run ${((t1 - t0) / 1000).toFixed(1)} s`);
  console.log(`[demo] main-thread long tasks during training: ${longTasks.length}, longest ${maxLong.toFixed(0)} ms`);
  expect(points).toBe(steps);
  expect(last).toBeLessThan(first);
  expect(after.accuracy).toBeGreaterThan(before.accuracy);
  expect(p.withAdapter).toBeGreaterThan(p.without);
  // The page renders only while its worker trains: no main-thread task a user would notice as a
  // freeze. Not a frame budget: the longest task here is ~70 ms on an idle machine and was measured
  // at 203 ms while other jobs held both cores, and the test must not depend on the machine's speed.
  expect(maxLong).toBeLessThan(500);
  await expectFullWidthChart(page, 'loss-chart');
  // Legend markers are filled with their series' colour (an outline alone read as "no series").
  const markers = await page.locator('#loss-chart .u-legend .u-marker').evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor));
  expect(markers.filter((c) => c !== 'rgba(0, 0, 0, 0)').length).toBeGreaterThanOrEqual(2);
  await page.screenshot({ path: resolve(out, 'demo.png'), fullPage: true });

  // The test set: progress while it runs, and Stop ends it with the accuracy so far.
  await page.click('#eval-test');
  await waitFor(page, 'test-set progress', async () => /measuring test accuracy: [1-9]\d* \/ 584 mails · ETA/.test(await text(page, '#progress-text')));
  await page.click('#stop');
  await waitFor(page, 'the test set to stop', visible(page, '#acc-test[data-state=stopped]'));
  const partial = await scoresOf(page, '#acc-test');
  console.log(`[demo] test set stopped: ${await text(page, '#acc-test')}`);
  expect(partial.examples).toBeGreaterThan(0);
  expect(partial.examples).toBeLessThan(584);
  expect(await text(page, '#acc-test')).toMatch(/stopped: \d+ of 584 mails/);

  // Download: the two PEFT files, parsed here.
  const downloads: Promise<import('playwright').Download>[] = [];
  const collected = new Promise<void>((resolveDownloads) => {
    page.on('download', (d) => {
      downloads.push(Promise.resolve(d));
      if (downloads.length === 2) resolveDownloads();
    });
  });
  await page.click('#download');
  await collected;
  const dir = resolve(out, 'demo-adapter');
  mkdirSync(dir, { recursive: true });
  const saved: Record<string, string> = {};
  for (const d of await Promise.all(downloads)) {
    const path = resolve(dir, d.suggestedFilename());
    await d.saveAs(path);
    saved[d.suggestedFilename()] = path;
  }
  expect(Object.keys(saved).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  const config = JSON.parse(readFileSync(saved['adapter_config.json']!, 'utf8')) as Record<string, unknown>;
  expect(config).toMatchObject({ peft_type: 'IA3', task_type: 'SEQ_CLS', modules_to_save: expect.arrayContaining(['score']) });
  const header = safetensorsHeader(new Uint8Array(readFileSync(saved['adapter_model.safetensors']!)));
  const keys = Object.keys(header);
  expect(keys).toContain('base_model.model.transformer.h.0.attn.c_attn.ia3_l');
  expect(keys).toContain('base_model.model.transformer.h.0.mlp.c_proj.ia3_l');
  expect(keys).toContain('base_model.model.score.weight');
  expect(keys.every((k) => k.startsWith('base_model.model.'))).toBe(true);
  for (const k of keys) expect(header[k]!.dtype).toBe('F32');

  // Load it back through the page's input: the same accuracy on the same validation subset.
  await page.setInputFiles('#adapter-files', [saved['adapter_model.safetensors']!, saved['adapter_config.json']!]);
  await waitFor(page, 'the adapter to load', visible(page, '#files-status.ok >> text=validation accuracy'));
  expect(await scoresOf(page, '#acc-after')).toEqual(after);

  // A file that is not safetensors is named as such (not by its first bytes read as a length).
  const fake = resolve(out, 'adapter_model.safetensors');
  writeFileSync(fake, 'PK\u0003\u0004 this is a zip archive, not an adapter');
  await page.setInputFiles('#adapter-files', [fake, saved['adapter_config.json']!]);
  await waitFor(page, 'the wrong file to be refused', visible(page, '#files-status.error'));
  const wrongFile = await text(page, '#files-status');
  console.log(`[demo] wrong adapter file: ${wrongFile}`);
  expect(wrongFile).toMatch(/^The file adapter_model\.safetensors is not a safetensors file/);

  expect(errors).toEqual([]);
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:'));
  expect(foreign).toEqual([]);
  await page.close();
});

it('trains the style task on the preset text: held-out perplexity falls, samples before and after', { timeout: NO_TIMEOUT }, async () => {
  // A short causal-LM run on the Moby-Dick preset: 8 steps, 16 held-out windows, 8-token samples.
  const { page, errors } = await openPage(STYLE_RUN);
  const spamHeader = { model: await text(page, '#model-line'), trainable: await text(page, '#trainable') };
  const spamSummary = await text(page, '#summary');
  expect(spamHeader.model).toMatch(/^mail-gpt2 /);
  await page.click('#tab-style');
  // The header describes the open tab's model (sotu-gpt2) and the adapter its default run trains
  // (all-linear: 9,216 IA3 values), and goes back to the spam filter's with its tab.
  expect(await text(page, '#model-line')).toMatch(/^sotu-gpt2 .*gpt2, 4 layers, [\d,]+ parameters$/);
  const styleTrainable = await text(page, '#trainable');
  console.log(`[demo] style tab: ${await text(page, '#model-line')} · ${styleTrainable}`);
  expect(styleTrainable).toMatch(/^trainable params: 9,216 \|\| /);
  // PEFT's "all params" is the model line's count plus the adapter's (the tied output layer counted once).
  const styleParams = Number(/([\d,]+) parameters$/.exec(await text(page, '#model-line'))![1]!.replaceAll(',', ''));
  expect(Number(/all params: ([\d,]+)/.exec(styleTrainable)![1]!.replaceAll(',', ''))).toBe(styleParams + 9216);
  // The summary is the style model's and counts as the model line (the exporter's transposed copy of
  // the tied output layer counted once, and named).
  const styleSummary = await text(page, '#summary');
  expect(styleSummary).toContain(`Parameters: ${styleParams.toLocaleString('en-US')} in `);
  expect(styleSummary).toMatch(/is the transpose of 'transformer\.wte\.weight' \(a tied weight, stored twice by the exporter\): counted once/);
  expect(styleSummary).not.toBe(spamSummary);
  await page.click('#tab-spam');
  expect({ model: await text(page, '#model-line'), trainable: await text(page, '#trainable') }).toEqual(spamHeader);
  await page.click('#tab-style');
  expect(await page.inputValue('#style-steps')).toBe('8');
  // The style task's own learning rate (IA3 vectors alone take a larger one than the spam filter's).
  expect(await page.inputValue('#style-lr')).toBe('0.1');
  await page.fill('#gen-tokens', '8');
  const t0 = Date.now();
  await page.click('#style-train');
  await waitFor(page, 'the style run to complete', visible(page, '#style-progress-text[data-state=completed]'));
  await waitFor(page, 'the sample after training', async () => page.locator('#style-train').isEnabled());
  const perplexity = async (sel: string): Promise<{ value: number; windows: number }> => {
    const m = /^([\d.]+) on (\d+) windows$/.exec(await text(page, sel));
    if (!m) throw new Error(`${sel} shows no perplexity: '${await text(page, sel)}'`);
    return { value: Number(m[1]), windows: Number(m[2]) };
  };
  const before = await perplexity('#ppl-before');
  const after = await perplexity('#ppl-after');
  const sampleBefore = await text(page, '#sample-before');
  const sampleAfter = await text(page, '#sample-after');
  console.log(`[demo] style: ${await text(page, '#style-progress-text')}; held-out perplexity ${before.value} → ${after.value} on ${after.windows} windows; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`[demo] style samples: before '${sampleBefore}' · after '${sampleAfter}'`);
  expect(before.windows).toBe(16);
  expect(after.windows).toBe(16);
  expect(after.value).toBeLessThan(before.value);
  // Each sample is the prompt and the generated continuation, finished (no trailing ellipsis).
  for (const sample of [sampleBefore, sampleAfter]) {
    expect(sample.startsWith('Call me')).toBe(true);
    expect(sample.length).toBeGreaterThan('Call me'.length);
    expect(sample.endsWith('…')).toBe(false);
  }
  // The chart was made while its tab was hidden; it still spans the panel.
  await expectFullWidthChart(page, 'style-chart');
  await page.screenshot({ path: resolve(out, 'demo-style.png'), fullPage: true });

  // A text too short is refused at once, before any sampling from the base model.
  await page.selectOption('#style-preset', '__own__');
  await page.fill('#style-text', 'Call me Ishmael.');
  await page.click('#style-train');
  await waitFor(page, 'the short text to be refused', visible(page, '#style-progress-text.error'));
  const short = await text(page, '#style-progress-text');
  console.log(`[demo] short style text: ${short}`);
  expect(short).toMatch(/^The style text is too short: \d+ tokens/);
  expect(await text(page, '#sample-before')).toBe(sampleBefore); // nothing was sampled
  // The message wraps under the progress bar instead of squeezing it.
  const bar = await page.locator('#style-progress').evaluate((el) => el.getBoundingClientRect().width);
  expect(bar).toBeGreaterThan(250);
  expect(errors).toEqual([]);
  await page.close();
});

it('speaks to people: which setting, which line, which module, which model head; an op it cannot run', { timeout: NO_TIMEOUT }, async () => {
  const { page, errors } = await openPage('?target=nonexistent_module&steps=2.5');
  // A bad URL value is reported in the settings' own words and not used.
  const urlProblem = await text(page, '#settings-error');
  console.log(`[demo] URL problem: ${urlProblem}`);
  expect(urlProblem).toMatch(/steps must be a whole number \(got 2\.5\)/);
  await page.fill('input[name=learningRate]', '5');
  expect(await text(page, '#settings-error')).toBe('learning rate must be between 0.000001 and 1 (got 5)');
  // Classify does not depend on the training settings, and the settings' problem is not shown beside it.
  await page.click('#classify');
  await waitFor(page, 'Classify', async () => /with the adapter/.test(await text(page, '#classify-result')));
  await page.fill('input[name=learningRate]', '0.02');
  expect(await text(page, '#settings-error')).toBe('');
  // A target module the model does not have is named, with the modules it has.
  await page.click('#train');
  await waitFor(page, 'the unknown module to be refused', visible(page, '#progress-text.error'));
  const moduleMessage = await text(page, '#progress-text');
  console.log(`[demo] unknown module: ${moduleMessage}`);
  expect(moduleMessage).toMatch(/^No module of the model is called "nonexistent_module"; its linear modules are .*attn\.c_attn/);
  expect(moduleMessage).not.toMatch(/Error:/);

  const bad = resolve(out, 'bad-data.jsonl');
  writeFileSync(bad, '{"text": "a fine mail", "label": 0}\n{"text": "broken", "label": 1\n');
  await page.setInputFiles('#data-file', bad);
  await waitFor(page, 'the data file error', visible(page, '#files-status.error'));
  const message = await text(page, '#files-status');
  console.log(`[demo] bad data file: ${message}`);
  expect(message).toMatch(/data file cannot be read \(line 2\): not valid JSON/);
  expect(message.match(/line \d+/g)).toEqual(['line 2']);

  await page.fill('#model-url', '/no-such-model/');
  await page.click('#model-url-load');
  await waitFor(page, 'the missing model error', visible(page, '#files-status.error >> text=no-such-model'));
  expect(await text(page, '#files-status')).toMatch(/no-such-model\/tokenizer\.json: HTTP 404/);

  // The shipped causal LM (onnx/model.onnx) offered to the spam filter: refused, and told why.
  await page.selectOption('#byo-task', 'spam');
  await page.fill('#model-url', '/models/sotu-gpt2/');
  await page.click('#model-url-load');
  await waitFor(page, 'the language model to be refused for the spam filter', visible(page, '#files-status.error >> text=language model'));
  const head = await text(page, '#files-status');
  console.log(`[demo] causal LM for the spam filter: ${head}`);
  expect(head).toMatch(/gives 4,096 scores per token, one per word of its vocabulary: it is a language model .* the spam filter needs 2/);

  // A model folder on the page's origin whose graph uses an op the toolkit does not run (Det:
  // a matrix determinant, not in docs/supported-ops.md).
  const det = singleOpModel('Det', [{ name: 'a', dims: [3, 3] }], { name: 'logits', dims: [] });
  await page.route(`${origin}/bad-model/**`, async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path.endsWith('/onnx/model.onnx')) return route.fulfill({ status: 200, body: Buffer.from(det), contentType: 'application/octet-stream' });
    if (path.endsWith('/tokenizer.json')) return route.fulfill({ status: 200, path: resolve(root, 'demo/public/models/sotu-gpt2/tokenizer.json') });
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await page.fill('#model-url', '/bad-model/');
  await page.click('#model-url-load');
  await waitFor(page, 'the unsupported op error', visible(page, '#files-status.error >> text=Det'));
  const opMessage = await text(page, '#files-status');
  console.log(`[demo] unsupported model: ${opMessage}`);
  expect(opMessage).toMatch(/operation the toolkit cannot run — Det node 'Det_0'/);
  expect(errors.filter((e) => !/404|Failed to load resource/.test(e))).toEqual([]);
  await page.close();
});

/** The page's data attribute `name` of `selector` as a number (NaN when it has none). */
const dataNumber = async (page: Page, selector: string, name: string): Promise<number> => Number((await page.locator(selector).getAttribute(`data-${name}`)) ?? NaN);

it('recovers from a lost device mid-run: a new device, the model loaded again, the run resumed from its last checkpoint, the steps redone said', { timeout: NO_TIMEOUT }, async () => {
  const { page } = await openPage(LOST_RUN);
  await page.click('#train');
  const shownStep = async (): Promise<number> => Number(/^step (\d+) \//.exec(await text(page, '#progress-text'))?.[1] ?? 0);
  await waitFor(page, 'a step after the checkpoint of step 2', async () => (await dataNumber(page, '#progress-text', 'checkpoint')) >= 2 && (await shownStep()) > (await dataNumber(page, '#progress-text', 'checkpoint')));
  // As a driver reset would: the worker's device is destroyed in the middle of the run, between
  // two checkpoints (unless the next one lands first: then nothing is redone).
  await page.evaluate(() => (window as unknown as { __demo: { loseDevice(): void } }).__demo.loseDevice());
  await waitFor(page, 'the page to recover', visible(page, '#recovery[data-redone]'));
  const message = await text(page, '#recovery');
  console.log(`[demo] ${message}`);
  const [lostAt, resumedFrom, redone] = await Promise.all(['lost-at', 'resumed-from', 'redone'].map((k) => dataNumber(page, '#recovery', k)));
  expect(resumedFrom).toBeGreaterThanOrEqual(2);
  expect(lostAt).toBeGreaterThanOrEqual(resumedFrom);
  expect(lostAt).toBeLessThan(16);
  expect(redone).toBe(lostAt - resumedFrom);
  expect(message).toContain(`The GPU device was lost at step ${lostAt} (destroyed)`);
  expect(message).toContain(`resumed from the checkpoint of step ${resumedFrom}: ${redone} step${redone === 1 ? '' : 's'} redone`);
  await waitFor(page, 'the run to complete', visible(page, '#progress-text[data-state=completed]'));
  expect(await text(page, '#progress-text')).toMatch(/^done: 16 steps/);
  // The curve goes on from the checkpoint: the redone steps replace their first try, every step once.
  expect(await dataNumber(page, '#loss-chart', 'points')).toBe(16);
  // The recovered run is measured on the new device like any other.
  expect((await scoresOf(page, '#acc-after')).examples).toBe(8);
  await waitFor(page, 'the sample mail to be classified', async () => /with the adapter/.test(await text(page, '#classify-result')));
  await page.screenshot({ path: resolve(out, 'demo-device-lost.png'), fullPage: true });

  // Lost while idle: the next action says so, the worker gets a new device, and the one after works.
  await page.evaluate(() => (window as unknown as { __demo: { loseDevice(): void } }).__demo.loseDevice());
  await page.click('#classify');
  await waitFor(page, 'the lost device to be reported', visible(page, '#classify-result.error'));
  const idle = await text(page, '#classify-result');
  console.log(`[demo] lost while idle: ${idle}`);
  expect(idle).toMatch(/^The GPU device was lost \(destroyed\)\. The page has a new device and has loaded the model again: try again/);
  await waitFor(page, 'Classify to be enabled', async () => page.locator('#classify').isEnabled());
  await page.click('#classify');
  await waitFor(page, 'the mail to be classified on the new device', async () => /with the adapter/.test(await text(page, '#classify-result')));
  await page.close();
});

it('offers to resume a run that a reload interrupted, and resumes it from its checkpoint step', { timeout: NO_TIMEOUT }, async () => {
  const { page } = await openPage(TINY);
  await page.click('#train');
  await waitFor(page, 'a checkpoint after step 2', async () => (await dataNumber(page, '#progress-text', 'checkpoint')) >= 2);
  const saved = await dataNumber(page, '#progress-text', 'checkpoint');
  await page.reload();
  await waitFor(page, 'the page to open again', visible(page, '#status.ok, #status.error'));
  expect(await page.locator('#resume-offer').isVisible()).toBe(true);
  // A later checkpoint may have landed between the one seen and the reload.
  const step = await dataNumber(page, '#resume-offer', 'step');
  expect(step).toBeGreaterThanOrEqual(saved);
  expect(step).toBeLessThan(10);
  const offer = await text(page, '#resume-offer-text');
  console.log(`[demo] after the reload: ${offer}`);
  expect(offer).toContain(`A spam-filter run (10 steps on SpamAssassin public corpus) was interrupted; its last checkpoint is step ${step}.`);
  await page.click('#resume-offer-yes');
  await waitFor(page, 'the resumed run to complete', visible(page, '#progress-text[data-state=completed]'));
  expect(await page.locator('#resume-offer').isHidden()).toBe(true);
  expect(await text(page, '#progress-text')).toMatch(/^done: 10 steps/);
  // It went on from the checkpoint: its first step is the one after it, and it did the rest.
  expect(await dataNumber(page, '#loss-chart', 'first-step')).toBe(step + 1);
  expect(await dataNumber(page, '#loss-chart', 'points')).toBe(10 - step);
  expect((await scoresOf(page, '#acc-after')).examples).toBe(8);
  // A completed run leaves no checkpoint: the next reload offers nothing.
  await page.reload();
  await waitFor(page, 'the page to open a third time', visible(page, '#status.ok, #status.error'));
  expect(await page.locator('#resume-offer').isHidden()).toBe(true);
  await page.close();
});
