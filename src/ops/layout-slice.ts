// Region ops: Slice, Concat, Split, and the internal backward helper SliceGrad.
//
// Slice follows the ONNX clamping rules exactly (they differ for negative steps, and INT64_MAX /
// INT64_MIN sentinels arrive as ±9.22e18 in float64 and simply clamp). Its normalised form — per
// sliced axis a non-negative axis, a start in range, an end that may be -1 for negative steps, and
// a non-zero step — is what SliceGrad takes as attributes, so the VJP of Slice is
// `SliceGrad(dy; sliceGradAttrs(...))`: dy written back onto the lattice the slice read, zeros
// elsewhere, in one gather-style pass on the GPU (no scatter, no atomics).
// Concat and Split are one strided-copy dispatch per input (Concat) or per output (Split).
//
// Size: Slice, SliceGrad, Concat and Split share one slice plan and the strided and lattice kernels.

import { UnsupportedOpError } from '../errors.js';
import type { Attrs } from '../ir/graph.js';
import { forEachIndex, normAxis } from '../ir/shape.js';
import { stridesOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { asInt, asInts, axesOf, constInts, fmt, gatedAttr, numOutputsOf, shapeError, type Operand } from './layout-common.js';
import { latticeProgram, stridedProgram } from './layout-kernels.js';
import type { Inputs, LoweringSteps, OpContext, OpDef } from './types.js';

type Step = LoweringSteps['steps'][number];

function need(inputs: Inputs<Operand>, i: number, what: string, ctx: OpContext): Operand {
  const v = inputs[i];
  if (v === undefined) throw shapeError(ctx, `required input ${i} (${what}) is missing`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Slice

/** A slice in normal form: per listed axis, non-negative axis, clamped start and end, step ≠ 0. */
export interface NormalSlice {
  readonly starts: number[];
  readonly ends: number[];
  readonly axes: number[];
  readonly steps: number[];
}

/** A slice over every axis: output dims, and the first element and step along each axis. */
interface SlicePlan {
  outDims: number[];
  start: number[];
  step: number[];
  norm: NormalSlice;
}

/** Elements a normalised (start, end, step) selects. */
function sliceLength(start: number, end: number, step: number): number {
  return Math.max(0, Math.ceil((end - start) / step));
}

/**
 * Normalises raw Slice arguments against `dims` by the ONNX rules: negative starts/ends count
 * from the end; then for step > 0 both clamp to [0, dim], for step < 0 start clamps to
 * [0, dim-1] and end to [-1, dim-1] (-1 meaning "through index 0").
 */
export function normalizeSlice(
  dims: readonly number[],
  starts: readonly number[],
  ends: readonly number[],
  axes: readonly number[] | undefined,
  steps: readonly number[] | undefined,
  ctx: OpContext,
): NormalSlice {
  const k = starts.length;
  if (ends.length !== k) throw shapeError(ctx, `starts ${fmt(starts)} and ends ${fmt(ends)} differ in length`);
  const ax = axesOf(axes ?? Array.from({ length: k }, (_, i) => i), dims.length, ctx);
  if (ax.length !== k) throw shapeError(ctx, `axes ${fmt(axes ?? [])} must have one entry per start (${k})`);
  const st = steps ? [...steps] : new Array<number>(k).fill(1);
  if (st.length !== k) throw shapeError(ctx, `steps ${fmt(st)} must have one entry per start (${k})`);
  const norm: NormalSlice = { starts: [], ends: [], axes: ax, steps: st };
  for (let i = 0; i < k; i++) {
    const dim = dims[ax[i]!]!;
    const step = st[i]!;
    if (step === 0) throw shapeError(ctx, `step ${i} is 0`);
    let s = starts[i]!;
    let e = ends[i]!;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
    } else {
      s = Math.min(Math.max(s, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
    }
    norm.starts.push(s);
    norm.ends.push(e);
  }
  return norm;
}

/** Expands a normalised slice to every axis of `dims` (checking it fits when it comes from attributes). */
function planOf(dims: readonly number[], norm: NormalSlice, ctx: OpContext): SlicePlan {
  const start = new Array<number>(dims.length).fill(0);
  const step = new Array<number>(dims.length).fill(1);
  const outDims = [...dims];
  norm.axes.forEach((a, i) => {
    const len = sliceLength(norm.starts[i]!, norm.ends[i]!, norm.steps[i]!);
    if (len > 0) {
      const last = norm.starts[i]! + (len - 1) * norm.steps[i]!;
      if (norm.starts[i]! < 0 || norm.starts[i]! >= dims[a]! || last < 0 || last >= dims[a]!) {
        throw shapeError(ctx, `slice [${norm.starts[i]}:${norm.ends[i]}:${norm.steps[i]}] of axis ${a} leaves ${fmt(dims)}`);
      }
    }
    start[a] = len > 0 ? norm.starts[i]! : 0;
    step[a] = norm.steps[i]!;
    outDims[a] = len;
  });
  return { outDims, start, step, norm };
}

/** Slice's raw arguments by opset: attributes before 10, inputs (axes, steps optional) from 10. */
function sliceArgs(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  const data = need(inputs, 0, 'data', ctx);
  if (ctx.opset < 10) {
    const starts = asInts(attrs['starts'], 'starts', ctx);
    const ends = asInts(attrs['ends'], 'ends', ctx);
    if (!starts || !ends) throw shapeError(ctx, "attributes 'starts' and 'ends' are required before opset 10");
    return { data, starts, ends, axes: asInts(attrs['axes'], 'axes', ctx), steps: undefined };
  }
  for (const a of ['starts', 'ends', 'axes']) {
    if (attrs[a] !== undefined) throw shapeError(ctx, `attribute '${a}' became an input in opset 10, the node is opset ${ctx.opset}`);
  }
  return {
    data,
    starts: constInts(inputs[1], 1, 'starts', ctx),
    ends: constInts(inputs[2], 2, 'ends', ctx),
    axes: inputs[3] === undefined ? undefined : constInts(inputs[3], 3, 'axes', ctx),
    steps: inputs[4] === undefined ? undefined : constInts(inputs[4], 4, 'steps', ctx),
  };
}

function slicePlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): { data: Operand; plan: SlicePlan } {
  const a = sliceArgs(inputs, attrs, ctx);
  return { data: a.data, plan: planOf(a.data.dims, normalizeSlice(a.data.dims, a.starts, a.ends, a.axes, a.steps, ctx), ctx) };
}

/**
 * SliceGrad's attributes for the gradient of a Slice node (its inputs, attributes and context):
 * the data's dims as `shape`, and the slice in normal form.
 */
export function sliceGradAttrs(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): Attrs {
  const { data, plan } = slicePlan(inputs, attrs, ctx);
  const n = plan.norm;
  return { shape: [...data.dims], starts: n.starts, ends: n.ends, axes: n.axes, steps: n.steps };
}

const Slice: OpDef = {
  domain: '',
  doc: 'Slice (attributes before opset 10; constant starts/ends/axes/steps inputs after), ONNX clamping, negative steps. GPU: one strided copy.',
  shape(inputs, attrs, ctx) {
    const { data, plan } = slicePlan(inputs, attrs, ctx);
    return [{ dtype: data.dtype, dims: plan.outDims }];
  },
  reference(inputs, attrs, ctx) {
    const { data, plan } = slicePlan(inputs, attrs, ctx);
    const s = stridesOf(data.dims);
    const src = (data as RefTensor).data;
    const out = tensor(data.dtype, plan.outDims);
    forEachIndex(plan.outDims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) off += (plan.start[d]! + c[d]! * plan.step[d]!) * s[d]!;
      out.data[i] = src[off]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const { data, plan } = slicePlan(inputs, attrs, ctx);
    const s = stridesOf(data.dims);
    const program = stridedProgram(
      {
        dims: plan.outDims,
        srcStrides: s.map((v, d) => v * plan.step[d]!),
        dstStrides: stridesOf(plan.outDims),
        srcBase: plan.start.reduce((acc, v, d) => acc + v * s[d]!, 0),
        dstBase: 0,
      },
      ctx,
    );
    return program ? { steps: [{ program, bindings: [{ in: 0 }, { out: 0 }] }] } : { steps: [] };
  },
};

/** SliceGrad's plan from its attributes (already normal form: no re-clamping, -1 ends kept). */
function sliceGradPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): { dy: Operand; dims: number[]; plan: SlicePlan } {
  const dy = need(inputs, 0, 'dy', ctx);
  const dims = asInts(attrs['shape'], 'shape', ctx);
  const starts = asInts(attrs['starts'], 'starts', ctx);
  const ends = asInts(attrs['ends'], 'ends', ctx);
  const axes = asInts(attrs['axes'], 'axes', ctx);
  const steps = asInts(attrs['steps'], 'steps', ctx);
  if (!dims || !starts || !ends || !axes || !steps) {
    throw shapeError(ctx, "attributes 'shape', 'starts', 'ends', 'axes' and 'steps' are all required");
  }
  if (dims.some((d) => d < 0)) throw shapeError(ctx, `shape ${fmt(dims)} has a negative dim`);
  const k = starts.length;
  if (ends.length !== k || axes.length !== k || steps.length !== k) {
    throw shapeError(ctx, `starts ${fmt(starts)}, ends ${fmt(ends)}, axes ${fmt(axes)} and steps ${fmt(steps)} differ in length`);
  }
  if (axes.some((a) => a < 0)) throw shapeError(ctx, `axes ${fmt(axes)} must be normalised (non-negative)`);
  if (steps.some((s) => s === 0)) throw shapeError(ctx, `steps ${fmt(steps)} hold a 0`);
  const plan = planOf(dims, { starts, ends, axes: axesOf(axes, dims.length, ctx), steps }, ctx);
  if (dy.dims.length !== dims.length || plan.outDims.some((d, i) => d !== dy.dims[i])) {
    throw shapeError(ctx, `dy ${fmt(dy.dims)} is not the shape ${fmt(plan.outDims)} this slice of ${fmt(dims)} produces`);
  }
  return { dy, dims, plan };
}

const SliceGrad: OpDef = {
  domain: 'ia3',
  doc: 'SliceGrad(dy) with attrs shape, starts, ends, axes, steps (Slice in normal form): zeros of `shape` with dy written where the slice read. GPU: one lattice gather.',
  shape(inputs, attrs, ctx) {
    const { dy, dims } = sliceGradPlan(inputs, attrs, ctx);
    return [{ dtype: dy.dtype, dims }];
  },
  reference(inputs, attrs, ctx) {
    const { dy, dims, plan } = sliceGradPlan(inputs, attrs, ctx);
    const s = stridesOf(dims);
    const src = (dy as RefTensor).data;
    const out = tensor(dy.dtype, dims);
    forEachIndex(dy.dims, (i, c) => {
      let off = 0;
      for (let d = 0; d < c.length; d++) off += (plan.start[d]! + c[d]! * plan.step[d]!) * s[d]!;
      out.data[off] = src[i]!;
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const { dy, dims, plan } = sliceGradPlan(inputs, attrs, ctx);
    const program = latticeProgram(
      {
        mode: 'constant',
        outDims: dims,
        inDims: dy.dims,
        offsets: plan.start,
        steps: plan.step,
        inStrides: stridesOf(dy.dims),
        srcBase: 0,
        value: 0, // the all-zero word is 0 in f32 and i32 alike
      },
      ctx,
    );
    return program ? { steps: [{ program, bindings: [{ in: 0 }, { out: 0 }] }] } : { steps: [] };
  },
};

// ---------------------------------------------------------------------------------------------
// Concat

function concatPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  if (inputs.length === 0) throw shapeError(ctx, 'needs at least one input');
  const xs = inputs.map((_, i) => need(inputs, i, `inputs[${i}]`, ctx));
  const first = xs[0]!;
  const r = first.dims.length;
  if (r === 0) throw shapeError(ctx, 'cannot concatenate scalars');
  // Concat-1 defaulted axis to 1; from opset 4 the attribute is required.
  if (attrs['axis'] === undefined && ctx.opset >= 4) throw shapeError(ctx, "attribute 'axis' is required");
  const axis = normAxis(asInt(attrs['axis'], 'axis', ctx, 1), r, ctx);
  const offsets: number[] = [];
  let total = 0;
  for (const x of xs) {
    const same = x.dims.length === r && x.dims.every((d, i) => i === axis || d === first.dims[i]);
    if (!same || x.dtype !== first.dtype) {
      throw shapeError(
        ctx,
        `inputs ${xs.map((y) => `${y.dtype}${fmt(y.dims)}`).join(', ')} must share dtype, rank and every dim but axis ${axis}`,
      );
    }
    offsets.push(total);
    total += x.dims[axis]!;
  }
  const outDims = first.dims.map((d, i) => (i === axis ? total : d));
  return { xs, axis, offsets, outDims };
}

const Concat: OpDef = {
  domain: '',
  doc: 'Concat along `axis` (any number of inputs). GPU: one strided copy per non-empty input into its region.',
  shape(inputs, attrs, ctx) {
    const p = concatPlan(inputs, attrs, ctx);
    return [{ dtype: p.xs[0]!.dtype, dims: p.outDims }];
  },
  reference(inputs, attrs, ctx) {
    const p = concatPlan(inputs, attrs, ctx);
    const out = tensor(p.xs[0]!.dtype, p.outDims);
    const os = stridesOf(p.outDims);
    p.xs.forEach((x, k) => {
      const src = (x as RefTensor).data;
      forEachIndex(x.dims, (i, c) => {
        let off = p.offsets[k]! * os[p.axis]!;
        for (let d = 0; d < c.length; d++) off += c[d]! * os[d]!;
        out.data[off] = src[i]!;
      });
    });
    return [out];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const p = concatPlan(inputs, attrs, ctx);
    const os = stridesOf(p.outDims);
    const steps: Step[] = [];
    p.xs.forEach((x, k) => {
      const program = stridedProgram(
        { dims: x.dims, srcStrides: stridesOf(x.dims), dstStrides: os, srcBase: 0, dstBase: p.offsets[k]! * os[p.axis]! },
        ctx,
      );
      if (program) steps.push({ program, bindings: [{ in: k }, { out: 0 }] });
    });
    return { steps };
  },
};

// ---------------------------------------------------------------------------------------------
// Split

/**
 * Split's chunk sizes by opset: the `split` attribute before 13 (Split-1 also took it as input 1),
 * the `split` input from 13, `num_outputs` from 18 (ceil-sized chunks, the last one smaller), else
 * equal parts, one per node output.
 */
function splitPlan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): { x: Operand; axis: number; sizes: number[] } {
  const x = need(inputs, 0, 'input', ctx);
  if (x.dims.length === 0) throw shapeError(ctx, 'cannot split a scalar');
  const axis = normAxis(asInt(attrs['axis'], 'axis', ctx, 0), x.dims.length, ctx);
  const dim = x.dims[axis]!;
  const attrSplit = asInts(gatedAttr(attrs, 'split', ctx, 1, 13), 'split', ctx);
  const numOutputs = gatedAttr(attrs, 'num_outputs', ctx, 18);
  let split = attrSplit;
  if (inputs[1] !== undefined) {
    if (ctx.opset >= 2 && ctx.opset < 13) {
      throw shapeError(ctx, `input 1 (split) exists only in opset 1 and from opset 13, the node is opset ${ctx.opset}`);
    }
    split = constInts(inputs[1], 1, 'split', ctx);
  }
  const outputs = numOutputsOf(ctx);
  let sizes: number[];
  if (split !== undefined) {
    if (numOutputs !== undefined) throw shapeError(ctx, "give either 'split' or 'num_outputs', not both");
    if (split.some((v) => v < 0) || split.reduce((a, b) => a + b, 0) !== dim) {
      throw shapeError(ctx, `split ${fmt(split)} does not partition axis ${axis} of ${fmt(x.dims)}`);
    }
    sizes = split;
  } else if (numOutputs !== undefined) {
    const n = asInt(numOutputs, 'num_outputs', ctx, 0);
    if (n < 1) throw shapeError(ctx, `num_outputs = ${n} must be positive`);
    const chunk = Math.ceil(dim / n);
    sizes = new Array<number>(n).fill(chunk);
    sizes[n - 1] = dim - chunk * (n - 1);
    if (sizes[n - 1]! < 0) throw shapeError(ctx, `axis ${axis} of ${fmt(x.dims)} cannot be split into ${n} chunks of ${chunk}`);
  } else {
    if (outputs === undefined) {
      throw new UnsupportedOpError(
        ctx.opType,
        ctx.nodeName,
        "without 'split' or 'num_outputs' the chunk count is the node's output count, which this context does not carry (numOutputs)",
        ctx.opset,
      );
    }
    if (dim % outputs !== 0) throw shapeError(ctx, `axis ${axis} of ${fmt(x.dims)} does not split into ${outputs} equal parts`);
    sizes = new Array<number>(outputs).fill(dim / outputs);
  }
  if (outputs !== undefined && outputs !== sizes.length) {
    throw shapeError(ctx, `the node has ${outputs} outputs but the split makes ${sizes.length} chunks`);
  }
  return { x, axis, sizes };
}

const Split: OpDef = {
  domain: '',
  doc: "Split along `axis` by the split attribute (< 13) / constant input (≥ 13), num_outputs (≥ 18, last chunk smaller) or equally. GPU: one strided copy per output.",
  shape(inputs, attrs, ctx) {
    const { x, axis, sizes } = splitPlan(inputs, attrs, ctx);
    return sizes.map((n): TensorType => ({ dtype: x.dtype, dims: x.dims.map((d, i) => (i === axis ? n : d)) }));
  },
  reference(inputs, attrs, ctx) {
    const { x, axis, sizes } = splitPlan(inputs, attrs, ctx);
    const s = stridesOf(x.dims);
    const src = (x as RefTensor).data;
    let offset = 0;
    return sizes.map((n) => {
      const out = tensor(x.dtype, x.dims.map((d, i) => (i === axis ? n : d)));
      const base = offset * s[axis]!;
      forEachIndex(out.dims, (i, c) => {
        let off = base;
        for (let d = 0; d < c.length; d++) off += c[d]! * s[d]!;
        out.data[i] = src[off]!;
      });
      offset += n;
      return out;
    });
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const { x, axis, sizes } = splitPlan(inputs, attrs, ctx);
    const s = stridesOf(x.dims);
    const steps: Step[] = [];
    let offset = 0;
    sizes.forEach((n, k) => {
      const dims = x.dims.map((d, i) => (i === axis ? n : d));
      const program = stridedProgram({ dims, srcStrides: s, dstStrides: stridesOf(dims), srcBase: offset * s[axis]!, dstBase: 0 }, ctx);
      if (program) steps.push({ program, bindings: [{ in: 0 }, { out: k }] });
      offset += n;
    });
    return { steps };
  },
};

export const sliceOps = { Slice, SliceGrad, Concat, Split } satisfies Record<string, OpDef>;
