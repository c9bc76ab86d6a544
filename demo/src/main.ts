// The demo page's main thread: it only renders. Every piece of model work runs in ./worker.ts and
// arrives here as messages (see ./protocol.ts); training progress comes in batches, and the loss
// curve redraws at most once per animation frame.
import { downloadAdapter } from 'ia3-webgpu';
import { WorkerClient, WorkerFailure } from './client.js';
import { checkDataFileSize } from './datafile.js';
import type { AccuracyResult, BaselineResult, DataInfo, InterruptedRun, LoadProgressEvent, ModelInfo, ModelSource, ProgressEvent, RecoveredEvent, Scores, Task, TrainOutcome, TrainSettings } from './protocol.js';
import { checkSetting, estimateSeconds, PARAMS, presetFor, PRESETS, settingsFromUrl, SOFTWARE_RATES, splitModules, type NumericSettings, type PresetName, type Rates } from './settings.js';
import { LossChart } from './ui/chart.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};
const button = (id: string): HTMLButtonElement => $<HTMLButtonElement>(id);

const capitalise = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** A message for people: what went wrong, in the page's words, without the error's class name. */
function describeError(e: unknown): string {
  if (e instanceof WorkerFailure) {
    switch (e.name) {
      case 'WebGPUUnavailableError':
        return `WebGPU is not available in this browser: ${e.message}`;
      case 'UnsupportedOpError':
        return `This model uses an operation the toolkit cannot run — ${e.message}`;
      case 'DataFileError':
        return `The data file cannot be read${e.line === undefined ? '' : ` (line ${e.line})`}: ${e.message.replace(/^line \d+: /, '')}`;
      case 'DeviceLostError':
        return e.recovered
          ? `The GPU device was lost (${e.message}). The page has a new device and has loaded the model again: try again (a stopped run resumes from its last checkpoint)`
          : `The GPU device was lost (${e.message}) and the page could not get a new one. Reload the page: a training run resumes from its last checkpoint`;
      case 'NonFiniteError':
        return `Training diverged — ${e.message}. Try a smaller learning rate.`;
      default:
        return capitalise(e.message);
    }
  }
  return e instanceof Error ? capitalise(e.message) : String(e);
}

function show(el: HTMLElement, text: string, kind: 'ok' | 'error' | '' = ''): void {
  el.className = kind;
  el.textContent = text;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const clock = (s: number): string => (Number.isFinite(s) ? `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}` : '—');
const minutes = (s: number): string => (s < 90 ? `${Math.max(10, Math.round(s / 10) * 10)} s` : `${Math.round(s / 60)} min`);

/** Accuracy "of N" in a scores cell, precision and recall of spam under it, the figures as data attributes. */
function showScores(id: string, r: Scores, note = ''): void {
  const el = $(id);
  el.textContent = `${pct(r.accuracy)} of ${r.examples}${note}`;
  const pr = document.createElement('span');
  pr.className = 'pr';
  pr.textContent = `spam precision ${pct(r.precision)}, recall ${pct(r.recall)}`;
  el.append(pr);
  Object.assign(el.dataset, { accuracy: String(r.accuracy), precision: String(r.precision), recall: String(r.recall), examples: String(r.examples) });
}

function clearScores(id: string, text = '—'): void {
  const el = $(id);
  el.textContent = text;
  for (const k of ['accuracy', 'precision', 'recall', 'examples']) delete el.dataset[k];
}

function showAccuracy(id: string, r: AccuracyResult): void {
  showScores(id, r, r.stopped ? ` (stopped: ${r.examples} of ${r.total} mails)` : '');
}

// --- settings ----------------------------------------------------------------------------------

const form = $<HTMLFormElement>('settings-form');
const presetSelect = $<HTMLSelectElement>('preset');
const numericKeys = Object.keys(PARAMS) as (keyof NumericSettings)[];
/** The Style tab's own settings (its inputs are outside the form). */
const STYLE_INPUTS: Partial<Record<keyof NumericSettings, string>> = { styleSteps: 'style-steps', styleLearningRate: 'style-lr' };
/** The inputs of the numeric settings: the form's, and the Style tab's step count and learning rate. */
const field = (name: keyof NumericSettings | 'targetModules' | 'feedforwardModules'): HTMLInputElement => {
  const id = STYLE_INPUTS[name as keyof NumericSettings];
  return id ? $<HTMLInputElement>(id) : (form.elements.namedItem(name) as HTMLInputElement);
};
let defaultModules = { target: '', feedforward: '' };
let software = true;
/** Seconds per unit of work on this adapter: the software figures until a run here measures its own. */
let rates: Rates | null = null;

function fillSettings(s: NumericSettings): void {
  for (const k of numericKeys) field(k).value = String(s[k]);
}

/** The value of one setting, or its message (shown under the settings while it is wrong). */
function setting(key: keyof NumericSettings): number | string {
  return checkSetting(key, field(key).value);
}

/** Shows what is wrong with the settings now (nothing once they are fixed). */
function checkForm(): string[] {
  const problems = numericKeys.map(setting).filter((v): v is string => typeof v === 'string');
  show($('settings-error'), problems.join('; '), problems.length ? 'error' : '');
  return problems;
}

/** The settings a training run needs; throws the settings' problems (named as the page labels them). */
function readSettings(): TrainSettings {
  const problems = checkForm();
  if (problems.length) throw new Error(`check the settings: ${problems.join('; ')}`);
  const v = Object.fromEntries(numericKeys.map((k) => [k, setting(k) as number])) as NumericSettings;
  const target = field('targetModules').value.trim();
  const ff = field('feedforwardModules').value.trim();
  // The model type's defaults unchanged: let the library resolve them (as PEFT does).
  const same = target === defaultModules.target && ff === defaultModules.feedforward;
  return {
    learningRate: v.learningRate,
    steps: v.steps,
    batchSize: v.batchSize,
    seqLen: v.seqLen,
    evalSize: v.evalSize,
    seed: v.seed,
    targetModules: same ? [] : splitModules(target),
    feedforwardModules: same ? [] : splitModules(ff),
  };
}

/** The preset the form matches, or 'custom'. */
function matchingPreset(): PresetName | 'custom' {
  const hit = (Object.keys(PRESETS) as PresetName[]).find((name) => numericKeys.every((k) => Number(field(k).value) === PRESETS[name][k]));
  return hit ?? 'custom';
}

/** Says how long the chosen preset, and the full one, take on this adapter (when that is known). */
function showPresetNote(): void {
  const r = rates ?? (software ? SOFTWARE_RATES : null);
  const name = presetSelect.value as PresetName | 'custom';
  const values = name === 'custom' ? (Object.fromEntries(numericKeys.map((k) => [k, Number(field(k).value)])) as NumericSettings) : PRESETS[name];
  if (!r) {
    $('preset-note').textContent = name === 'full' ? 'the full run: validation before and after, then the test set on request' : '';
    return;
  }
  const here = estimateSeconds(values, r);
  const full = estimateSeconds(PRESETS.full, r);
  const basis = rates ? 'at the speed measured here' : 'on a software adapter like this one (SwiftShader, 2 CPU cores)';
  let text = `a spam-filter run takes about ${minutes(here.spam)}, a style run about ${minutes(here.style)} ${basis}`;
  if (name !== 'full') text += `; the full preset (${PRESETS.full.steps} steps of ${PRESETS.full.batchSize} × ${PRESETS.full.seqLen} tokens) would take about ${minutes(full.spam)} and ${minutes(full.style)}`;
  $('preset-note').textContent = `${capitalise(text)}.`;
}

presetSelect.onchange = () => {
  if (presetSelect.value !== 'custom') fillSettings(PRESETS[presetSelect.value as PresetName]);
  checkForm();
  showPresetNote();
};
for (const k of numericKeys) {
  field(k).addEventListener('input', () => {
    presetSelect.value = matchingPreset();
    checkForm();
    showPresetNote();
  });
}

// --- the worker --------------------------------------------------------------------------------

const client = new WorkerClient(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
const charts: Record<Task, LossChart> = { spam: new LossChart($('loss-chart')), style: new LossChart($('style-chart')) };
/** Steps per mean on the loss curve: about six means over a run, two to ten steps each. */
const meanWindow = (steps: number): number => Math.max(2, Math.min(10, Math.floor(steps / 6)));
const ids: Record<Task, { train: string; stop: string; resume: string; progress: string; text: string; chart: string; recovery: string }> = {
  spam: { train: 'train', stop: 'stop', resume: 'resume', progress: 'progress', text: 'progress-text', chart: 'loss-chart', recovery: 'recovery' },
  style: { train: 'style-train', stop: 'style-stop', resume: 'style-resume', progress: 'style-progress', text: 'style-progress-text', chart: 'style-chart', recovery: 'style-recovery' },
};
/** The step of the run's last checkpoint (what a reload or a lost device resumes from). */
const checkpointAt: Record<Task, number | undefined> = { spam: undefined, style: undefined };
/** Steps the run under way has done twice because the device was lost. */
const redone: Record<Task, { steps: number; losses: number }> = { spam: { steps: 0, losses: 0 }, style: { steps: 0, losses: 0 } };
/** Interrupted runs the page offers to resume (one at a time). */
let offers: InterruptedRun[] = [];
let ready = false;
let busy: string | null = null;
const resumable: Record<Task, boolean> = { spam: false, style: false };
let trainedTask: Task = 'spam';
/** The settings of the last spam run: the sequence length Classify and the test set use. */
let lastSpamRun: TrainSettings | undefined;
/**
 * The first and latest progress of the run part under way, for this adapter's speed: measured
 * from the first reported step, as the time before it is mostly compiling the training step.
 */
const speed: Record<Task, { first: [step: number, time: number]; last?: [step: number, time: number] } | undefined> = { spam: undefined, style: undefined };

/** Buttons follow one state: idle (ready), busy with a request, or running something Stop can end. */
function refresh(stoppable: Task | null = null): void {
  const idle = ready && busy === null;
  for (const t of ['spam', 'style'] as Task[]) {
    button(ids[t].train).disabled = !idle;
    button(ids[t].stop).disabled = stoppable !== t;
    button(ids[t].resume).disabled = !idle || !resumable[t];
  }
  for (const id of ['classify', 'eval-test', 'download', 'style-generate', 'model-url-load']) button(id).disabled = !idle;
  for (const id of ['adapter-files', 'model-files', 'data-file']) $<HTMLInputElement>(id).disabled = !idle;
}

/** Runs one user action: one at a time, its old message cleared, errors shown where it was started. */
async function action(name: string, where: HTMLElement, fn: () => Promise<void>, stoppable: Task | null = null): Promise<void> {
  if (busy !== null) return;
  busy = name;
  show(where, '');
  refresh(stoppable);
  try {
    await fn();
  } catch (e) {
    show(where, describeError(e), 'error');
  } finally {
    busy = null;
    refresh();
  }
}

client.onEvent((e) => {
  switch (e.type) {
    case 'progress':
      onProgress(e);
      break;
    case 'evalProgress': {
      const p = $<HTMLProgressElement>('progress');
      p.max = e.total;
      p.value = e.done;
      show($('progress-text'), `measuring ${e.what}: ${e.done} / ${e.total} mails · ETA ${clock(e.eta)}`);
      break;
    }
    case 'loadProgress':
      onLoadProgress(e);
      break;
    case 'phase':
      show($(ids[e.task].text), e.text);
      break;
    case 'accuracy':
      showAccuracy(e.phase === 'before' ? 'acc-before' : 'acc-after', e.result);
      break;
    case 'perplexity':
      $(e.phase === 'before' ? 'ppl-before' : 'ppl-after').textContent = `${e.result.perplexity.toFixed(2)} on ${e.result.windows} windows`;
      break;
    case 'checkpoint':
      checkpointAt[e.task] = e.step;
      $(ids[e.task].text).dataset.checkpoint = String(e.step);
      break;
    case 'recovered':
      onRecovered(e);
      break;
    case 'sample':
      $(e.which === 'before' ? 'sample-before' : 'sample-after').textContent = `${$<HTMLInputElement>('prompt').value}${e.text}${e.done ? '' : '…'}`;
      break;
  }
});

function onProgress(e: ProgressEvent): void {
  const now = performance.now();
  const sp = speed[e.task];
  if (!sp) speed[e.task] = { first: [e.step, now] };
  else sp.last = [e.step, now];
  const p = $<HTMLProgressElement>(ids[e.task].progress);
  p.max = e.totalSteps;
  p.value = e.step;
  const chart = charts[e.task];
  chart.push(e.points);
  const last = e.points[e.points.length - 1]?.[1];
  const el = $(ids[e.task].chart);
  el.dataset.points = String(chart.points);
  el.dataset.first = String(chart.first);
  el.dataset.last = String(chart.last);
  el.dataset.firstStep = String(chart.firstStep);
  const saved = checkpointAt[e.task];
  show($(ids[e.task].text), `step ${e.step} / ${e.totalSteps} · ${e.stepsPerSecond.toFixed(2)} steps/s · ETA ${clock(e.eta)}${last === undefined ? '' : ` · loss ${last.toFixed(4)}`}${saved === undefined ? '' : ` · saved at step ${saved}`}`);
}

/** The status line the load bar sits under: the page's, or the files section's while a user's model loads. */
let loadAnchor: HTMLElement = $('status');
/** Events of the load under way or last done (a `done` event ends one): recorded for the end-to-end test. */
let loadEvents = 0;
let loading = false;
const megabytes = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

/** A model loading: bytes and tensors so far on a bar under the status line, hidden when it is done. */
function onLoadProgress(e: LoadProgressEvent): void {
  const row = $('load-row');
  if (!loading) {
    loadAnchor.after(row);
    loadEvents = 0;
  }
  loadEvents++;
  loading = !e.done;
  row.hidden = e.done;
  const p = $<HTMLProgressElement>('load-progress');
  if (e.totalBytes) {
    p.max = e.totalBytes;
    p.value = e.loadedBytes;
  } else {
    p.removeAttribute('value'); // indeterminate: the size is not known
  }
  const bytes = e.totalBytes === null ? megabytes(e.loadedBytes) : `${megabytes(e.loadedBytes)} / ${megabytes(e.totalBytes)}`;
  const tensors = e.totalTensors === null ? `${e.tensors} tensors` : `${e.tensors} / ${e.totalTensors} tensors`;
  show($('load-text'), `loading the ${e.task === 'spam' ? 'spam filter' : 'style'} model${e.file ? ` (${e.file})` : ''}: ${bytes} · ${tensors}`);
  Object.assign(row.dataset, {
    task: e.task,
    file: e.file,
    loadedBytes: String(e.loadedBytes),
    totalBytes: e.totalBytes === null ? '' : String(e.totalBytes),
    tensors: String(e.tensors),
    totalTensors: e.totalTensors === null ? '' : String(e.totalTensors),
    events: String(loadEvents),
    done: String(e.done),
  });
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The worker got a new device after losing one, and goes on from the last checkpoint. */
function onRecovered(e: RecoveredEvent): void {
  const r = redone[e.task];
  r.steps += e.redone;
  r.losses++;
  charts[e.task].dropAfter(e.resumedFrom);
  speed[e.task] = undefined; // the reload is no part of the training speed
  const el = $(ids[e.task].recovery);
  const from = e.resumedFrom === 0 ? 'from the start (no checkpoint had been saved yet)' : `from the checkpoint of step ${e.resumedFrom}`;
  const all = r.losses > 1 ? ` (${plural(r.steps, 'step')} over ${r.losses} losses in this run)` : '';
  el.textContent = `The GPU device was lost at step ${e.lostAt} (${e.reason}). The page created a new device, loaded the model again and resumed ${from}: ${plural(e.redone, 'step')} redone${all}. Nothing else is needed from you.`;
  Object.assign(el.dataset, { lostAt: String(e.lostAt), resumedFrom: String(e.resumedFrom), redone: String(e.redone), total: String(r.steps) });
  el.hidden = false;
}

/** A new run (or a resumed one) starts: no checkpoint or recovery of an earlier run is shown. */
function startRun(task: Task): void {
  checkpointAt[task] = undefined;
  redone[task] = { steps: 0, losses: 0 };
  const el = $(ids[task].recovery);
  el.hidden = true;
  el.textContent = '';
  for (const k of ['lostAt', 'resumedFrom', 'redone', 'total']) delete el.dataset[k];
  delete $(ids[task].text).dataset.checkpoint;
  // A new run of the task replaces the interrupted one (its checkpoint is cleared when it starts).
  offers = offers.filter((o) => o.task !== task);
  showOffer();
}

/** The open tab. */
let activeTab: Task = 'spam';
/** Each task's model (the tasks use different ones: mail-gpt2 and sotu-gpt2 when shipped). */
const models: Partial<Record<Task, ModelInfo>> = {};

/** The header's Model, Adapter and summary lines: those of the open tab's model. */
function showHeader(): void {
  const info = models[activeTab];
  if (!info) return;
  $('model-line').textContent = `${info.name} — ${info.modelType ?? 'unknown type'}, ${info.layers ?? '?'} layers, ${info.parameters.toLocaleString('en-US')} parameters`;
  $('trainable').textContent = info.trainableLine;
  $('summary').textContent = info.summary;
}

function showModel(info: ModelInfo): void {
  models[info.task] = info;
  showHeader();
  defaultModules = { target: info.defaultTargetModules.join(', '), feedforward: info.defaultFeedforwardModules.join(', ') };
}

function showData(d: DataInfo): void {
  if (d.task === 'spam') {
    $('spam-data').textContent = `${d.name}: ${d.train} training, ${d.validation} validation, ${d.test} test mails${d.labels ? ` (${d.labels.join(' / ')})` : ''}`;
    $('test-size').textContent = `(all ${d.test} mails)`;
  } else {
    $('style-data').textContent = `${d.name}: ${d.train.toLocaleString('en-US')} characters`;
  }
}

async function showBaseline(): Promise<void> {
  const evalSize = setting('evalSize');
  const b: BaselineResult = await client.request('baseline', { evalSize: typeof evalSize === 'number' ? evalSize : PRESETS.quick.evalSize });
  showScores('base-val', b.validation);
  showScores('base-test', b.test);
  $('val-size').textContent = `(a fixed subset of ${b.validation.examples} mails)`;
  $('base-time').textContent = `(trained in ${Math.max(1, Math.round(b.trainMs))} ms)`;
}

function finished(task: Task, o: TrainOutcome, settings?: TrainSettings): void {
  resumable[task] = o.resumable;
  const info = models[task];
  if (info) info.trainableLine = o.trainableLine;
  showHeader();
  const el = $(ids[task].text);
  const chart = charts[task];
  const losses = chart.first === undefined ? '' : ` · mean loss ${chart.first.toFixed(4)} → ${chart.last!.toFixed(4)}`;
  show(el, `${o.reason === 'completed' ? 'done' : 'stopped'}: ${o.steps} steps in ${clock(o.seconds)}${losses}`, o.reason === 'completed' ? 'ok' : '');
  el.dataset.state = o.reason;
  // The speed of this adapter, for the presets' estimates.
  const sp = speed[task];
  speed[task] = undefined;
  if (settings && sp?.last && sp.last[0] > sp.first[0]) {
    const perToken = (sp.last[1] - sp.first[1]) / 1000 / ((sp.last[0] - sp.first[0]) * settings.batchSize * settings.seqLen);
    const r = rates ?? { ...SOFTWARE_RATES };
    if (task === 'spam') r.train = perToken;
    else r.lm = perToken;
    rates = r;
    showPresetNote();
  }
}

function noteEvalRate(r: AccuracyResult, seqLen: number): void {
  if (r.examples > 0 && rates) rates.evaluate = r.seconds / (r.examples * seqLen);
}

// --- the spam filter ---------------------------------------------------------------------------

async function classifySample(): Promise<void> {
  show($('classify-result'), 'classifying…');
  const seqLen = setting('seqLen');
  const r = await client.request('classify', { text: $<HTMLTextAreaElement>('mail').value, seqLen: lastSpamRun?.seqLen ?? (typeof seqLen === 'number' ? seqLen : PRESETS.quick.seqLen) });
  show($('classify-result'), `P(spam) with the adapter ${pct(r.withAdapter)} · without (base model) ${pct(r.withoutAdapter)}`);
}

button('train').onclick = () =>
  void action(
    'train',
    $('progress-text'),
    async () => {
      const settings = readSettings();
      charts.spam.clear(meanWindow(settings.steps));
      clearScores('acc-after');
      clearScores('acc-test');
      show($('classify-result'), '');
      $('progress-text').dataset.state = 'running';
      resumable.spam = false;
      startRun('spam');
      await showBaseline();
      const o = await client.request('train', { task: 'spam', settings });
      lastSpamRun = settings;
      finished('spam', o, settings);
      trainedTask = 'spam';
      if (o.reason === 'completed') await classifySample();
    },
    'spam',
  );
button('stop').onclick = () => client.stop();
button('resume').onclick = () =>
  void action(
    'resume',
    $('progress-text'),
    async () => {
      const o = await client.request('resume', { task: 'spam' });
      finished('spam', o, lastSpamRun);
      if (o.reason === 'completed') await classifySample();
    },
    'spam',
  );
button('eval-test').onclick = () =>
  void action(
    'test',
    $('progress-text'),
    async () => {
      // The adapter's own sequence length (that of its run), else the form's.
      const settings = lastSpamRun ?? readSettings();
      clearScores('acc-test', 'measuring…');
      $('acc-test').dataset.state = 'running';
      const r = await client.request('evaluate', { settings, split: 'test' });
      showAccuracy('acc-test', r);
      noteEvalRate(r, settings.seqLen);
      $('acc-test').dataset.state = r.stopped ? 'stopped' : 'completed';
      show($('progress-text'), r.stopped ? `test set stopped after ${r.examples} of ${r.total} mails` : `test set: ${r.examples} mails in ${clock(r.seconds)}`, r.stopped ? '' : 'ok');
    },
    'spam',
  );
button('classify').onclick = () => void action('classify', $('classify-result'), classifySample);

// --- the style task ----------------------------------------------------------------------------

const styleSelect = $<HTMLSelectElement>('style-preset');
const styleArea = $<HTMLTextAreaElement>('style-text');
const OWN_TEXT = '__own__';
const FROM_FILE = '__file__';

async function loadStyleTexts(): Promise<void> {
  const res = await fetch(new URL('data/style/index.json', document.baseURI));
  if (!res.ok) throw new Error(`data/style/index.json: HTTP ${res.status}`);
  const index = (await res.json()) as { id: string; title: string; file: string }[];
  for (const p of index) styleSelect.add(new Option(p.title, p.file));
  styleSelect.add(new Option('my own text (paste below)', OWN_TEXT));
  await chooseStyleText();
}

async function chooseStyleText(): Promise<void> {
  const v = styleSelect.value;
  styleArea.readOnly = v !== OWN_TEXT;
  if (v === OWN_TEXT) {
    styleArea.value = '';
    styleArea.focus();
  } else if (v !== FROM_FILE) {
    const res = await fetch(new URL(`data/style/${v}`, document.baseURI));
    if (!res.ok) throw new Error(`data/style/${v}: HTTP ${res.status}`);
    styleArea.value = await res.text();
  }
}
styleSelect.onchange = () => void chooseStyleText().catch((e: unknown) => show($('style-data'), describeError(e), 'error'));

async function samples(settings: TrainSettings, which: ('before' | 'after')[]): Promise<void> {
  const prompt = $<HTMLInputElement>('prompt').value;
  const tokens = Number($<HTMLInputElement>('gen-tokens').value) || 32;
  for (const w of which) await client.request('generate', { prompt, tokens, settings, which: w });
}

/** The style run's settings: the shared ones with its own step count and learning rate. */
function styleSettings(): TrainSettings {
  return { ...readSettings(), steps: setting('styleSteps') as number, learningRate: setting('styleLearningRate') as number };
}

button('style-train').onclick = () =>
  void action(
    'style-train',
    $('style-progress-text'),
    async () => {
      const settings = styleSettings();
      // Checked (long enough?) before anything else runs.
      if (styleSelect.value !== FROM_FILE) {
        const name = styleSelect.selectedOptions[0]?.text ?? 'text';
        showData(await client.request('setStyleText', { text: styleArea.value, name, seqLen: settings.seqLen }));
      }
      charts.style.clear(meanWindow(settings.steps));
      $('sample-after').textContent = '';
      $('ppl-before').textContent = '—';
      $('ppl-after').textContent = '—';
      $('style-progress-text').dataset.state = 'running';
      show($('style-progress-text'), 'sampling from the base model…');
      await samples(settings, ['before']);
      resumable.style = false;
      startRun('style');
      const o = await client.request('train', { task: 'style', settings });
      finished('style', o, settings);
      trainedTask = 'style';
      if (o.reason === 'completed') await samples(settings, ['after']);
    },
    'style',
  );
button('style-stop').onclick = () => client.stop();
button('style-resume').onclick = () =>
  void action(
    'style-resume',
    $('style-progress-text'),
    async () => {
      const o = await client.request('resume', { task: 'style' });
      const settings = styleSettings();
      finished('style', o, settings);
      if (o.reason === 'completed') await samples(settings, ['after']);
    },
    'style',
  );
button('style-generate').onclick = () => void action('generate', $('style-progress-text'), () => samples(styleSettings(), ['before', 'after']));

// --- runs interrupted by a reload ------------------------------------------------------------

const taskName = (t: Task): string => (t === 'spam' ? 'spam-filter' : 'style');

/** Offers the first interrupted run (its checkpoint survived the reload), if any. */
function showOffer(): void {
  const o = offers[0];
  const box = $('resume-offer');
  box.hidden = !o;
  if (!o) return;
  $('resume-offer-text').textContent = `A ${taskName(o.task)} run (${o.totalSteps} steps on ${o.dataName}) was interrupted; its last checkpoint is step ${o.step}. Resume it from there, with the settings it was started with?`;
  Object.assign(box.dataset, { task: o.task, step: String(o.step) });
}

/** The form shows the settings an interrupted run was started with (what it resumes with). */
function fillRunSettings(task: Task, s: TrainSettings): void {
  for (const k of ['batchSize', 'seqLen', 'evalSize', 'seed'] as const) field(k).value = String(s[k]);
  field(task === 'spam' ? 'steps' : 'styleSteps').value = String(s.steps);
  field(task === 'spam' ? 'learningRate' : 'styleLearningRate').value = String(s.learningRate);
  field('targetModules').value = s.targetModules.length ? s.targetModules.join(', ') : defaultModules.target;
  field('feedforwardModules').value = s.feedforwardModules.length ? s.feedforwardModules.join(', ') : defaultModules.feedforward;
  presetSelect.value = matchingPreset();
  checkForm();
}

button('resume-offer-yes').onclick = () => {
  const o = offers.shift();
  if (!o) return;
  button(`tab-${o.task}`).click();
  fillRunSettings(o.task, o.settings);
  showOffer();
  void action(
    'resume-interrupted',
    $(ids[o.task].text),
    async () => {
      startRun(o.task);
      charts[o.task].clear(meanWindow(o.settings.steps));
      $(ids[o.task].text).dataset.state = 'running';
      const r = await client.request('resumeInterrupted', { task: o.task });
      finished(o.task, r, o.settings);
      trainedTask = o.task;
      if (o.task === 'spam') lastSpamRun = o.settings;
      if (r.reason === 'completed') await (o.task === 'spam' ? classifySample() : samples(o.settings, ['after']));
    },
    o.task,
  );
};
button('resume-offer-no').onclick = () => {
  const o = offers.shift();
  showOffer();
  const where = $('files-status');
  if (o) void action('discard', where, () => client.request('discardInterrupted', { task: o.task }).then(() => show(where, `discarded the interrupted ${taskName(o.task)} run`)));
};

// --- tabs --------------------------------------------------------------------------------------

for (const t of ['spam', 'style'] as Task[]) {
  button(`tab-${t}`).onclick = () => {
    activeTab = t;
    showHeader();
    for (const u of ['spam', 'style'] as Task[]) {
      $(`panel-${u}`).hidden = u !== t;
      button(`tab-${u}`).classList.toggle('active', u === t);
      button(`tab-${u}`).setAttribute('aria-selected', String(u === t));
    }
  };
}

// --- adapters, models, data --------------------------------------------------------------------

const filesStatus = $('files-status');

button('download').onclick = () =>
  void action('download', filesStatus, async () => {
    // The adapter of the task trained last (or of the open tab when it was trained since).
    const task = resumable[activeTab] || activeTab === trainedTask ? activeTab : trainedTask;
    const { files } = await client.request('downloadAdapter', { task });
    // PEFT's own file names (no prefix), so the pair loads back as it is, here or in PEFT.
    const names = downloadAdapter(files);
    show(filesStatus, `downloaded the ${task === 'spam' ? 'spam filter' : 'style'} adapter: ${names.join(', ')}`, 'ok');
  });

$<HTMLInputElement>('adapter-files').onchange = (ev) => {
  const input = ev.target as HTMLInputElement;
  const files = [...(input.files ?? [])];
  input.value = '';
  if (files.length === 0) return;
  void action('load-adapter', filesStatus, async () => {
    show(filesStatus, 'loading the adapter…');
    const r = await client.request('loadAdapter', { files });
    const info = models[r.task];
    if (info) info.trainableLine = r.trainableLine;
    showHeader();
    if (r.task === 'spam') {
      show(filesStatus, 'adapter loaded; measuring validation accuracy…');
      const acc = await client.request('evaluate', { settings: lastSpamRun ?? readSettings(), split: 'validation' });
      showAccuracy('acc-after', acc);
      show(filesStatus, `loaded a spam filter adapter: validation accuracy ${pct(acc.accuracy)} of ${acc.examples}`, 'ok');
    } else {
      show(filesStatus, 'loaded a style adapter: “Generate again” samples with it', 'ok');
    }
    trainedTask = r.task;
  });
};

async function loadOwnModel(source: ModelSource): Promise<void> {
  const task = $<HTMLSelectElement>('byo-task').value as Task;
  show(filesStatus, 'loading the model…');
  loadAnchor = filesStatus;
  let info: ModelInfo;
  try {
    info = await client.request('loadModel', { task, source });
  } finally {
    loadAnchor = $('status');
  }
  showModel(info);
  resumable[task] = false;
  fillModuleDefaults();
  show(filesStatus, `loaded ${info.name} for the ${task === 'spam' ? 'spam filter' : 'style'} task`, 'ok');
}

$<HTMLInputElement>('model-files').onchange = (ev) => {
  const files = [...((ev.target as HTMLInputElement).files ?? [])];
  if (files.length) void action('model', filesStatus, () => loadOwnModel({ kind: 'files', files }));
};
button('model-url-load').onclick = () => {
  const url = $<HTMLInputElement>('model-url').value.trim();
  if (url) void action('model', filesStatus, () => loadOwnModel({ kind: 'url', url }));
};

$<HTMLInputElement>('data-file').onchange = (ev) => {
  const input = ev.target as HTMLInputElement;
  const file = input.files?.[0];
  input.value = '';
  if (!file) return;
  void action('data', filesStatus, async () => {
    const task = $<HTMLSelectElement>('data-task').value as Task;
    try {
      checkDataFileSize(file.size);
    } catch (e) {
      throw new WorkerFailure({ name: 'DataFileError', code: 'DATA_FILE', message: e instanceof Error ? e.message : String(e) });
    }
    const info = await client.request('loadData', { task, name: file.name, content: await file.text() });
    showData(info);
    if (task === 'spam') {
      for (const id of ['acc-before', 'acc-after', 'acc-test']) clearScores(id);
      await showBaseline();
    } else {
      if (![...styleSelect.options].some((o) => o.value === FROM_FILE)) styleSelect.add(new Option(`data file: ${file.name}`, FROM_FILE));
      styleSelect.value = FROM_FILE;
      styleArea.value = '';
      styleArea.readOnly = true;
    }
    resumable[task] = false;
    show(filesStatus, `using ${file.name} for the ${task === 'spam' ? 'spam filter' : 'style'} task`, 'ok');
  });
};

// --- start -------------------------------------------------------------------------------------

let fromUrl = settingsFromUrl(location.search, 'quick');
/** `?debug`: the end-to-end test may destroy the worker's WebGPU device (window.__demo.loseDevice()). */
const debug = new URLSearchParams(location.search).has('debug');
if (debug) (window as unknown as { __demo: { loseDevice(): void } }).__demo = { loseDevice: () => client.debugLoseDevice() };

function fillModuleDefaults(): void {
  field('targetModules').value = fromUrl.modules.target?.join(', ') ?? defaultModules.target;
  field('feedforwardModules').value = fromUrl.modules.feedforward?.join(', ') ?? defaultModules.feedforward;
}

async function start(): Promise<void> {
  refresh();
  show($('status'), 'requesting a WebGPU device…');
  try {
    const d = await client.request('device', {});
    software = d.software;
    $('adapter').textContent = `${d.adapter}${d.software ? ' (a software adapter: correct, but slow)' : ''}`;
    // The preset follows the adapter unless the URL names one.
    fromUrl = settingsFromUrl(location.search, presetFor(d.software));
    fillSettings(fromUrl.settings);
    presetSelect.value = fromUrl.changed ? 'custom' : fromUrl.preset;
    if (fromUrl.problems.length) show($('settings-error'), `URL parameters ignored: ${fromUrl.problems.join('; ')}`, 'error');
    showPresetNote();
    show($('status'), 'loading the model and data in the worker…');
    const r = await client.request('init', { model: { kind: 'shipped' }, base: document.baseURI, debug });
    showModel(r.style);
    // The spam model's defaults prefill the module settings (shown first: its tab opens first).
    showModel(r.spam);
    fillModuleDefaults();
    for (const d of r.data) showData(d);
    await showBaseline();
    await loadStyleTexts();
    ready = true;
    // Ready once the page knows whether a reload interrupted a run (offered above the tabs).
    offers = await client.request('interrupted', {});
    showOffer();
    show($('status'), 'ready', 'ok');
  } catch (e) {
    const msg = describeError(e);
    show($('status'), msg, 'error');
    if (e instanceof WorkerFailure && e.name === 'WebGPUUnavailableError') show($('adapter'), msg, 'error');
  }
  refresh();
}

void start();
