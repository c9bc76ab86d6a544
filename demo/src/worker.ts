// The demo's worker: every piece of model work happens here (WebGPU device, models, tokenizer,
// PEFT adapters, training, evaluation, generation), so the page's main thread only renders.
// It speaks the protocol of ./protocol.ts and uses the library only through its public entry.
import { Tokenizer } from '@huggingface/tokenizers';
import {
  adapterFilesFromFileList,
  adapterName,
  createDevice,
  DeviceLostError,
  getPeftModel,
  IA3Config,
  IA3Error,
  InputError,
  loadModel,
  loadPeftModel,
  MemoryCheckpointStore,
  OpfsCheckpointStore,
  Trainer,
  type CheckpointStore,
  type Example,
  type GpuContext,
  type LoadModelOptions,
  type Model,
  type PeftModel,
  type Pooling,
  type TensorData,
  type TrainingArguments,
} from 'ia3-webgpu';
import { predictNaiveBayes, scores, trainNaiveBayes, type LabelledText } from './baseline.js';
import { DataFileError, parseDataFile } from './datafile.js';
import type { AccuracyResult, BaselineResult, DataInfo, FromWorker, InterruptedRun, ModelInfo, ModelSource, PerplexityResult, Request, Requests, Task, ToWorker, TrainOutcome, TrainSettings, WorkerError } from './protocol.js';
import { mulberry32, sampleTopK, seededShuffle, softmax } from './sampling.js';
import { warmupStepsFor } from './settings.js';

// The worker global, typed by hand: the project compiles against the DOM lib, not WebWorker.
const scope = self as unknown as { postMessage(message: FromWorker, transfer?: Transferable[]): void; onmessage: ((ev: MessageEvent<ToWorker>) => void) | null };
const post = (m: FromWorker, transfer?: Transferable[]): void => scope.postMessage(m, transfer);

/**
 * The shipped models: the spam filter's was pretrained further on the training split's mail text
 * (demo/tools/pretrain-mail.py); the style task's is the addresses-only model it started from.
 */
const SHIPPED: Record<Task, { folder: string; name: string }> = {
  spam: { folder: 'models/mail-gpt2/', name: 'mail-gpt2 (shipped)' },
  style: { folder: 'models/sotu-gpt2/', name: 'sotu-gpt2 (shipped)' },
};
const SHIPPED_SPAM = 'data/spam-assassin.jsonl';
/** Characters of an example kept before tokenising: enough for any sequence length offered. */
const CHARS_PER_TOKEN_BOUND = 8;
/** Validation subsets are drawn with this fixed seed, so "before" and "after" see the same mails. */
const EVAL_SUBSET_SEED = 1234;
/** Mails per forward pass when measuring accuracy (one compiled plan: a short last batch is padded). */
const EVAL_BATCH = 8;
/** Device losses in one run the worker recovers from before it gives up (a GPU that keeps failing). */
const MAX_RECOVERIES = 3;

/** What a run was started with, kept beside its checkpoint so a reload can rebuild its examples. */
interface RunRecord {
  settings: TrainSettings;
  /** Spam: the data set's name (it must be the one loaded to resume). Style: the text's name. */
  dataName: string;
  /** Style: the text itself (a pasted text is gone after a reload). */
  text?: string;
}

interface TaskState {
  model: Model;
  tokenizer: Tokenizer;
  name: string;
  /** Where the model came from: a lost device loads it again from there. */
  source: ModelSource;
  peft: PeftModel;
  /** The run in progress or stopped (for Resume), with the data it trains on. */
  trainer?: Trainer;
  trainData?: Example[];
  /** Style task: the held-out windows the perplexity before and after is measured on. */
  evalData?: Example[];
  totalSteps?: number;
  /** Training seconds of the run so far, over its stopped and resumed parts. */
  trainSeconds?: number;
  settings?: TrainSettings;
  record?: RunRecord;
  /** The last step the page was told about (what a lost device makes it redo from a checkpoint). */
  lastStep?: number;
}

let base = '';
let gpu: GpuContext | undefined;
const tasks: Partial<Record<Task, TaskState>> = {};
let spamData: { name: string; train: LabelledText[]; validation: LabelledText[]; test: LabelledText[]; labels: string[] } | undefined;
let styleText: { name: string; text: string } | undefined;
let training: Trainer | undefined;
/** `?debug` on the page: the end-to-end test may destroy the device (DebugMessage). */
let debug = false;
/** Set by Stop; the running evaluation checks it between batches (training has its own stop). */
let stopRequested = false;
/** Accuracy of the base model (the adapter at its identity init) by subset key: it never changes. */
const baseAccuracy = new Map<string, AccuracyResult>();
/** The naive-Bayes baseline of the current spam data (retrained when the data changes). */
let baseline: { model: ReturnType<typeof trainNaiveBayes>; trainMs: number } | undefined;

function state(task: Task): TaskState {
  const s = tasks[task];
  if (!s) throw new InputError(`the ${task} model is not loaded`);
  return s;
}

function serialiseError(e: unknown): WorkerError {
  // The reason only: the library's message tells a developer what to do, which the page has done (or says).
  if (e instanceof DeviceLostError) return { name: e.name, code: e.code, message: e.reason, recovered: gpu !== undefined && !gpu.isLost };
  if (e instanceof DataFileError) return e.line === null ? { name: 'DataFileError', code: 'DATA_FILE', message: e.message } : { name: 'DataFileError', code: 'DATA_FILE', message: e.message, line: e.line };
  if (e instanceof IA3Error) return { name: e.name, code: e.code, message: e.message };
  if (e instanceof Error) return { name: e.name, code: 'ERROR', message: e.message };
  return { name: 'Error', code: 'ERROR', message: String(e) };
}

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) throw new InputError(`could not fetch ${url}: HTTP ${res.status}`);
  return res;
}

async function readJson(file: File | undefined, what: string): Promise<unknown> {
  if (!file) throw new InputError(`the model folder has no ${what}`);
  try {
    return JSON.parse(await file.text()) as unknown;
  } catch (e) {
    throw new InputError(`${what}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Model file per task: the shipped folder has both heads; a user's folder its own onnx/model.onnx. */
const modelFileFor = (task: Task, source: ModelSource): string | undefined => (source.kind === 'shipped' && task === 'spam' ? 'onnx/model_seqcls.onnx' : undefined);

async function loadTask(task: Task, source: ModelSource): Promise<ModelInfo> {
  if (!gpu) throw new InputError('no WebGPU device');
  let model: Model;
  let tokJson: unknown;
  let tokConfig: unknown;
  let name: string;
  const modelFile = modelFileFor(task, source);
  const progress = loadReporter(task);
  const options: LoadModelOptions = { device: gpu, onProgress: progress.update, ...(modelFile ? { modelFile } : {}) };
  try {
    if (source.kind === 'files') {
      const byName = (n: string): File | undefined => source.files.find((f) => (f.webkitRelativePath || f.name).split('/').slice(1).join('/') === n || f.name === n);
      tokJson = await readJson(byName('tokenizer.json'), 'tokenizer.json');
      tokConfig = byName('tokenizer_config.json') ? await readJson(byName('tokenizer_config.json'), 'tokenizer_config.json') : {};
      model = await loadModel(source.files, options);
      name = source.files[0]?.webkitRelativePath.split('/')[0] || 'your model';
    } else {
      const url = source.kind === 'shipped' ? new URL(SHIPPED[task].folder, base).href : new URL(source.url.endsWith('/') ? source.url : `${source.url}/`, base).href;
      tokJson = await (await fetchOk(new URL('tokenizer.json', url).href)).json();
      const cfg = await fetch(new URL('tokenizer_config.json', url).href);
      tokConfig = cfg.ok ? await cfg.json() : {};
      model = await loadModel(url, options);
      name = source.kind === 'shipped' ? SHIPPED[task].name : url;
    }
  } finally {
    // Success or failure, the page's bar goes away; a failure is answered as the request's error.
    progress.done();
  }
  const tokenizer = new Tokenizer(tokJson as object, tokConfig as object);
  if (source.kind !== 'shipped') {
    try {
      await checkHead(task, model, tokenizer);
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }
  const old = tasks[task];
  // The adapter a default run trains, so the page's header shows its size before any run.
  const peft = getPeftModel(model, defaultConfig(task));
  tasks[task] = { model, tokenizer, name, source, peft };
  if (old && old.model !== model && old.model !== tasks[task === 'spam' ? 'style' : 'spam']?.model) await old.model.dispose();
  baseAccuracy.clear();
  return modelInfo(task);
}

/**
 * Relays loadModel's progress to the page: the first report at once, then at most one every 100 ms
 * (a 1 MiB chunk or a tensor can land far more often than the page can draw), and the last with `done`.
 */
function loadReporter(task: Task): { update: NonNullable<LoadModelOptions['onProgress']>; done(): void } {
  let last: Parameters<NonNullable<LoadModelOptions['onProgress']>>[0] | undefined;
  let lastPost = -Infinity;
  const send = (done: boolean): void =>
    post({ type: 'loadProgress', task, file: last?.file ?? '', loadedBytes: last?.loadedBytes ?? 0, totalBytes: last?.totalBytes ?? null, tensors: last?.tensors ?? 0, totalTensors: last?.totalTensors ?? null, done });
  return {
    update(p) {
      last = p;
      const now = performance.now();
      if (now - lastPost < 100) return;
      lastPost = now;
      send(false);
    },
    done: () => send(true),
  };
}

/**
 * Refuses a model whose output does not fit the task, before anything is trained on it: the spam
 * filter needs one score per class (a sequence-classification head), the style task one per
 * token of the tokenizer (a language-model head). A causal-LM export loaded for the spam filter
 * would otherwise be accepted and report P(spam) from two arbitrary vocabulary logits.
 */
async function checkHead(task: Task, model: Model, tokenizer: Tokenizer): Promise<void> {
  if (!model.outputNames.includes('logits')) {
    throw new InputError(`the model has no output named "logits" (its outputs: ${model.outputNames.join(', ')}); the page reads the scores from "logits", as Hugging Face exports name them`);
  }
  // Two tokens through the graph: the size of the last axis is the head's.
  const probe = await model.run(feedsFor(model, [[0, 0]], 2), ['logits']);
  const dims = probe.logits!.dims;
  const width = dims[dims.length - 1]!;
  const vocabulary = tokenizer.get_vocab().size;
  const classes = numClasses(model);
  if (task === 'spam' && width !== classes) {
    const lm = width >= vocabulary;
    throw new InputError(
      `this model gives ${width.toLocaleString('en-US')} scores per token${lm ? ', one per word of its vocabulary: it is a language model (causal-LM head)' : ''}, ` +
        `while the spam filter needs ${classes} (one per class: ${Object.values(labelNames(model)).join(', ')}). ` +
        `Pick a sequence-classification export of it (a "score" or "classifier" head with ${classes} outputs)${lm ? ', or load this one for the style task' : ''}.`,
    );
  }
  if (task === 'style' && width < vocabulary) {
    throw new InputError(
      `this model gives ${width} scores per token, but its tokenizer has ${vocabulary.toLocaleString('en-US')} tokens: it is a classifier, not a language model. ` +
        'The style task needs a causal-LM export (one score per token of the vocabulary); load this one for the spam filter.',
    );
  }
}

function labelNames(model: Model): Record<string, string> {
  const id2label = model.config?.id2label as Record<string, string> | undefined;
  return id2label ?? Object.fromEntries(Array.from({ length: numClasses(model) }, (_, i) => [String(i), `class ${i}`]));
}

function modelInfo(task: Task): ModelInfo {
  const s = state(task);
  // The model type's PEFT defaults (what the settings' module fields are prefilled with).
  const resolved = new IA3Config({ taskType: taskType(task) }).resolveForModelType(s.model.modelType ?? '');
  const list = (sel: unknown): string[] => (sel instanceof Set ? [...(sel as Set<string>)].sort() : typeof sel === 'string' ? [sel] : []);
  const cfg = s.model.config ?? {};
  const layers = Number(cfg.n_layer ?? cfg.num_hidden_layers ?? NaN);
  return {
    task,
    name: s.name,
    modelType: s.model.modelType ?? null,
    summary: s.model.describe(),
    layers: Number.isFinite(layers) ? layers : null,
    // PEFT's "all params" counts the adapter too; the model line and the summary count the model.
    parameters: s.peft.getNbTrainableParameters()[1] - s.peft.getNbTrainableParameters()[0],
    trainableLine: s.peft.printTrainableParameters(),
    defaultTargetModules: list(resolved.targetModules),
    defaultFeedforwardModules: list(resolved.feedforwardModules),
  };
}

function spamInfo(): DataInfo {
  const d = spamData!;
  return { task: 'spam', name: d.name, train: d.train.length, validation: d.validation.length, test: d.test.length, labels: d.labels };
}

function styleInfo(): DataInfo {
  const t = styleText!;
  return { task: 'style', name: t.name, train: t.text.length, validation: 0, test: 0, labels: null };
}

// --- tokenisation ------------------------------------------------------------------------------

function encode(tokenizer: Tokenizer, text: string, maxTokens: number): number[] {
  const ids = tokenizer.encode(text.slice(0, maxTokens * CHARS_PER_TOKEN_BOUND)).ids;
  return ids.slice(0, maxTokens);
}

/**
 * A mail's ids for classification, ending with the model's end-of-text token: a position that
 * attends to the whole (truncated) mail, the same token each time (where a model's head pools the
 * last token, it reads that rather than whichever word the truncation stopped at).
 */
function classIds(model: Model, tokenizer: Tokenizer, text: string, seqLen: number): number[] {
  const eos = model.config?.eos_token_id;
  if (typeof eos !== 'number') return encode(tokenizer, text, seqLen);
  return [...encode(tokenizer, text, seqLen - 1), eos];
}

/**
 * How the spam filter pools a decoder's per-position class scores: their mean over the mail's real
 * tokens, which reads every token of the mail alike, closer to the bag of words a naive Bayes
 * wins with than the last token Hugging Face reads (README, "Demo", has the figures). A head whose
 * scores are already pooled ([batch, classes]) is read as is.
 */
function poolingFor(model: Model): Pooling {
  return model.graph.outputs.find((o) => o.name === 'logits')?.dims?.length === 3 ? 'mean' : 'last';
}

/** A mail's class scores from the model's output: pooled as the training loss pools them. */
function pooledScores(out: TensorData, row: number, length: number, pooling: Pooling): number[] {
  if (pooling === 'last' || out.dims.length !== 3) return [...rowAt(out, row, length - 1)];
  const sum = new Array<number>(out.dims[2]!).fill(0);
  for (let t = 0; t < length; t++) rowAt(out, row, t).forEach((v, c) => (sum[c]! += v / length));
  return sum;
}

function classExamples(s: TaskState, items: readonly LabelledText[], seqLen: number): Example[] {
  return items.filter((x) => x.text.length > 0).map((x) => ({ input_ids: classIds(s.model, s.tokenizer, x.text, seqLen), label: x.label }));
}

/** Share of the style text's tokens trained on; the rest, its end, is held out for perplexity. */
const STYLE_TRAIN_FRACTION = 0.9;

/** Non-overlapping windows of seqLen tokens (a last, shorter one when at least two tokens remain). */
function windows(ids: readonly number[], seqLen: number): Example[] {
  const out: Example[] = [];
  for (let i = 0; i + 2 <= ids.length; i += seqLen) out.push({ input_ids: ids.slice(i, i + seqLen) });
  return out;
}

/**
 * The style text's tokens split in order: windows over the first 90% to train on, and windows over
 * the last 10% (at most `maxHeldOut` of them) to measure perplexity on. The split is by position,
 * not shuffled, so no held-out window overlaps a training window. The whole text is tokenised:
 * its size is bounded by the data file limit.
 */
function styleSplit(tokenizer: Tokenizer, text: string, seqLen: number, maxHeldOut: number): { train: Example[]; heldOut: Example[] } {
  const ids = tokenizer.encode(text).ids;
  const cut = Math.floor(ids.length * STYLE_TRAIN_FRACTION);
  const train = windows(ids.slice(0, cut), seqLen);
  const heldOut = windows(ids.slice(cut), seqLen).slice(0, maxHeldOut);
  // The held-out tenth needs two tokens (one prediction), so the text needs 20 tokens.
  if (train.length === 0 || heldOut.length === 0) throw new InputError(`the style text is too short: ${ids.length} tokens (about ${text.trim().split(/\s+/).filter(Boolean).length} words); it needs at least 20 tokens, and a few paragraphs to show a style`);
  return { train, heldOut };
}

/** Held-out perplexity of the style task's current adapter. */
async function heldOutPerplexity(s: TaskState): Promise<PerplexityResult> {
  const r = await trainerFor('style', s.settings!).evaluate(s.evalData!);
  return { loss: r.loss, perplexity: r.perplexity ?? Math.exp(r.loss), windows: r.examples };
}

function evalSubset(split: 'validation' | 'test', size: number): LabelledText[] {
  const all = spamData![split];
  return split === 'validation' ? seededShuffle(all, EVAL_SUBSET_SEED).slice(0, Math.max(1, Math.min(size, all.length))) : all;
}

/** Steps between checkpoints: about eight per run, at most ten steps apart (the most a lost device redoes). */
const checkpointStepsFor = (steps: number): number => Math.min(10, Math.max(1, Math.floor(steps / 8)));

function trainerFor(task: Task, s: TrainSettings, checkpoints?: CheckpointStore): Trainer {
  const { peft, model } = state(task);
  const args: TrainingArguments = {
    ...(task === 'spam' ? { pooling: poolingFor(model) } : {}),
    learningRate: s.learningRate,
    batchSize: s.batchSize,
    maxSteps: s.steps,
    seed: s.seed,
    maxLength: s.seqLen,
    buckets: [s.seqLen], // one padded length: one compiled plan serves every step
    // Each read of the losses is a progress update: about one per step (these are seconds long on
    // a software adapter), fewer on long runs.
    loggingSteps: Math.min(10, 1 + Math.floor(s.steps / 300)),
    warmupSteps: warmupStepsFor(s.steps),
    checkpointSteps: checkpointStepsFor(s.steps),
  };
  return new Trainer(peft, args, { checkpoints });
}

/**
 * The style task's targets while the settings keep the model type's defaults: every linear module
 * but the output layer (PEFT's 'all-linear'; the feed-forward ones stay the model type's). IA3 on
 * PEFT's GPT-2 defaults alone (attention c_attn, mlp.c_proj) moves the held-out perplexity less:
 * 14% against 16% in 24 steps at lr 0.1 in demo/tools/style-recipe.py's replay. The spam filter
 * keeps PEFT's defaults.
 */
const STYLE_TARGETS = 'all-linear';

const taskType = (task: Task): 'SEQ_CLS' | 'CAUSAL_LM' => (task === 'spam' ? 'SEQ_CLS' : 'CAUSAL_LM');

/** The adapter config of a run whose settings keep the model type's module defaults. */
function defaultConfig(task: Task): IA3Config {
  return new IA3Config(task === 'style' ? { taskType: taskType(task), targetModules: STYLE_TARGETS } : { taskType: taskType(task) });
}

/**
 * The adapter's config from the settings. Module names are checked here, with messages that name
 * the module and what the model has, before PEFT's own checks (whose messages name neither).
 */
function configFor(task: Task, s: TrainSettings): IA3Config {
  const opts = { taskType: taskType(task) };
  if (s.targetModules.length === 0 && s.feedforwardModules.length === 0) return defaultConfig(task);
  const paths = state(task).model.moduleNames();
  // PEFT's list matching: the whole path, or its end after a dot.
  const matches = (entry: string): boolean => paths.some((p) => p === entry || p.endsWith(`.${entry}`));
  // Short names for the message: the path after the layer index ("attn.c_attn"), once each.
  const names = [...new Set(paths.map((p) => p.replace(/^.*?\.\d+\./, '')))];
  const unknown = [...s.targetModules, ...s.feedforwardModules].filter((m) => !matches(m));
  if (unknown.length) {
    throw new InputError(`no module of the model is called ${unknown.map((m) => `"${m}"`).join(', ')}; its linear modules are ${names.join(', ')} (a name matches the end of a module path)`);
  }
  const notTargeted = s.feedforwardModules.filter((m) => !s.targetModules.includes(m));
  if (notTargeted.length) {
    throw new InputError(`the feed-forward module${notTargeted.length > 1 ? 's' : ''} ${notTargeted.map((m) => `"${m}"`).join(', ')} must also be listed as target module${notTargeted.length > 1 ? 's' : ''} (IA3 scales the input of the feed-forward modules among its targets)`);
  }
  return new IA3Config({ ...opts, targetModules: s.targetModules, feedforwardModules: s.feedforwardModules });
}

/**
 * Classifies labelled mails with the task's current adapter, EVAL_BATCH at a time, posting progress
 * and stopping early on Stop: accuracy, spam precision and recall, and the mean loss. Pools the
 * scores as the training loss does (poolingFor).
 */
async function evaluateRows(rows: readonly LabelledText[], seqLen: number, split: 'validation' | 'test', what: string): Promise<AccuracyResult> {
  const s = state('spam');
  const k = spamIndex(s.model);
  const pooling = poolingFor(s.model);
  const items = rows.filter((x) => x.text.length > 0).map((x) => ({ ids: classIds(s.model, s.tokenizer, x.text, seqLen), label: x.label }));
  const predicted: number[] = [];
  const labels: number[] = [];
  let lossSum = 0;
  const t0 = performance.now();
  let lastPost = 0;
  for (let i = 0; i < items.length && !stopRequested; i += EVAL_BATCH) {
    const batch = items.slice(i, i + EVAL_BATCH);
    // Padded with copies of the first mail to a whole batch: one compiled plan for every batch.
    const rowsIds = [...batch, ...Array.from({ length: EVAL_BATCH - batch.length }, () => batch[0]!)].map((b) => b.ids);
    const out = (await s.peft.run(feedsFor(s.model, rowsIds, seqLen), ['logits'])).logits!;
    batch.forEach((b, r) => {
      const p = softmax(pooledScores(out, r, b.ids.length, pooling));
      let best = 0;
      for (let c = 1; c < p.length; c++) if (p[c]! > p[best]!) best = c;
      predicted.push(best);
      labels.push(b.label);
      lossSum -= Math.log(Math.max(p[b.label] ?? 0, 1e-30));
    });
    const now = performance.now();
    if (now - lastPost > 250 || predicted.length === items.length) {
      const rate = predicted.length / Math.max(1e-3, (now - t0) / 1000);
      post({ type: 'evalProgress', what, split, done: predicted.length, total: items.length, eta: (items.length - predicted.length) / rate });
      lastPost = now;
    }
  }
  const sc = scores(predicted, labels, k);
  return { split, ...sc, loss: predicted.length ? lossSum / predicted.length : 0, total: items.length, stopped: predicted.length < items.length, seconds: (performance.now() - t0) / 1000 };
}

/** Accuracy of the spam filter's current adapter on a validation subset (or the whole test split). */
async function evaluate(settings: TrainSettings, split: 'validation' | 'test', what = `${split} accuracy`): Promise<AccuracyResult> {
  if (!spamData) throw new InputError('no spam data loaded');
  return evaluateRows(evalSubset(split, settings.evalSize), settings.seqLen, split, what);
}

/** The naive-Bayes baseline on the validation subset the model is measured on, and on the test split. */
function baselineResult(evalSize: number): BaselineResult {
  if (!spamData || !baseline) throw new InputError('no spam data loaded');
  const nb = baseline.model;
  const score = (rows: readonly LabelledText[]) => scores(rows.map((r) => predictNaiveBayes(nb, r.text)), rows.map((r) => r.label), spamIndex(state('spam').model));
  return { validation: score(evalSubset('validation', evalSize)), test: score(spamData.test), trainMs: baseline.trainMs };
}

/** Replaces a task's adapter and frees the old adapter's compiled plans. */
async function usePeft(task: Task, peft: PeftModel): Promise<void> {
  const s = state(task);
  const old = s.peft;
  s.peft = peft;
  s.trainer?.dispose(); // the stopped run's optimizer state, kept for Resume
  s.trainer = undefined;
  s.trainData = undefined;
  s.evalData = undefined;
  // Each PeftModel holds its own vectors and plans: disposing the old one frees them.
  if (old !== peft) await old.dispose();
}

// --- checkpoints -------------------------------------------------------------------------------

// Checkpoints go to the Origin Private File System, so a reload can resume the run; where it is
// missing, to memory (a lost device can still be recovered from, a reload cannot).
const hasOpfs = typeof navigator !== 'undefined' && typeof navigator.storage?.getDirectory === 'function';
const stores: Record<Task, CheckpointStore> = {
  spam: hasOpfs ? new OpfsCheckpointStore('demo-spam') : new MemoryCheckpointStore(),
  style: hasOpfs ? new OpfsCheckpointStore('demo-style') : new MemoryCheckpointStore(),
};
const recordFile = (task: Task): string => `demo-${task}.run.json`;

async function saveRecord(task: Task, record: RunRecord): Promise<void> {
  if (!hasOpfs) return;
  const dir = await navigator.storage.getDirectory();
  const w = await (await dir.getFileHandle(recordFile(task), { create: true })).createWritable();
  await w.write(JSON.stringify(record));
  await w.close();
}

async function loadRecord(task: Task): Promise<RunRecord | undefined> {
  if (!hasOpfs) return undefined;
  try {
    const dir = await navigator.storage.getDirectory();
    const o = JSON.parse(await (await (await dir.getFileHandle(recordFile(task))).getFile()).text()) as RunRecord;
    return o && typeof o.dataName === 'string' && typeof o.settings?.steps === 'number' ? o : undefined;
  } catch {
    return undefined; // none saved (NotFoundError), or not ours
  }
}

/** Forgets a task's run: its checkpoint and its record. */
async function clearRun(task: Task): Promise<void> {
  await stores[task].clear();
  if (hasOpfs) await (await navigator.storage.getDirectory()).removeEntry(recordFile(task)).catch(() => undefined);
}

async function interrupted(): Promise<InterruptedRun[]> {
  const runs: InterruptedRun[] = [];
  for (const task of ['spam', 'style'] as Task[]) {
    const record = await loadRecord(task);
    // A checkpoint that does not parse (written by another version) is dropped, not offered.
    const cp = record && (await stores[task].load().catch(() => undefined));
    if (record && cp) runs.push({ task, step: cp.step, totalSteps: record.settings.steps, settings: record.settings, dataName: record.dataName });
    else await clearRun(task);
  }
  return runs;
}

/**
 * Rebuilds a run from its record (the same examples: data, tokenizer, seed, split) on a fresh
 * adapter, and its trainer from the last checkpoint (from step 0 when there is none yet).
 * Returns the step it continues from.
 */
async function restoreRun(task: Task, record: RunRecord): Promise<number> {
  const s = state(task);
  const settings = record.settings;
  let trainData: Example[];
  let evalData: Example[] | undefined;
  if (task === 'spam') {
    if (!spamData || spamData.name !== record.dataName) throw new InputError(`the interrupted run trained on ${record.dataName}, and ${spamData?.name ?? 'no data'} is loaded: load ${record.dataName} again, then resume`);
    trainData = classExamples(s, spamData.train, settings.seqLen);
  } else {
    styleText = { name: record.dataName, text: record.text ?? '' };
    ({ train: trainData, heldOut: evalData } = styleSplit(s.tokenizer, styleText.text, settings.seqLen, settings.evalSize));
  }
  await usePeft(task, getPeftModel(s.model, configFor(task, settings)));
  const cp = await stores[task].load();
  // fromCheckpoint refuses another model, adapter config or example list, by name.
  s.trainer = cp ? Trainer.fromCheckpoint(s.peft, cp, { checkpoints: stores[task] }) : trainerFor(task, settings, stores[task]);
  Object.assign(s, { settings, record, totalSteps: settings.steps, trainData, evalData, lastStep: s.trainer.globalStep });
  return s.trainer.globalStep;
}

/** Continues a run a reload interrupted (or one whose trainer a lost device took away). */
async function resumeInterrupted(task: Task): Promise<RunOutcome> {
  if (training) throw new InputError('a training run is already in progress');
  const record = await loadRecord(task);
  if (!record) throw new InputError('there is no interrupted run to resume');
  const from = await restoreRun(task, record);
  state(task).trainSeconds = 0;
  post({ type: 'phase', task, text: `resuming from the checkpoint of step ${from}…` });
  return finishRun(task);
}

/**
 * A new device in place of a lost one, and every loaded model loaded again from where it came
 * from (fresh adapters: a stopped run continues from its checkpoint, see `resume`).
 */
async function replaceDevice(): Promise<void> {
  gpu = await createDevice();
  for (const t of ['spam', 'style'] as Task[]) {
    const old = tasks[t];
    if (!old) continue;
    old.trainer?.dispose();
    // Its buffers died with the device; disposing only settles the bookkeeping.
    await old.model.dispose().catch(() => undefined);
    await loadTask(t, old.source);
  }
}

/**
 * The device was lost mid-run: a new device, the models loaded again, and the run rebuilt from its
 * last checkpoint. Tells the page how many steps are redone.
 */
async function recover(task: Task, lost: DeviceLostError): Promise<void> {
  const s = state(task);
  const lostAt = s.lastStep ?? 0;
  post({ type: 'phase', task, text: `the GPU device was lost at step ${lostAt}: creating a new device and loading the model again…` });
  await replaceDevice();
  const seconds = s.trainSeconds;
  const resumedFrom = await restoreRun(task, s.record!);
  state(task).trainSeconds = seconds;
  post({ type: 'recovered', task, lostAt, resumedFrom, redone: Math.max(0, lostAt - resumedFrom), reason: lost.reason });
}

// --- training ----------------------------------------------------------------------------------

/** A run's outcome as the run functions return it (the request handler adds the adapter's line). */
type RunOutcome = Omit<TrainOutcome, 'trainableLine'>;

async function runTrainer(task: Task): Promise<RunOutcome> {
  const s = state(task);
  const trainer = s.trainer!;
  const total = s.totalSteps!;
  const t0 = performance.now();
  const startStep = trainer.globalStep;
  let points: [number, number][] = [];
  let lastPost = 0;
  const flush = (step: number): void => {
    const now = performance.now();
    const done = step - startStep;
    // Speed of this part of the run (a resumed run recompiles nothing, but its first steps wait).
    const sps = done / Math.max(1e-3, (now - t0) / 1000);
    post({ type: 'progress', task, points, step, totalSteps: total, stepsPerSecond: sps, eta: sps > 0 ? (total - step) / sps : Infinity });
    points = [];
    lastPost = now;
  };
  const offCheckpoint = trainer.on('checkpoint', (e) => post({ type: 'checkpoint', task, step: e.step }));
  const off = trainer.on('step', (e) => {
    if (stopRequested) trainer.stop(); // Stop came before this part of the run had begun
    s.lastStep = e.step;
    points.push([e.step, e.loss]);
    // Batched: the page gets a handful of messages a second, however fast the steps are.
    if (performance.now() - lastPost > 100 || e.step >= total) flush(e.step);
  });
  training = trainer;
  try {
    post({ type: 'phase', task, text: trainer.globalStep === 0 ? 'compiling the training step…' : 'resuming…' });
    const r = await trainer.train(s.trainData!);
    const reason = r.steps >= total ? 'completed' : 'stopped';
    s.trainSeconds = (s.trainSeconds ?? 0) + (performance.now() - t0) / 1000;
    return { steps: r.steps, reason, seconds: s.trainSeconds, resumable: reason === 'stopped' };
  } finally {
    // The last steps, also when the run failed: the page counts the steps a lost device redoes from them.
    if (points.length) flush(s.lastStep ?? trainer.globalStep);
    off();
    offCheckpoint();
    training = undefined;
  }
}

async function train(task: Task, settings: TrainSettings): Promise<RunOutcome> {
  const s = state(task);
  if (training) throw new InputError('a training run is already in progress');
  // A fresh adapter from the settings: the previous run's values and optimizer state are dropped.
  await usePeft(task, getPeftModel(s.model, configFor(task, settings)));
  await clearRun(task);
  s.settings = settings;
  s.totalSteps = settings.steps;
  s.trainSeconds = 0;
  if (task === 'spam') {
    if (!spamData) throw new InputError('no spam data loaded');
    // Before training the adapter is the identity (vectors of ones, the head as shipped): the
    // base model's accuracy, which only depends on the subset and the padded length.
    const key = `${settings.evalSize}:${settings.seqLen}`;
    let before = baseAccuracy.get(key);
    if (!before) {
      post({ type: 'phase', task, text: 'measuring validation accuracy before training…' });
      before = await evaluate(settings, 'validation', 'validation accuracy before training');
      if (before.stopped) {
        post({ type: 'accuracy', phase: 'before', result: before });
        return { steps: 0, reason: 'stopped', seconds: 0, resumable: false };
      }
      baseAccuracy.set(key, before);
    }
    post({ type: 'accuracy', phase: 'before', result: before });
    post({ type: 'phase', task, text: 'tokenising the training mails…' });
    s.trainData = classExamples(s, spamData.train, settings.seqLen);
    s.record = { settings, dataName: spamData.name };
  } else {
    if (!styleText) throw new InputError('no style text chosen');
    const split = styleSplit(s.tokenizer, styleText.text, settings.seqLen, settings.evalSize);
    s.trainData = split.train;
    s.evalData = split.heldOut;
    s.record = { settings, dataName: styleText.name, text: styleText.text };
    // The fresh adapter is the identity: this is the base model's perplexity on the held-out end.
    post({ type: 'phase', task, text: 'measuring held-out perplexity before training…' });
    post({ type: 'perplexity', phase: 'before', result: await heldOutPerplexity(s) });
  }
  s.trainer = trainerFor(task, settings, stores[task]);
  s.lastStep = 0;
  await saveRecord(task, s.record);
  // Stopped while measuring or tokenising: nothing trained yet, Resume starts the run.
  if (stopRequested) return { steps: 0, reason: 'stopped', seconds: 0, resumable: true };
  return finishRun(task);
}

/** Trains to the end (or Stop), recovering from lost devices; then the measurements after training. */
async function finishRun(task: Task): Promise<RunOutcome> {
  let outcome: RunOutcome | undefined;
  for (let losses = 0; !outcome; ) {
    try {
      outcome = await runTrainer(task);
    } catch (e) {
      if (!(e instanceof DeviceLostError) || ++losses > MAX_RECOVERIES) throw e;
      await recover(task, e);
    }
  }
  const s = state(task);
  if (outcome.reason === 'completed') {
    s.trainer!.dispose(); // nothing left to resume
    await clearRun(task);
  }
  if (outcome.reason === 'completed' && task === 'spam') {
    post({ type: 'phase', task, text: 'measuring validation accuracy after training…' });
    const after = await evaluate(s.settings!, 'validation', 'validation accuracy after training');
    // Stopped while measuring: the adapter is trained, only its accuracy is partial.
    post({ type: 'accuracy', phase: 'after', result: after });
  }
  if (outcome.reason === 'completed' && task === 'style') {
    post({ type: 'phase', task, text: 'measuring held-out perplexity after training…' });
    post({ type: 'perplexity', phase: 'after', result: await heldOutPerplexity(s) });
  }
  return outcome;
}

async function resume(task: Task): Promise<RunOutcome> {
  const s = state(task);
  // A run whose trainer is gone (a lost device during another task's run) continues from its checkpoint.
  if (!s.trainer || !s.trainData) return resumeInterrupted(task);
  if (training) throw new InputError('a training run is already in progress');
  if (s.trainer.globalStep >= s.totalSteps!) throw new InputError('the run has already completed');
  return finishRun(task);
}

// --- inference ---------------------------------------------------------------------------------

/** Feeds for right-padded rows of real tokens at the fixed length `padded`. */
function feedsFor(model: Model, rows: readonly (readonly number[])[], padded: number): Record<string, TensorData> {
  const pad = Number((model.config?.pad_token_id as number | null | undefined) ?? 0);
  const feeds: Record<string, TensorData> = {};
  for (const name of model.inputNames) {
    const data = new BigInt64Array(rows.length * padded);
    rows.forEach((ids, r) => {
      for (let t = 0; t < padded; t++) {
        const real = t < ids.length;
        const at = r * padded + t;
        if (name === 'input_ids') data[at] = BigInt(real ? ids[t]! : pad);
        else if (name === 'attention_mask') data[at] = real ? 1n : 0n;
        else if (name === 'position_ids') data[at] = BigInt(t);
        else if (name === 'token_type_ids') data[at] = 0n;
        else throw new InputError(`the model has an input "${name}" the page does not know how to fill (it fills input_ids, attention_mask, position_ids, token_type_ids)`);
      }
    });
    feeds[name] = { data, dims: [rows.length, padded] };
  }
  return feeds;
}

/** Scores of row `row` at position `pos` of a [B, T, C] output (a [B, C] output is already pooled). */
function rowAt(out: TensorData, row: number, pos: number): Float32Array {
  const dims = out.dims;
  const classes = dims[dims.length - 1]!;
  const data = out.data as Float32Array;
  const at = dims.length === 3 ? row * dims[1]! + pos : row;
  return data.subarray(at * classes, (at + 1) * classes);
}

function spamIndex(model: Model): number {
  const id2label = model.config?.id2label as Record<string, string> | undefined;
  const hit = id2label && Object.entries(id2label).find(([, v]) => /spam/i.test(v));
  return hit ? Number(hit[0]) : 1;
}

async function classify(text: string, fallbackSeqLen: number): Promise<{ withAdapter: number; withoutAdapter: number }> {
  const s = state('spam');
  if (text.trim() === '') throw new InputError('the mail is empty');
  // The length the adapter was trained at; the form's only before any training.
  const seqLen = s.settings?.seqLen ?? fallbackSeqLen;
  const ids = classIds(s.model, s.tokenizer, text, seqLen);
  const feeds = feedsFor(s.model, [ids], seqLen);
  const k = spamIndex(s.model);
  const pooling = poolingFor(s.model);
  const p = async (): Promise<number> => softmax(pooledScores((await s.peft.run(feeds, ['logits'])).logits!, 0, ids.length, pooling))[k]!;
  const withAdapter = await p();
  s.peft.disableAdapter();
  try {
    return { withAdapter, withoutAdapter: await p() };
  } finally {
    s.peft.enableAdapter();
  }
}

const TOP_K = 40;
const TEMPERATURE = 0.8;

async function generate(prompt: string, tokens: number, settings: TrainSettings, which: 'before' | 'after'): Promise<string> {
  const s = state('style');
  const L = settings.seqLen;
  const promptIds = encode(s.tokenizer, prompt, L - 1);
  if (promptIds.length === 0) throw new InputError('the prompt is empty');
  const random = mulberry32(settings.seed);
  const ids = [...promptIds];
  const generated: number[] = [];
  if (which === 'before') s.peft.disableAdapter();
  try {
    for (let i = 0; i < tokens; i++) {
      // A window of at most L tokens, right-padded to L: one compiled plan for every token.
      const window = ids.slice(Math.max(0, ids.length - L));
      const out = await s.peft.run(feedsFor(s.model, [window], L), ['logits']);
      const next = sampleTopK(rowAt(out.logits!, 0, window.length - 1), TOP_K, TEMPERATURE, random);
      ids.push(next);
      generated.push(next);
      if (i % 4 === 3 || i === tokens - 1) post({ type: 'sample', which, text: s.tokenizer.decode(generated), done: i === tokens - 1 });
    }
  } finally {
    if (which === 'before') s.peft.enableAdapter();
  }
  return s.tokenizer.decode(generated);
}

// --- adapters ----------------------------------------------------------------------------------

function downloadAdapter(task: Task): Requests['downloadAdapter']['res'] {
  const s = state(task);
  const files = s.peft.saveAdapter();
  const weights = files['adapter_model.safetensors'];
  const config = files['adapter_config.json'];
  return { files: { 'adapter_model.safetensors': weights, 'adapter_config.json': config } };
}

/**
 * A safetensors file starts with the little-endian u64 length of a JSON header that follows it.
 * Checked here so that a wrong file is named as such rather than by its first eight bytes read as
 * a (huge) header length.
 */
function checkSafetensors(bytes: Uint8Array, name: string): void {
  const n = bytes.length >= 9 ? new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true) : -1n;
  if (n < 2n || n > BigInt(bytes.length - 8) || bytes[8] !== 0x7b /* '{' */) {
    throw new InputError(`the file ${name} is not a safetensors file (a safetensors file starts with the length of its JSON header, then the header); pick the adapter_model.safetensors that was downloaded with the adapter`);
  }
}

async function loadAdapter(files: File[]): Promise<{ task: Task; trainableLine: string }> {
  const adapter = await adapterFilesFromFileList(files);
  checkSafetensors(adapter['adapter_model.safetensors'], 'adapter_model.safetensors');
  const config = IA3Config.fromJSON(adapter['adapter_config.json']);
  const task: Task = config.taskType === 'SEQ_CLS' ? 'spam' : config.taskType === 'CAUSAL_LM' ? 'style' : (() => {
    throw new InputError(`adapter_config.json has task_type ${JSON.stringify(config.taskType)}; the page trains SEQ_CLS (spam filter) and CAUSAL_LM (style) adapters`);
  })();
  const s = state(task);
  await usePeft(task, await loadPeftModel(s.model, adapter));
  return { task, trainableLine: s.peft.printTrainableParameters() };
}

/** Spam data from a parsed file: its own splits when it has them, else 80 / 10 / 10 with a fixed seed. */
function useSpamData(name: string, parsed: ReturnType<typeof parseDataFile>, names?: string[]): DataInfo {
  const unlabelled = parsed.examples.findIndex((e) => e.label === undefined);
  if (unlabelled >= 0) throw new InputError(`${name}: the spam filter needs a label on every row (row ${unlabelled + 1} has none)`);
  const classes = numClasses(state('spam').model);
  const bad = parsed.examples.find((e) => e.label! >= classes);
  if (bad) throw new InputError(`${name}: label ${bad.label} is out of range; the classifier head has ${classes} classes`);
  const rows = parsed.examples.map((e) => ({ text: e.text, label: e.label!, split: e.split }));
  let split: { train: LabelledText[]; validation: LabelledText[]; test: LabelledText[] };
  if (rows.some((r) => r.split !== undefined)) {
    split = { train: rows.filter((r) => r.split === 'train'), validation: rows.filter((r) => r.split === 'validation'), test: rows.filter((r) => r.split === 'test') };
  } else {
    const shuffled = seededShuffle(rows, 42);
    const nVal = Math.max(1, Math.floor(shuffled.length / 10));
    split = { validation: shuffled.slice(0, nVal), test: shuffled.slice(nVal, 2 * nVal), train: shuffled.slice(2 * nVal) };
  }
  if (split.train.length === 0 || split.validation.length === 0) throw new InputError(`${name}: too few rows for a train and a validation split`);
  spamData = { name, ...split, labels: names ?? parsed.labels ?? [] };
  baseAccuracy.clear();
  const t0 = performance.now();
  const model = trainNaiveBayes(split.train, classes);
  baseline = { model, trainMs: performance.now() - t0 };
  return spamInfo();
}

function numClasses(model: Model): number {
  const id2label = model.config?.id2label as Record<string, string> | undefined;
  return id2label ? Object.keys(id2label).length : Number(model.config?.num_labels ?? 2);
}

function loadData(task: Task, name: string, content: string): DataInfo {
  const parsed = parseDataFile(name, content);
  if (task === 'spam') return useSpamData(name, parsed);
  styleText = { name, text: parsed.examples.map((e) => e.text).join('\n\n') };
  return styleInfo();
}

// --- dispatch ----------------------------------------------------------------------------------

async function device(): Promise<Requests['device']['res']> {
  gpu ??= await createDevice();
  return { adapter: adapterName(gpu.adapterInfo), software: gpu.adapterInfo.isSoftware };
}

async function init(model: ModelSource): Promise<Requests['init']['res']> {
  await device();
  const spam = await loadTask('spam', model);
  const style = await loadTask('style', model);
  const corpus = parseDataFile(SHIPPED_SPAM, await (await fetchOk(new URL(SHIPPED_SPAM, base).href)).text());
  useSpamData('SpamAssassin public corpus', corpus, ['ham', 'spam']);
  return { spam, style, data: [spamInfo()] };
}

/** A run's outcome with the PEFT line of the adapter it trained (its settings may have changed the modules). */
function withTrainable(task: Task, o: RunOutcome): TrainOutcome {
  return { ...o, trainableLine: state(task).peft.printTrainableParameters() };
}

async function handle(r: Request): Promise<unknown> {
  switch (r.type) {
    case 'device':
      return device();
    case 'init':
      return init(r.model);
    case 'loadModel':
      return loadTask(r.task, r.source);
    case 'loadData':
      return loadData(r.task, r.name, r.content);
    case 'baseline':
      return baselineResult(r.evalSize);
    case 'evaluate':
      return evaluate(r.settings, r.split);
    case 'train':
      return withTrainable(r.task, await train(r.task, r.settings));
    case 'resume':
      return withTrainable(r.task, await resume(r.task));
    case 'interrupted':
      return interrupted();
    case 'resumeInterrupted':
      return withTrainable(r.task, await resumeInterrupted(r.task));
    case 'discardInterrupted':
      await clearRun(r.task);
      return null;
    case 'classify':
      return classify(r.text, r.seqLen);
    case 'generate':
      return { text: await generate(r.prompt, r.tokens, r.settings, r.which) };
    case 'setStyleText':
      // Checked now rather than after sampling from the base model: a text too short is refused at once.
      styleSplit(state('style').tokenizer, r.text, r.seqLen, 1);
      styleText = { name: r.name, text: r.text };
      return styleInfo();
    case 'downloadAdapter':
      return downloadAdapter(r.task);
    case 'loadAdapter':
      return loadAdapter(r.files);
  }
}

// Requests run one at a time (they share the GPU queue and the models); stop bypasses the queue.
let queue: Promise<unknown> = Promise.resolve();

scope.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === 'stop') {
    stopRequested = true;
    training?.stop();
    return;
  }
  if (m.type === 'debugLoseDevice') {
    if (debug) gpu?.device.destroy();
    return;
  }
  if (m.type === 'init') ({ base, debug } = m);
  queue = queue.then(async () => {
    stopRequested = false; // a Stop applies to the request running when it came
    try {
      post({ type: 'result', id: m.id, value: await handle(m) });
    } catch (e) {
      // Errors a user can cause are shown on the page; anything else is a bug worth a stack trace.
      if (!(e instanceof IA3Error || e instanceof DataFileError)) console.error(e);
      // Lost outside a training run (which recovers by itself): a new device for the next request.
      if (e instanceof DeviceLostError && tasks.spam) await replaceDevice().catch((inner: unknown) => console.error(inner));
      post({ type: 'error', id: m.id, error: serialiseError(e) });
    }
  });
};
