// Buffer pool: storage buffers recycled by size class, with a live byte count.
//
// Sizes are rounded up to a class (powers of two up to 1 MiB, then eight classes per doubling:
// multiples of an eighth of the power of two below) so buffers of nearly equal size are
// interchangeable while a large one wastes at most 1/8 of its bytes (a plan's kept activations of
// 1.5 or 4.5 MiB get exactly that). `liveBytes` counts what callers hold (class sizes, i.e.
// what the GPU really allocated for them); `peakLiveBytes` is what benchmarks report as memory.
// Every pooled buffer has STORAGE | COPY_SRC | COPY_DST usage so any of them can be read back or
// overwritten from the CPU. Uniform and ring buffers (`create`) are counted in `liveBytes` too, so
// that it is every byte the toolkit holds: what `dispose()` must bring back to where it was.
//
// Every allocation is checked before it is made: a storage buffer against the largest buffer a
// kernel can bind (a size class never exceeds it; a size just under the limit gets its exact,
// 16-byte aligned size), any other buffer against maxBufferSize. A size from an untrusted file or
// a plan that should have split its tensor is a SizeLimitError naming what asked for it, before
// WebGPU would fail with an untyped validation error; nothing is allocated or counted.

import { SizeLimitError } from '../errors.js';

import { BufferUsage } from './flags.js';

const MiB = 1 << 20;

/** The size class of a `bytes`-byte request, capped at `limit` when the request itself fits. */
export function sizeClass(bytes: number, limit = Infinity): number {
  const b = Math.max(16, bytes);
  const step = 2 ** Math.floor(Math.log2(b)) / 8;
  const c = b <= MiB ? 2 ** Math.ceil(Math.log2(b)) : Math.ceil(b / step) * step;
  return c > limit && b <= limit ? Math.ceil(b / 16) * 16 : c;
}

export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

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

  /**
   * A buffer of another usage (uniforms, a ring read back), counted in `liveBytes` and destroyed by
   * `release` like an exact buffer.
   */
  create(descriptor: GPUBufferDescriptor): GPUBuffer {
    this.check(descriptor.size, descriptor.label, this.device.limits.maxBufferSize, 'maxBufferSize');
    const buffer = this.device.createBuffer(descriptor);
    this.exact.add(buffer);
    return this.track(buffer, buffer.size);
  }

  /** Throws SizeLimitError unless a buffer of `size` bytes may be created. */
  private check(size: number, label: string | undefined, limit = this.limit, limitName = this.limitName): void {
    if (!(Number.isFinite(size) && size >= 0 && size <= limit)) {
      throw new SizeLimitError(`buffer '${label ?? ''}'`, size, limit, 'bytes', `the device's ${limitName}`);
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
