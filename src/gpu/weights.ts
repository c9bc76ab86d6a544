// Resident weights: the GPU copies of a model's frozen weights and adapter tensors, by name, owned
// in one place.
//
// A model and every variant made from it (PEFT's rewritten graphs, the training graph with its
// loss) share one store, so a weight is uploaded once however many plans read it. Plans receive the
// store's buffers as `PlanGraph.shared` and never free them. Whoever changes a tensor's values
// writes them through the store (merging, loading a state dict, the trainer's copy-back), so every
// compiled plan sees them without being rebuilt; whoever drops tensors releases them by name
// prefix (an adapter's `ia3::<name>::`). Buffers come from the device's pool as exact-size buffers.

import type { GpuContext } from './device.js';

/** Values in GPU storage: f32 for float dtypes, i32 for integer and bool dtypes. */
export type GpuData = Float32Array | Int32Array;

export class WeightStore {
  constructor(
    private readonly gpu: GpuContext,
    /** The buffers by name; a map handed in (the Model constructor's legacy form) is adopted, not copied. */
    private readonly map: Map<string, GPUBuffer> = new Map(),
  ) {}

  /** Every resident buffer by name: a live view (plans read it as `PlanGraph.shared`). */
  get buffers(): ReadonlyMap<string, GPUBuffer> {
    return this.map;
  }

  get(name: string): GPUBuffer | undefined {
    return this.map.get(name);
  }

  /**
   * The buffer of `name`, uploading `data()` the first time; undefined when `data()` has no GPU
   * form (an int64 tensor beyond 32 bits, which only the CPU reads).
   */
  ensure(name: string, data: () => GpuData | undefined): GPUBuffer | undefined {
    let b = this.map.get(name);
    if (!b) {
      const values = data();
      if (!values) return undefined;
      b = this.gpu.upload(values, name, true);
      this.map.set(name, b);
    }
    return b;
  }

  /** An exact-size buffer registered under `name`, for values written in pieces (a streamed load). */
  allocate(name: string, bytes: number): GPUBuffer {
    if (this.map.has(name)) throw new Error(`weight store: '${name}' is already resident`);
    const b = this.gpu.buffers.acquireExact(bytes, name);
    this.map.set(name, b);
    return b;
  }

  /** Writes new values into `name`'s buffer when it is resident; returns whether it was. */
  write(name: string, values: GpuData): boolean {
    const b = this.map.get(name);
    if (b) this.gpu.write(b, values);
    return b !== undefined;
  }

  /** Frees every buffer whose name starts with `prefix`. */
  releasePrefix(prefix: string): void {
    for (const [name, b] of this.map) {
      if (!name.startsWith(prefix)) continue;
      this.gpu.buffers.release(b);
      this.map.delete(name);
    }
  }

  /** Frees every buffer. */
  releaseAll(): void {
    this.releasePrefix('');
  }

  /** Bytes of the resident buffers. */
  get bytes(): number {
    let n = 0;
    for (const b of this.map.values()) n += b.size;
    return n;
  }
}
