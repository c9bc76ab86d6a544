// View ops: Reshape, Squeeze, Unsqueeze, Flatten, Identity, Dropout (inference).
//
// Their output holds the input's elements in the same row-major order, so the GPU lowering is an
// alias of the input buffer (no copy, no dispatch); only the shape rule does work. The reference
// copies the data so that callers may mutate outputs freely. Dropout is inference-only: its output
// is its input, and its optional mask output (all ones) is the one case that needs a kernel.

import { UnsupportedOpError } from '../errors.js';
import { gpuStorage } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { wrapIndex } from '../ir/shape.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { asInt, asInts, axesOf, constInts, constScalar, fmt, gatedAttr, gatedInput, shapeError, type Operand } from './layout-common.js';
import { copyWordsProgram, fillProgram, wordOf } from './layout-kernels.js';
import type { Inputs, OpContext, OpDef } from './types.js';

function viewOf(x: RefTensor, dims: readonly number[]): RefTensor {
  return { dtype: x.dtype, dims: [...dims], data: x.data.slice() };
}

function input0(inputs: Inputs<Operand>, ctx: OpContext): Operand {
  const x = inputs[0];
  if (x === undefined) throw shapeError(ctx, 'required input 0 (data) is missing');
  return x;
}

/**
 * Reshape's output dims: 0 copies the input dim at that position (unless allowzero = 1, opset
 * ≥ 14, where 0 is a real zero), one -1 is inferred from the element count.
 */
export function reshapeDims(inDims: readonly number[], shape: readonly number[], allowzero: boolean, ctx: OpContext): number[] {
  const bad = (why: string): Error => shapeError(ctx, `cannot reshape ${fmt(inDims)} to ${fmt(shape)}: ${why}`);
  if (allowzero && shape.includes(0) && shape.includes(-1)) throw bad('with allowzero = 1 a shape cannot hold both 0 and -1');
  let infer = -1;
  const out = shape.map((s, i) => {
    if (s === -1) {
      if (infer >= 0) throw bad('more than one -1');
      infer = i;
      return 1;
    }
    if (s < -1) throw bad(`dim ${s} is negative`);
    if (s === 0 && !allowzero) {
      if (i >= inDims.length) throw bad(`0 at position ${i} copies a dim the input does not have`);
      return inDims[i]!;
    }
    return s;
  });
  const total = sizeOf(inDims);
  const known = sizeOf(out);
  if (infer >= 0) {
    if (known === 0 || total % known !== 0) {
      throw bad(`${total} elements do not divide into dims of product ${known}`);
    }
    out[infer] = total / known;
  } else if (known !== total) {
    throw bad(`${total} elements, the shape holds ${known}`);
  }
  return out;
}

function reshapeShape(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): TensorType {
  const x = input0(inputs, ctx);
  let shape: number[];
  if (ctx.opset < 5) {
    const s = asInts(attrs['shape'], 'shape', ctx);
    if (!s) throw shapeError(ctx, "attribute 'shape' is required before opset 5");
    shape = s;
  } else {
    if (attrs['shape'] !== undefined) throw shapeError(ctx, `attribute 'shape' became input 1 in opset 5, the node is opset ${ctx.opset}`);
    shape = constInts(inputs[1], 1, 'shape', ctx);
  }
  const allowzero = asInt(gatedAttr(attrs, 'allowzero', ctx, 14), 'allowzero', ctx, 0) === 1;
  return { dtype: x.dtype, dims: reshapeDims(x.dims, shape, allowzero, ctx) };
}

/** Squeeze's axes: attribute before opset 13, optional input from 13; none = every dim of 1. */
function squeezeShape(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): TensorType {
  const x = input0(inputs, ctx);
  const attrAxes = asInts(gatedAttr(attrs, 'axes', ctx, 1, 13), 'axes', ctx);
  const raw = ctx.opset < 13 ? attrAxes : inputs[1] === undefined ? undefined : constInts(inputs[1], 1, 'axes', ctx);
  const rank = x.dims.length;
  let drop: Set<number>;
  if (raw === undefined) {
    drop = new Set(x.dims.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0));
  } else {
    drop = new Set(axesOf(raw, rank, ctx));
    for (const a of drop) {
      if (x.dims[a] !== 1) throw shapeError(ctx, `cannot squeeze axis ${a} of ${fmt(x.dims)}: its size is ${x.dims[a]}, not 1`);
    }
  }
  return { dtype: x.dtype, dims: x.dims.filter((_, i) => !drop.has(i)) };
}

/** Unsqueeze's axes index the output: attribute before opset 13, required input from 13. */
function unsqueezeShape(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): TensorType {
  const x = input0(inputs, ctx);
  const attrAxes = asInts(gatedAttr(attrs, 'axes', ctx, 1, 13), 'axes', ctx);
  const raw = ctx.opset < 13 ? attrAxes : constInts(inputs[1], 1, 'axes', ctx);
  if (raw === undefined) throw shapeError(ctx, "attribute 'axes' is required");
  const outRank = x.dims.length + raw.length;
  const axes = new Set(axesOf(raw, outRank, ctx));
  const dims: number[] = [];
  let j = 0;
  for (let i = 0; i < outRank; i++) dims.push(axes.has(i) ? 1 : x.dims[j++]!);
  return { dtype: x.dtype, dims };
}

function flattenShape(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): TensorType {
  const x = input0(inputs, ctx);
  const r = x.dims.length;
  const raw = asInt(attrs['axis'], 'axis', ctx, 1);
  const axis = wrapIndex(raw, r); // Flatten's axis may also be r: [-r, r]
  if (axis < 0 || axis > r) throw shapeError(ctx, `axis ${raw} is out of range [${-r}, ${r}] for rank ${r}`);
  return { dtype: x.dtype, dims: [sizeOf(x.dims.slice(0, axis)), sizeOf(x.dims.slice(axis))] };
}

/**
 * Dropout in inference: output = input. Opset 12 moved `ratio` to an input and added
 * `training_mode`; a constant true training_mode with a non-zero ratio would need random masks,
 * which a frozen-model toolkit does not run. The mask is bool from opset 10, the data type before.
 */
function dropoutShape(inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext): TensorType[] {
  const x = input0(inputs, ctx);
  gatedAttr(attrs, 'is_test', ctx, 1, 7);
  gatedAttr(attrs, 'ratio', ctx, 1, 12);
  gatedAttr(attrs, 'seed', ctx, 12);
  const ratioIn = gatedInput(inputs, 1, 'ratio', ctx, 12);
  const training = gatedInput(inputs, 2, 'training_mode', ctx, 12);
  if (training !== undefined && constScalar(training, 2, 'training_mode', ctx) !== 0) {
    const ratio = ratioIn === undefined ? 0.5 : constScalar(ratioIn, 1, 'ratio', ctx);
    if (ratio !== 0) {
      throw new UnsupportedOpError(
        ctx.opType,
        ctx.nodeName,
        `training_mode = true with ratio ${ratio} needs random dropout masks; export the model in eval mode`,
        ctx.opset,
      );
    }
  }
  return [
    { dtype: x.dtype, dims: [...x.dims] },
    { dtype: ctx.opset >= 10 ? 'bool' : x.dtype, dims: [...x.dims] },
  ];
}

/** A view op: its shape rule, the reference (a copy), and an alias lowering. */
function viewOp(doc: string, shape: (inputs: Inputs<Operand>, attrs: Attrs, ctx: OpContext) => TensorType, sinceVersion = 1): OpDef {
  return {
    domain: '',
    sinceVersion,
    doc,
    shape: (inputs, attrs, ctx) => [shape(inputs, attrs, ctx)],
    reference: (inputs, attrs, ctx) => [viewOf(input0(inputs, ctx) as RefTensor, shape(inputs, attrs, ctx).dims)],
    gpu: () => ({ alias: 0 }),
  };
}

export const viewOps = {
  Reshape: viewOp(
    'Reshape (shape attribute before opset 5, constant shape input after; 0 copies a dim unless allowzero, -1 inferred). View: no copy.',
    reshapeShape,
  ),
  Squeeze: viewOp('Squeeze (axes attribute before opset 13, constant input after; none = all dims of 1). View.', squeezeShape),
  Unsqueeze: viewOp('Unsqueeze (axes attribute before opset 13, constant input after). View.', unsqueezeShape),
  Flatten: viewOp('Flatten to 2-D at `axis` (default 1, negative allowed). View.', flattenShape),
  Identity: viewOp('Identity. View.', (inputs, _attrs, ctx) => {
    const x = input0(inputs, ctx);
    return { dtype: x.dtype, dims: [...x.dims] };
  }),
  Dropout: {
    domain: '',
    doc: 'Dropout in inference mode: output = input (a view); the optional mask output is all ones (one fill dispatch).',
    shape: dropoutShape,
    reference: (inputs, attrs, ctx) => {
      const [yt, mt] = dropoutShape(inputs, attrs, ctx);
      const x = input0(inputs, ctx) as RefTensor;
      return [viewOf(x, yt!.dims), tensor(mt!.dtype, mt!.dims, new Array<number>(sizeOf(mt!.dims)).fill(1))];
    },
    gpu: (inputs, outputs, attrs, ctx) => {
      dropoutShape(inputs, attrs, ctx);
      if (outputs.length < 2) return { alias: 0 };
      // With the mask requested the op has two outputs, which an alias cannot express: copy, then fill.
      const n = sizeOf(outputs[0]!.dims);
      const mask = outputs[1]!;
      const steps = [
        { program: copyWordsProgram(n, ctx), bindings: [{ in: 0 }, { out: 0 }] },
        { program: fillProgram(sizeOf(mask.dims), wordOf(1, gpuStorage(mask.dtype)), ctx), bindings: [{ in: 0 }, { out: 1 }] },
      ];
      return { steps: steps.filter((s) => s.program !== undefined).map((s) => ({ program: s.program!, bindings: s.bindings })) };
    },
  },
} satisfies Record<string, OpDef>;
