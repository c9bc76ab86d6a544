// Resident weights: the GPU copies of a model's frozen weights and adapter tensors, by name, owned
// in one place.
//
// A model and every variant made from it (PEFT's rewritten graphs, the training graph with its
// loss) share one store, so a weight is uploaded once however many plans read it. Plans receive the
// store's buffers as `PlanGraph.shared` and never free them. Whoever changes a tensor's values
// writes them through the store (merging, loading a state dict, the trainer's copy-back), so every
// compiled plan sees them without being rebuilt; whoever drops tensors releases them by name
// prefix (an adapter's `ia3::<name>::`). Buffers come from the device's pool as exact-size buffers.
//
// An overlay (`overlay(own)`) keeps the names `own` selects to itself and hands every other name to
// the store below: each PeftModel keeps its adapter tensors in an overlay of the base model's store,
// so two PeftModels over one base share the frozen weights but never a vector (same adapter name or
// not), and disposing one frees exactly its own buffers.

import type { GpuContext } from './device.js';

/** Values in GPU storage: f32 for float dtypes, i32 for integer and bool dtypes, u32 words of packed weights. */
export type GpuData = Float32Array | Int32Array | Uint32Array;

export class WeightStore {
  private parent: { store: WeightStore; own: (name: string) => boolean } | undefined;

  constructor(
    private readonly gpu: GpuContext,
    /** The buffers by name; a map handed in (the Model constructor's legacy form) is adopted, not copied. */
    private readonly map: Map<string, GPUBuffer> = new Map(),
  ) {}

  /** A store that keeps the names `own` selects and shares every other name with this one. */
  overlay(own: (name: string) => boolean): WeightStore {
    const s = new WeightStore(this.gpu);
    s.parent = { store: this, own };
    return s;
  }

  /** The store that holds `name`: this one, or the one below for names an overlay does not own. */
  private holder(name: string): WeightStore {
    return this.parent && !this.parent.own(name) ? this.parent.store.holder(name) : this;
  }

  /** Every resident buffer by name, those of the stores below included (plans read it as `PlanGraph.shared`). */
  get buffers(): ReadonlyMap<string, GPUBuffer> {
    if (!this.parent) return this.map;
    return new Map([...this.parent.store.buffers, ...this.map]);
  }

  get(name: string): GPUBuffer | undefined {
    const h = this.holder(name);
    return h === this ? this.map.get(name) : h.get(name);
  }

  /**
   * The buffer of `name`, uploading `data()` the first time; undefined when `data()` has no GPU
   * form (an int64 tensor beyond 32 bits, which only the CPU reads).
   */
  ensure(name: string, data: () => GpuData | undefined): GPUBuffer | undefined {
    const h = this.holder(name);
    if (h !== this) return h.ensure(name, data);
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
    const b = this.get(name);
    if (b) this.gpu.write(b, values);
    return b !== undefined;
  }

  /** Frees every buffer of this store (not of the stores below) whose name starts with `prefix`. */
  releasePrefix(prefix: string): void {
    for (const [name, b] of this.map) {
      if (!name.startsWith(prefix)) continue;
      this.gpu.buffers.release(b);
      this.map.delete(name);
    }
  }

  /** Frees every buffer of this store (not of the stores below). */
  releaseAll(): void {
    this.releasePrefix('');
  }

  /** Bytes of this store's resident buffers. */
  get bytes(): number {
    let n = 0;
    for (const b of this.map.values()) n += b.size;
    return n;
  }
}
