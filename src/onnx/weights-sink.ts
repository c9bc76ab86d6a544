// The streaming load's destination: large float tensors written straight into the model's weight
// store on the GPU as their bytes arrive (onnx/stream.ts), so no copy of the file stays in memory.
//
// A tensor becomes f32 (float16 and float64 are converted piece by piece, carrying a partial
// element from one piece to the next) in one exact-size buffer, or — when it exceeds the device's
// binding limit — in the blocks the legaliser will ask for: the same block rule (ops/blocks.ts)
// applied to the readers the stream has seen, so the blocks are found in the store by name. Order-
// independent statistics of the values are kept for parameter counting (peft/params.ts). A float16
// matrix that the graph reads only as a matmul's B stays half instead: the file's bytes are the
// packed form (`f16x2`, ir/dtype.ts), copied as they come, and `storage()` tells the decoder, so
// onnx/precision.ts marks it packed as it would a weight kept in memory. Other dtypes (integer and
// quantised tensors), and every tensor a MatMulNBits or GatherBlockQuantized reads (repacked on the CPU at load), are left
// to the CPU path (`begin` returns undefined).

import { SizeLimitError } from '../errors.js';
import type { GpuContext } from '../gpu/device.js';
import { bindingLimit } from '../gpu/traits.js';
import type { WeightStore } from '../gpu/weights.js';
import { dtypeFromOnnx, halfToFloat, type WeightStorage } from '../ir/dtype.js';
import type { ValueStats } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { blockAxis, blockLayout, type Block, type Reader } from '../ops/blocks.js';
import type { TensorHeader, TensorSink, TensorWriter } from './stream.js';

const SOURCE_BYTES = { float32: 4, float16: 2, float64: 8 } as const;
const FLOAT = 1; // TensorProto.FLOAT, Cast's `to`

/** Uploads large float tensors into a weight store as they stream; `abort` frees what it made. */
export class GpuWeightSink implements TensorSink {
  /** Statistics of every tensor written, by name. */
  readonly stats = new Map<string, ValueStats>();
  private readonly created: string[] = [];
  /** Float16 tensors stored as packed halves (`f16x2`), not widened. */
  private readonly packed = new Set<string>();

  constructor(
    private readonly gpu: GpuContext,
    private readonly store: WeightStore,
  ) {}

  begin(h: TensorHeader): TensorWriter | undefined {
    const dtype = dtypeFromOnnx(h.dataType);
    if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'float64') return undefined;
    const n = sizeOf(h.dims);
    const width = SOURCE_BYTES[dtype];
    // A size that disagrees with the dims is the decoder's FormatError to raise: keep the bytes.
    if (h.byteLength !== n * width || h.dims.some((d) => !Number.isSafeInteger(d) || d < 0)) return undefined;
    // A tensor MatMulNBits or GatherBlockQuantized reads (their scales) is repacked on the CPU at
    // load (ops/contrib-quant.ts, onnx/precision.ts).
    if (h.readers.some((r) => r.opType === 'MatMulNBits' || r.opType === 'GatherBlockQuantized')) return undefined;
    const limit = bindingLimit(this.gpu.traits);
    if (dtype === 'float16' && readByMatmulsOnly(h) && packedHalfBytes(n) <= limit) {
      // The file's halves are already the packed form (two per little-endian u32 word, element 2j
      // in the low half): copied as they come; onnx/precision.ts sees `storage` and keeps them.
      const buffer = this.alloc(h.name, packedHalfBytes(n));
      this.packed.add(h.name);
      return this.writer(h.name, dtype, n, (e0, _values, raw) => this.gpu.write(buffer, raw, 2 * e0), 4);
    }
    const bytes = 4 * n;
    let place: (e0: number, values: Float32Array, raw: Uint8Array) => void;
    if (bytes <= limit) {
      const buffer = this.alloc(h.name, bytes);
      place = (e0, values) => this.gpu.write(buffer, values, 4 * e0);
    } else {
      const fail = (detail: string): never => {
        throw SizeLimitError.binding(h.name, bytes, limit, 'maxStorageBufferBindingSize', detail);
      };
      if (h.dims.length !== 2) fail('only matrices are stored in blocks');
      const axis = blockAxis(h.name, h.readers);
      if (typeof axis === 'string') fail(axis);
      const blocks = blockLayout(h.name, h.dims, axis as 0 | 1, limit) ?? fail(`a single ${axis === 0 ? 'row' : 'column'} exceeds the limit`);
      place = this.blockPlacer(h.dims as [number, number], axis as 0 | 1, blocks);
    }
    return this.writer(h.name, dtype, n, place);
  }

  /** How `name` is stored on the GPU when not as f32 (TensorSink.storage). */
  storage(name: string): WeightStorage | undefined {
    return this.packed.has(name) ? 'f16x2' : undefined;
  }

  /** Frees every buffer this sink created (a load that failed half way). */
  abort(): void {
    for (const name of this.created) this.store.releasePrefix(name);
  }

  private alloc(name: string, bytes: number): GPUBuffer {
    const b = this.store.allocate(name, bytes);
    this.created.push(name);
    return b;
  }

  /** Writes a run of elements of a [rows, cols] matrix into its blocks along `axis`. */
  private blockPlacer([, cols]: [number, number], axis: 0 | 1, blocks: readonly Block[]): (e0: number, values: Float32Array) => void {
    const buffers = blocks.map((b) => this.alloc(b.name, 4 * sizeOf(b.dims)));
    const size = blocks[0]!.end - blocks[0]!.start; // every block but the last
    return (e0, values) => {
      let i = 0;
      while (i < values.length) {
        const e = e0 + i;
        const row = Math.floor(e / cols);
        const col = e - row * cols;
        let k: number;
        let run: number;
        let at: number;
        if (axis === 0) {
          k = Math.floor(row / size);
          const b = blocks[k]!;
          run = Math.min(values.length - i, b.end * cols - e);
          at = e - b.start * cols;
        } else {
          k = Math.floor(col / size);
          const b = blocks[k]!;
          run = Math.min(values.length - i, b.end - col);
          at = row * (b.end - b.start) + (col - b.start);
        }
        this.gpu.write(buffers[k]!, values.subarray(i, i + run), 4 * at);
        i += run;
      }
    };
  }

  /**
   * A writer converting the stored dtype to f32 (and handing `place` the file's bytes too), carrying
   * partial units of `unit` bytes (one element by default; two halves for packed words, so every
   * write starts at a multiple of 4 bytes) between pieces.
   */
  private writer(name: string, dtype: keyof typeof SOURCE_BYTES, n: number, place: (e0: number, values: Float32Array, raw: Uint8Array) => void, unit: number = SOURCE_BYTES[dtype]): TensorWriter {
    const width = SOURCE_BYTES[dtype];
    const carry = new Uint8Array(unit);
    let carried = 0;
    let e = 0;
    const stats = { sum: 0, sumSquares: 0, min: Infinity, max: -Infinity };
    const emit = (bytes: Uint8Array): void => {
      const count = bytes.length / width;
      // An aligned copy: the piece may start at any offset of its chunk.
      const aligned = new Uint8Array(bytes);
      let values: Float32Array;
      if (dtype === 'float32') values = new Float32Array(aligned.buffer, 0, count);
      else if (dtype === 'float64') values = Float32Array.from(new Float64Array(aligned.buffer, 0, count));
      else {
        const half = new Uint16Array(aligned.buffer, 0, count);
        values = new Float32Array(count);
        for (let i = 0; i < count; i++) values[i] = halfToFloat(half[i]!);
      }
      for (let i = 0; i < count; i++) {
        const x = values[i]!;
        stats.sum += x;
        stats.sumSquares += x * x;
        if (x < stats.min) stats.min = x;
        if (x > stats.max) stats.max = x;
      }
      place(e, values, aligned);
      e += count;
    };
    return {
      write: (piece) => {
        let p = piece;
        if (carried > 0) {
          const k = Math.min(unit - carried, p.length);
          carry.set(p.subarray(0, k), carried);
          carried += k;
          p = p.subarray(k);
          if (carried < unit) return;
          emit(carry);
          carried = 0;
        }
        const whole = p.length - (p.length % unit);
        if (whole > 0) emit(p.subarray(0, whole));
        carry.set(p.subarray(whole));
        carried = p.length - whole;
      },
      end: () => {
        // An odd count of packed halves: the last one is a partial unit, written alone.
        if (carried === width && e + 1 === n) {
          emit(carry.subarray(0, width));
          carried = 0;
        }
        if (e !== n || carried !== 0) throw new Error(`weight sink: '${name}' received ${e} of ${n} values`);
        this.stats.set(name, stats);
      },
    };
  }
}

/** Bytes of `n` packed halves in their buffer (as `packHalves` lays them out: padded to 16 bytes). */
function packedHalfBytes(n: number): number {
  return Math.ceil(n / 8) * 16;
}

/** Whether `readers` read `value` only as a matmul's B (MatMul's or Gemm's input 1). */
function matmulB(value: string, readers: readonly Reader[]): boolean {
  return readers.length > 0 && readers.every((r) => (r.opType === 'MatMul' || r.opType === 'Gemm') && r.inputs.every((v, k) => v !== value || k === 1));
}

/**
 * Whether the graph reads a tensor only as a matmul's B, directly or through `Cast(to=FLOAT)`
 * nodes (onnxconverter-common's blocked ops): the readers whose kernels read packed halves
 * (OpDef.packedInputs), what onnx/precision.ts keeps half (it drops those Casts). A weight read by
 * anything else is widened to f32 as it streams.
 */
function readByMatmulsOnly(h: TensorHeader): boolean {
  if (h.dims.length < 2 || h.readers.length === 0) return false;
  return h.readers.every((r) => (r.opType === 'Cast' && r.attrs.to === FLOAT && r.outputs.length === 1 ? matmulB(r.outputs[0]!, h.readersOf(r.outputs[0]!)) : matmulB(h.name, [r])));
}
