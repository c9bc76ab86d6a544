// Control flow: If, as the importer flattens it.
//
// onnx/decode.ts inlines both branches of an ONNX If into the node list (their values renamed per
// branch) and leaves `If(cond, then outputs…, else outputs…)`: output k is then-output k when the
// condition holds, else else-output k. A static plan cannot branch, so specialisation decides every
// If before it infers a single shape: from constants, shapes and the values of the graph inputs the
// condition reads (Model.run passes the feeds; the decision is part of the specialisation key, like
// a shape), then keeps only the chosen branch, whose outputs the If's outputs alias. The op's shape
// rule and reference select on a known condition; its lowering is never reached.

import { ShapeError, UnsupportedOpError } from '../errors.js';
import { tensor, type RefTensor, type ValueInfo } from '../ir/tensor.js';
import type { Inputs, OpContext, OpDef } from './types.js';

/** The number of outputs of a flattened If node: its inputs are the condition and two output lists. */
export function ifArity(inputCount: number, ctx: Pick<OpContext, 'opType' | 'nodeName'>): number {
  if (inputCount < 1 || inputCount % 2 !== 1) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `a flattened If takes the condition and two output lists, got ${inputCount} inputs`);
  }
  return (inputCount - 1) / 2;
}

/** The branch a condition value selects (ONNX: a one-element bool tensor; any non-zero holds). */
export function conditionHolds(cond: RefTensor, ctx: Pick<OpContext, 'opType' | 'nodeName'>): boolean {
  if (cond.data.length !== 1) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `the condition must hold one element, it has dims [${cond.dims.join(',')}]`);
  }
  return cond.data[0] !== 0;
}

/** The chosen outputs, by the condition's value (which must be known). */
function chosen<T>(inputs: Inputs<T>, cond: RefTensor | undefined, ctx: OpContext): T[] {
  const n = ifArity(inputs.length, ctx);
  if (!cond) {
    throw new UnsupportedOpError(
      ctx.opType,
      ctx.nodeName,
      'its condition is only known at run time; specialisation decides every If from constants, shapes and input values',
      ctx.opset,
    );
  }
  const start = conditionHolds(cond, ctx) ? 1 : 1 + n;
  return inputs.slice(start, start + n).map((t, k) => {
    if (t === undefined) throw new ShapeError(ctx.opType, ctx.nodeName, `branch output ${k} is missing`);
    return t;
  });
}

const If: OpDef = {
  domain: '',
  doc: "If on a condition known at specialisation (a constant, shapes, or graph-input values: Model.run specialises on them), branches inlined on load, outer-scope values read directly. Only the chosen branch is compiled.",
  shape(inputs, _attrs, ctx) {
    const cond = inputs[0] as ValueInfo | undefined;
    return chosen(inputs, cond?.value, ctx).map((t) => ({ dtype: t.dtype, dims: [...t.dims] }));
  },
  reference(inputs, _attrs, ctx) {
    return chosen(inputs, inputs[0], ctx).map((t) => tensor(t.dtype, t.dims, t.data));
  },
  gpu: (_inputs, _outputs, _attrs, ctx) => {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, 'is resolved into one branch at specialisation and has no lowering', ctx.opset);
  },
};

export const controlOps = { If } satisfies Record<string, OpDef>;
