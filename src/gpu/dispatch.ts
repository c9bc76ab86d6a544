// Dispatch lists: a lowering's dispatches bound to buffers, prepared once, recorded many times.
//
// A lowering describes its dispatches with symbolic bindings (`BufferRef`: an op input, an op output
// or a scratch buffer); `resolveBindings` turns them into GPU buffers, and is the only code that
// does. A `DispatchList` is the prepared form: every pipeline compiled (createComputePipelineAsync),
// every uniform buffer written, every bind group built, so `encode` only records into a compute
// pass. Compiled plans, one-off runs (`GpuContext.run`), merges and the trainer's optimizer steps
// all go through it. Dispatches with an empty grid are dropped (their pipelines are still
// compiled, so a plan's pipeline count does not depend on its shapes).

import { awaitGpu } from '../runtime.js';
import type { GpuContext } from './device.js';
import type { Program } from './kernel.js';

/** A buffer a lowering step binds: an op input, an op output, or a scratch buffer. */
export type BufferRef = { readonly in: number } | { readonly out: number } | { readonly tmp: number };

/** A lowering's dispatches, in order, with the scratch buffers they need. */
export interface LoweringSteps {
  /** Scratch buffers (bytes each), live only while these dispatches run. */
  readonly temps?: readonly number[];
  /** Dispatches in order; each binds the kernel's inputs then outputs. */
  readonly steps: readonly { readonly program: Program; readonly bindings: readonly BufferRef[] }[];
}

/** A program bound to GPU buffers: the kernel's inputs then outputs, in its declared order. */
export interface BoundProgram {
  readonly program: Program;
  /** Whole buffers, or sub-ranges (offsets aligned to minStorageBufferOffsetAlignment). */
  readonly buffers: readonly (GPUBuffer | GPUBufferBinding)[];
  /**
   * A uniform buffer the caller owns and rewrites between submissions (AdamW's per-step values);
   * when absent the list writes and owns one holding `program.uniforms`.
   */
  readonly uniforms?: GPUBuffer;
  /** What the dispatch belongs to, for profiles (a plan's node name); the kernel name when absent. */
  readonly label?: string;
}

/** The buffers behind a lowering's BufferRefs. */
export interface BufferSlots {
  /** Op inputs by index; undefined for an input with no GPU buffer (an omitted optional input). */
  readonly inputs: readonly (GPUBuffer | undefined)[];
  readonly outputs: readonly GPUBuffer[];
  readonly temps: readonly GPUBuffer[];
}

/** Binds a lowering's steps to buffers; `where` names the node in the error for a missing input. */
export function resolveBindings(lowering: LoweringSteps, slots: BufferSlots, where: string): BoundProgram[] {
  const resolve = (r: BufferRef): GPUBuffer => {
    const b = 'in' in r ? slots.inputs[r.in] : 'out' in r ? slots.outputs[r.out] : slots.temps[r.tmp];
    if (!b) throw new Error(`${where} binds ${'in' in r ? `input ${r.in}` : 'out' in r ? `output ${r.out}` : `scratch buffer ${r.tmp}`}, which has no GPU buffer`);
    return b;
  };
  return lowering.steps.map((s) => ({ program: s.program, buffers: s.bindings.map(resolve) }));
}

interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
}

/** Bound programs with their pipelines, uniform buffers and bind groups built: ready to record. */
export class DispatchList {
  private constructor(
    private readonly gpu: GpuContext,
    private readonly dispatches: readonly Dispatch[],
    /** Uniform buffers this list wrote (not the callers'). */
    private readonly owned: readonly GPUBuffer[],
    /** Kernel names, for error messages. */
    readonly kernels: readonly string[],
    /** Per recorded dispatch: its label and kernel name (`profile` reports them). */
    private readonly labels: readonly { readonly label: string; readonly kernel: string }[],
  ) {}

  /** Compiles the programs' pipelines (shared through the device's cache) and builds the list. */
  static async prepare(gpu: GpuContext, bound: readonly BoundProgram[]): Promise<DispatchList> {
    await Promise.all(bound.map((b) => gpu.pipelines.get(b.program)));
    const dispatches: Dispatch[] = [];
    const owned: GPUBuffer[] = [];
    const labels: { label: string; kernel: string }[] = [];
    try {
      for (const b of bound) {
        if (b.program.workgroups.some((w) => w === 0)) continue;
        labels.push({ label: b.label ?? b.program.kernel.name, kernel: b.program.kernel.name });
        let uniforms = b.uniforms;
        if (!uniforms) {
          uniforms = gpu.uniformBuffer(b.program);
          if (uniforms) owned.push(uniforms);
        }
        dispatches.push({
          pipeline: gpu.pipelines.getReady(b.program),
          bindGroup: gpu.bindGroup(b.program, b.buffers, uniforms),
          workgroups: b.program.workgroups,
        });
      }
    } catch (e) {
      for (const u of owned) gpu.buffers.release(u);
      throw e;
    }
    return new DispatchList(gpu, dispatches, owned, bound.map((b) => b.program.kernel.name), labels);
  }

  /** Number of dispatches `encode` records. */
  get length(): number {
    return this.dispatches.length;
  }

  /** Records every dispatch, in order, into `pass`. */
  encode(pass: GPUComputePassEncoder): void {
    for (const d of this.dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
    }
  }

  /**
   * Profiling, not for the hot path: runs the dispatches in order, each in its own submission
   * awaited before the next, and returns the wall-clock milliseconds of each. The adapters this
   * project measures on (SwiftShader) have no `timestamp-query`, and one dispatch per submission
   * costs the same on every adapter, so the per-dispatch shares compare; the absolute sum is larger
   * than one submission of the whole list.
   */
  async profile(): Promise<{ label: string; kernel: string; ms: number }[]> {
    const device = this.gpu.device;
    const out: { label: string; kernel: string; ms: number }[] = [];
    for (let i = 0; i < this.dispatches.length; i++) {
      const d = this.dispatches[i]!;
      const enc = device.createCommandEncoder({ label: 'profile' });
      const pass = enc.beginComputePass();
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await awaitGpu(device.queue.onSubmittedWorkDone());
      out.push({ ...this.labels[i]!, ms: performance.now() - t0 });
    }
    return out;
  }

  /** Frees the uniform buffers the list wrote; it cannot be encoded afterwards. */
  destroy(): void {
    for (const u of this.owned) this.gpu.buffers.release(u);
  }
}
