// Trainer: fine-tunes the active IA3 adapter(s) of a PeftModel on the GPU.
//
// One optimizer step is, per micro-batch, one submission of the compiled forward + loss + backward
// plan followed by accumulation of each vector's gradient into one flat gradient buffer; then
// global-norm clipping, AdamW over the flat buffer of all trainable values (params, m, v), and a
// copy of the updated values back into the vectors the plans read. Nothing is read back inside a
// step: each step's loss and gradient norm are copied into a ring buffer that is mapped every
// `loggingSteps` steps, while the next steps are already queued.
//
// A step whose gradient norm is NaN or infinite changes nothing (the AdamW kernel skips it); when
// the trainer sees it at the next read it stops with NonFiniteError naming the step, keeping the
// last good values. Same seed, same data: same batches, same GPU arithmetic (no float atomics),
// same result.

import { LABELS, LOSS, SCORES, type LossTask } from '../autograd/loss.js';
import { IA3Error, InputError } from '../errors.js';
import type { GpuContext } from '../gpu/device.js';
import { packUniforms, type Program } from '../gpu/kernel.js';
import type { GradientPlan, Model } from '../model.js';
import { adamwProgram, gradNormPrograms } from '../ops/optim.js';
import type { PeftModel } from '../peft/model.js';
import { batches, bucketsUpTo, type Batch, type Example } from './data.js';
import { accumulateProgram } from './kernels.js';
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

interface Trainable {
  name: string;
  n: number;
  /** Element offset in the flat buffers (a multiple of the storage offset alignment). */
  offset: number;
}

interface Flat {
  params: GPUBuffer;
  grads: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
  normScale: GPUBuffer;
  partials: GPUBuffer;
  lossAcc: GPUBuffer;
  n: number;
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** What `train` keeps between calls so that a stopped run resumes exactly where it was. */
interface Session {
  /** The trainable tensors the flat buffers hold, in order; another set starts a fresh optimizer. */
  key: string;
  flat: Flat;
  dataset: readonly Example[];
  epoch: number;
  /** Micro-batches of `epoch` already consumed. */
  consumed: number;
}

export class Trainer {
  readonly args: Required<Omit<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId'>> & Pick<TrainingArguments, 'maxSteps' | 'buckets' | 'padTokenId'>;
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
    };
    const positive: (keyof TrainingArguments)[] = ['learningRate', 'batchSize', 'numEpochs', 'gradientAccumulationSteps', 'loggingSteps', 'maxLength'];
    for (const k of positive) {
      const v = this.args[k] as number;
      if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new InputError(`TrainingArguments.${k} must be a positive number, got ${v}`);
    }
    if (this.args.maxSteps !== undefined && !(Number.isInteger(this.args.maxSteps) && this.args.maxSteps > 0)) {
      throw new InputError(`TrainingArguments.maxSteps must be a positive integer, got ${this.args.maxSteps}`);
    }
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
    const a = this.args;
    const { model, trainables: list } = this.peft.trainingModel();
    const gpu = model.gpu;
    const task = this.peft.lossTask();
    const collate = this.collateOptions(model, task);
    const stepsPerEpoch = Math.max(1, Math.floor(Math.ceil(dataset.length / a.batchSize) / a.gradientAccumulationSteps));
    const totalSteps = a.maxSteps ?? stepsPerEpoch * a.numEpochs;
    const warmup = a.warmupSteps > 0 ? a.warmupSteps : warmupStepsFrom(a.warmupRatio, totalSteps);

    // Layout of the flat buffers: each vector at an offset aligned for sub-range bindings.
    const align = gpu.limits.minStorageBufferOffsetAlignment / 4;
    let total = 0;
    const trainables: Trainable[] = list.map((t) => {
      const n = t.param.values.length;
      const entry = { name: t.name, n, offset: total };
      total = alignUp(total + n, align);
      return entry;
    });
    const key = trainables.map((t) => `${t.name}:${t.n}`).join('|');
    if (this.session && (this.session.key !== key || this.session.flat.n !== Math.max(4, total))) this.releaseSession();
    this.session ??= { key, flat: this.allocate(gpu, total), dataset, epoch: 0, consumed: 0 };
    const session = this.session;
    if (session.dataset !== dataset) Object.assign(session, { dataset, epoch: 0, consumed: 0 });
    const flat = session.flat;
    const wrt = trainables.map((t) => t.name);
    const hyper = { lr: a.learningRate, beta1: a.adamBeta1, beta2: a.adamBeta2, eps: a.adamEpsilon, weightDecay: a.weightDecay };
    const clip = gradNormPrograms(flat.n, a.maxGradNorm);
    const adamProbe = adamwProgram(flat.n, hyper, 1);
    const adamUniforms = gpu.device.createBuffer({ size: packUniforms(adamProbe.kernel, adamProbe.uniforms).byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const ring = gpu.device.createBuffer({ size: 8 * a.loggingSteps, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    const owned: GPUBuffer[] = [adamUniforms, ring];
    // Bind groups (and their uniform buffers) are built once per plan and reused every step.
    type Dispatch = { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: readonly [number, number, number] };
    const prepared = new Map<GradientPlan, Map<0 | 1, Dispatch[]>>();
    const prepare = (steps: { program: Program; buffers: (GPUBuffer | GPUBufferBinding)[]; uniforms?: GPUBuffer }[]): Dispatch[] =>
      steps.map(({ program, buffers, uniforms }) => {
        const u = uniforms ?? gpu.uniformBuffer(program);
        if (u && !uniforms) owned.push(u);
        return { pipeline: gpu.pipelines.getReady(program), bindGroup: gpu.bindGroup(program, buffers, u), workgroups: program.workgroups };
      });
    const record = (pass: GPUComputePassEncoder, ds: readonly Dispatch[]): void => {
      for (const d of ds) {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
      }
    };
    const slice = (buffer: GPUBuffer, t: Trainable): GPUBufferBinding => ({ buffer, offset: 4 * t.offset, size: alignUp(4 * t.n, 16) });
    /** Gradient (and loss) accumulation out of one plan's buffers; beta 0 overwrites, 1 adds. */
    const accumulation = (g: GradientPlan, beta: 0 | 1, accum: number): Dispatch[] => {
      let byPlan = prepared.get(g);
      if (!byPlan) prepared.set(g, (byPlan = new Map()));
      let ds = byPlan.get(beta);
      if (!ds) {
        ds = prepare([
          ...trainables.map((t) => ({ program: accumulateProgram(t.n, 1 / accum, beta), buffers: [g.plan.buffers.get(g.gradients.get(t.name)!)!, slice(flat.grads, t)] })),
          { program: accumulateProgram(1, 1 / accum, beta), buffers: [g.plan.buffers.get(g.loss)!, flat.lossAcc] },
        ]);
        byPlan.set(beta, ds);
      }
      return ds;
    };
    let update: { clip: Dispatch[]; adam: Dispatch[]; copyBack: Dispatch[] } | undefined;
    const updateDispatches = (): NonNullable<typeof update> => {
      update ??= {
        clip: prepare([
          { program: clip.partial, buffers: [flat.grads, flat.partials] },
          { program: clip.finish, buffers: [flat.partials, flat.normScale] },
        ]),
        adam: prepare([{ program: adamProbe, buffers: [flat.grads, flat.normScale, flat.params, flat.m, flat.v], uniforms: adamUniforms }]),
        copyBack: prepare(trainables.map((t) => ({ program: accumulateProgram(t.n, 1, 0), buffers: [slice(flat.params, t), model.weightBuffers.get(t.name)!] }))),
      };
      return update;
    };

    let lastLoss: number | undefined;
    let uploaded = false;
    let pendingRead: Promise<void> | undefined;
    let window: { step: number; epoch: number; lr: number; tokens: number; t0: number }[] = [];
    let windowStart = performance.now();
    let failure: NonFiniteError | undefined;

    const readWindow = (entries: typeof window, elapsed: number): Promise<void> => {
      const staging = gpu.device.createBuffer({ size: 8 * entries.length, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = gpu.device.createCommandEncoder({ label: 'trainer.read' });
      enc.copyBufferToBuffer(ring, 0, staging, 0, 8 * entries.length);
      gpu.device.queue.submit([enc.finish()]);
      return staging.mapAsync(GPUMapMode.READ).then(() => {
        const v = new Float32Array(staging.getMappedRange().slice(0));
        staging.destroy();
        const tokens = entries.reduce((s, e) => s + e.tokens, 0);
        const tps = tokens / Math.max(1e-9, elapsed / 1000);
        let sum = 0;
        entries.forEach((e, i) => {
          const loss = v[2 * i]!;
          const gradNorm = v[2 * i + 1]!;
          if (!failure && !(Number.isFinite(loss) && Number.isFinite(gradNorm))) {
            failure = new NonFiniteError(e.step, Number.isFinite(loss) ? 'gradient norm' : 'loss');
          }
          sum += loss;
          lastLoss = loss;
          this.emit('step', { step: e.step, epoch: e.epoch, loss, learningRate: e.lr, gradNorm, tokensPerSecond: tps });
        });
        const last = entries[entries.length - 1]!;
        this.emit('log', { step: last.step, loss: sum / entries.length, learningRate: last.lr, gradNorm: v[2 * entries.length - 1]! });
      });
    };

    try {
      let micro: Batch[] = [];
      const accum = a.gradientAccumulationSteps;
      outer: while (this.globalStep < totalSteps) {
        const epoch = session.epoch;
        let index = 0;
        for (const batch of batches(dataset, { ...collate, batchSize: a.batchSize, seed: a.seed, epoch, shuffle: true })) {
          // Resuming: the shuffle is a pure function of (seed, epoch), so skipping what was consumed
          // puts us exactly where the stopped run was.
          if (index++ < session.consumed) continue;
          micro.push(batch);
          if (micro.length < accum) continue;
          session.consumed = index;
          const step = this.globalStep;
          const lr = learningRateAt(step, { name: a.lrScheduler, baseLr: a.learningRate, warmupSteps: warmup, totalSteps });
          const plans: GradientPlan[] = [];
          for (const b of micro) {
            plans.push(await model.gradientPlan({ ...Object.fromEntries(Object.entries(b.inputs).map(([k, v]) => [k, v.dims])), [LABELS]: b.labels.dims }, LOSS, wrt));
          }
          if (!uploaded) {
            // The plans uploaded the vectors they read; the flat buffer starts from the same values.
            this.uploadParams(gpu, model, trainables, flat);
            uploaded = true;
          }
          await Promise.all([accumulateProgram(1, 1, 0), clip.partial, clip.finish, adamProbe].map((p) => gpu.pipelines.get(p)));
          gpu.assertAlive();
          const adam = adamwProgram(flat.n, { ...hyper, lr }, step + 1);
          gpu.device.queue.writeBuffer(adamUniforms, 0, packUniforms(adam.kernel, adam.uniforms));
          micro.forEach((b, k) => {
            const g = plans[k]!;
            const feeds = model.gpuFeeds({ ...b.inputs, [LABELS]: b.labels });
            g.plan.writeInputs(new Map([...feeds].filter(([name]) => g.inputs.includes(name)).map(([name, v]) => [name, v.data])));
            const enc = gpu.device.createCommandEncoder({ label: `trainer.step${step}.micro${k}` });
            g.plan.encode(enc);
            const pass = enc.beginComputePass();
            record(pass, accumulation(g, k === 0 ? 0 : 1, micro.length));
            const last = k === micro.length - 1;
            if (last) {
              const u = updateDispatches();
              record(pass, u.clip);
              record(pass, u.adam);
              record(pass, u.copyBack);
            }
            pass.end();
            if (last) {
              const slot = step % a.loggingSteps;
              enc.copyBufferToBuffer(flat.lossAcc, 0, ring, 8 * slot, 4);
              enc.copyBufferToBuffer(flat.normScale, 0, ring, 8 * slot + 4, 4);
            }
            gpu.device.queue.submit([enc.finish()]);
          });
          window.push({ step: step + 1, epoch: epoch + 1, lr, tokens: micro.reduce((s, b) => s + b.tokens, 0), t0: performance.now() });
          micro = [];
          this.globalStep++;
          if (window.length === a.loggingSteps || this.globalStep >= totalSteps || this.stopRequested) {
            await pendingRead; // at most one read in flight: the ring slots are about to be reused
            if (failure) throw failure;
            const now = performance.now();
            pendingRead = readWindow(window, now - windowStart);
            windowStart = now;
            window = [];
          }
          if (this.stopRequested || this.globalStep >= totalSteps) break outer;
        }
        // A trailing group smaller than gradientAccumulationSteps makes no step (stepsPerEpoch
        // counts whole groups only).
        micro = [];
        session.epoch++;
        session.consumed = 0;
      }
      await pendingRead;
      if (failure) throw failure;
      await this.downloadParams(gpu, trainables, flat);
      this.emit('end', { step: this.globalStep, reason: this.stopRequested ? 'stopped' : 'completed' });
      return { steps: this.globalStep, loss: lastLoss };
    } catch (e) {
      await pendingRead?.catch(() => undefined);
      // Keep the last good values on the CPU side too (the GPU copies never took a NaN step).
      await this.downloadParams(gpu, trainables, flat).catch(() => undefined);
      throw e;
    } finally {
      for (const u of owned) u.destroy();
    }
  }

  /** Frees the optimizer state kept for resuming; the next `train` starts a fresh optimizer. */
  dispose(): void {
    this.releaseSession();
  }

  private releaseSession(): void {
    const s = this.session;
    if (!s) return;
    const gpu = this.peft.base.gpu;
    for (const b of [s.flat.params, s.flat.grads, s.flat.m, s.flat.v, s.flat.normScale, s.flat.partials, s.flat.lossAcc]) gpu.buffers.release(b);
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
      const scoresName = model.outputNames.includes(SCORES) ? SCORES : 'logits';
      const out = await model.run({ ...b.inputs, [LABELS]: b.labels }, [LOSS, scoresName]);
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

  private allocate(gpu: GpuContext, total: number): Flat {
    const n = Math.max(4, total);
    const zeros = new Float32Array(n);
    const make = (): GPUBuffer => gpu.upload(zeros);
    const clip = gradNormPrograms(n, this.args.maxGradNorm);
    return { params: make(), grads: make(), m: make(), v: make(), normScale: gpu.upload(new Float32Array(4)), partials: gpu.buffers.acquire(Math.max(16, clip.tempBytes)), lossAcc: gpu.upload(new Float32Array(4)), n };
  }

  private uploadParams(gpu: GpuContext, model: Model, trainables: readonly Trainable[], flat: Flat): void {
    const values = new Float32Array(flat.n);
    for (const t of trainables) {
      const v = this.peft.paramValues(t.name);
      values.set(v, t.offset);
      const buffer = model.weightBuffers.get(t.name);
      if (!buffer) throw new Error(`trainer: vector '${t.name}' was not uploaded by the plan`);
      gpu.write(buffer, v);
    }
    gpu.write(flat.params, values);
  }

  private async downloadParams(gpu: GpuContext, trainables: readonly Trainable[], flat: Flat): Promise<void> {
    const values = new Float32Array(await gpu.read(flat.params, 4 * flat.n));
    for (const t of trainables) this.peft.setParamValues(t.name, values.subarray(t.offset, t.offset + t.n));
  }
}
