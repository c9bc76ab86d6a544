// The GPU side of an optimizer step, owned by two small classes.
//
// `FlatState` holds every trainable value in ONE flat f32 buffer (params), with its gradient
// (grads) and AdamW moments (m, v) in flat buffers of the same length, plus the clipping partials,
// the [norm, scale] pair and the accumulated loss. Each tensor sits at an offset aligned for
// sub-range bindings (minStorageBufferOffsetAlignment), so kernels bind it in place. It outlives a
// `train` call: a stopped run resumes with the same moments.
//
// `StepEncoder` holds what one `train` call builds over it and the compiled plans: AdamW's uniform
// buffer (rewritten every step with the step's learning rate and bias corrections), the ring of
// (loss, gradient norm) pairs read back every `loggingSteps` steps, and the dispatch lists —
// per plan the accumulation of each gradient (and the loss) into the flat buffers, and once the
// update (clip, AdamW, copy of the new values back into the buffers the plans read). A
// micro-batch's weight in the step (1 / accumulation steps, times its share of the labels when the
// Trainer cut a batch to fit its memory budget) is written into the accumulation's uniform buffers
// before it is submitted. A step records into command encoders only; nothing is read back inside it.

import type { GpuContext } from '../gpu/device.js';
import { DispatchList, type BoundProgram } from '../gpu/dispatch.js';
import { BufferUsage, MapMode } from '../gpu/flags.js';
import { packUniforms } from '../gpu/kernel.js';
import type { WeightStore } from '../gpu/weights.js';
import type { GradientPlan } from '../model.js';
import { adamwProgram, gradNormPrograms, type AdamWHyper } from '../ops/optim.js';
import { awaitGpu } from '../runtime.js';
import { accumulateProgram } from './kernels.js';

/** A trainable tensor in the flat buffers. */
export interface FlatEntry {
  readonly name: string;
  readonly n: number;
  /** Element offset in the flat buffers (a multiple of the storage offset alignment). */
  readonly offset: number;
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** Flat buffers of every trainable tensor: values, gradients, AdamW moments, clipping and loss. */
export class FlatState {
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  /** [gradient norm, clip scale]. */
  readonly normScale: GPUBuffer;
  readonly partials: GPUBuffer;
  readonly lossAcc: GPUBuffer;
  /** Length of the flat buffers (at least 4). */
  readonly n: number;

  private constructor(
    private readonly gpu: GpuContext,
    readonly entries: readonly FlatEntry[],
    total: number,
    maxGradNorm: number,
  ) {
    this.n = Math.max(4, total);
    const zeros = new Float32Array(this.n);
    [this.params, this.grads, this.m, this.v] = [0, 1, 2, 3].map(() => gpu.upload(zeros)) as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer];
    this.normScale = gpu.upload(new Float32Array(4));
    this.partials = gpu.buffers.acquire(Math.max(16, gradNormPrograms(this.n, maxGradNorm).tempBytes));
    this.lossAcc = gpu.upload(new Float32Array(4));
  }

  /** Offsets of `tensors` (name, element count) in flat buffers, each aligned for binding at an offset. */
  static layout(gpu: GpuContext, tensors: readonly { name: string; n: number }[]): { entries: FlatEntry[]; total: number } {
    const align = gpu.traits.limits.minStorageBufferOffsetAlignment / 4;
    let total = 0;
    const entries = tensors.map(({ name, n }) => {
      const entry = { name, n, offset: total };
      total = alignUp(total + n, align);
      return entry;
    });
    return { entries, total };
  }

  static allocate(gpu: GpuContext, layout: { entries: FlatEntry[]; total: number }, maxGradNorm: number): FlatState {
    return new FlatState(gpu, layout.entries, layout.total, maxGradNorm);
  }

  /** The GPU bytes `allocate` would take for `layout` (what the buffer pool hands out). */
  static bytes(gpu: GpuContext, layout: { total: number }, maxGradNorm: number): number {
    const n = Math.max(4, layout.total);
    const pool = gpu.buffers;
    return 4 * pool.classOf(4 * n) + 2 * pool.classOf(16) + pool.classOf(Math.max(16, gradNormPrograms(n, maxGradNorm).tempBytes));
  }

  /** Tensor `e`'s range of a flat buffer, as a binding. */
  slice(buffer: GPUBuffer, e: FlatEntry): GPUBufferBinding {
    return { buffer, offset: 4 * e.offset, size: alignUp(4 * e.n, 16) };
  }

  /** Writes the current values of every tensor into the flat params and into the buffers the plans read. */
  upload(values: (name: string) => Float32Array, weights: WeightStore): void {
    const flat = new Float32Array(this.n);
    for (const e of this.entries) {
      const v = values(e.name);
      flat.set(v, e.offset);
      if (!weights.write(e.name, v)) throw new Error(`trainer: vector '${e.name}' was not uploaded by the plan`);
    }
    this.gpu.write(this.params, flat);
  }

  /** Reads the flat params back and hands each tensor's values to `set` (a copy of each). */
  async download(set: (name: string, values: Float32Array) => void): Promise<void> {
    const values = new Float32Array(await this.gpu.read(this.params, 4 * this.n));
    for (const e of this.entries) set(e.name, values.slice(e.offset, e.offset + e.n));
  }

  /** Writes AdamW's moments of every tensor (those of a checkpoint being resumed). */
  writeMoments(moments: (name: string) => { m: Float32Array; v: Float32Array }): void {
    const m = new Float32Array(this.n);
    const v = new Float32Array(this.n);
    for (const e of this.entries) {
      const t = moments(e.name);
      m.set(t.m, e.offset);
      v.set(t.v, e.offset);
    }
    this.gpu.write(this.m, m);
    this.gpu.write(this.v, v);
  }

  /**
   * Params and moments of every tensor as they are once the work queued so far is done (the copy
   * is queued now, so later steps do not change it).
   */
  async snapshot(): Promise<{ name: string; values: Float32Array; m: Float32Array; v: Float32Array }[]> {
    const bytes = 4 * this.n;
    const staging = this.gpu.device.createBuffer({ label: 'trainer.snapshot', size: 3 * bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const enc = this.gpu.device.createCommandEncoder({ label: 'trainer.snapshot' });
      [this.params, this.m, this.v].forEach((b, k) => enc.copyBufferToBuffer(b, 0, staging, k * bytes, bytes));
      this.gpu.device.queue.submit([enc.finish()]);
      try {
        await awaitGpu(staging.mapAsync(MapMode.READ));
      } catch (e) {
        throw (await this.gpu.lossBehind(e)) ?? e;
      }
      const all = new Float32Array(staging.getMappedRange().slice(0));
      const at = (k: number, e: FlatEntry): Float32Array => all.slice(k * this.n + e.offset, k * this.n + e.offset + e.n);
      return this.entries.map((e) => ({ name: e.name, values: at(0, e), m: at(1, e), v: at(2, e) }));
    } finally {
      staging.destroy();
    }
  }

  release(): void {
    for (const b of [this.params, this.grads, this.m, this.v, this.normScale, this.partials, this.lossAcc]) this.gpu.buffers.release(b);
  }
}

export interface StepSettings {
  readonly hyper: AdamWHyper;
  readonly maxGradNorm: number;
  /** Steps between reads of the (loss, gradient norm) ring: its length. */
  readonly loggingSteps: number;
}

/** A plan's accumulation into the flat buffers: its dispatches and the uniform buffers it rewrites (alpha per micro-batch). */
interface Accumulation {
  readonly list: DispatchList;
  readonly uniforms: readonly { readonly buffer: GPUBuffer; readonly n: number }[];
}

/** The dispatch lists and buffers of one `train` call over a FlatState. */
export class StepEncoder {
  private readonly adamUniforms: GPUBuffer;
  private readonly ring: GPUBuffer;
  /** Per plan, the accumulation that overwrites (0: first micro-batch) or adds (1). */
  private readonly accumulations = new Map<GradientPlan, Map<0 | 1, Accumulation>>();
  private update: DispatchList | undefined;

  constructor(
    private readonly gpu: GpuContext,
    private readonly flat: FlatState,
    /** The buffers the plans read each trainable tensor from (the copy-back targets). */
    private readonly weights: WeightStore,
    private readonly settings: StepSettings,
  ) {
    const probe = adamwProgram(flat.n, settings.hyper, 1);
    this.adamUniforms = gpu.buffers.create({ label: 'trainer.adamw', size: packUniforms(probe.kernel, probe.uniforms).byteLength, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    this.ring = gpu.buffers.create({ label: 'trainer.ring', size: 8 * settings.loggingSteps, usage: BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
  }

  /** Builds the dispatch lists an optimizer step over these plans (one per micro-batch) needs. */
  async prepare(plans: readonly GradientPlan[]): Promise<void> {
    await Promise.all(plans.map((g, k) => this.accumulation(g, k === 0 ? 0 : 1)));
    this.update ??= await this.buildUpdate();
  }

  /** Writes AdamW's uniforms for optimizer step `step` (0-based) at learning rate `lr`. */
  writeStep(step: number, lr: number): void {
    const adam = adamwProgram(this.flat.n, { ...this.settings.hyper, lr }, step + 1);
    this.gpu.device.queue.writeBuffer(this.adamUniforms, 0, packUniforms(adam.kernel, adam.uniforms));
  }

  /**
   * Submits micro-batch `k` of `count` of step `step` as one command buffer (its plan's inputs
   * already written): the plan, then its loss and gradients accumulated with weight `alpha`; the
   * last one also clips, steps AdamW, copies the values back and records the step's (loss, norm)
   * in the ring.
   */
  encodeMicroBatch(g: GradientPlan, k: number, count: number, step: number, alpha: number): void {
    const acc = this.accumulations.get(g)!.get(k === 0 ? 0 : 1)!;
    for (const u of acc.uniforms) {
      const p = accumulateProgram(u.n, alpha, k === 0 ? 0 : 1);
      this.gpu.device.queue.writeBuffer(u.buffer, 0, packUniforms(p.kernel, p.uniforms));
    }
    const enc = this.gpu.device.createCommandEncoder({ label: `trainer.step${step}.micro${k}` });
    g.plan.encode(enc);
    const pass = enc.beginComputePass();
    acc.list.encode(pass);
    const last = k === count - 1;
    if (last) this.update!.encode(pass);
    pass.end();
    if (last) {
      const slot = step % this.settings.loggingSteps;
      enc.copyBufferToBuffer(this.flat.lossAcc, 0, this.ring, 8 * slot, 4);
      enc.copyBufferToBuffer(this.flat.normScale, 0, this.ring, 8 * slot + 4, 4);
    }
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /** The first `count` (loss, gradient norm) pairs of the ring, once the queued steps are done. */
  async readRing(count: number): Promise<Float32Array> {
    const staging = this.gpu.device.createBuffer({ size: 8 * count, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.gpu.device.createCommandEncoder({ label: 'trainer.read' });
    enc.copyBufferToBuffer(this.ring, 0, staging, 0, 8 * count);
    this.gpu.device.queue.submit([enc.finish()]);
    try {
      await awaitGpu(staging.mapAsync(MapMode.READ));
      return new Float32Array(staging.getMappedRange().slice(0));
    } catch (e) {
      throw (await this.gpu.lossBehind(e)) ?? e;
    } finally {
      staging.destroy();
    }
  }

  destroy(): void {
    for (const byBeta of this.accumulations.values()) {
      for (const acc of byBeta.values()) {
        acc.list.destroy();
        for (const u of acc.uniforms) this.gpu.buffers.release(u.buffer);
      }
    }
    this.update?.destroy();
    this.gpu.buffers.release(this.adamUniforms);
    this.gpu.buffers.release(this.ring);
  }

  /**
   * Gradient (and loss) accumulation out of one plan's buffers; beta 0 overwrites, 1 adds. Its
   * uniforms are buffers of its own, rewritten with each micro-batch's weight before it is submitted.
   */
  private async accumulation(g: GradientPlan, beta: 0 | 1): Promise<Accumulation> {
    let byBeta = this.accumulations.get(g);
    if (!byBeta) this.accumulations.set(g, (byBeta = new Map()));
    let acc = byBeta.get(beta);
    if (!acc) {
      const flat = this.flat;
      const targets = [
        ...flat.entries.map((e) => ({ n: e.n, buffers: [g.plan.buffers.get(g.gradients.get(e.name)!)!, flat.slice(flat.grads, e)] })),
        { n: 1, buffers: [g.plan.buffers.get(g.loss)!, flat.lossAcc] },
      ];
      const uniforms = targets.map((t) => {
        const p = accumulateProgram(t.n, 1, beta);
        return { n: t.n, buffer: this.gpu.buffers.create({ label: 'trainer.accumulate', size: packUniforms(p.kernel, p.uniforms).byteLength, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST }) };
      });
      let list: DispatchList;
      try {
        list = await DispatchList.prepare(
          this.gpu,
          targets.map((t, i) => ({ program: accumulateProgram(t.n, 1, beta), buffers: t.buffers, uniforms: uniforms[i]!.buffer })),
        );
      } catch (e) {
        for (const u of uniforms) this.gpu.buffers.release(u.buffer);
        throw e;
      }
      acc = { list, uniforms };
      byBeta.set(beta, acc);
    }
    return acc;
  }

  /** Clipping, AdamW over the flat buffers, and the copy of the new values into the plans' buffers. */
  private buildUpdate(): Promise<DispatchList> {
    const flat = this.flat;
    const clip = gradNormPrograms(flat.n, this.settings.maxGradNorm);
    const steps: BoundProgram[] = [
      { program: clip.partial, buffers: [flat.grads, flat.partials] },
      { program: clip.finish, buffers: [flat.partials, flat.normScale] },
      { program: adamwProgram(flat.n, this.settings.hyper, 1), buffers: [flat.grads, flat.normScale, flat.params, flat.m, flat.v], uniforms: this.adamUniforms },
      ...flat.entries.map((e) => ({ program: accumulateProgram(e.n, 1, 0), buffers: [flat.slice(flat.params, e), this.weights.get(e.name)!] })),
    ];
    return DispatchList.prepare(this.gpu, steps);
  }
}
