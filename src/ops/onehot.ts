// OneHot (ai.onnx 9, 11): a float64 reference from the spec and an expansion into registry ops.
//
// out[..., j, ...] (j at `axis`) = values[1] where j equals the index, else values[0]. Indices may
// be any numeric type (floats truncate, as a C cast); from opset 11 an index in [-depth, -1] counts
// from the end, before 11 only [0, depth) selects; any other index gives a row of off values.
// `depth` must be known at specialisation (it is a dim of the output).
// Expansion: Where(Equal(Unsqueeze(index, axis), range(depth) laid along axis), on, off), with the
// negative-index wrap `Where(index < 0, index + depth, index)` from opset 11.

import { isFloat } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { forEachIndex, wrapIndex } from '../ir/shape.js';
import { tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { expandedOp } from './expansion.js';
import { asInt, constScalar, shapeError, type Operand } from './layout-common.js';
import type { Inputs, OpContext, OpDef } from './types.js';

function plan(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) {
  const [indices, depthIn, values] = [0, 1, 2].map((i) => {
    const v = inputs[i];
    if (v === undefined) throw shapeError(ctx, `required input ${i} (${['indices', 'depth', 'values'][i]}) is missing`);
    return v;
  }) as [Operand, Operand, Operand];
  if (indices.dtype === 'bool') throw shapeError(ctx, 'indices must be numeric, got bool');
  const rawDepth = constScalar(depthIn, 1, 'depth', ctx);
  const depth = Math.trunc(rawDepth);
  if (!(depth >= 1)) throw shapeError(ctx, `depth ${rawDepth} must be at least 1`);
  if (values.dims.length !== 1 || values.dims[0] !== 2) throw shapeError(ctx, `values must be a 2-element vector [off, on], got dims [${values.dims.join(',')}]`);
  const r = indices.dims.length;
  const raw = asInt(attrs['axis'], 'axis', ctx, -1);
  const axis = raw < 0 ? raw + r + 1 : raw;
  if (axis < 0 || axis > r) throw shapeError(ctx, `axis ${raw} is out of range [${-r - 1}, ${r}] for indices of rank ${r}`);
  const outDims = [...indices.dims.slice(0, axis), depth, ...indices.dims.slice(axis)];
  return { indices, values, depth, axis, outDims, wraps: ctx.opset >= 11 };
}

const OneHot: OpDef = {
  domain: '',
  sinceVersion: 9,
  doc: 'OneHot along `axis` with a constant depth: values[1] where the index matches, values[0] elsewhere; negative indices count from the end from opset 11; out-of-range indices give off values. Expanded at specialisation into Equal and Where.',
  shape(inputs, attrs, ctx): TensorType[] {
    const p = plan(inputs, attrs, ctx);
    return [{ dtype: p.values.dtype, dims: p.outDims }];
  },
  reference(inputs, attrs, ctx) {
    const p = plan(inputs, attrs, ctx);
    const idx = (p.indices as RefTensor).data;
    const [off, on] = (p.values as RefTensor).data as unknown as [number, number];
    const out = tensor(p.values.dtype, p.outDims);
    const inner = p.outDims.slice(p.axis + 1).reduce((a, b) => a * b, 1);
    forEachIndex(p.outDims, (o, c) => {
      // The index this element compares with: drop the axis coordinate from c.
      const outer = Math.floor(o / (p.depth * inner));
      const k = outer * inner + (o % inner);
      let v = Math.trunc(idx[k]!);
      if (p.wraps && v < 0) v = wrapIndex(v, p.depth);
      out.data[o] = v === c[p.axis] ? on : off;
    });
    return [out];
  },
  gpu: expandedOp('OneHot'),
  expand(b, attrs) {
    const p = plan(b.inputs, attrs, b.context);
    let idx = b.need(0, 'indices');
    if (isFloat(p.indices.dtype)) idx = b.op('Cast', [idx], { to: 7 }); // int64, truncating
    const itype = isFloat(p.indices.dtype) ? 'int64' : p.indices.dtype;
    if (p.wraps) {
      const negative = b.op('Less', [idx, b.scalar(0, itype)]);
      idx = b.op('Where', [negative, b.op('Add', [idx, b.scalar(p.depth, itype)]), idx]);
    }
    const positions = tensor(itype, [p.depth, ...p.outDims.slice(p.axis + 1).map(() => 1)], Array.from({ length: p.depth }, (_, j) => j));
    const hit = b.op('Equal', [b.op('Unsqueeze', [idx, b.ints([p.axis])]), b.constant(positions)]);
    const values = b.need(2, 'values');
    const off = b.op('Gather', [values, b.scalar(0, 'int64')], { axis: 0 });
    const on = b.op('Gather', [values, b.scalar(1, 'int64')], { axis: 0 });
    b.output(b.op('Where', [hit, on, off]));
  },
};

export const oneHotOps = { OneHot } satisfies Record<string, OpDef>;
