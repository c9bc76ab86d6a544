// The WGSL kernels of the layout ops, and the programs (one dispatch each) built on them.
//
// Five kernel families carry every layout op that moves data:
//   - layout-strided:   dst[affine(c)] = src[affine(c)]: Transpose, Slice, Expand, Tile, Concat,
//                       Split, and plain copies (with a vec4 variant when alignment allows);
//   - layout-transpose: batched 2-D transpose through workgroup memory;
//   - layout-gather:    Gather and GatherElements;
//   - layout-pad:       Pad (four modes), SliceGrad (a lattice gather) and fills;
//   - layout-trilu:     Trilu.
// Every program here takes shapes through uniforms; overrides are workgroup sizes, tile sizes and
// mode selectors only, so a new shape never compiles a new pipeline. Builders simplify the index
// maps first (drop dims of 1, merge dims contiguous on both sides) so kernels pay for the smallest
// rank that describes the copy.

import gatherText from '../../shaders/layout-gather.wgsl?raw';
import padText from '../../shaders/layout-pad.wgsl?raw';
import stridedText from '../../shaders/layout-strided.wgsl?raw';
import transposeText from '../../shaders/layout-transpose.wgsl?raw';
import triluText from '../../shaders/layout-trilu.wgsl?raw';
import { UnsupportedOpError } from '../errors.js';
import { MAX_WORKGROUPS_PER_DIM, grid, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { sizeOf, stridesOf } from '../ir/tensor.js';
import type { OpContext } from './types.js';

const WG = 256;
/** Rank limits of the uniform arrays (12 = the doubled iteration space of a rank-6 Tile). */
const STRIDED_RANK = 12;
const LATTICE_RANK = 8;
const TILE = 32;
const TILE_ROWS = 8;

export const stridedShader = new Shader('layout-strided.wgsl', stridedText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['n', 'u32'],
      ['rank', 'u32'],
      ['src_base', 'u32'],
      ['dst_base', 'u32'],
      ['dims', { array: 'u32', length: STRIDED_RANK }],
      ['src_strides', { array: 'i32', length: STRIDED_RANK }],
      ['dst_strides', { array: 'i32', length: STRIDED_RANK }],
    ],
  },
});

export const stridedKernel = stridedShader.kernel({ name: 'layout-strided', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

export const stridedVec4Kernel = stridedShader.kernel({ name: 'layout-strided-vec4', entryPoint: 'main_vec4', inputs: ['src4'], outputs: ['dst4'], uniforms: 'Params' });

export const transposeShader = new Shader('layout-transpose.wgsl', transposeText, {
  structs: {
    Params: [
      ['rows', 'u32'],
      ['cols', 'u32'],
    ],
  },
});

export const transposeKernel = transposeShader.kernel({ name: 'layout-transpose', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

export const gatherShader = new Shader('layout-gather.wgsl', gatherText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['n', 'u32'],
      ['rank', 'u32'],
      ['axis_dim', 'i32'],
      ['axis_stride', 'u32'],
      ['block_lo', 'i32'], // the bound data holds indices block_lo ≤ j < block_hi of the axis
      ['block_hi', 'i32'],
      ['dims', { array: 'u32', length: LATTICE_RANK }],
      ['idx_strides', { array: 'u32', length: LATTICE_RANK }],
      ['data_strides', { array: 'u32', length: LATTICE_RANK }],
    ],
  },
});

export const gatherKernel = gatherShader.kernel({ name: 'layout-gather', inputs: ['data', 'indices'], outputs: ['out'], uniforms: 'Params' });
const gatherInt8Kernel = gatherShader.kernel({ name: 'layout-gather-rows-int8', entryPoint: 'rows_int8', inputs: ['data', 'indices'], outputs: ['out'], uniforms: 'Params' });
const gatherQ4Kernel = gatherShader.kernel({ name: 'layout-gather-cols-q4', entryPoint: 'cols_q4', inputs: ['data', 'indices'], outputs: ['out'], uniforms: 'Params' });

export const padShader = new Shader('layout-pad.wgsl', padText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['n', 'u32'],
      ['rank', 'u32'],
      ['src_base', 'u32'],
      ['value', 'u32'],
      ['out_dims', { array: 'u32', length: LATTICE_RANK }],
      ['in_dims', { array: 'i32', length: LATTICE_RANK }],
      ['offsets', { array: 'i32', length: LATTICE_RANK }],
      ['steps', { array: 'i32', length: LATTICE_RANK }],
      ['in_strides', { array: 'i32', length: LATTICE_RANK }],
    ],
  },
});

export const padKernel = padShader.kernel({ name: 'layout-pad', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

export const triluShader = new Shader('layout-trilu.wgsl', triluText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['n', 'u32'],
      ['rows', 'u32'],
      ['cols', 'u32'],
      ['k', 'i32'],
    ],
  },
});

export const triluKernel = triluShader.kernel({ name: 'layout-trilu', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

function tooHigh(ctx: OpContext, rank: number, max: number): UnsupportedOpError {
  return new UnsupportedOpError(
    ctx.opType,
    ctx.nodeName,
    `the GPU lowering handles index maps of rank ≤ ${max} after merging contiguous dims, this one has rank ${rank}`,
    ctx.opset,
  );
}

/** An affine copy: for every c in `dims`, dst[dstBase + c·dstStrides] = src[srcBase + c·srcStrides]. */
export interface StridedMap {
  readonly dims: readonly number[];
  readonly srcStrides: readonly number[];
  readonly dstStrides: readonly number[];
  readonly srcBase: number;
  readonly dstBase: number;
}

/** The same map over the fewest dims: dims of 1 dropped, neighbours contiguous on both sides merged. */
export function simplifyMap(m: StridedMap): StridedMap {
  const dims: number[] = [];
  const ss: number[] = [];
  const ds: number[] = [];
  for (let k = 0; k < m.dims.length; k++) {
    const d = m.dims[k]!;
    if (d === 1) continue;
    const last = dims.length - 1;
    // Merge into the previous (outer) dim when stepping the outer dim by one equals stepping this
    // dim across its whole extent, on both the source and the destination.
    if (last >= 0 && ss[last] === m.srcStrides[k]! * d && ds[last] === m.dstStrides[k]! * d) {
      dims[last] = dims[last]! * d;
      ss[last] = m.srcStrides[k]!;
      ds[last] = m.dstStrides[k]!;
    } else {
      dims.push(d);
      ss.push(m.srcStrides[k]!);
      ds.push(m.dstStrides[k]!);
    }
  }
  return { dims, srcStrides: ss, dstStrides: ds, srcBase: m.srcBase, dstBase: m.dstBase };
}

/** One dispatch of the strided copy, or undefined when the map is empty. */
export function stridedProgram(map: StridedMap, ctx: OpContext): Program | undefined {
  if (map.dims.some((d) => d === 0)) return undefined;
  const m = simplifyMap(map);
  const r = m.dims.length;
  if (r > STRIDED_RANK) throw tooHigh(ctx, r, STRIDED_RANK);
  const inner = r - 1;
  const vec4 =
    r > 0 &&
    m.srcStrides[inner] === 1 &&
    m.dstStrides[inner] === 1 &&
    m.dims[inner]! % 4 === 0 &&
    m.srcBase % 4 === 0 &&
    m.dstBase % 4 === 0 &&
    m.srcStrides.every((s, k) => k === inner || s % 4 === 0) &&
    m.dstStrides.every((s, k) => k === inner || s % 4 === 0);
  const q = vec4 ? 4 : 1;
  const dims = m.dims.map((d, k) => (k === inner ? d / q : d));
  const n = sizeOf(dims);
  return {
    kernel: vec4 ? stridedVec4Kernel : stridedKernel,
    overrides: { WG },
    uniforms: {
      n,
      rank: r,
      src_base: m.srcBase / q,
      dst_base: m.dstBase / q,
      dims,
      src_strides: m.srcStrides.map((s, k) => (k === inner ? s : s / q)),
      dst_strides: m.dstStrides.map((s, k) => (k === inner ? s : s / q)),
    },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/** A contiguous copy of `n` words. */
export function copyWordsProgram(n: number, ctx: OpContext): Program | undefined {
  return stridedProgram({ dims: [n], srcStrides: [1], dstStrides: [1], srcBase: 0, dstBase: 0 }, ctx);
}

/**
 * The reduced form of a permutation: dims of 1 dropped, runs of input axes that stay adjacent and
 * in order merged. `[b,h,w,c]` with perm [0,2,3,1] becomes `[b,h,w·c]` with perm [0,2,1].
 */
export function reducePermutation(inDims: readonly number[], perm: readonly number[]): { dims: number[]; perm: number[] } {
  const kept = inDims.map((d, i) => (d === 1 ? -1 : i)).filter((i) => i >= 0);
  const rank = new Map(kept.map((a, i) => [a, i] as const));
  const p = perm.filter((a) => inDims[a] !== 1).map((a) => rank.get(a)!);
  const dims = kept.map((a) => inDims[a]!);
  // Groups of consecutive input axes, in output order.
  const groups: number[][] = [];
  for (const a of p) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1]! + 1 === a) g.push(a);
    else groups.push([a]);
  }
  const byInput = [...groups].sort((x, y) => x[0]! - y[0]!);
  const newIndex = new Map(byInput.map((g, i) => [g, i] as const));
  return {
    dims: byInput.map((g) => g.reduce((s, a) => s * dims[a]!, 1)),
    perm: groups.map((g) => newIndex.get(g)!),
  };
}

/** The dispatch of a Transpose: tiled for a (batched) swap of the last two groups, strided otherwise. */
export function transposeProgram(inDims: readonly number[], perm: readonly number[], ctx: OpContext): Program | undefined {
  if (inDims.some((d) => d === 0)) return undefined;
  const red = reducePermutation(inDims, perm);
  const r = red.dims.length;
  const swapsLastTwo = r >= 2 && red.perm.every((a, j) => (j < r - 2 ? a === j : j === r - 2 ? a === r - 1 : a === r - 2));
  if (swapsLastTwo) {
    const rows = red.dims[r - 2]!;
    const cols = red.dims[r - 1]!;
    const batch = sizeOf(red.dims.slice(0, r - 2));
    const wg: [number, number, number] = [Math.ceil(cols / TILE), Math.ceil(rows / TILE), batch];
    // Narrow matrices waste most of a tile; the strided path serves them (and oversized grids).
    if (rows >= TILE / 4 && cols >= TILE / 4 && wg.every((w) => w <= MAX_WORKGROUPS_PER_DIM)) {
      return { kernel: transposeKernel, overrides: { TILE, ROWS: TILE_ROWS }, uniforms: { rows, cols }, workgroups: wg };
    }
  }
  // Iterate over the output (contiguous writes), reading the source through permuted strides.
  const s = stridesOf(red.dims);
  const outDims = red.perm.map((a) => red.dims[a]!);
  return stridedProgram(
    { dims: outDims, srcStrides: red.perm.map((a) => s[a]!), dstStrides: stridesOf(outDims), srcBase: 0, dstBase: 0 },
    ctx,
  );
}

/** A gather: for c in `dims`, out[i] = data[c·dataStrides + wrap(indices[c·idxStrides])·axisStride]. */
export interface GatherMap {
  readonly dims: readonly number[];
  readonly idxStrides: readonly number[];
  readonly dataStrides: readonly number[];
  readonly axisDim: number;
  readonly axisStride: number;
  /** Write NaN (float data) for an out-of-range index instead of clamping it. */
  readonly poison?: boolean;
  /**
   * The bound data is the block [lo, hi) of the axis (a row-split embedding table): output elements
   * whose index falls elsewhere are left alone, for another block's dispatch (default: the whole axis).
   */
  readonly block?: readonly [lo: number, hi: number];
}

export function gatherProgram(map: GatherMap, ctx: OpContext): Program | undefined {
  if (map.dims.some((d) => d === 0)) return undefined;
  const keep = map.dims.map((d, k) => (d === 1 ? -1 : k)).filter((k) => k >= 0);
  if (keep.length > LATTICE_RANK) throw tooHigh(ctx, keep.length, LATTICE_RANK);
  const n = sizeOf(map.dims);
  return {
    kernel: gatherKernel,
    overrides: { WG, POISON: map.poison ? 1 : 0 },
    uniforms: {
      n,
      rank: keep.length,
      axis_dim: map.axisDim,
      axis_stride: map.axisStride,
      block_lo: map.block?.[0] ?? 0,
      block_hi: map.block?.[1] ?? map.axisDim,
      dims: keep.map((k) => map.dims[k]!),
      idx_strides: keep.map((k) => map.idxStrides[k]!),
      data_strides: keep.map((k) => map.dataStrides[k]!),
    },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/**
 * Gather along axis 0 of a table [rows, cols] kept as 8-bit codes with per-row scales and zero
 * points (storage `i8r` / `u8r`), dequantised as it is read; `count` indices.
 */
export function gatherInt8Program(rows: number, cols: number, count: number, signed: boolean): Program | undefined {
  const n = count * cols;
  if (n === 0) return undefined;
  const zeros = new Array<number>(LATTICE_RANK).fill(0);
  return {
    kernel: gatherInt8Kernel,
    overrides: { WG, SIGNED: signed ? 1 : 0 },
    uniforms: { n, rank: 0, axis_dim: rows, axis_stride: cols, block_lo: 0, block_hi: rows, dims: zeros, idx_strides: zeros, data_strides: zeros },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/**
 * Gather along axis 1 of a weight [K, N] kept in 4-bit blocks (storage `q4b<block>[z]`): out
 * [K, count], dequantised as it is read (shaders/layout-gather.wgsl `cols_q4`).
 */
export function gatherQ4Program(K: number, N: number, count: number, blockSize: number, zeroPoints: boolean): Program | undefined {
  const n = K * count;
  if (n === 0) return undefined;
  const zeros = new Array<number>(LATTICE_RANK).fill(0);
  return {
    kernel: gatherQ4Kernel,
    overrides: { WG, Q4_BLOCK: blockSize, Q4_ZP: zeroPoints ? 1 : 0 },
    uniforms: { n, rank: 0, axis_dim: N, axis_stride: count, block_lo: 0, block_hi: K, dims: zeros, idx_strides: zeros, data_strides: zeros },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

export const PAD_MODES = { constant: 0, reflect: 1, edge: 2, wrap: 3 } as const;
export type PadMode = keyof typeof PAD_MODES;

/** A lattice gather (see layout-pad.wgsl). `value` is the raw 32-bit word of the fill value. */
export interface LatticeMap {
  readonly mode: PadMode;
  readonly outDims: readonly number[];
  readonly inDims: readonly number[];
  readonly offsets: readonly number[];
  readonly steps: readonly number[];
  readonly inStrides: readonly number[];
  readonly srcBase: number;
  readonly value: number;
}

export function latticeProgram(map: LatticeMap, ctx: OpContext): Program | undefined {
  if (map.outDims.some((d) => d === 0)) return undefined;
  // A dim that is 1 on both sides with no offset maps 0 -> 0 in every mode: drop it.
  const keep = map.outDims
    .map((d, k) => (d === 1 && map.inDims[k] === 1 && map.offsets[k] === 0 ? -1 : k))
    .filter((k) => k >= 0);
  if (keep.length > LATTICE_RANK) throw tooHigh(ctx, keep.length, LATTICE_RANK);
  const n = sizeOf(map.outDims);
  const pick = (a: readonly number[]): number[] => keep.map((k) => a[k]!);
  return {
    kernel: padKernel,
    overrides: { WG, MODE: PAD_MODES[map.mode] },
    uniforms: {
      n,
      rank: keep.length,
      src_base: map.srcBase,
      value: map.value,
      out_dims: pick(map.outDims),
      in_dims: pick(map.inDims),
      offsets: pick(map.offsets),
      steps: pick(map.steps),
      in_strides: pick(map.inStrides),
    },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/** Writes the word `value` into `n` elements (a constant lattice over an empty source). */
export function fillProgram(n: number, value: number, ctx: OpContext): Program | undefined {
  return latticeProgram(
    { mode: 'constant', outDims: [n], inDims: [0], offsets: [0], steps: [1], inStrides: [0], srcBase: 0, value },
    ctx,
  );
}

/** Trilu over `batch` matrices of [rows, cols]. */
export function triluProgram(n: number, rows: number, cols: number, k: number, upper: boolean): Program | undefined {
  if (n === 0) return undefined;
  // Beyond these bounds every element is kept or every element dropped, so clamping is exact.
  const kc = Math.min(Math.max(k, -(rows + 1)), cols + 1);
  return {
    kernel: triluKernel,
    overrides: { WG, UPPER: upper ? 1 : 0 },
    uniforms: { n, rows, cols, k: kc },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/** The raw 32-bit word the GPU stores for `v` in a tensor of storage `kind`. */
export function wordOf(v: number, kind: 'f32' | 'i32'): number {
  const view = new DataView(new ArrayBuffer(4));
  if (kind === 'f32') view.setFloat32(0, v, true);
  else view.setInt32(0, v, true);
  return view.getUint32(0, true);
}
