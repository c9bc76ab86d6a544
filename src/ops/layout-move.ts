// Data-movement ops without slicing: Transpose, Gather, GatherElements, Expand, Tile, Pad, Trilu.
//
// Each op computes one plan from dims (and constant inputs) that its shape rule, its float64
// reference and its GPU lowering all share, so the three cannot disagree about semantics. The
// references are naive loops over output coordinates; the lowerings are single dispatches of the
// kernels in layout-kernels.ts.
//
// Size: seven data-movement ops, each a shape rule, a reference and a lowering over the shared layout
// kernels.

import { IndexOutOfRangeError, UnsupportedOpError } from '../errors.js';
import { gpuStorage, int8Storage, isFloat, q4Storage } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes, broadcastStrides, forEachIndex, normAxis, wrapIndex } from '../ir/shape.js';
import { sizeOf, stridesOf, tensor, type RefTensor } from '../ir/tensor.js';
import { asInt, asInts, axesOf, constInts, constScalar, fmt, gatedInput, requireIntType, shapeError, type Operand } from './layout-common.js';
import { gatherInt8Program, gatherProgram, gatherQ4Program, latticeProgram, stridedProgram, transposeProgram, triluProgram, wordOf, type PadMode } from './layout-kernels.js';
import type { Inputs, Lowering, OpContext, OpDef } from './types.js';

function need(inputs: Inputs<Operand>, i: number, what: string, ctx: OpContext): Operand {
  const v = inputs[i];
  if (v === undefined) throw shapeError(ctx, `required input ${i} (${what}) is missing`);
  return v;
}

/** A lowering of at most one dispatch binding input 0 to output 0 (none for empty outputs). */
function single(program: ReturnType<typeof stridedProgram>, inputs = 1): Lowering {
  if (!program) return { steps: [] };
  const bindings = [...Array.from({ length: inputs }, (_, i) => ({ in: i })), { out: 0 }];
  return { steps: [{ program, bindings }] };
}

// ---------------------------------------------------------------------------------------------
// Transpose

function transposePerm(x: Operand, attrs: Attrs, ctx: OpContext): number[] {
  const r = x.dims.length;
  const perm = asInts(attrs['perm'], 'perm', ctx) ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== r || sorted.some((a, i) => a !== i)) {
    throw shapeError(ctx, `perm ${fmt(perm)} is not a permutation of the ${r} axes of ${fmt(x.dims)}`);
  }
  return perm;
}

const Transpose: OpDef = {
  domain: '',
  doc: 'Transpose by `perm` (default: reversed axes). GPU: tiled workgroup-memory transpose for a batched swap of the last two axis groups, strided gather otherwise.',
  shape(inputs, attrs, ctx) {
    const x = need(inputs, 0, 'data', ctx);
    const perm = transposePerm(x, attrs, ctx);
    return [{ dtype: x.dtype, dims: perm.map((a) => x.dims[a]!) }];
  },
  reference(inputs, attrs, ctx) {
    const x = need(inputs, 0, 'data', ctx) as RefTensor;
    const perm = transposePerm(x, attrs, ctx);
    const s = stridesOf(x.dims);
    const out = tensor(x.dtype, perm.map((a) => x.dims[a]!));
    forEachIndex(out.dims, (i, c) => {
      let off = 0;
      for (let j = 0; j < c.length; j++) off += c[j]! * s[perm[j]!]!;
      out.data[i] = x.data[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const x = need(inputs, 0, 'data', ctx);
    return single(transposeProgram(x.dims, transposePerm(x, attrs, ctx), ctx));
  },
};

// ---------------------------------------------------------------------------------------------
// Gather, GatherElements

/** Checks one index against the axis and wraps it (the reference's strict semantics, onnxruntime's error). */
function checkedIndex(v: number, n: number, pos: number, axis: number, ctx: OpContext): number {
  if (v < -n || v >= n) {
    throw new IndexOutOfRangeError(ctx.opType, ctx.nodeName, v, n, `index ${v} at position ${pos} of indices is out of range [${-n}, ${n - 1}] for axis ${axis} of size ${n}`);
  }
  return wrapIndex(v, n);
}

function gatherPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  const data = need(inputs, 0, 'data', ctx);
  const indices = need(inputs, 1, 'indices', ctx);
  requireIntType(indices, 1, 'indices', ctx);
  if (data.dims.length === 0) throw shapeError(ctx, 'data must have rank ≥ 1');
  const axis = normAxis(asInt(attrs['axis'], 'axis', ctx, 0), data.dims.length, ctx);
  const outer = sizeOf(data.dims.slice(0, axis));
  const inner = sizeOf(data.dims.slice(axis + 1));
  const outDims = [...data.dims.slice(0, axis), ...indices.dims, ...data.dims.slice(axis + 1)];
  return { data, indices, axis, axisDim: data.dims[axis]!, outer, inner, nIdx: sizeOf(indices.dims), outDims };
}

const Gather: OpDef = {
  domain: '',
  // An embedding table of 8-bit codes with per-row scales (a q8 file's DequantizeLinear'd table),
  // or a weight in 4-bit blocks read by columns (a GatherBlockQuantized embedding).
  packedInputs: [0],
  packedStorage: (s) => s === 'i8r' || s === 'u8r' || q4Storage(s) !== undefined,
  doc: 'Gather along `axis` with int indices (negative wrap); a table kept 8-bit (a q8 embedding, per-row scales, axis 0) or a weight in 4-bit blocks (GatherBlockQuantized, axis 1) is dequantised as it is read. An out-of-range index is an IndexOutOfRangeError: at specialisation when constant, from the CPU reference, and after a GPU step from its index check (the kernel writes NaN for float data, clamps integers).',
  shape(inputs, attrs, ctx) {
    const p = gatherPlan(inputs, attrs, ctx);
    return [{ dtype: p.data.dtype, dims: p.outDims }];
  },
  reference(inputs, attrs, ctx) {
    const p = gatherPlan(inputs, attrs, ctx);
    const data = p.data as RefTensor;
    const idx = (p.indices as RefTensor).data;
    const out = tensor(data.dtype, p.outDims);
    let o = 0;
    for (let a = 0; a < p.outer; a++) {
      for (let j = 0; j < p.nIdx; j++) {
        const k = checkedIndex(idx[j]!, p.axisDim, j, p.axis, ctx);
        const base = (a * p.axisDim + k) * p.inner;
        for (let b = 0; b < p.inner; b++) out.data[o++] = data.data[base + b]!;
      }
    }
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = gatherPlan(inputs, attrs, ctx);
    if (p.axisDim === 0 && sizeOf(p.outDims) > 0) throw shapeError(ctx, `cannot gather from axis ${p.axis} of size 0`);
    const packed = int8Storage(inputs[0]?.storage);
    if (packed) {
      // An 8-bit embedding table (onnx/precision.ts packs only [rows, cols] tables with per-row
      // scales, gathered along axis 0): dequantised as the rows are read.
      if (p.axis !== 0 || p.data.dims.length !== 2 || packed.axis !== 0) throw shapeError(ctx, `an 8-bit table is gathered along axis 0 of [rows, cols] with per-row scales, got axis ${p.axis} of ${fmt(p.data.dims)} stored ${inputs[0]!.storage}`);
      return single(gatherInt8Program(p.axisDim, p.inner, p.nIdx, packed.signed), 2);
    }
    const q4 = q4Storage(inputs[0]?.storage);
    if (q4) {
      // A 4-bit embedding (GatherBlockQuantized, onnx/precision.ts): the rows of Wᵀ are the
      // columns of the weight W [K, N] in MatMulNBits' layout, gathered along axis 1.
      if (p.axis !== 1 || p.data.dims.length !== 2) throw shapeError(ctx, `a 4-bit weight is gathered along axis 1 of [K, N], got axis ${p.axis} of ${fmt(p.data.dims)}`);
      return single(gatherQ4Program(p.data.dims[0]!, p.axisDim, p.nIdx, q4.blockSize, q4.zeroPoints), 2);
    }
    const program = gatherProgram(
      {
        dims: [p.outer, p.nIdx, p.inner],
        idxStrides: [0, 1, 0],
        dataStrides: [p.axisDim * p.inner, 0, 1],
        axisDim: p.axisDim,
        axisStride: p.inner,
        poison: isFloat(p.data.dtype),
      },
      ctx,
    );
    return single(program, 2);
  },
};

function gatherElementsPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  const data = need(inputs, 0, 'data', ctx);
  const indices = need(inputs, 1, 'indices', ctx);
  requireIntType(indices, 1, 'indices', ctx);
  const r = data.dims.length;
  if (r === 0) throw shapeError(ctx, 'data must have rank ≥ 1');
  if (indices.dims.length !== r) throw shapeError(ctx, `indices ${fmt(indices.dims)} must have the rank of data ${fmt(data.dims)}`);
  const axis = normAxis(asInt(attrs['axis'], 'axis', ctx, 0), r, ctx);
  for (let d = 0; d < r; d++) {
    if (d !== axis && indices.dims[d]! > data.dims[d]!) {
      throw shapeError(ctx, `indices ${fmt(indices.dims)} exceed data ${fmt(data.dims)} on axis ${d}`);
    }
  }
  return { data, indices, axis, strides: stridesOf(data.dims) };
}

const GatherElements: OpDef = {
  domain: '',
  sinceVersion: 11,
  doc: 'GatherElements along `axis`: out[c] = data[c with c[axis] = indices[c]]. Out-of-range indices as for Gather (IndexOutOfRangeError; NaN for float data on the GPU).',
  shape(inputs, attrs, ctx) {
    const p = gatherElementsPlan(inputs, attrs, ctx);
    return [{ dtype: p.data.dtype, dims: [...p.indices.dims] }];
  },
  reference(inputs, attrs, ctx) {
    const p = gatherElementsPlan(inputs, attrs, ctx);
    const data = p.data as RefTensor;
    const idx = (p.indices as RefTensor).data;
    const out = tensor(data.dtype, p.indices.dims);
    const n = data.dims[p.axis]!;
    forEachIndex(p.indices.dims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) off += (d === p.axis ? checkedIndex(idx[i]!, n, i, p.axis, ctx) : c[d]!) * p.strides[d]!;
      out.data[i] = data.data[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = gatherElementsPlan(inputs, attrs, ctx);
    const n = p.data.dims[p.axis]!;
    if (n === 0 && sizeOf(p.indices.dims) > 0) throw shapeError(ctx, `cannot gather from axis ${p.axis} of size 0`);
    const program = gatherProgram(
      {
        dims: p.indices.dims,
        idxStrides: stridesOf(p.indices.dims),
        dataStrides: p.strides.map((s, d) => (d === p.axis ? 0 : s)),
        axisDim: n,
        axisStride: p.strides[p.axis]!,
        poison: isFloat(p.data.dtype),
      },
      ctx,
    );
    return single(program, 2);
  },
};

// ---------------------------------------------------------------------------------------------
// Expand, Tile

function expandDims(inputs: Inputs<Operand>, ctx: OpContext): { x: Operand; dims: number[] } {
  const x = need(inputs, 0, 'input', ctx);
  const shape = constInts(inputs[1], 1, 'shape', ctx);
  if (shape.some((d) => d < 0)) throw shapeError(ctx, `shape ${fmt(shape)} has a negative dim`);
  return { x, dims: broadcastShapes([x.dims, shape], ctx) };
}

const Expand: OpDef = {
  domain: '',
  sinceVersion: 8,
  doc: 'Expand: NumPy broadcast of the input against the constant shape input.',
  shape(inputs, _attrs, ctx) {
    const { x, dims } = expandDims(inputs, ctx);
    return [{ dtype: x.dtype, dims }];
  },
  reference(inputs, _attrs, ctx) {
    const { x, dims } = expandDims(inputs, ctx);
    const s = broadcastStrides(x.dims, dims);
    const out = tensor(x.dtype, dims);
    const src = (x as RefTensor).data;
    forEachIndex(dims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) off += c[d]! * s[d]!;
      out.data[i] = src[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, _attrs, ctx) {
    const { x, dims } = expandDims(inputs, ctx);
    return single(
      stridedProgram({ dims, srcStrides: broadcastStrides(x.dims, dims), dstStrides: stridesOf(dims), srcBase: 0, dstBase: 0 }, ctx),
    );
  },
};

/** Tile's repeats: one per axis (opset 6+), or Tile-1's (tiles, axis) scalar pair. */
function tileRepeats(inputs: Inputs<Operand>, ctx: OpContext): { x: Operand; repeats: number[] } {
  const x = need(inputs, 0, 'input', ctx);
  const r = x.dims.length;
  let repeats: number[];
  if (ctx.opset < 6) {
    const tiles = constScalar(inputs[1], 1, 'tiles', ctx);
    const axis = normAxis(constScalar(inputs[2], 2, 'axis', ctx), r, ctx);
    repeats = x.dims.map((_, d) => (d === axis ? tiles : 1));
  } else {
    if (inputs[2] !== undefined) throw shapeError(ctx, `input 2 (axis) exists only before opset 6, the node is opset ${ctx.opset}`);
    repeats = constInts(inputs[1], 1, 'repeats', ctx);
  }
  if (repeats.length !== r) throw shapeError(ctx, `repeats ${fmt(repeats)} must have one entry per axis of ${fmt(x.dims)}`);
  if (repeats.some((v) => v < 0 || !Number.isInteger(v))) throw shapeError(ctx, `repeats ${fmt(repeats)} must be non-negative integers`);
  return { x, repeats };
}

const Tile: OpDef = {
  domain: '',
  doc: 'Tile by constant repeats (opset 6+; Tile-1 tiles/axis inputs too). GPU: strided copy over (repeat, index) pairs.',
  shape(inputs, _attrs, ctx) {
    const { x, repeats } = tileRepeats(inputs, ctx);
    return [{ dtype: x.dtype, dims: x.dims.map((d, i) => d * repeats[i]!) }];
  },
  reference(inputs, _attrs, ctx) {
    const { x, repeats } = tileRepeats(inputs, ctx);
    const s = stridesOf(x.dims);
    const out = tensor(x.dtype, x.dims.map((d, i) => d * repeats[i]!));
    const src = (x as RefTensor).data;
    forEachIndex(out.dims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) off += (c[d]! % x.dims[d]!) * s[d]!;
      out.data[i] = src[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, _attrs, ctx) {
    const { x, repeats } = tileRepeats(inputs, ctx);
    const outDims = x.dims.map((d, i) => d * repeats[i]!);
    const os = stridesOf(outDims);
    const s = stridesOf(x.dims);
    // Output coordinate r·d + i along each axis, iterated as the pair (r, i): an affine map.
    const dims = x.dims.flatMap((d, k) => [repeats[k]!, d]);
    const dstStrides = x.dims.flatMap((d, k) => [d * os[k]!, os[k]!]);
    const srcStrides = x.dims.flatMap((_, k) => [0, s[k]!]);
    return single(stridedProgram({ dims, srcStrides, dstStrides, srcBase: 0, dstBase: 0 }, ctx));
  },
};

// ---------------------------------------------------------------------------------------------
// Pad

interface PadPlan {
  x: Operand;
  mode: PadMode;
  /** Per axis: output = pad before, then the input cropped by negative pads, then pad after. */
  before: number[];
  after: number[];
  value: number;
  outDims: number[];
}

function padPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): PadPlan {
  const x = need(inputs, 0, 'data', ctx);
  const r = x.dims.length;
  const modeAttr = attrs['mode'] ?? 'constant';
  if (typeof modeAttr !== 'string') throw shapeError(ctx, "attribute 'mode' must be a string");
  const modes: readonly string[] = ctx.opset >= 19 ? ['constant', 'reflect', 'edge', 'wrap'] : ['constant', 'reflect', 'edge'];
  if (!modes.includes(modeAttr)) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `mode '${modeAttr}' is not one of ${modes.join(', ')} at this opset`, ctx.opset);
  }
  const mode = modeAttr as PadMode;
  let pads: number[];
  let value = 0;
  let axes = Array.from({ length: r }, (_, i) => i);
  if (ctx.opset < 11) {
    // Pad-1 named the attribute `paddings`; Pad-2 renamed it `pads`. `value` is a float attribute.
    const name = ctx.opset < 2 ? 'paddings' : 'pads';
    const p = asInts(attrs[name], name, ctx);
    if (!p) throw shapeError(ctx, `attribute '${name}' is required before opset 11`);
    pads = p;
    const v = attrs['value'] ?? 0;
    if (typeof v !== 'number') throw shapeError(ctx, "attribute 'value' must be a number");
    value = v;
  } else {
    for (const a of ['pads', 'paddings', 'value']) {
      if (attrs[a] !== undefined) throw shapeError(ctx, `attribute '${a}' became an input in opset 11, the node is opset ${ctx.opset}`);
    }
    pads = constInts(inputs[1], 1, 'pads', ctx);
    if (inputs[2] !== undefined) value = constScalar(inputs[2], 2, 'constant_value', ctx);
    const axesIn = gatedInput(inputs, 3, 'axes', ctx, 18);
    if (axesIn !== undefined) axes = axesOf(constInts(axesIn, 3, 'axes', ctx), r, ctx);
  }
  if (pads.length !== 2 * axes.length) {
    throw shapeError(ctx, `pads ${fmt(pads)} must hold ${2 * axes.length} values (begin and end for ${axes.length} axes)`);
  }
  const before = new Array<number>(r).fill(0);
  const after = new Array<number>(r).fill(0);
  axes.forEach((a, i) => {
    before[a] = pads[i]!;
    after[a] = pads[i + axes.length]!;
  });
  const outDims = x.dims.map((d, a) => d + before[a]! + after[a]!);
  x.dims.forEach((d, a) => {
    const kept = d - Math.max(0, -before[a]!) - Math.max(0, -after[a]!);
    if (kept < 0 || outDims[a]! < 0) {
      throw shapeError(ctx, `pads ${fmt(pads)} crop more than the ${d} elements of axis ${a} of ${fmt(x.dims)}`);
    }
    if (mode !== 'constant' && kept === 0 && outDims[a]! > 0) {
      throw shapeError(ctx, `mode '${mode}' cannot pad axis ${a}: no elements are left to copy`);
    }
  });
  return { x, mode, before, after, value, outDims };
}

/** The source coordinate for offset t from the start of a kept extent of n, or -1 for the pad value. */
export function padSource(t: number, n: number, mode: PadMode): number {
  switch (mode) {
    case 'constant':
      return t >= 0 && t < n ? t : -1;
    case 'edge':
      return Math.min(Math.max(t, 0), n - 1);
    case 'wrap':
      return ((t % n) + n) % n;
    case 'reflect': {
      if (n === 1) return 0;
      const period = 2 * (n - 1);
      const m = ((t % period) + period) % period;
      return m >= n ? period - m : m;
    }
  }
}

const Pad: OpDef = {
  domain: '',
  doc: 'Pad in constant, reflect, edge (and opset 19 wrap) modes; attributes before opset 11, constant inputs after (axes from 18); negative pads crop.',
  shape(inputs, attrs, ctx) {
    const p = padPlan(inputs, attrs, ctx);
    return [{ dtype: p.x.dtype, dims: p.outDims }];
  },
  reference(inputs, attrs, ctx) {
    const p = padPlan(inputs, attrs, ctx);
    const x = p.x as RefTensor;
    const s = stridesOf(x.dims);
    const out = tensor(x.dtype, p.outDims);
    forEachIndex(p.outDims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) {
        const cropB = Math.max(0, -p.before[d]!);
        const kept = x.dims[d]! - cropB - Math.max(0, -p.after[d]!);
        const k = padSource(c[d]! - Math.max(0, p.before[d]!), kept, p.mode);
        if (k < 0) {
          off = -1;
          break;
        }
        off += (k + cropB) * s[d]!;
      }
      out.data[i] = off < 0 ? p.value : x.data[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = padPlan(inputs, attrs, ctx);
    const s = stridesOf(p.x.dims);
    const cropB = p.before.map((b) => Math.max(0, -b));
    return single(
      latticeProgram(
        {
          mode: p.mode,
          outDims: p.outDims,
          inDims: p.x.dims.map((d, a) => d - cropB[a]! - Math.max(0, -p.after[a]!)),
          offsets: p.before.map((b) => Math.max(0, b)),
          steps: p.outDims.map(() => 1),
          inStrides: s,
          srcBase: cropB.reduce((acc, c, a) => acc + c * s[a]!, 0),
          value: wordOf(p.value, gpuStorage(p.x.dtype)),
        },
        ctx,
      ),
    );
  },
};

// ---------------------------------------------------------------------------------------------
// Trilu

function triluPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  const x = need(inputs, 0, 'input', ctx);
  const r = x.dims.length;
  if (r < 2) throw shapeError(ctx, `input ${fmt(x.dims)} must have rank ≥ 2`);
  const k = inputs[1] === undefined ? 0 : constScalar(inputs[1], 1, 'k', ctx);
  if (!Number.isInteger(k)) throw shapeError(ctx, `k = ${k} is not an integer`);
  const upper = asInt(attrs['upper'], 'upper', ctx, 1) !== 0;
  return { x, k, upper, rows: x.dims[r - 2]!, cols: x.dims[r - 1]! };
}

const Trilu: OpDef = {
  domain: '',
  sinceVersion: 14,
  doc: 'Trilu: upper (default) or lower triangle of the last two dims, shifted by the constant k input.',
  shape(inputs, attrs, ctx) {
    const { x } = triluPlan(inputs, attrs, ctx);
    return [{ dtype: x.dtype, dims: [...x.dims] }];
  },
  reference(inputs, attrs, ctx) {
    const p = triluPlan(inputs, attrs, ctx);
    const x = p.x as RefTensor;
    const out = tensor(x.dtype, x.dims);
    for (let i = 0; i < out.data.length; i++) {
      const col = i % p.cols;
      const row = Math.floor(i / p.cols) % p.rows;
      const keep = p.upper ? col - row >= p.k : col - row <= p.k;
      out.data[i] = keep ? x.data[i]! : 0;
    }
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = triluPlan(inputs, attrs, ctx);
    return single(triluProgram(sizeOf(p.x.dims), p.rows, p.cols, p.k, p.upper));
  },
};

export const moveOps = { Transpose, Gather, GatherElements, Expand, Tile, Pad, Trilu } satisfies Record<string, OpDef>;
