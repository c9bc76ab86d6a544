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
// Transactions: every argument and every example (ids against the vocabulary, token types, labels
// against the classes, lengths against the position table, holes) is checked before anything
// changes; a failure later leaves the adapter as after the last completed step, CPU and GPU copies
// equal. Checkpoints (train/checkpoint.ts) go to the caller's store every `checkpointSteps` steps
// and when a run ends; a lost device is a DeviceLostError naming the last one, whose values the
// adapter then holds, and `Trainer.fromCheckpoint` continues from it bit for bit on a new device.
// While a run is in flight the PeftModel is leased: a second run, another Trainer, merge,
// setAdapter, loadStateDict or dispose are BusyErrors.
//
// Size: the Trainer's public types (arguments, events, errors) and its validation sit beside it.

import { LABELS, LOSS, POOLINGS, SCORES, logitsOutput, type LossTask, type Pooling } from '../autograd/loss.js';
import type { BackwardOptions } from '../autograd/grad.js';
import { RECOMPUTE, type Recompute } from '../autograd/remat.js';
import { BusyError, DeviceLostError, DisposedError, IA3Error, InputError } from '../errors.js';
import { isFloat } from '../ir/dtype.js';
import type { GradientPlan, MemoryPlan, Model } from '../model.js';
import { inputRange } from '../onnx/bounds.js';
import { specialize } from '../onnx/specialize.js';
import { ACTIVATION_PRECISIONS, type ActivationPrecision } from '../ops/half.js';
import { serializeConfig } from '../peft/config.js';
import type { PeftModel, Trainable, TrainingLease } from '../peft/model.js';
import { datasetFingerprint, modelFingerprint, textFingerprint, type Checkpoint, type CheckpointFingerprint, type CheckpointStore } from './checkpoint.js';
import { batches, bucketLength, bucketsUpTo, countedLabels, emptyInputsOf, knownInput, splitRows, validateExamples, type Batch, type Example } from './data.js';
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
  /** Steps between loss reads (and 'log' events); at most 65,536. */
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
  /** Steps between checkpoints to the trainer's store (0: only when a run ends). Default 0. */
  checkpointSteps?: number;
  /**
   * Sequence classification with a decoder (per-position class scores): 'last' pools the last real
   * token, as Hugging Face does (the default); 'mean' averages the scores over the real tokens.
   */
  pooling?: Pooling;
  /**
   * Which forward activations the backward computes again instead of keeping until their gradient:
   * 'cheap' (the default: element-wise and layout results, attention probabilities — a few cheap
   * dispatches per layer), 'layers' (each transformer layer's forward runs again from its input
   * before its gradient: the least memory, for about one more forward of time), 'none'. The
   * gradients are the same; `memoryPlan` counts the choice.
   */
  recompute?: Recompute;
  /**
   * How the backward keeps the activations it does not recompute: 'f32' (the default, as computed),
   * or rounded to 'bf16' (f32's range, 8 significant bits) or 'f16' (11 bits; a value beyond ±65504
   * becomes ∞ and stops the run with NonFiniteError), half the bytes — mixed-precision training's
   * saved tensors. The forward and the loss stay f32; `memoryPlan` counts the choice.
   */
  activationPrecision?: ActivationPrecision;
}

/** Where the Trainer keeps checkpoints (see train/checkpoint.ts). */
export interface TrainerOptions {
  /** Saved to every `checkpointSteps` steps and when a run ends (completed, stopped or failed). */
  readonly checkpoints?: CheckpointStore;
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

/** A checkpoint saved to the store. */
export interface CheckpointEvent {
  step: number;
}

interface Events {
  step: StepEvent;
  log: LogEvent;
  evaluate: EvalResult & { step: number };
  end: EndEvent;
  checkpoint: CheckpointEvent;
}

/** Training met a NaN or infinite loss or gradient; the trainable values are those before that step. */
export class NonFiniteError extends IA3Error {
  override readonly name: string = 'NonFiniteError';
  readonly step: number;
  constructor(step: number, what: string, hint?: string) {
    super('NON_FINITE', `step ${step}: the ${what} is not finite; training stopped and the values from before that step are kept${hint ? ` (${hint})` : ''}`);
    this.step = step;
  }
}

/** Arguments a checkpoint may be resumed under with other values (see `resume`). */
const MEMORY_ARGUMENTS: ReadonlySet<string> = new Set(['recompute', 'activationPrecision']);

/** Longest loss ring (steps between reads): its 8 bytes a step are one GPU buffer. */
const MAX_LOGGING_STEPS = 65536;

/** What `train` keeps between calls so that a stopped run resumes exactly where it was. */
interface Session {
  /** The trainable tensors the flat buffers hold, in order; another set starts a fresh optimizer. */
  key: string;
  flat: FlatState;
  /** Fingerprint of the dataset the position refers to. */
  dataset: string;
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  consumed: number;
  /** From a checkpoint: only its dataset may continue it. */
  resumed: boolean;
}

/** A step recorded but not yet read back: what its 'step' event reports. */
interface Pending {
  step: number;
  epoch: number;
  lr: number;
  tokens: number;
}

/** What `validate` establishes before a run changes anything. */
interface Prepared {
  readonly examples: readonly Example[];
  readonly model: Model;
  readonly trainables: readonly Trainable[];
  readonly collate: ReturnType<Trainer['collateOptions']>;
  readonly totalSteps: number;
  readonly warmup: number;
  readonly dataset: string;
  readonly fingerprint: CheckpointFingerprint;
  /** Rows per micro-batch that fit maxMemoryBytes, by batch shape (the full batches' found by `validate`). */
  readonly fitted: Map<string, number>;
}

/** One `train` call: the model it trains, its schedule, and its GPU objects. */
interface Run extends Prepared {
  readonly session: Session;
  readonly encoder: StepEncoder;
  readonly wrt: readonly string[];
  readonly lease: TrainingLease;
  /** Steps this call submitted: only then do the GPU values differ from the CPU copies. */
  submitted: number;
  uploaded: boolean;
  /** Steps since the last read of the loss ring, and when that window started. */
  window: Pending[];
  windowStart: number;
  pendingRead: Promise<void> | undefined;
  /** Checkpoints being read back and saved, in order; whether one was saved during this call. */
  saving: Promise<void>;
  checkpointed: boolean;
  failure: NonFiniteError | undefined;
  lastLoss: number | undefined;
}

/** The resolved arguments (defaults filled in), as checkpoints record them. */
// `pooling` stays unset unless given (unset is 'last'): checkpoints of earlier runs, whose
// arguments lack it, still match a trainer built from them.
type ResolvedArguments = Required<Omit<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId' | 'maxMemoryBytes' | 'pooling' | 'recompute' | 'activationPrecision'>> &
  Pick<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId' | 'maxMemoryBytes' | 'pooling' | 'recompute' | 'activationPrecision'>;

const SCHEDULES: readonly string[] = ['linear', 'cosine', 'constant', 'constant_with_warmup'];

export class Trainer {
  readonly args: ResolvedArguments;
  private readonly listeners: { [K in keyof Events]: Set<(e: Events[K]) => void> } = { step: new Set(), log: new Set(), evaluate: new Set(), end: new Set(), checkpoint: new Set() };
  private readonly store: CheckpointStore | undefined;
  private stopRequested = false;
  private running = false;
  private disposed = false;
  /** Optimizer steps taken by this trainer. */
  globalStep = 0;
  private session: Session | undefined;
  /** The last checkpoint saved to the store (kept to restore the adapter when the device is lost). */
  private saved: Checkpoint | undefined;

  constructor(
    readonly peft: PeftModel,
    args: TrainingArguments = {},
    options: TrainerOptions = {},
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
      checkpointSteps: args.checkpointSteps ?? 0,
      ...(args.pooling === undefined ? {} : { pooling: args.pooling }),
      ...(args.recompute === undefined ? {} : { recompute: args.recompute }),
      ...(args.activationPrecision === undefined ? {} : { activationPrecision: args.activationPrecision }),
    };
    checkArguments(this.args);
    this.store = options.checkpoints;
  }

  /**
   * A Trainer that continues `checkpoint` (its arguments, step, data position, optimizer state) on
   * `peft` — which may be a new PeftModel over a newly loaded model on a new device, after a reload
   * or a lost device. `train(dataset)` with the checkpoint's dataset then continues bit for bit as
   * the interrupted run would have. Refused (InputError) unless the base model, the adapter configs
   * and the trainable tensors are those the checkpoint was taken with.
   */
  static fromCheckpoint(peft: PeftModel, checkpoint: Checkpoint, options: TrainerOptions = {}): Trainer {
    const t = new Trainer(peft, checkpoint.args as TrainingArguments, options);
    t.resume(checkpoint);
    return t;
  }

  /**
   * Puts this trainer and its PeftModel in the state of `checkpoint`: the trainable values (CPU
   * and GPU), the AdamW moments, the step and the data position. The checkpoint's arguments must be
   * this trainer's (see `fromCheckpoint`).
   */
  resume(checkpoint: Checkpoint): void {
    this.assertIdle('resume');
    // How the backward keeps activations is a memory choice: a run may resume with another (the
    // old one no longer fits, or another fits a larger batch). Recomputation changes only memory and
    // time; half-precision activations also round what the gradients read.
    const mismatch = Object.keys({ ...checkpoint.args, ...this.args }).filter((k) => !MEMORY_ARGUMENTS.has(k) && JSON.stringify(checkpoint.args[k]) !== JSON.stringify((this.args as Record<string, unknown>)[k]));
    if (mismatch.length > 0) throw new InputError(`the checkpoint was taken with other training arguments (${mismatch.join(', ')}): use Trainer.fromCheckpoint`);
    const { model, trainables } = this.peft.trainingModel({ pooling: this.args.pooling });
    const print = this.fingerprint('');
    if (checkpoint.fingerprint.model !== print.model) throw new InputError('the checkpoint was taken on another base model (its weights or graph differ)');
    if (checkpoint.fingerprint.adapters !== print.adapters) throw new InputError('the checkpoint was taken with other adapter configs or active adapters');
    const names = trainables.map((t) => `${t.name}:${t.param.values.length}`).join('|');
    if (checkpoint.tensors.map((t) => `${t.name}:${t.values.length}`).join('|') !== names) throw new InputError('the checkpoint holds other trainable tensors than this PeftModel trains');
    const byName = new Map(checkpoint.tensors.map((t) => [t.name, t]));
    const layout = FlatState.layout(model.gpu, trainables.map((t) => ({ name: t.name, n: t.param.values.length })));
    const flat = FlatState.allocate(model.gpu, layout, this.args.maxGradNorm);
    flat.writeMoments((name) => byName.get(name)!);
    for (const t of checkpoint.tensors) this.peft.setParamValues(t.name, t.values);
    this.releaseSession();
    this.session = { key: sessionKey(layout.entries), flat, dataset: checkpoint.fingerprint.dataset, epoch: checkpoint.epoch, consumed: checkpoint.consumed, resumed: true };
    this.globalStep = checkpoint.step;
    this.saved = checkpoint;
  }

  /** The last checkpoint this trainer saved or resumed from (undefined: none). */
  get lastCheckpoint(): Checkpoint | undefined {
    return this.saved;
  }

  /**
   * The GPU memory of one training step on `batch` sequences of `sequence` tokens, before anything
   * runs: the forward + loss + backward plan's (PeftModel.memoryPlan) and the optimizer state's
   * (flat values, gradients, AdamW moments). A SizeLimitError when a tensor of the step cannot fit the
   * device's buffers.
   */
  memoryPlan({ batch, sequence }: { batch: number; sequence: number }): MemoryPlan & { readonly optimizer: number } {
    for (const [k, v] of Object.entries({ batch, sequence })) {
      if (!Number.isInteger(v) || v < 1) throw new InputError(`memoryPlan: ${k} must be a positive integer, got ${v}`);
    }
    const { model, trainables } = this.peft.trainingModel({ pooling: this.args.pooling });
    // The shapes the Trainer feeds (caches fed empty included), not only ids and mask.
    const { shapes, values } = batchShapes(this.collateOptions(model, this.peft.lossTask()), batch, sequence);
    const plan = model.gradientMemoryPlan(shapes, LOSS, trainables.map((t) => t.name), values, this.backwardOptions());
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
      emptyInputs: emptyInputsOf(model.graph.inputs),
      floatInputs: model.graph.inputs.filter((d) => isFloat(d.dtype)).map((d) => d.name),
    };
  }

  /**
   * Trains on tokenised examples; resolves when `maxSteps` (or the epochs) are done or `stop` is
   * called. Calling it again after a stop resumes: the step count, the learning-rate schedule, the
   * AdamW moments and the position in the (same) dataset carry on, so a run stopped and resumed
   * ends bit-identical to one never stopped. The current values of the vectors are always the
   * starting point (a `loadStateDict` between calls is honoured).
   *
   * Every argument and example is checked first (InputError, ShapeError: nothing changed). A later
   * failure leaves the adapter as after the last completed step; a lost device is a DeviceLostError
   * naming the last checkpoint, whose values the adapter then holds. A second `train` while one
   * runs, on this trainer or another over the same PeftModel, is a BusyError.
   */
  async train(dataset: readonly Example[]): Promise<{ steps: number; loss: number | undefined }> {
    this.assertIdle('train');
    const prepared = this.validate(dataset);
    const lease = this.peft.beginTraining('a Trainer is training it');
    this.running = true;
    this.stopRequested = false;
    let run: Run | undefined;
    try {
      run = this.begin(prepared, lease);
      const current = run;
      for (const { micro, epoch } of this.stepGroups(current)) {
        const step = this.globalStep;
        const pieces = this.fit(current, micro);
        const plans = await this.plansFor(current, pieces.map((p) => p.batch));
        await this.prepareStep(current, plans);
        const lr = learningRateAt(step, { name: this.args.lrScheduler, baseLr: this.args.learningRate, warmupSteps: current.warmup, totalSteps: current.totalSteps });
        this.submitStep(current, pieces, plans, step, lr);
        current.submitted++;
        current.window.push({ step: step + 1, epoch: epoch + 1, lr, tokens: micro.reduce((s, b) => s + b.tokens, 0) });
        this.globalStep++;
        const every = this.args.checkpointSteps;
        if (every > 0 && this.globalStep % every === 0) this.queueCheckpoint(current);
        const done = (): boolean => this.stopRequested || this.globalStep >= current.totalSteps;
        if (done() || current.window.length === Math.min(this.args.loggingSteps, current.totalSteps)) await this.readLog(current);
        // Asked again: a stop may come from an event of the read just awaited.
        if (done()) break;
      }
      await current.pendingRead;
      if (current.failure) throw current.failure;
      if (current.submitted > 0) {
        await current.session.flat.download((name, v) => lease.setParamValues(name, v));
        if (this.saved?.step !== this.globalStep) this.queueCheckpoint(current);
      }
      await current.saving;
      this.emit('end', { step: this.globalStep, reason: this.stopRequested ? 'stopped' : 'completed' });
      return { steps: this.globalStep, loss: current.lastLoss };
    } catch (e) {
      throw await this.fail(e, run, lease);
    } finally {
      run?.encoder.destroy();
      lease.end();
      this.running = false;
    }
  }

  /**
   * After a failure: the adapter as after the last completed step (downloaded when this call
   * changed the GPU copies), a checkpoint of it; or, when the device is lost, the last checkpoint's
   * values and a DeviceLostError naming its step. Returns the error to throw.
   */
  private async fail(e: unknown, run: Run | undefined, lease: TrainingLease): Promise<unknown> {
    const gpu = this.peft.base.gpu;
    await run?.pendingRead?.catch(() => undefined);
    const lost = await gpu.lossBehind(e);
    if (!lost) {
      if (run && run.submitted > 0) {
        try {
          // GPU copies never took a NaN step: these are the last good values.
          await run.session.flat.download((name, v) => lease.setParamValues(name, v));
          if (this.saved?.step !== this.globalStep) this.queueCheckpoint(run);
          await run.saving;
        } catch (inner) {
          const lostNow = await gpu.lossBehind(inner);
          if (!lostNow) return inner instanceof IA3Error ? inner : e;
          return this.deviceLost(lostNow, run, lease);
        }
      }
      return e;
    }
    return this.deviceLost(lost, run, lease);
  }

  /**
   * The device is gone. The adapter takes the values of the last checkpoint saved during this call
   * (or keeps those from before it: the CPU side never reverts past either), and the error names the
   * last checkpoint, from which `Trainer.fromCheckpoint` continues on a new device.
   */
  private async deviceLost(lost: DeviceLostError, run: Run | undefined, lease: TrainingLease): Promise<DeviceLostError> {
    await run?.saving.catch(() => undefined);
    const cp = this.saved;
    const restored = cp !== undefined && run !== undefined && run.checkpointed;
    if (restored) {
      for (const t of cp.tensors) lease.setParamValues(t.name, t.values);
      this.globalStep = cp.step;
    } else if (run) {
      this.globalStep -= run.submitted;
    }
    this.releaseSession();
    const where = restored
      ? `the adapter holds the values of step ${cp.step}, the last checkpoint: continue with Trainer.fromCheckpoint(peft, checkpoint) on a new device`
      : `no checkpoint was saved during this call, so the adapter holds the values from before it (step ${this.globalStep})${cp ? `; the last checkpoint is of step ${cp.step}` : ''}`;
    return new DeviceLostError(lost.reason, `${lost.message} Training stopped: ${where}.`, cp?.step);
  }

  /** Queues a checkpoint of the state after the steps submitted so far (read back while training goes on). */
  private queueCheckpoint(run: Run): void {
    const store = this.store;
    if (!store) return;
    const snapshot = run.session.flat.snapshot();
    const state = { step: this.globalStep, epoch: run.session.epoch, consumed: run.session.consumed };
    run.saving = run.saving
      .then(() => snapshot)
      .then(async (tensors) => {
        const checkpoint: Checkpoint = { ...state, args: JSON.parse(JSON.stringify(this.args)) as Record<string, unknown>, fingerprint: run.fingerprint, tensors };
        await store.save(checkpoint);
        this.saved = checkpoint;
        run.checkpointed = true;
        this.emit('checkpoint', { step: checkpoint.step });
      });
    snapshot.catch(() => undefined); // awaited through `saving`
    run.saving.catch(() => undefined);
  }

  /** Fingerprints of the base model, the active adapters' configs and `dataset`. */
  private fingerprint(dataset: string): CheckpointFingerprint {
    const configs = this.peft.activeAdapters.map((a) => `${a}:${serializeConfig(this.peft.peftConfig[a]!)}`).join('\n');
    return { model: modelFingerprint(this.peft.base.graph), adapters: textFingerprint(configs), dataset };
  }

  /**
   * Every check a run needs, before anything changes: the dataset (holes, fields), the step count,
   * the schedule, and every id, token type, position and label against the tables and classes of
   * the specialised graphs of the buckets the data will use.
   */
  private validate(dataset: readonly Example[]): Prepared {
    const a = this.args;
    if (!Array.isArray(dataset)) throw new InputError('the training dataset must be an array of examples');
    if (dataset.length === 0) throw new InputError('the training dataset is empty');
    const { model, trainables } = this.peft.trainingModel({ pooling: this.args.pooling });
    const collate = this.collateOptions(model, this.peft.lossTask());
    const rows = validateExamples(dataset, collate);
    const batchesPerEpoch = Math.ceil(dataset.length / a.batchSize);
    const stepsPerEpoch = Math.floor(batchesPerEpoch / a.gradientAccumulationSteps);
    if (stepsPerEpoch === 0) {
      throw new InputError(`an epoch of the dataset makes no optimizer step: ${dataset.length} examples make ${batchesPerEpoch} batch${batchesPerEpoch > 1 ? 'es' : ''} of ${a.batchSize}, fewer than gradientAccumulationSteps (${a.gradientAccumulationSteps})`);
    }
    const totalSteps = a.maxSteps ?? Math.ceil(stepsPerEpoch * a.numEpochs);
    const warmup = a.warmupSteps > 0 ? a.warmupSteps : warmupStepsFrom(a.warmupRatio, totalSteps);
    learningRateAt(0, { name: a.lrScheduler, baseLr: a.learningRate, warmupSteps: warmup, totalSteps });
    this.checkIndices(model, collate, rows);
    // With a memory budget, every bucket's full batch is fitted now: one sequence over it is refused here.
    const fitted = new Map<string, number>();
    if (a.maxMemoryBytes !== undefined) {
      for (const len of bucketsUsed(rows, collate.buckets)) this.rowsThatFit(Math.min(a.batchSize, dataset.length), len, a.maxMemoryBytes, fitted);
    }
    const print = datasetFingerprint(dataset);
    return { examples: dataset, model, trainables, collate, totalSteps, warmup, dataset: print, fingerprint: this.fingerprint(print), fitted };
  }

  /** Ids, token types, positions and labels against the graphs of every bucket the data can use. */
  private checkIndices(model: Model, collate: Prepared['collate'], rows: ReturnType<typeof validateExamples>): void {
    for (const len of bucketsUsed(rows, collate.buckets)) {
      const { shapes, values } = batchShapes(collate, this.args.batchSize, len);
      const spec = specialize(model.graph, shapes, { values }); // also checks constant positions against their table
      const within = (known: string, value: number, where: () => string): void => {
        // The model's name for a known input (TensorFlow exports alias them, e.g. 'input_ids:0').
        const input = collate.inputNames.find((n) => knownInput(n) === known) ?? known;
        const r = inputRange(spec, input);
        if (r && !((value >= r.lo && value < r.hi) || value === r.ignore)) {
          throw new InputError(`${where()} is ${value}, outside [${r.lo < 0 ? 0 : r.lo}, ${r.hi}): it indexes ${r.what}`);
        }
      };
      rows.forEach((r, i) => {
        if (bucketLength(r.ids.length, collate.buckets) > len) return;
        r.ids.forEach((id, t) => within('input_ids', id, () => `example ${i}: input_ids[${t}]`));
        if (collate.task === 'CAUSAL_LM') r.targets.forEach((l, t) => within(LABELS, l, () => `example ${i}: labels[${t}]`));
        else within(LABELS, r.label, () => `example ${i}: label`);
      });
      within('input_ids', collate.padTokenId, () => 'padTokenId');
      within('token_type_ids', 0, () => 'token_type_ids (all 0)');
      within('position_ids', len - 1, () => `position ${len - 1} of a ${len}-token bucket`);
    }
  }

  /** The training model, the flat buffers (kept from a stopped run when the tensors are the same) and this call's encoder. */
  private begin(p: Prepared, lease: TrainingLease): Run {
    const a = this.args;
    const gpu = p.model.gpu;
    const layout = FlatState.layout(gpu, p.trainables.map((t) => ({ name: t.name, n: t.param.values.length })));
    const key = sessionKey(layout.entries);
    if (this.session && this.session.key !== key) this.releaseSession();
    if (this.session?.resumed && this.session.dataset !== p.dataset) {
      throw new InputError('the checkpoint this trainer resumed was taken on another dataset: pass the same examples in the same order');
    }
    this.session ??= { key, flat: FlatState.allocate(gpu, layout, a.maxGradNorm), dataset: p.dataset, epoch: 0, consumed: 0, resumed: false };
    const session = this.session;
    if (session.dataset !== p.dataset) Object.assign(session, { dataset: p.dataset, epoch: 0, consumed: 0 });
    const hyper = { lr: a.learningRate, beta1: a.adamBeta1, beta2: a.adamBeta2, eps: a.adamEpsilon, weightDecay: a.weightDecay };
    const settings = { hyper, maxGradNorm: a.maxGradNorm, loggingSteps: Math.min(a.loggingSteps, p.totalSteps) };
    return {
      ...p,
      session,
      lease,
      encoder: new StepEncoder(gpu, session.flat, p.model.weights, settings),
      wrt: p.trainables.map((t) => t.name),
      submitted: 0,
      uploaded: false,
      window: [],
      windowStart: performance.now(),
      pendingRead: undefined,
      saving: Promise.resolve(),
      checkpointed: false,
      failure: undefined,
      lastLoss: undefined,
    };
  }

  /**
   * Collation: groups of `gradientAccumulationSteps` micro-batches from where the session left
   * off, epoch after epoch, until `totalSteps`. The shuffle is a pure function of (seed, epoch), so
   * skipping what a stopped run consumed puts a resumed run exactly where it was. A trailing group
   * smaller than the accumulation makes no step (`validate` made sure an epoch makes at least one).
   */
  private *stepGroups(run: Run): Generator<{ micro: Batch[]; epoch: number }> {
    const a = this.args;
    const session = run.session;
    while (this.globalStep < run.totalSteps) {
      const epoch = session.epoch;
      let index = 0;
      let micro: Batch[] = [];
      for (const batch of batches(run.examples, { ...run.collate, batchSize: a.batchSize, seed: a.seed, epoch, shuffle: true })) {
        if (index++ < session.consumed) continue;
        micro.push(batch);
        if (micro.length < a.gradientAccumulationSteps) continue;
        session.consumed = index;
        yield { micro, epoch };
        micro = [];
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
      const sequence = batch.labels.dims[1] ?? Object.values(batch.inputs)[0]?.dims[1] ?? 1;
      const pieces = splitRows(batch, this.rowsThatFit(batch.examples, sequence, budget, run.fitted));
      if (pieces.length === 1) return [{ batch, alpha: 1 / k }];
      const total = countedLabels(batch, run.collate.task);
      return pieces.map((p) => ({ batch: p, alpha: total > 0 ? countedLabels(p, run.collate.task) / total / k : 0 }));
    });
  }

  /**
   * The most rows (of `rows`, halved until they fit) whose training step on `sequence` tokens fits
   * `budget` bytes, remembered in `fitted`; an InputError when one sequence does not fit.
   */
  private rowsThatFit(rows: number, sequence: number, budget: number, fitted: Map<string, number>): number {
    const key = `${rows}x${sequence}`;
    let fits = fitted.get(key);
    if (fits !== undefined) return fits;
    fits = rows;
    let need = this.memoryPlan({ batch: fits, sequence }).total;
    while (need > budget && fits > 1) {
      fits = Math.ceil(fits / 2);
      need = this.memoryPlan({ batch: fits, sequence }).total;
    }
    if (need > budget) {
      throw new InputError(`a training step on one sequence of ${sequence} tokens needs ${need.toLocaleString('en-US')} bytes of GPU memory, over maxMemoryBytes (${budget.toLocaleString('en-US')}); use shorter sequences (maxLength) or a larger budget`);
    }
    fitted.set(key, fits);
    return fits;
  }

  /** The compiled forward + loss + backward plan of each micro-batch's shapes (one per bucket). */
  /** The backward choices of these arguments, as the gradient plans take them. */
  private backwardOptions(): BackwardOptions {
    const { recompute, activationPrecision } = this.args;
    return { ...(recompute === undefined ? {} : { recompute }), ...(activationPrecision === undefined ? {} : { activationPrecision }) };
  }

  private async plansFor(run: Run, micro: readonly Batch[]): Promise<GradientPlan[]> {
    const plans: GradientPlan[] = [];
    for (const b of micro) {
      const feeds = { ...b.inputs, ...b.other };
      const shapes = { ...Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims])), [LABELS]: b.labels.dims };
      // Input values decide a merged decoder's If branch (use_cache_branch), like a shape.
      plans.push(await run.model.gradientPlan(shapes, LOSS, run.wrt, Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.data])), this.backwardOptions()));
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
      const feeds = run.model.gpuFeeds({ ...b.inputs, ...b.other, [LABELS]: b.labels });
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
          const hint = this.args.activationPrecision === 'f16' ? "with activationPrecision 'f16' an activation beyond ±65504 becomes ∞; 'bf16' keeps f32's range" : undefined;
          run.failure = new NonFiniteError(e.step, Number.isFinite(loss) ? 'gradient norm' : 'loss', hint);
        }
        sum += loss;
        run.lastLoss = loss;
        this.emit('step', { step: e.step, epoch: e.epoch, loss, learningRate: e.lr, gradNorm, tokensPerSecond: tps });
      });
      const last = entries[entries.length - 1]!;
      this.emit('log', { step: last.step, loss: sum / entries.length, learningRate: last.lr, gradNorm: v[2 * entries.length - 1]! });
    });
  }

  /**
   * Frees the optimizer state kept for resuming (its GPU buffers); the trainer cannot train or
   * evaluate afterwards (DisposedError). Calling it again does nothing; a BusyError while `train` runs.
   */
  dispose(): void {
    if (this.disposed) return;
    if (this.running) throw new BusyError('cannot dispose the Trainer while train() runs: stop() it and await train() first');
    this.releaseSession();
    this.disposed = true;
  }

  private releaseSession(): void {
    this.session?.flat.release();
    this.session = undefined;
  }

  private assertIdle(what: string): void {
    if (this.disposed) throw new DisposedError('this Trainer was disposed');
    if (this.running) throw new BusyError(`cannot ${what}: train() is already running on this Trainer`);
  }

  /**
   * Loss (and accuracy or perplexity) of the active adapters on a dataset; no gradients. Ids and
   * labels outside the model's tables and classes are InputErrors, as in `train`.
   */
  async evaluate(dataset: readonly Example[]): Promise<EvalResult> {
    if (this.disposed) throw new DisposedError('this Trainer was disposed');
    if (!Array.isArray(dataset)) throw new InputError('the evaluation dataset must be an array of examples');
    if (dataset.length === 0) throw new InputError('the evaluation dataset is empty');
    const { model } = this.peft.trainingModel({ pooling: this.args.pooling });
    const task = this.peft.lossTask();
    const collate = this.collateOptions(model, task);
    this.checkIndices(model, collate, validateExamples(dataset, collate));
    let lossSum = 0;
    let weightSum = 0;
    let correct = 0;
    let examples = 0;
    for (const b of batches(dataset, { ...collate, batchSize: this.args.batchSize, seed: 0, epoch: 0, shuffle: false })) {
      // Classification reads the scores too; a causal LM only the loss (its logits may not be an output).
      const scoresName = model.outputNames.includes(SCORES) ? SCORES : logitsOutput(model.graph);
      const out = await model.run({ ...b.inputs, ...b.other, [LABELS]: b.labels }, task === 'CAUSAL_LM' ? [LOSS] : [LOSS, scoresName]);
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

function sessionKey(entries: readonly { name: string; n: number }[]): string {
  return entries.map((t) => `${t.name}:${t.n}`).join('|');
}

/** Every argument, checked once (InputError naming it); what depends on the data is checked in `validate`. */
/**
 * The shapes (and If-deciding values) collate gives a batch of `batch` rows of `length` tokens:
 * [batch, length] for what examples fill, a past of 0 and use_cache_branch = false for what
 * training feeds empty, and the labels.
 */
function batchShapes(collate: ReturnType<Trainer['collateOptions']>, batch: number, length: number): { shapes: Record<string, number[]>; values: Record<string, Uint8Array> } {
  const shapes: Record<string, number[]> = {};
  const values: Record<string, Uint8Array> = {};
  for (const name of collate.inputNames) {
    const empty = collate.emptyInputs.find((e) => e.name === name);
    const dims = empty ? empty.dims.map((d) => (d === 'batch' ? batch : d)) : [batch, length];
    shapes[name] = dims;
    if (empty) values[name] = new Uint8Array(dims.reduce((p, d) => p * d, 1));
  }
  shapes[LABELS] = collate.task === 'CAUSAL_LM' ? [batch, length] : [batch];
  return { shapes, values };
}

/** The bucket lengths batches of `rows` can take (from the shortest example's to the longest's), ascending. */
function bucketsUsed(rows: ReturnType<typeof validateExamples>, buckets: readonly number[]): number[] {
  const lengths = rows.map((r) => r.ids.length);
  const [lo, hi] = [bucketLength(Math.min(...lengths), buckets), bucketLength(Math.max(...lengths), buckets)];
  return [...new Set(buckets)].filter((b) => b >= lo && b <= hi).sort((x, y) => x - y);
}

function checkArguments(a: ResolvedArguments): void {
  const fail = (k: string, what: string, v: unknown): never => {
    throw new InputError(`TrainingArguments.${k} must be ${what}, got ${JSON.stringify(v) ?? String(v)}`);
  };
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const integer = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  for (const k of ['learningRate', 'numEpochs', 'adamEpsilon'] as const) if (!(finite(a[k]) && a[k] > 0)) fail(k, 'a positive number', a[k]);
  for (const k of ['batchSize', 'gradientAccumulationSteps', 'loggingSteps', 'maxLength'] as const) if (!(integer(a[k]) && a[k] > 0)) fail(k, 'a positive integer', a[k]);
  if (a.loggingSteps > MAX_LOGGING_STEPS) fail('loggingSteps', `at most ${MAX_LOGGING_STEPS} (the steps between loss reads share one GPU ring)`, a.loggingSteps);
  if (a.maxSteps !== undefined && !(integer(a.maxSteps) && a.maxSteps > 0)) fail('maxSteps', 'a positive integer', a.maxSteps);
  for (const k of ['warmupSteps', 'checkpointSteps'] as const) if (!(integer(a[k]) && a[k] >= 0)) fail(k, 'an integer ≥ 0', a[k]);
  if (!(finite(a.warmupRatio) && a.warmupRatio >= 0 && a.warmupRatio <= 1)) fail('warmupRatio', 'a number in [0, 1]', a.warmupRatio);
  if (!(finite(a.weightDecay) && a.weightDecay >= 0)) fail('weightDecay', 'a number ≥ 0', a.weightDecay);
  for (const k of ['adamBeta1', 'adamBeta2'] as const) if (!(finite(a[k]) && a[k] >= 0 && a[k] < 1)) fail(k, 'a number in [0, 1)', a[k]);
  if (!(typeof a.maxGradNorm === 'number' && a.maxGradNorm >= 0)) fail('maxGradNorm', 'a number ≥ 0 (0 or Infinity: no clipping)', a.maxGradNorm);
  if (!SCHEDULES.includes(a.lrScheduler)) fail('lrScheduler', `one of ${SCHEDULES.join(', ')}`, a.lrScheduler);
  if (!integer(a.seed)) fail('seed', 'an integer', a.seed);
  if (a.padTokenId !== undefined && !(integer(a.padTokenId) && a.padTokenId >= 0)) fail('padTokenId', 'an integer ≥ 0', a.padTokenId);
  if (a.maxMemoryBytes !== undefined && !(finite(a.maxMemoryBytes) && a.maxMemoryBytes > 0)) fail('maxMemoryBytes', 'a positive number of bytes', a.maxMemoryBytes);
  if (a.pooling !== undefined && !POOLINGS.includes(a.pooling)) fail('pooling', `one of ${POOLINGS.join(', ')}`, a.pooling);
  if (a.recompute !== undefined && !RECOMPUTE.includes(a.recompute)) fail('recompute', `one of ${RECOMPUTE.join(', ')}`, a.recompute);
  if (a.activationPrecision !== undefined && !ACTIVATION_PRECISIONS.includes(a.activationPrecision)) fail('activationPrecision', `one of ${ACTIVATION_PRECISIONS.join(', ')}`, a.activationPrecision);
  if (a.buckets !== undefined && !(Array.isArray(a.buckets) && a.buckets.length > 0 && a.buckets.every((b) => integer(b) && b > 0))) fail('buckets', 'a non-empty list of positive integers', a.buckets);
}
