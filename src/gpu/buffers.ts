// Buffer pool: storage buffers recycled by size class, with a live byte count.
//
// Sizes are rounded up to a class (powers of two up to 1 MiB, then multiples of 1 MiB) so buffers
// of nearly equal size are interchangeable. `liveBytes` counts what callers hold (class sizes, i.e.
// what the GPU really allocated for them); `peakLiveBytes` is what benchmarks report as memory.
// Every pooled buffer has STORAGE | COPY_SRC | COPY_DST usage so any of them can be read back or
// overwritten from the CPU.

import { BufferUsage } from './flags.js';

const MiB = 1 << 20;

export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= MiB) return 2 ** Math.ceil(Math.log2(b));
  return Math.ceil(b / MiB) * MiB;
}

export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly owned = new Map<GPUBuffer, number>();
  private readonly exact = new Set<GPUBuffer>();
  liveBytes = 0;
  peakLiveBytes = 0;
  pooledBytes = 0;

  constructor(private readonly device: GPUDevice) {}

  /** A storage buffer of at least `bytes` bytes. Contents are undefined (stale) unless zeroed. */
  acquire(bytes: number, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
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
    const buffer = this.device.createBuffer({ label, size, usage: STORAGE_USAGE });
    this.exact.add(buffer);
    return this.track(buffer, size);
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
