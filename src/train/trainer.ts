// Trainer: fine-tunes the active IA3 adapter(s) of a PeftModel on the GPU.
//
// One optimizer step is, per micro-batch, one submission of the compiled forward + loss + backward
// plan followed by accumulation of each vector's gradient into one flat gradient buffer; then
// global-norm clipping, AdamW over the flat buffer of all trainable values (params, m, v), and a
// copy of the updated values back into the vectors the plans read. Nothing is read back inside a
// step: each step's loss and gradient norm are copied into a ring buffer that is mapped every
// `loggingSteps` steps, while the next steps are already queued. `train` is a loop over named steps:
// stepGroups (collation, resumable) → plansFor → prepareStep (dispatch lists; the first time, the
// values into the flat buffers) → submitStep (inputs, micro-batches, update) → readLog. The GPU
// objects live in train/optimizer.ts: FlatState (kept for resuming) and a StepEncoder per call.
//
// A step whose gradient norm is NaN or infinite changes nothing (the AdamW kernel skips it); when
// the trainer sees it at the next read it stops with NonFiniteError naming the step, keeping the
// last good values. Same seed, same data: same batches, same GPU arithmetic (no float atomics),
// same result.
//
// Size: the Trainer's public types (arguments, events, errors) sit beside it.

import { LABELS, LOSS, SCORES, type LossTask } from '../autograd/loss.js';
import { IA3Error, InputError } from '../errors.js';
import type { GradientPlan, MemoryPlan, Model } from '../model.js';
import type { PeftModel } from '../peft/model.js';
import { batches, bucketsUpTo, countedLabels, splitRows, type Batch, type Example } from './data.js';
import { FlatState, StepEncoder } from './optimizer.js';
import { learningRateAt, warmupStepsFrom, type ScheduleName } from './schedule.js';

/** Training hyper-parameters (defaults as the Hugging Face Trainer's, lr 3e-3 as for IA3). */
export interface TrainingArguments {
  learningRate?: number;
  batchSize?: number;
  /** Optimizer steps; when absent, `numEpochs` passes over the data. */
  maxSteps?: number;
  numEpochs?: number;
  gradientAccumulationSteps?: number;
  lrScheduler?: ScheduleName;
  warmupSteps?: number;
  warmupRatio?: number;
  weightDecay?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  adamEpsilon?: number;
  /** Global-norm clipping; 0 or Infinity disables it. */
  maxGradNorm?: number;
  /** Steps between loss reads (and 'log' events). */
  loggingSteps?: number;
  seed?: number;
  /** Longest sequence; longer examples are truncated. */
  maxLength?: number;
  /** Sequence-length buckets (each one compiled plan); default powers of two up to maxLength. */
  buckets?: number[];
  /** Padding token; default config.json's pad_token_id, else 0. */
  padTokenId?: number;
  /**
   * GPU memory (bytes) a training step may take — weights, activations, inputs and optimizer
   * state, as `memoryPlan` counts them. A batch whose step would take more runs as micro-batches of
   * fewer rows (halved until one fits) whose gradients add up to the whole batch's: each is
   * weighted by its share of the batch's counted labels, so the step is the one the whole batch
   * makes. A single sequence that does not fit is an InputError before any GPU work. Default: no budget.
   */
  maxMemoryBytes?: number;
}

export interface StepEvent {
  step: number;
  epoch: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  tokensPerSecond: number;
}

export interface LogEvent {
  step: number;
  /** Mean loss over the steps since the previous log. */
  loss: number;
  learningRate: number;
  gradNorm: number;
}

export interface EvalResult {
  loss: number;
  /** Classification tasks. */
  accuracy?: number;
  /** Language modelling: exp(loss). */
  perplexity?: number;
  examples: number;
}

export interface EndEvent {
  step: number;
  reason: 'completed' | 'stopped';
}

interface Events {
  step: StepEvent;
  log: LogEvent;
  evaluate: EvalResult & { step: number };
  end: EndEvent;
}

/** Training met a NaN or infinite loss or gradient; the trainable values are those before that step. */
export class NonFiniteError extends IA3Error {
  override readonly name: string = 'NonFiniteError';
  readonly step: number;
  constructor(step: number, what: string) {
    super('NON_FINITE', `step ${step}: the ${what} is not finite; training stopped and the values from before that step are kept`);
    this.step = step;
  }
}

/** What `train` keeps between calls so that a stopped run resumes exactly where it was. */
interface Session {
  /** The trainable tensors the flat buffers hold, in order; another set starts a fresh optimizer. */
  key: string;
  flat: FlatState;
  dataset: readonly Example[];
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  consumed: number;
}

/** A step recorded but not yet read back: what its 'step' event reports. */
interface Pending {
  step: number;
  epoch: number;
  lr: number;
  tokens: number;
}

/** One `train` call: the model it trains, its schedule, and its GPU objects. */
interface Run {
  readonly model: Model;
  readonly session: Session;
  readonly encoder: StepEncoder;
  readonly wrt: readonly string[];
  readonly collate: ReturnType<Trainer['collateOptions']>;
  readonly totalSteps: number;
  readonly warmup: number;
  uploaded: boolean;
  /** Rows per micro-batch that fit maxMemoryBytes, by batch shape. */
  readonly fitted: Map<string, number>;
  /** Steps since the last read of the loss ring, and when that window started. */
  window: Pending[];
  windowStart: number;
  pendingRead: Promise<void> | undefined;
  failure: NonFiniteError | undefined;
  lastLoss: number | undefined;
}

export class Trainer {
  readonly args: Required<Omit<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId' | 'maxMemoryBytes'>> & Pick<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId' | 'maxMemoryBytes'>;
  private readonly listeners: { [K in keyof Events]: Set<(e: Events[K]) => void> } = { step: new Set(), log: new Set(), evaluate: new Set(), end: new Set() };
  private stopRequested = false;
  /** Optimizer steps taken by this trainer. */
  globalStep = 0;
  private session: Session | undefined;

  constructor(
    readonly peft: PeftModel,
    args: TrainingArguments = {},
  ) {
    this.args = {
      learningRate: args.learningRate ?? 3e-3,
      batchSize: args.batchSize ?? 8,
      maxSteps: args.maxSteps,
      numEpochs: args.numEpochs ?? 3,
      gradientAccumulationSteps: args.gradientAccumulationSteps ?? 1,
      lrScheduler: args.lrScheduler ?? 'linear',
      warmupSteps: args.warmupSteps ?? 0,
      warmupRatio: args.warmupRatio ?? 0,
      weightDecay: args.weightDecay ?? 0,
      adamBeta1: args.adamBeta1 ?? 0.9,
      adamBeta2: args.adamBeta2 ?? 0.999,
      adamEpsilon: args.adamEpsilon ?? 1e-8,
      maxGradNorm: args.maxGradNorm ?? 1.0,
      loggingSteps: args.loggingSteps ?? 10,
      seed: args.seed ?? 42,
      maxLength: args.maxLength ?? 128,
      buckets: args.buckets,
      padTokenId: args.padTokenId,
      maxMemoryBytes: args.maxMemoryBytes,
    };
    const positive: (keyof TrainingArguments)[] = ['learningRate', 'batchSize', 'numEpochs', 'gradientAccumulationSteps', 'loggingSteps', 'maxLength'];
    for (const k of positive) {
      const v = this.args[k] as number;
      if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new InputError(`TrainingArguments.${k} must be a positive number, got ${v}`);
    }
    if (this.args.maxSteps !== undefined && !(Number.isInteger(this.args.maxSteps) && this.args.maxSteps > 0)) {
      throw new InputError(`TrainingArguments.maxSteps must be a positive integer, got ${this.args.maxSteps}`);
    }
    const budget = this.args.maxMemoryBytes;
    if (budget !== undefined && !(typeof budget === 'number' && budget > 0 && Number.isFinite(budget))) {
      throw new InputError(`TrainingArguments.maxMemoryBytes must be a positive number of bytes, got ${budget}`);
    }
  }

  /**
   * The GPU memory of one training step on `batch` sequences of `sequence` tokens, before anything
   * runs: the forward + loss + backward plan's (PeftModel.memoryPlan) and the optimizer state's
   * (flat values, gradients, AdamW moments). A LimitError when a tensor of the step cannot fit the
   * device's buffers.
   */
  memoryPlan({ batch, sequence }: { batch: number; sequence: number }): MemoryPlan & { readonly optimizer: number } {
    const plan = this.peft.memoryPlan({ batch, sequence });
    const { model, trainables } = this.peft.trainingModel();
    const layout = FlatState.layout(model.gpu, trainables.map((t) => ({ name: t.name, n: t.param.values.length })));
    const optimizer = FlatState.bytes(model.gpu, layout, this.args.maxGradNorm);
    return { ...plan, optimizer, total: plan.total + optimizer };
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof Events>(event: K, listener: (e: Events[K]) => void): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Asks `train` to return after the step in flight. */
  stop(): void {
    this.stopRequested = true;
  }

  private emit<K extends keyof Events>(event: K, e: Events[K]): void {
    for (const l of this.listeners[event]) l(e);
  }

  private collateOptions(model: Model, task: LossTask) {
    const pad = this.args.padTokenId ?? Number((model.config?.pad_token_id as number | undefined) ?? 0);
    return {
      task,
      padTokenId: pad,
      buckets: this.args.buckets ?? bucketsUpTo(this.args.maxLength),
      maxLength: this.args.maxLength,
      inputNames: model.inputNames.filter((n) => n !== LABELS),
    };
  }

  /**
   * Trains on tokenised examples; resolves when `maxSteps` (or the epochs) are done or `stop` is
   * called. Calling it again after a stop resumes: the step count, the learning-rate schedule, the
   * AdamW moments and the position in the (same) dataset carry on, so a run stopped and resumed
   * ends bit-identical to one never stopped. The current values of the vectors are always the
   * starting point (a `loadStateDict` between calls is honoured).
   */
  async train(dataset: readonly Example[]): Promise<{ steps: number; loss: number | undefined }> {
    if (dataset.length === 0) throw new InputError('the training dataset is empty');
    this.stopRequested = false;
    const run = this.begin(dataset);
    try {
      for (const { micro, epoch } of this.stepGroups(run)) {
        const step = this.globalStep;
        const pieces = this.fit(run, micro);
        const plans = await this.plansFor(run, pieces.map((p) => p.batch));
        await this.prepareStep(run, plans);
        const lr = learningRateAt(step, { name: this.args.lrScheduler, baseLr: this.args.learningRate, warmupSteps: run.warmup, totalSteps: run.totalSteps });
        this.submitStep(run, pieces, plans, step, lr);
        run.window.push({ step: step + 1, epoch: epoch + 1, lr, tokens: micro.reduce((s, b) => s + b.tokens, 0) });
        this.globalStep++;
        const done = (): boolean => this.stopRequested || this.globalStep >= run.totalSteps;
        if (done() || run.window.length === this.args.loggingSteps) await this.readLog(run);
        // Asked again: a stop may come from an event of the read just awaited.
        if (done()) break;
      }
      await run.pendingRead;
      if (run.failure) throw run.failure;
      await run.session.flat.download((name, v) => this.peft.setParamValues(name, v));
      this.emit('end', { step: this.globalStep, reason: this.stopRequested ? 'stopped' : 'completed' });
      return { steps: this.globalStep, loss: run.lastLoss };
    } catch (e) {
      await run.pendingRead?.catch(() => undefined);
      // Keep the last good values on the CPU side too (the GPU copies never took a NaN step).
      await run.session.flat.download((name, v) => this.peft.setParamValues(name, v)).catch(() => undefined);
      throw e;
    } finally {
      run.encoder.destroy();
    }
  }

  /** The training model, the flat buffers (kept from a stopped run when the tensors are the same) and this call's encoder. */
  private begin(dataset: readonly Example[]): Run {
    const a = this.args;
    const { model, trainables } = this.peft.trainingModel();
    const gpu = model.gpu;
    const stepsPerEpoch = Math.max(1, Math.floor(Math.ceil(dataset.length / a.batchSize) / a.gradientAccumulationSteps));
    const totalSteps = a.maxSteps ?? stepsPerEpoch * a.numEpochs;
    const layout = FlatState.layout(gpu, trainables.map((t) => ({ name: t.name, n: t.param.values.length })));
    const key = layout.entries.map((t) => `${t.name}:${t.n}`).join('|');
    if (this.session && (this.session.key !== key || this.session.flat.n !== Math.max(4, layout.total))) this.releaseSession();
    this.session ??= { key, flat: FlatState.allocate(gpu, layout, a.maxGradNorm), dataset, epoch: 0, consumed: 0 };
    const session = this.session;
    if (session.dataset !== dataset) Object.assign(session, { dataset, epoch: 0, consumed: 0 });
    const hyper = { lr: a.learningRate, beta1: a.adamBeta1, beta2: a.adamBeta2, eps: a.adamEpsilon, weightDecay: a.weightDecay };
    const settings = { hyper, maxGradNorm: a.maxGradNorm, loggingSteps: a.loggingSteps };
    return {
      model,
      session,
      encoder: new StepEncoder(gpu, session.flat, model.weights, settings),
      wrt: trainables.map((t) => t.name),
      collate: this.collateOptions(model, this.peft.lossTask()),
      totalSteps,
      warmup: a.warmupSteps > 0 ? a.warmupSteps : warmupStepsFrom(a.warmupRatio, totalSteps),
      uploaded: false,
      fitted: new Map(),
      window: [],
      windowStart: performance.now(),
      pendingRead: undefined,
      failure: undefined,
      lastLoss: undefined,
    };
  }

  /**
   * Collation: groups of `gradientAccumulationSteps` micro-batches from where the session left
   * off, epoch after epoch, until `totalSteps`. The shuffle is a pure function of (seed, epoch), so
   * skipping what a stopped run consumed puts a resumed run exactly where it was. A trailing group
   * smaller than the accumulation makes no step (stepsPerEpoch counts whole groups only).
   */
  private *stepGroups(run: Run): Generator<{ micro: Batch[]; epoch: number }> {
    const a = this.args;
    const session = run.session;
    while (this.globalStep < run.totalSteps) {
      const epoch = session.epoch;
      const fromStart = session.consumed === 0;
      let index = 0;
      let grouped = false;
      let micro: Batch[] = [];
      for (const batch of batches(session.dataset, { ...run.collate, batchSize: a.batchSize, seed: a.seed, epoch, shuffle: true })) {
        if (index++ < session.consumed) continue;
        micro.push(batch);
        if (micro.length < a.gradientAccumulationSteps) continue;
        session.consumed = index;
        grouped = true;
        yield { micro, epoch };
        micro = [];
      }
      if (fromStart && !grouped) {
        throw new InputError(`an epoch of the dataset makes no optimizer step: fewer than gradientAccumulationSteps (${a.gradientAccumulationSteps}) batches of ${a.batchSize}`);
      }
      session.epoch++;
      session.consumed = 0;
    }
  }

  /**
   * The micro-batches a step submits and each one's weight in it: the groups' batches (weight
   * 1 / gradientAccumulationSteps each, as the Hugging Face Trainer), each cut into pieces of the
   * most rows whose step fits maxMemoryBytes; a piece's weight is its share of its batch's counted
   * labels (the loss is a mean over them), so the pieces add up to the batch.
   */
  private fit(run: Run, micro: readonly Batch[]): { batch: Batch; alpha: number }[] {
    const budget = this.args.maxMemoryBytes;
    const k = micro.length;
    if (budget === undefined) return micro.map((batch) => ({ batch, alpha: 1 / k }));
    return micro.flatMap((batch) => {
      const [rows, sequence] = [batch.examples, batch.labels.dims[1] ?? batch.inputs.input_ids?.dims[1] ?? 1];
      const key = `${rows}x${sequence}`;
      let fits = run.fitted.get(key);
      if (fits === undefined) {
        fits = rows;
        let need = this.memoryPlan({ batch: fits, sequence }).total;
        while (need > budget && fits > 1) {
          fits = Math.ceil(fits / 2);
          need = this.memoryPlan({ batch: fits, sequence }).total;
        }
        if (need > budget) {
          throw new InputError(`a training step on one sequence of ${sequence} tokens needs ${need.toLocaleString('en-US')} bytes of GPU memory, over maxMemoryBytes (${budget.toLocaleString('en-US')}); use shorter sequences (maxLength) or a larger budget`);
        }
        run.fitted.set(key, fits);
      }
      const pieces = splitRows(batch, fits);
      if (pieces.length === 1) return [{ batch, alpha: 1 / k }];
      const total = countedLabels(batch, run.collate.task);
      return pieces.map((p) => ({ batch: p, alpha: total > 0 ? countedLabels(p, run.collate.task) / total / k : 0 }));
    });
  }

  /** The compiled forward + loss + backward plan of each micro-batch's shapes (one per bucket). */
  private async plansFor(run: Run, micro: readonly Batch[]): Promise<GradientPlan[]> {
    const plans: GradientPlan[] = [];
    for (const b of micro) {
      plans.push(await run.model.gradientPlan({ ...Object.fromEntries(Object.entries(b.inputs).map(([k, v]) => [k, v.dims])), [LABELS]: b.labels.dims }, LOSS, run.wrt));
    }
    return plans;
  }

  /** The dispatch lists for these plans, and (first step) the trainable values in the flat buffers. */
  private async prepareStep(run: Run, plans: readonly GradientPlan[]): Promise<void> {
    if (!run.uploaded) {
      // The plans uploaded the vectors they read; the flat buffer starts from the same values.
      run.session.flat.upload((name) => this.peft.paramValues(name), run.model.weights);
      run.uploaded = true;
    }
    await run.encoder.prepare(plans);
    run.model.gpu.assertAlive();
  }

  /** Writes each micro-batch's inputs and submits it; the last one carries clipping, AdamW and the copy-back. */
  private submitStep(run: Run, pieces: readonly { batch: Batch; alpha: number }[], plans: readonly GradientPlan[], step: number, lr: number): void {
    run.encoder.writeStep(step, lr);
    pieces.forEach(({ batch: b, alpha }, k) => {
      const g = plans[k]!;
      const feeds = run.model.gpuFeeds({ ...b.inputs, [LABELS]: b.labels });
      g.plan.writeInputs(new Map([...feeds].filter(([name]) => g.inputs.includes(name)).map(([name, v]) => [name, v.data])));
      run.encoder.encodeMicroBatch(g, k, pieces.length, step, alpha);
    });
  }

  /**
   * The log window read: the (loss, gradient norm) of the steps since the last read, mapped while
   * later steps are queued ('step' and 'log' events when it lands). At most one read is in flight:
   * the ring slots are about to be reused. A non-finite value found by an earlier read stops here.
   */
  private async readLog(run: Run): Promise<void> {
    await run.pendingRead;
    if (run.failure) throw run.failure;
    const entries = run.window;
    const now = performance.now();
    const elapsed = now - run.windowStart;
    run.window = [];
    run.windowStart = now;
    run.pendingRead = run.encoder.readRing(entries.length).then((v) => {
      const tokens = entries.reduce((s, e) => s + e.tokens, 0);
      const tps = tokens / Math.max(1e-9, elapsed / 1000);
      let sum = 0;
      entries.forEach((e, i) => {
        const loss = v[2 * i]!;
        const gradNorm = v[2 * i + 1]!;
        if (!run.failure && !(Number.isFinite(loss) && Number.isFinite(gradNorm))) {
          run.failure = new NonFiniteError(e.step, Number.isFinite(loss) ? 'gradient norm' : 'loss');
        }
        sum += loss;
        run.lastLoss = loss;
        this.emit('step', { step: e.step, epoch: e.epoch, loss, learningRate: e.lr, gradNorm, tokensPerSecond: tps });
      });
      const last = entries[entries.length - 1]!;
      this.emit('log', { step: last.step, loss: sum / entries.length, learningRate: last.lr, gradNorm: v[2 * entries.length - 1]! });
    });
  }

  /** Frees the optimizer state kept for resuming; the next `train` starts a fresh optimizer. */
  dispose(): void {
    this.releaseSession();
  }

  private releaseSession(): void {
    this.session?.flat.release();
    this.session = undefined;
  }

  /** Loss (and accuracy or perplexity) of the active adapters on a dataset; no gradients. */
  async evaluate(dataset: readonly Example[]): Promise<EvalResult> {
    if (dataset.length === 0) throw new InputError('the evaluation dataset is empty');
    const { model } = this.peft.trainingModel();
    const task = this.peft.lossTask();
    const collate = this.collateOptions(model, task);
    let lossSum = 0;
    let weightSum = 0;
    let correct = 0;
    let examples = 0;
    for (const b of batches(dataset, { ...collate, batchSize: this.args.batchSize, seed: 0, epoch: 0, shuffle: false })) {
      // Classification reads the scores too; a causal LM only the loss (its logits may not be an output).
      const scoresName = model.outputNames.includes(SCORES) ? SCORES : 'logits';
      const out = await model.run({ ...b.inputs, [LABELS]: b.labels }, task === 'CAUSAL_LM' ? [LOSS] : [LOSS, scoresName]);
      // The loss is a mean over the batch's counted labels: weight batches by that count.
      const labels = b.labels.data;
      let counted = 0;
      if (task === 'CAUSAL_LM') {
        const [rows, cols] = b.labels.dims as [number, number];
        for (let r = 0; r < rows; r++) for (let c = 1; c < cols; c++) if (labels[r * cols + c] !== -100n) counted++;
      } else {
        counted = labels.length;
        const logits = out[scoresName]!.data as Float32Array;
        const classes = out[scoresName]!.dims[1]!;
        for (let r = 0; r < labels.length; r++) {
          let best = 0;
          for (let c = 1; c < classes; c++) if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
          if (BigInt(best) === labels[r]) correct++;
        }
      }
      lossSum += (out[LOSS]!.data as Float32Array)[0]! * counted;
      weightSum += counted;
      examples += b.examples;
    }
    const loss = weightSum > 0 ? lossSum / weightSum : 0;
    const result: EvalResult = task === 'CAUSAL_LM' ? { loss, perplexity: Math.exp(loss), examples } : { loss, accuracy: correct / examples, examples };
    this.emit('evaluate', { ...result, step: this.globalStep });
    return result;
  }
}
