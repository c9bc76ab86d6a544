// Ops folded on the CPU at shape specialisation: Shape, Size, Range, ConstantOfShape, Constant,
// NonZero.
//
// After the graph is specialised to concrete input shapes these ops only ever see constant inputs
// (or none), so their reference is the implementation and their lowering is 'fold'. Their shape
// rules still run on ValueInfo; the ones whose output shape depends on input values (Range,
// ConstantOfShape, NonZero) require those values to be constant.

import { UnsupportedOpError } from '../errors.js';
import type { DataType } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { clampedRange } from '../ir/shape.js';
import { sizeOf, stridesOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { asInt, constData, constInts, constScalar, fmt, gatedAttr, shapeError, type Operand } from './layout-common.js';
import type { Inputs, OpContext, OpDef } from './types.js';

/** Shape's [start, end) over the dims: opset 15 attributes, clamped to [0, rank]; all dims before. */
function shapeRange(x: Operand, attrs: Attrs, ctx: OpContext): [number, number] {
  const r = x.dims.length;
  return clampedRange(asInt(gatedAttr(attrs, 'start', ctx, 15), 'start', ctx, 0), asInt(gatedAttr(attrs, 'end', ctx, 15), 'end', ctx, r), r);
}

function need(inputs: Inputs<Operand>, i: number, what: string, ctx: OpContext): Operand {
  const v = inputs[i];
  if (v === undefined) throw shapeError(ctx, `required input ${i} (${what}) is missing`);
  return v;
}

/** Range's element count: max(ceil((limit - start) / delta), 0). */
function rangeCount(inputs: Inputs<Operand>, ctx: OpContext): { start: number; delta: number; n: number; dtype: DataType } {
  const names = ['start', 'limit', 'delta'];
  const xs = names.map((w, i) => need(inputs, i, w, ctx));
  const dtype = xs[0]!.dtype;
  if (xs.some((x) => x.dtype !== dtype)) throw shapeError(ctx, `start, limit and delta must share a type, got ${xs.map((x) => x.dtype).join(', ')}`);
  const [start, limit, delta] = names.map((w, i) => constScalar(inputs[i], i, w, ctx)) as [number, number, number];
  if (delta === 0) throw shapeError(ctx, 'delta is 0');
  return { start, delta, n: Math.max(Math.ceil((limit - start) / delta), 0), dtype };
}

/** ConstantOfShape's fill: the one-element `value` tensor attribute, float32 0 by default. */
function fillValue(attrs: Attrs, ctx: OpContext): { dtype: DataType; value: number } {
  const v = attrs['value'];
  if (v === undefined) return { dtype: 'float32', value: 0 };
  if (typeof v !== 'object' || Array.isArray(v) || !('data' in v)) throw shapeError(ctx, "attribute 'value' must be a tensor");
  const t = v as RefTensor;
  if (t.data.length !== 1) throw shapeError(ctx, `attribute 'value' must hold one element, it holds ${t.data.length}`);
  return { dtype: t.dtype, value: t.data[0]! };
}

function constantOfShapeDims(inputs: Inputs<Operand>, ctx: OpContext): number[] {
  const dims = constInts(inputs[0], 0, 'shape', ctx);
  for (const d of dims) if (d < 0) throw shapeError(ctx, `shape ${fmt(dims)} has a negative dim`);
  return dims;
}

/** The tensor a Constant node holds, by the attribute its opset allows. */
function constantValue(attrs: Attrs, ctx: OpContext): RefTensor {
  const present = Object.keys(attrs).filter((k) => attrs[k] !== undefined);
  if (present.length !== 1) throw shapeError(ctx, `needs exactly one value attribute, got ${present.length ? present.join(', ') : 'none'}`);
  const name = present[0]!;
  const v = attrs[name]!;
  if (name === 'sparse_value' || name === 'value_string' || name === 'value_strings') {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `attribute '${name}' is not supported (dense numeric tensors only)`, ctx.opset);
  }
  const since = name === 'value' ? 1 : 12;
  gatedAttr(attrs, name, ctx, since);
  const nums = (): number[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw shapeError(ctx, `attribute '${name}' must be a list of numbers`);
    return [...(v as readonly number[])];
  };
  switch (name) {
    case 'value': {
      if (typeof v !== 'object' || Array.isArray(v) || !('data' in v)) throw shapeError(ctx, "attribute 'value' must be a tensor");
      const t = v as RefTensor;
      return tensor(t.dtype, t.dims, t.data);
    }
    case 'value_float':
      if (typeof v !== 'number') throw shapeError(ctx, "attribute 'value_float' must be a number");
      return tensor('float32', [], [Math.fround(v)]);
    case 'value_floats': {
      const xs = nums().map(Math.fround);
      return tensor('float32', [xs.length], xs);
    }
    case 'value_int':
      return tensor('int64', [], [asInt(v, name, ctx, 0)]);
    case 'value_ints': {
      const xs = nums();
      if (xs.some((x) => !Number.isInteger(x))) throw shapeError(ctx, "attribute 'value_ints' must be integers");
      return tensor('int64', [xs.length], xs);
    }
    default:
      throw shapeError(ctx, `unknown attribute '${name}'`);
  }
}

/** Row-major coordinates of the non-zero elements, as NonZero's [rank, count] int64 tensor. */
function nonZero(x: Operand, ctx: OpContext): RefTensor {
  const data = constData(x, 0, 'X', ctx);
  // numpy (and so ONNX) treats a scalar as a 1-D tensor of one element.
  const dims = x.dims.length === 0 ? [1] : x.dims;
  const strides = stridesOf(dims);
  const hits: number[] = [];
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) hits.push(i);
  const out = tensor('int64', [dims.length, hits.length]);
  hits.forEach((flat, j) => {
    for (let d = 0; d < dims.length; d++) out.data[d * hits.length + j] = Math.floor(flat / strides[d]!) % dims[d]!;
  });
  return out;
}

function foldOp(
  doc: string,
  sinceVersion: number,
  shape: (inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) => TensorType,
  reference: (inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext) => RefTensor,
): OpDef {
  return {
    domain: '',
    sinceVersion,
    doc,
    shape: (inputs, attrs, ctx) => [shape(inputs, attrs, ctx)],
    reference: (inputs, attrs, ctx) => [reference(inputs, attrs, ctx)],
    gpu: 'fold',
  };
}

export const foldOps = {
  Shape: foldOp(
    'Shape as int64 (opset 15 start/end attributes). Folded on the CPU.',
    1,
    (inputs, attrs, ctx) => {
      const [s, e] = shapeRange(need(inputs, 0, 'data', ctx), attrs, ctx);
      return { dtype: 'int64', dims: [e - s] };
    },
    (inputs, attrs, ctx) => {
      const x = need(inputs, 0, 'data', ctx);
      const [s, e] = shapeRange(x, attrs, ctx);
      return tensor('int64', [e - s], x.dims.slice(s, e));
    },
  ),
  Size: foldOp(
    'Size (element count) as an int64 scalar. Folded on the CPU.',
    1,
    () => ({ dtype: 'int64', dims: [] }),
    (inputs, _attrs, ctx) => tensor('int64', [], [sizeOf(need(inputs, 0, 'data', ctx).dims)]),
  ),
  Range: {
    // Range-27 accumulates float16 in float32 (stash_type), which this definition does not.
    untilVersion: 26,
    ...foldOp(
      'Range(start, limit, delta): start + i·delta for i < max(ceil((limit-start)/delta), 0). Folded on the CPU.',
      11,
      (inputs, _attrs, ctx) => {
        const { n, dtype } = rangeCount(inputs, ctx);
        return { dtype, dims: [n] };
      },
      (inputs, _attrs, ctx) => {
        const { start, delta, n, dtype } = rangeCount(inputs, ctx);
        const round = dtype === 'float32' ? Math.fround : (v: number): number => v;
        return tensor(dtype, [n], Array.from({ length: n }, (_, i) => round(start + i * delta)));
      },
    ),
  },
  ConstantOfShape: foldOp(
    'ConstantOfShape: a tensor of the constant shape input filled with the one-element `value` attribute (float32 0 by default). Folded.',
    9,
    (inputs, attrs, ctx) => ({ dtype: fillValue(attrs, ctx).dtype, dims: constantOfShapeDims(inputs, ctx) }),
    (inputs, attrs, ctx) => {
      const { dtype, value } = fillValue(attrs, ctx);
      const dims = constantOfShapeDims(inputs, ctx);
      return tensor(dtype, dims, new Array<number>(sizeOf(dims)).fill(value));
    },
  ),
  Constant: foldOp(
    'Constant from `value` (tensor), or from opset 12 `value_float(s)` / `value_int(s)`; sparse and string values unsupported. Folded.',
    1,
    (_inputs, attrs, ctx) => {
      const t = constantValue(attrs, ctx);
      return { dtype: t.dtype, dims: t.dims };
    },
    (_inputs, attrs, ctx) => constantValue(attrs, ctx),
  ),
  NonZero: foldOp(
    'NonZero: int64 [rank, count] coordinates of non-zero elements in row-major order; constant input only. Folded.',
    9,
    (inputs, _attrs, ctx) => {
      const t = nonZero(need(inputs, 0, 'X', ctx), ctx);
      return { dtype: t.dtype, dims: t.dims };
    },
    (inputs, _attrs, ctx) => nonZero(need(inputs, 0, 'X', ctx), ctx),
  ),
} satisfies Record<string, OpDef>;
