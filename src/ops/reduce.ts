// Reductions: ONNX ReduceSum/Mean/Max/Min/Prod/SumSquare, ArgMax, CumSum, and the toolkit's
// SumToShape (domain 'ia3': the backward of broadcasting).
//
// The host plans; the kernels (shaders/reduce.wgsl, shaders/reduce-scan.wgsl) only ever see a
// tensor as (outer, R, inner). A reduction over several axes is coalesced into runs of adjacent
// reduced dims (dims of 1 dropped) and lowered as one pass per run, innermost run first; a long run
// with few outputs gets an extra split pass. Mean divides once, in the last pass; SumSquare squares
// once, in the first. Every pass reduces in a fixed order, so GPU results are reproducible.
//
// ONNX versions: `axes` is an attribute before opset 13 for ReduceSum and before 18 for the others,
// an optional input from then on (and must then be a constant to be lowered). Empty or omitted axes
// reduce everything, unless `noop_with_empty_axes` = 1 (the input passes through; SumSquare still
// squares, as ONNX's reference does).
//
// Size: the reduction family (the ReduceX ops, CumSum, SumToShape) over two kernels, with the
// opset-dependent axes handling they share.

import scanText from '../../shaders/reduce-scan.wgsl?raw';
import text from '../../shaders/reduce.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import { grid, MAX_WORKGROUPS_PER_DIM, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { isFloat, type DataType } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { forEachIndex, normAxis } from '../ir/shape.js';
import { sizeOf, stridesOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { BufferRef, Inputs, Lowering, OpContext, OpDef } from './types.js';
import { attrInt, attrInts, need } from './util.js';

/** Opcodes of shaders/reduce.wgsl (its `const` table must agree; a unit test checks it). */
export const RED_OP = {
  SUM_F: 0, SUM_I: 1, SUMSQ_F: 2, SUMSQ_I: 3, MAX_F: 4, MAX_I: 5, MIN_F: 6, MIN_I: 7,
  PROD_F: 8, PROD_I: 9, ARGMAX_F: 10, ARGMAX_I: 11, ARGMAX_LAST_F: 12, ARGMAX_LAST_I: 13,
} as const;

export type RedOp = keyof typeof RED_OP;

/** Opcodes of shaders/reduce-scan.wgsl. */
export const SCAN_OP = { ADD_F: 0, ADD_I: 1 } as const;

export const reduceShader = new Shader('reduce.wgsl', text, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['outputs', 'u32'], // outputs of this pass: outer * chunks * inner
      ['R', 'u32'], // length of the reduced dim
      ['inner', 'u32'],
      ['chunks', 'u32'], // runs the reduced dim is split into (1: not split)
      ['chunk', 'u32'], // elements per run
      ['denom', 'u32'], // sums are divided by this (Mean's last pass); 1 otherwise
    ],
  },
});

export const reduceKernel = reduceShader.kernel({ name: 'reduce', inputs: ['x'], outputs: ['y'], uniforms: 'Params' });

export const scanShader = new Shader('reduce-scan.wgsl', scanText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['lines', 'u32'], // outer * inner
      ['n', 'u32'], // length of the scanned axis
      ['inner', 'u32'],
      ['exclusive', 'u32'],
      ['reverse', 'u32'],
    ],
  },
});

export const scanKernel = scanShader.kernel({ name: 'reduce-scan', inputs: ['x'], outputs: ['y'], uniforms: 'Params' });

/** Launch tuning for tests and benchmarks. */
export interface ReduceOptions {
  /** Force the workgroup tile (outputs × reduction lanes, TR a power of two). */
  tile?: { ti: number; tr: number };
  /** Per-dimension grid bound (WebGPU's 65535 by default). */
  maxWorkgroupsPerDim?: number;
  /** Disable splitting long runs into an extra pass. */
  noSplit?: boolean;
}

type Kind = 'sum' | 'mean' | 'max' | 'min' | 'prod' | 'sumsq';

/** One dispatch of the reduce kernel: the view (outer, R, inner), split into `chunks` runs. */
export interface ReducePass {
  outer: number;
  R: number;
  inner: number;
  chunks: number;
  op: RedOp;
  denom: number;
}

const nextPow2 = (v: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, v)));

/** Chooses the workgroup tile: ~4 elements per lane before the tree, 256 threads at most. */
function chooseTile(outputs: number, len: number, inner: number): { ti: number; tr: number } {
  let tr = Math.min(256, nextPow2(Math.ceil(len / 4)));
  let ti = Math.max(1, Math.min(256 / tr, nextPow2(outputs)));
  if (inner > 1 && tr > 4 && outputs >= 32) {
    // Strided runs: coalescing comes from adjacent outputs, so give them at least 32 threads.
    ti = Math.min(256, Math.max(ti, 32), nextPow2(outputs));
    tr = Math.max(1, Math.min(tr, 256 / ti));
  }
  return { ti, tr };
}

/** The program of one pass. */
export function reduceProgram(pass: ReducePass, options: ReduceOptions = {}): Program {
  const chunk = Math.ceil(pass.R / pass.chunks);
  const outputs = pass.outer * pass.chunks * pass.inner;
  const tile = options.tile ?? chooseTile(outputs, chunk, pass.inner);
  return {
    kernel: reduceKernel,
    overrides: { OP: RED_OP[pass.op], TI: tile.ti, TR: tile.tr },
    uniforms: { outputs, R: pass.R, inner: pass.inner, chunks: pass.chunks, chunk: Math.max(1, chunk), denom: pass.denom },
    workgroups: grid(Math.ceil(outputs / tile.ti), options.maxWorkgroupsPerDim ?? MAX_WORKGROUPS_PER_DIM),
  };
}

/**
 * Plans the passes reducing `dims` over the axes flagged in `reduced`: coalesced runs of reduced
 * dims, innermost first, each optionally split in two passes. Empty when nothing is reduced.
 */
export function planReduce(
  dims: readonly number[],
  reduced: readonly boolean[],
  kind: Kind,
  float: boolean,
  options: ReduceOptions = {},
): ReducePass[] {
  // Coalesce: drop dims of 1, merge neighbours of the same kind.
  const groups: { size: number; red: boolean }[] = [];
  dims.forEach((d, i) => {
    if (d === 1) return;
    const last = groups[groups.length - 1];
    if (last && last.red === reduced[i]) last.size *= d;
    else groups.push({ size: d, red: reduced[i]! });
  });
  const count = dims.reduce((acc, d, i) => (reduced[i] ? acc * d : acc), 1);
  const fold: Record<Kind, RedOp> = {
    sum: float ? 'SUM_F' : 'SUM_I',
    mean: float ? 'SUM_F' : 'SUM_I',
    sumsq: float ? 'SUM_F' : 'SUM_I',
    max: float ? 'MAX_F' : 'MAX_I',
    min: float ? 'MIN_F' : 'MIN_I',
    prod: float ? 'PROD_F' : 'PROD_I',
  };
  const passes: ReducePass[] = [];
  for (;;) {
    let j = -1;
    for (let g = groups.length - 1; g >= 0; g--) {
      if (groups[g]!.red) {
        j = g;
        break;
      }
    }
    if (j < 0) break;
    const outer = groups.slice(0, j).reduce((a, g) => a * g.size, 1);
    const inner = groups.slice(j + 1).reduce((a, g) => a * g.size, 1);
    const R = groups[j]!.size;
    const outputs = outer * inner;
    // Few outputs over a long run: split the run so more lanes work, then fold the partials.
    if (!options.noSplit && R > 1024 && outputs < 8192) {
      let chunks = Math.min(1024, Math.ceil(R / 512));
      chunks = Math.ceil(R / Math.ceil(R / chunks));
      passes.push({ outer, R, inner, chunks, op: fold[kind], denom: 1 });
      passes.push({ outer, R: chunks, inner, chunks: 1, op: fold[kind], denom: 1 });
    } else {
      passes.push({ outer, R, inner, chunks: 1, op: fold[kind], denom: 1 });
    }
    groups.splice(j, 1);
  }
  if (kind === 'sumsq') {
    // Squares are taken once, on load in the first pass (a pass over R = 1 if nothing reduces).
    if (passes.length === 0) passes.push({ outer: sizeOf(dims), R: 1, inner: 1, chunks: 1, op: 'SUM_F', denom: 1 });
    passes[0]!.op = float ? 'SUMSQ_F' : 'SUMSQ_I';
  }
  if (kind === 'mean' && passes.length > 0) passes[passes.length - 1]!.denom = count;
  return passes;
}

/** Lowers a pass list: input 0 → scratch buffers (ping-pong) → output 0. */
function lowerPasses(passes: readonly ReducePass[], options: ReduceOptions = {}): Lowering {
  if (passes.length === 0) return { alias: 0 };
  const temps: number[] = [];
  const steps: { program: Program; bindings: BufferRef[] }[] = [];
  let src: BufferRef = { in: 0 };
  passes.forEach((p, k) => {
    const last = k === passes.length - 1;
    let dst: BufferRef;
    if (last) dst = { out: 0 };
    else {
      temps.push(4 * Math.max(1, p.outer * p.chunks * p.inner));
      dst = { tmp: temps.length - 1 };
    }
    steps.push({ program: reduceProgram(p, options), bindings: [src, dst] });
    src = dst;
  });
  return { temps, steps };
}

// ---------------------------------------------------------------------------------------------
// Shape rules and references.


function checkNumeric(dtype: DataType, ctx: OpContext): void {
  if (isFloat(dtype) || dtype === 'int32' || dtype === 'int64') return;
  if (dtype === 'bool') throw new ShapeError(ctx.opType, ctx.nodeName, 'input has dtype bool; the op takes numeric tensors');
  throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `${dtype} input is not supported (float, int32, int64)`, ctx.opset);
}

/** Reads a constant int tensor input (axes, axis), or fails when it is only known at run time. */
function constInts(v: ValueInfo, what: string, ctx: OpContext): number[] {
  if (v.dtype !== 'int64' && v.dtype !== 'int32') {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} has dtype ${v.dtype}, expected int64`);
  }
  // A shape rule or lowering sees a ValueInfo (constant when `value` is set); the reference sees
  // the tensor itself.
  const t = v.value ?? ('data' in v ? (v as RefTensor) : undefined);
  if (!t) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `${what} must be a constant (it is computed at run time)`, ctx.opset);
  }
  return Array.from(t.data);
}

/** Reduced-axis flags for `rank` dims, or 'noop' when the input passes through. */
function parseAxes(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext, inputSince: number): boolean[] | 'noop' {
  const x = need(inputs, 0, ctx);
  const rank = x.dims.length;
  let axes: readonly number[] | undefined;
  if (ctx.opset >= inputSince) {
    if (attrs.axes !== undefined) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `axes is an input from opset ${inputSince}, not an attribute (node is opset ${ctx.opset})`);
    }
    const a = inputs[1];
    axes = a === undefined ? [] : constInts(a, 'axes', ctx);
    if (axes.length === 0) {
      if (attrInt(attrs, 'noop_with_empty_axes', 0) !== 0) return 'noop';
      axes = undefined;
    }
  } else {
    if (inputs[1] !== undefined) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `axes is an attribute before opset ${inputSince} (node is opset ${ctx.opset})`);
    }
    axes = attrInts(attrs, 'axes');
    if (axes && axes.length === 0) axes = undefined;
  }
  const flags = new Array<boolean>(rank).fill(axes === undefined);
  for (const a of axes ?? []) {
    const n = normAxis(a, rank, ctx);
    if (flags[n]) throw new ShapeError(ctx.opType, ctx.nodeName, `axis ${a} is listed twice`);
    flags[n] = true;
  }
  return flags;
}

function reducedDims(dims: readonly number[], reduced: readonly boolean[], keepdims: boolean): number[] {
  const out: number[] = [];
  dims.forEach((d, i) => {
    if (!reduced[i]) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

/** The fold's identity: what an empty reduction yields (int extremes are int32's, as stored). */
function identity(kind: Kind, float: boolean): number {
  switch (kind) {
    case 'max':
      return float ? -Infinity : -0x80000000;
    case 'min':
      return float ? Infinity : 0x7fffffff;
    case 'prod':
      return 1;
    default:
      return 0;
  }
}

function fold(kind: Kind, acc: number, v: number): number {
  switch (kind) {
    case 'max':
      return Math.max(acc, v);
    case 'min':
      return Math.min(acc, v);
    case 'prod':
      return acc * v;
    case 'sumsq':
      return acc + v * v;
    default:
      return acc + v;
  }
}

/** Output offset of every input element when the flagged axes are summed away (keepdims layout). */
function outputIndexer(dims: readonly number[], reduced: readonly boolean[]): (coords: readonly number[]) => number {
  const kept = dims.map((d, i) => (reduced[i] ? 1 : d));
  const strides = stridesOf(kept);
  return (coords) => {
    let o = 0;
    for (let d = 0; d < coords.length; d++) if (!reduced[d]) o += coords[d]! * strides[d]!;
    return o;
  };
}

function reduceRef(x: RefTensor, reduced: readonly boolean[], kind: Kind, outDims: readonly number[]): RefTensor {
  const float = isFloat(x.dtype);
  const out = tensor(x.dtype, outDims);
  out.data.fill(identity(kind, float));
  const at = outputIndexer(x.dims, reduced);
  forEachIndex(x.dims, (i, coords) => {
    const o = at(coords);
    out.data[o] = fold(kind, out.data[o]!, x.data[i]!);
  });
  const count = x.dims.reduce((acc, d, i) => (reduced[i] ? acc * d : acc), 1);
  for (let k = 0; k < out.data.length; k++) {
    let v = out.data[k]!;
    if (kind === 'mean') v = float ? v / count : count === 0 ? 0 : Math.trunc(v / count);
    out.data[k] = !float && x.dtype === 'int32' ? v | 0 : v;
  }
  return out;
}

function reduceOp(kind: Kind, inputSince: number, doc: string): OpDef {
  const plan = (inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext) => {
    const x = need(inputs, 0, ctx);
    checkNumeric(x.dtype, ctx);
    const axes = parseAxes(inputs, attrs, ctx, inputSince);
    const keepdims = attrInt(attrs, 'keepdims', 1) !== 0;
    if (axes === 'noop') return { x, reduced: x.dims.map(() => false), dims: [...x.dims] };
    return { x, reduced: axes, dims: reducedDims(x.dims, axes, keepdims) };
  };
  return {
    domain: '',
    doc,
    shape(inputs, attrs, ctx) {
      const p = plan(inputs, attrs, ctx);
      return [{ dtype: p.x.dtype, dims: p.dims }];
    },
    reference(inputs, attrs, ctx) {
      const p = plan(inputs, attrs, ctx);
      return [reduceRef(p.x as RefTensor, p.reduced, kind, p.dims)];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const p = plan(inputs, attrs, ctx);
      return lowerPasses(planReduce(p.x.dims, p.reduced, kind, isFloat(p.x.dtype)));
    },
  };
}

const ArgMax: OpDef = (() => {
  const plan = (inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext) => {
    const x = need(inputs, 0, ctx);
    checkNumeric(x.dtype, ctx);
    const axis = normAxis(attrInt(attrs, 'axis', 0), x.dims.length, ctx);
    if (x.dims[axis] === 0) throw new ShapeError(ctx.opType, ctx.nodeName, `axis ${axis} has length 0`);
    const keepdims = attrInt(attrs, 'keepdims', 1) !== 0;
    const last = attrInt(attrs, 'select_last_index', 0) !== 0;
    const reduced = x.dims.map((_, i) => i === axis);
    return { x, axis, last, reduced, dims: reducedDims(x.dims, reduced, keepdims) };
  };
  return {
    domain: '',
    doc: 'index of the maximum along `axis` (int64); ties give the first index, or the last with select_last_index',
    shape(inputs, attrs, ctx) {
      return [{ dtype: 'int64', dims: plan(inputs, attrs, ctx).dims }];
    },
    reference(inputs, attrs, ctx) {
      const p = plan(inputs, attrs, ctx);
      const x = p.x as RefTensor;
      const out = tensor('int64', p.dims);
      const best = new Float64Array(out.data.length).fill(-Infinity);
      const seen = new Uint8Array(out.data.length);
      const at = outputIndexer(x.dims, p.reduced);
      forEachIndex(x.dims, (i, coords) => {
        const o = at(coords);
        const v = x.data[i]!;
        const r = coords[p.axis]!;
        // Elements arrive in increasing r: '>' keeps the first maximum, '>=' the last.
        if (!seen[o] || v > best[o]! || (p.last && v === best[o])) {
          best[o] = v;
          out.data[o] = r;
          seen[o] = 1;
        }
      });
      return [out];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const p = plan(inputs, attrs, ctx);
      const f = isFloat(p.x.dtype);
      const op: RedOp = p.last ? (f ? 'ARGMAX_LAST_F' : 'ARGMAX_LAST_I') : f ? 'ARGMAX_F' : 'ARGMAX_I';
      const outer = sizeOf(p.x.dims.slice(0, p.axis));
      const inner = sizeOf(p.x.dims.slice(p.axis + 1));
      return lowerPasses([{ outer, R: p.x.dims[p.axis]!, inner, chunks: 1, op, denom: 1 }]);
    },
  };
})();

// ---------------------------------------------------------------------------------------------
// CumSum.

/** One dispatch of the scan kernel over (outer, n, inner). */
export function scanProgram(
  view: { outer: number; n: number; inner: number },
  float: boolean,
  exclusive: boolean,
  reverse: boolean,
  options: { workgroupSize?: number; maxWorkgroupsPerDim?: number } = {},
): Program {
  const lines = view.outer * view.inner;
  const wg = options.workgroupSize ?? Math.min(256, nextPow2(view.n));
  return {
    kernel: scanKernel,
    overrides: { OP: float ? SCAN_OP.ADD_F : SCAN_OP.ADD_I, WG: wg },
    uniforms: { lines, n: view.n, inner: view.inner, exclusive: exclusive ? 1 : 0, reverse: reverse ? 1 : 0 },
    workgroups: grid(view.n === 0 ? 0 : lines, options.maxWorkgroupsPerDim ?? MAX_WORKGROUPS_PER_DIM),
  };
}

function cumsumPlan(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext) {
  const x = need(inputs, 0, ctx);
  checkNumeric(x.dtype, ctx);
  const a = need(inputs, 1, ctx);
  if (a.dtype !== 'int64' && a.dtype !== 'int32') throw new ShapeError(ctx.opType, ctx.nodeName, `axis has dtype ${a.dtype}, expected int64 or int32`);
  if (sizeOf(a.dims) !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, `axis must be a scalar, got shape [${a.dims.join(',')}]`);
  const known = a.value !== undefined || 'data' in a;
  const axis = known ? normAxis(constInts(a, 'axis', ctx)[0]!, x.dims.length, ctx) : undefined;
  return { x, axis, exclusive: attrInt(attrs, 'exclusive', 0) !== 0, reverse: attrInt(attrs, 'reverse', 0) !== 0 };
}

const CumSum: OpDef = {
  domain: '',
  sinceVersion: 11,
  doc: 'prefix sums along the axis input; attrs exclusive, reverse',
  shape(inputs, attrs, ctx) {
    const { x } = cumsumPlan(inputs, attrs, ctx);
    return [{ dtype: x.dtype, dims: [...x.dims] }];
  },
  reference(inputs, attrs, ctx) {
    const p = cumsumPlan(inputs, attrs, ctx);
    const x = p.x as RefTensor;
    const axis = p.axis!;
    const out = tensor(x.dtype, x.dims);
    const n = x.dims[axis]!;
    const inner = sizeOf(x.dims.slice(axis + 1));
    const outer = sizeOf(x.dims.slice(0, axis));
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let acc = 0;
        for (let k = 0; k < n; k++) {
          const at = (o * n + (p.reverse ? n - 1 - k : k)) * inner + i;
          const v = x.data[at]!;
          if (p.exclusive) {
            out.data[at] = acc;
            acc += v;
          } else {
            acc += v;
            out.data[at] = acc;
          }
          if (x.dtype === 'int32') out.data[at] = out.data[at]! | 0;
        }
      }
    }
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = cumsumPlan(inputs, attrs, ctx);
    if (p.axis === undefined) {
      throw new UnsupportedOpError(ctx.opType, ctx.nodeName, 'axis must be a constant (it is computed at run time)', ctx.opset);
    }
    const view = { outer: sizeOf(p.x.dims.slice(0, p.axis)), n: p.x.dims[p.axis]!, inner: sizeOf(p.x.dims.slice(p.axis + 1)) };
    return { steps: [{ program: scanProgram(view, isFloat(p.x.dtype), p.exclusive, p.reverse), bindings: [{ in: 0 }, { out: 0 }] }] };
  },
};

// ---------------------------------------------------------------------------------------------
// SumToShape: the backward of broadcasting.

function sumToShapePlan(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext) {
  const x = need(inputs, 0, ctx);
  checkNumeric(x.dtype, ctx);
  const shape = attrInts(attrs, 'shape');
  if (!shape) throw new ShapeError(ctx.opType, ctx.nodeName, "missing attribute 'shape'");
  const lead = x.dims.length - shape.length;
  const bad = (): ShapeError =>
    new ShapeError(ctx.opType, ctx.nodeName, `[${x.dims.join(',')}] is not a broadcast of [${shape.join(',')}]`);
  if (lead < 0) throw bad();
  const reduced = x.dims.map((d, i) => {
    if (i < lead) return true;
    const s = shape[i - lead]!;
    if (s !== d && s !== 1) throw bad();
    return s === 1 && d !== 1;
  });
  return { x, shape: [...shape], reduced };
}

const SumToShape: OpDef = {
  domain: 'ia3',
  doc: 'sums x over the dims broadcasting added or expanded so the result has attr `shape`',
  shape(inputs, attrs, ctx) {
    const p = sumToShapePlan(inputs, attrs, ctx);
    return [{ dtype: p.x.dtype, dims: p.shape }];
  },
  reference(inputs, attrs, ctx) {
    const p = sumToShapePlan(inputs, attrs, ctx);
    // The keepdims layout of the reduction is the target's layout (leading dims are summed to 1).
    const r = reduceRef(p.x as RefTensor, p.reduced, 'sum', reducedDims(p.x.dims, p.reduced, true));
    return [{ ...r, dims: p.shape }];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = sumToShapePlan(inputs, attrs, ctx);
    return lowerPasses(planReduce(p.x.dims, p.reduced, 'sum', isFloat(p.x.dtype)));
  },
};

/** The reduction family of the op registry. */
export const reduceOps = {
  ReduceSum: reduceOp('sum', 13, 'sum over axes (axes an input from opset 13); keepdims, noop_with_empty_axes'),
  ReduceMean: reduceOp('mean', 18, 'mean over axes (axes an input from opset 18); keepdims, noop_with_empty_axes'),
  ReduceMax: reduceOp('max', 18, 'maximum over axes (axes an input from opset 18); empty → -inf'),
  ReduceMin: reduceOp('min', 18, 'minimum over axes (axes an input from opset 18); empty → +inf'),
  ReduceProd: reduceOp('prod', 18, 'product over axes (axes an input from opset 18)'),
  ReduceSumSquare: reduceOp('sumsq', 18, 'sum of squares over axes (axes an input from opset 18)'),
  ArgMax,
  CumSum,
  SumToShape,
} satisfies Record<string, OpDef>;
