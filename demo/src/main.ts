// The demo page's main thread: it only renders. Every piece of model work runs in ./worker.ts and
// arrives here as messages (see ./protocol.ts); training progress comes in batches, and the loss
// curve redraws at most once per animation frame.
import { downloadAdapter } from 'ia3-webgpu';
import { WorkerClient, WorkerFailure } from './client.js';
import { checkDataFileSize } from './datafile.js';
import type { AccuracyResult, DataInfo, ModelInfo, ModelSource, ProgressEvent, Task, TrainOutcome, TrainSettings } from './protocol.js';
import { checkSetting, DEFAULTS, settingsFromUrl, splitModules, type NumericSettings } from './settings.js';
import { LossChart } from './ui/chart.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};
const button = (id: string): HTMLButtonElement => $<HTMLButtonElement>(id);

/** A message for people: the library's error name says what kind of problem it is. */
function describeError(e: unknown): string {
  if (e instanceof WorkerFailure) {
    switch (e.name) {
      case 'WebGPUUnavailableError':
        return `WebGPU is not available in this browser: ${e.message}`;
      case 'UnsupportedOpError':
        return `This model uses an operation the toolkit cannot run — ${e.message}`;
      case 'DataFileError':
        return `The data file cannot be read${e.line === undefined ? '' : ` (line ${e.line})`}: ${e.message.replace(/^line \d+: /, '')}`;
      default:
        return `${e.name}: ${e.message}`;
    }
  }
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function show(el: HTMLElement, text: string, kind: 'ok' | 'error' | '' = ''): void {
  el.className = kind;
  el.textContent = text;
}

const percent = (r: AccuracyResult): string => `${(100 * r.accuracy).toFixed(1)}%`;
const clock = (s: number): string => (Number.isFinite(s) ? `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}` : '—');

// --- settings ----------------------------------------------------------------------------------

const form = $<HTMLFormElement>('settings-form');
const field = (name: string): HTMLInputElement => form.elements.namedItem(name) as HTMLInputElement;
let defaultModules = { target: '', feedforward: '' };

function fillSettings(s: NumericSettings): void {
  for (const [k, v] of Object.entries(s)) field(k).value = String(v);
}

/** The form's settings; a bad value throws with the setting's name. */
function readSettings(): TrainSettings {
  const out: Partial<NumericSettings> = {};
  for (const key of Object.keys(DEFAULTS) as (keyof NumericSettings)[]) {
    const v = checkSetting(key, field(key).value);
    if (typeof v === 'string') {
      show($('settings-error'), v, 'error');
      throw new Error(v);
    }
    out[key] = v;
  }
  show($('settings-error'), '');
  const target = field('targetModules').value.trim();
  const ff = field('feedforwardModules').value.trim();
  // The model type's defaults unchanged: let the library resolve them (as PEFT does).
  const same = target === defaultModules.target && ff === defaultModules.feedforward;
  return { ...(out as NumericSettings), targetModules: same ? [] : splitModules(target), feedforwardModules: same ? [] : splitModules(ff) };
}

// --- the worker --------------------------------------------------------------------------------

const client = new WorkerClient(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
const charts: Record<Task, LossChart> = { spam: new LossChart($('loss-chart')), style: new LossChart($('style-chart')) };
/** Steps per mean on the loss curve: about six means over a run, at most ten steps each. */
const meanWindow = (steps: number): number => Math.max(1, Math.min(10, Math.floor(steps / 6)));
const ids: Record<Task, { train: string; stop: string; resume: string; progress: string; text: string; chart: string }> = {
  spam: { train: 'train', stop: 'stop', resume: 'resume', progress: 'progress', text: 'progress-text', chart: 'loss-chart' },
  style: { train: 'style-train', stop: 'style-stop', resume: 'style-resume', progress: 'style-progress', text: 'style-progress-text', chart: 'style-chart' },
};
let ready = false;
let busy: string | null = null;
const resumable: Record<Task, boolean> = { spam: false, style: false };
let trainedTask: Task = 'spam';

/** Buttons follow one state: idle (ready), busy with a request, or training a task. */
function refresh(training: Task | null = null): void {
  const idle = ready && busy === null;
  for (const t of ['spam', 'style'] as Task[]) {
    button(ids[t].train).disabled = !idle;
    button(ids[t].stop).disabled = training !== t;
    button(ids[t].resume).disabled = !idle || !resumable[t];
  }
  for (const id of ['classify', 'eval-test', 'download', 'style-generate', 'model-url-load']) button(id).disabled = !idle;
  for (const id of ['adapter-files', 'model-files', 'data-file']) $<HTMLInputElement>(id).disabled = !idle;
}

/** Runs one user action: one at a time, errors shown where the action was started. */
async function action(name: string, where: HTMLElement, fn: () => Promise<void>, training: Task | null = null): Promise<void> {
  if (busy !== null) return;
  busy = name;
  refresh(training);
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
    case 'phase':
      show($(ids[e.task].text), e.text);
      break;
    case 'accuracy':
      $(e.phase === 'before' ? 'acc-before' : 'acc-after').textContent = `${percent(e.result)} of ${e.result.examples}`;
      break;
    case 'perplexity':
      $(e.phase === 'before' ? 'ppl-before' : 'ppl-after').textContent = `${e.result.perplexity.toFixed(2)} on ${e.result.windows} windows`;
      break;
    case 'sample':
      $(e.which === 'before' ? 'sample-before' : 'sample-after').textContent = `${$<HTMLInputElement>('prompt').value}${e.text}${e.done ? '' : '…'}`;
      break;
  }
});

function onProgress(e: ProgressEvent): void {
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
  show($(ids[e.task].text), `step ${e.step} / ${e.totalSteps} · ${e.stepsPerSecond.toFixed(2)} steps/s · ETA ${clock(e.eta)}${last === undefined ? '' : ` · loss ${last.toFixed(4)}`}`);
}

function showModel(info: ModelInfo): void {
  $('model-line').textContent = `${info.name} — ${info.modelType ?? 'unknown type'}, ${info.layers ?? '?'} layers, ${info.parameters.toLocaleString('en-US')} parameters`;
  $('trainable').textContent = info.trainableLine;
  $('summary').textContent = info.summary;
  defaultModules = { target: info.defaultTargetModules.join(', '), feedforward: info.defaultFeedforwardModules.join(', ') };
}

function showData(d: DataInfo): void {
  if (d.task === 'spam') {
    $('spam-data').textContent = `${d.name}: ${d.train} training, ${d.validation} validation, ${d.test} test mails${d.labels ? ` (${d.labels.join(' / ')})` : ''}`;
  } else {
    $('style-data').textContent = `${d.name}: ${d.train.toLocaleString('en-US')} characters`;
  }
}

function finished(task: Task, o: TrainOutcome): void {
  resumable[task] = o.reason === 'stopped';
  const el = $(ids[task].text);
  const chart = charts[task];
  const losses = chart.first === undefined ? '' : ` · mean loss ${chart.first.toFixed(4)} → ${chart.last!.toFixed(4)}`;
  show(el, `${o.reason === 'completed' ? 'done' : 'stopped'}: ${o.steps} steps in ${clock(o.seconds)}${losses}`, o.reason === 'completed' ? 'ok' : '');
  el.dataset.state = o.reason;
}

// --- the spam filter ---------------------------------------------------------------------------

button('train').onclick = () =>
  void action(
    'train',
    $('progress-text'),
    async () => {
      const settings = readSettings();
      charts.spam.clear(meanWindow(settings.steps));
      $('acc-after').textContent = '—';
      $('progress-text').dataset.state = 'running';
      resumable.spam = false;
      finished('spam', await client.request('train', { task: 'spam', settings }));
      trainedTask = 'spam';
    },
    'spam',
  );
button('stop').onclick = () => client.stop();
button('resume').onclick = () =>
  void action('resume', $('progress-text'), async () => finished('spam', await client.request('resume', { task: 'spam' })), 'spam');
button('eval-test').onclick = () =>
  void action('test', $('acc-test'), async () => {
    $('acc-test').textContent = 'measuring…';
    const r = await client.request('evaluate', { settings: readSettings(), split: 'test' });
    $('acc-test').textContent = `${percent(r)} of ${r.examples}`;
  });
button('classify').onclick = () =>
  void action('classify', $('classify-result'), async () => {
    show($('classify-result'), 'classifying…');
    const r = await client.request('classify', { text: $<HTMLTextAreaElement>('mail').value, settings: readSettings() });
    show($('classify-result'), `P(spam) with the adapter ${(100 * r.withAdapter).toFixed(1)}% · without (base model) ${(100 * r.withoutAdapter).toFixed(1)}%`);
  });

// --- the style task ----------------------------------------------------------------------------

const presetSelect = $<HTMLSelectElement>('style-preset');
const styleArea = $<HTMLTextAreaElement>('style-text');
const OWN_TEXT = '__own__';
const FROM_FILE = '__file__';

async function loadPresets(): Promise<void> {
  const res = await fetch(new URL('data/style/index.json', document.baseURI));
  if (!res.ok) throw new Error(`data/style/index.json: HTTP ${res.status}`);
  const index = (await res.json()) as { id: string; title: string; file: string }[];
  for (const p of index) presetSelect.add(new Option(p.title, p.file));
  presetSelect.add(new Option('my own text (paste below)', OWN_TEXT));
  await choosePreset();
}

async function choosePreset(): Promise<void> {
  const v = presetSelect.value;
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
presetSelect.onchange = () => void choosePreset().catch((e: unknown) => show($('style-data'), describeError(e), 'error'));

async function samples(settings: TrainSettings, which: ('before' | 'after')[]): Promise<void> {
  const prompt = $<HTMLInputElement>('prompt').value;
  const tokens = Number($<HTMLInputElement>('gen-tokens').value) || 32;
  for (const w of which) await client.request('generate', { prompt, tokens, settings, which: w });
}

button('style-train').onclick = () =>
  void action(
    'style-train',
    $('style-progress-text'),
    async () => {
      // The style run has its own step count (the other settings are shared with the spam filter).
      const styleSteps = checkSetting('steps', $<HTMLInputElement>('style-steps').value);
      if (typeof styleSteps === 'string') throw new Error(styleSteps.replace(/^steps/, 'style training steps'));
      const settings = { ...readSettings(), steps: styleSteps };
      if (presetSelect.value !== FROM_FILE) {
        const name = presetSelect.selectedOptions[0]?.text ?? 'text';
        showData(await client.request('setStyleText', { text: styleArea.value, name }));
      }
      charts.style.clear(meanWindow(settings.steps));
      $('sample-after').textContent = '';
      $('ppl-before').textContent = '—';
      $('ppl-after').textContent = '—';
      show($('style-progress-text'), 'sampling from the base model…');
      await samples(settings, ['before']);
      resumable.style = false;
      const o = await client.request('train', { task: 'style', settings });
      finished('style', o);
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
      finished('style', o);
      if (o.reason === 'completed') await samples(readSettings(), ['after']);
    },
    'style',
  );
button('style-generate').onclick = () => void action('generate', $('style-progress-text'), () => samples(readSettings(), ['before', 'after']));

// --- tabs --------------------------------------------------------------------------------------

let activeTab: Task = 'spam';
for (const t of ['spam', 'style'] as Task[]) {
  button(`tab-${t}`).onclick = () => {
    activeTab = t;
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
    $('trainable').textContent = r.trainableLine;
    if (r.task === 'spam') {
      show(filesStatus, 'adapter loaded; measuring validation accuracy…');
      const acc = await client.request('evaluate', { settings: readSettings(), split: 'validation' });
      $('acc-after').textContent = `${percent(acc)} of ${acc.examples}`;
      show(filesStatus, `loaded a spam filter adapter: validation accuracy ${percent(acc)}`, 'ok');
    } else {
      show(filesStatus, 'loaded a style adapter: “Generate again” samples with it', 'ok');
    }
    trainedTask = r.task;
  });
};

async function loadOwnModel(source: ModelSource): Promise<void> {
  const task = $<HTMLSelectElement>('byo-task').value as Task;
  show(filesStatus, 'loading the model…');
  const info = await client.request('loadModel', { task, source });
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
    if (task === 'style') {
      if (![...presetSelect.options].some((o) => o.value === FROM_FILE)) presetSelect.add(new Option(`data file: ${file.name}`, FROM_FILE));
      presetSelect.value = FROM_FILE;
      styleArea.value = '';
      styleArea.readOnly = true;
    }
    resumable[task] = false;
    show(filesStatus, `using ${file.name} for the ${task === 'spam' ? 'spam filter' : 'style'} task`, 'ok');
  });
};

// --- start -------------------------------------------------------------------------------------

const fromUrl = settingsFromUrl(location.search);
fillSettings(fromUrl.settings);
if (fromUrl.problems.length) show($('settings-error'), `URL parameters ignored: ${fromUrl.problems.join('; ')}`, 'error');

function fillModuleDefaults(): void {
  field('targetModules').value = fromUrl.modules.target?.join(', ') ?? defaultModules.target;
  field('feedforwardModules').value = fromUrl.modules.feedforward?.join(', ') ?? defaultModules.feedforward;
}

async function start(): Promise<void> {
  refresh();
  show($('status'), 'requesting a WebGPU device…');
  try {
    const d = await client.request('device', {});
    $('adapter').textContent = `${d.adapter}${d.software ? ' (a software adapter: correct, but slow)' : ''}`;
    show($('status'), 'loading the model and data in the worker…');
    const r = await client.request('init', { model: { kind: 'shipped' }, base: document.baseURI });
    showModel(r.spam);
    fillModuleDefaults();
    for (const d of r.data) showData(d);
    await loadPresets();
    ready = true;
    show($('status'), 'ready', 'ok');
  } catch (e) {
    const msg = describeError(e);
    show($('status'), msg, 'error');
    if (e instanceof WorkerFailure && e.name === 'WebGPUUnavailableError') show($('adapter'), msg, 'error');
  }
  refresh();
}

void start();
