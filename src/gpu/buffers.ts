// Buffer pool: storage buffers recycled by size class, with a live byte count.
//
// Sizes are rounded up to a class (powers of two up to 1 MiB, then multiples of 1 MiB) so buffers
// of nearly equal size are interchangeable. `liveBytes` counts what callers hold (class sizes, i.e.
// what the GPU really allocated for them); `peakLiveBytes` is what benchmarks report as memory.
// Every pooled buffer has STORAGE | COPY_SRC | COPY_DST usage so any of them can be read back or
// overwritten from the CPU. A class never exceeds the device's buffer limit (a size just under the
// limit gets its exact, 16-byte aligned size), and a request over the limit is a LimitError here,
// before WebGPU would fail with an untyped validation error.

import { LimitError } from '../errors.js';

const MiB = 1 << 20;

/** The size class of a `bytes`-byte request, capped at `limit` when the request itself fits. */
export function sizeClass(bytes: number, limit = Infinity): number {
  const b = Math.max(16, bytes);
  const c = b <= MiB ? 2 ** Math.ceil(Math.log2(b)) : Math.ceil(b / MiB) * MiB;
  return c > limit && b <= limit ? Math.ceil(b / 16) * 16 : c;
}

// GPUBufferUsage is undefined outside a WebGPU-capable realm (Node unit tests import this module);
// the flag values are fixed by the WebGPU spec: STORAGE | COPY_SRC | COPY_DST.
export const STORAGE_USAGE = 0x80 | 0x04 | 0x08;

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly owned = new Map<GPUBuffer, number>();
  private readonly exact = new Set<GPUBuffer>();
  liveBytes = 0;
  peakLiveBytes = 0;
  pooledBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    /** The largest buffer to create: the largest a kernel can bind (see traits.bindingLimit). */
    readonly limit = Infinity,
    private readonly limitName = 'maxStorageBufferBindingSize',
  ) {}

  /** The bytes `acquire(bytes)` allocates. */
  classOf(bytes: number): number {
    return sizeClass(bytes, this.limit);
  }

  /** A storage buffer of at least `bytes` bytes. Contents are undefined (stale) unless zeroed. */
  acquire(bytes: number, label?: string): GPUBuffer {
    const size = this.classOf(bytes);
    this.check(size, label);
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.pooledBytes -= size;
    } else {
      buffer = this.device.createBuffer({ label, size, usage: STORAGE_USAGE });
    }
    return this.track(buffer, size);
  }

  /**
   * A buffer of exactly `bytes` (rounded up to 16) that is destroyed, not pooled, on release: for
   * long-lived tensors such as weights, where size classes would waste up to half the memory.
   */
  acquireExact(bytes: number, label?: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    this.check(size, label);
    const buffer = this.device.createBuffer({ label, size, usage: STORAGE_USAGE });
    this.exact.add(buffer);
    return this.track(buffer, size);
  }

  private check(size: number, label: string | undefined): void {
    if (size > this.limit) {
      throw new LimitError(label ?? 'buffer', size, this.limit, this.limitName, 'no GPU buffer may be larger (the plan that asked for it should have split or refused it)');
    }
  }

  private track(buffer: GPUBuffer, size: number): GPUBuffer {
    this.owned.set(buffer, size);
    this.liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    return buffer;
  }

  /** Returns a buffer to the pool; it may be handed out again by the next `acquire`. */
  release(buffer: GPUBuffer): void {
    const size = this.owned.get(buffer);
    if (size === undefined) throw new Error(`BufferPool.release: buffer '${buffer.label}' is not live in this pool`);
    this.owned.delete(buffer);
    this.liveBytes -= size;
    if (this.exact.delete(buffer)) {
      buffer.destroy();
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.pooledBytes += size;
  }

  /** Destroys the pooled (free) buffers, returning their memory to the driver. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }

  /** Destroys every buffer, live or pooled. */
  destroy(): void {
    this.trim();
    for (const b of this.owned.keys()) b.destroy();
    this.owned.clear();
    this.liveBytes = 0;
  }

  resetPeak(): void {
    this.peakLiveBytes = this.liveBytes;
  }
}
