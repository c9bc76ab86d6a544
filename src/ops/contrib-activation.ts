// onnxruntime's fused activations (domain com.microsoft), expanded at load into primitives:
//
//   Gelu(X)              = 0.5·X·(1 + erf(X/√2))                        → Gelu
//   BiasGelu(A, B)       = Gelu(A + B)                                  → Add, Gelu
//   FastGelu(X, bias?)   = 0.5·X'·(1 + tanh(√(2/π)·(X' + 0.044715·X'³))), X' = X + bias
//                                                                       → Add, Gelu(approximate 'tanh')
//   QuickGelu(X)         = X·sigmoid(alpha·X), alpha = 1.702 by default  → Mul, Sigmoid, Mul
//   BiasAdd(X, bias, skip) = X + bias + skip                            → Add, Add
// The bias is added first, directly to the input, so the `MatMul → Add(bias)` of a projection the
// optimizer fused into the activation is visible again to module discovery (IA3 scales a module's
// output after its bias). The references below follow onnxruntime's documentation formulas.

import { ShapeError } from '../errors.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes } from '../ir/shape.js';
import { tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { gelu } from './elementwise.js';
import { requireFloat } from './normalization.js';
import type { ExpandedOpDef, Expander, Inputs, OpContext } from './types.js';
import { attrFloat, need } from './util.js';

// Every contrib op here is version 1 of com.microsoft (the domain's only version so far): sinceVersion 1.
const MS = 'com.microsoft';

/** A 1-D bias of the input's last dim. */
function requireBias(x: TensorType, bias: TensorType, what: string, ctx: OpContext): void {
  requireFloat(bias, what, ctx);
  const c = x.dims[x.dims.length - 1];
  if (bias.dims.length !== 1 || bias.dims[0] !== c) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} must be 1-D with the input's last dim ${c}, got [${bias.dims.join(',')}]`);
  }
}

function sameAsInput(inputs: Inputs<ValueInfo>, ctx: OpContext, biasAt?: number, biasRequired = false): TensorType[] {
  const x = need(inputs, 0, ctx);
  requireFloat(x, 'input', ctx);
  if (x.dims.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'the input must have at least one dim');
  if (biasAt !== undefined) {
    const b = biasRequired ? need(inputs, biasAt, ctx) : inputs[biasAt];
    if (b) requireBias(x, b, 'bias', ctx);
  }
  return [{ dtype: x.dtype, dims: [...x.dims] }];
}

/** out[i] = f(x[i] + bias[i mod C]) (no bias: f(x[i])). */
function mapWithBias(x: RefTensor, bias: RefTensor | undefined, f: (v: number) => number): RefTensor {
  const out = tensor(x.dtype, x.dims);
  const c = bias?.data.length ?? 1;
  for (let i = 0; i < x.data.length; i++) out.data[i] = f(x.data[i]! + (bias ? bias.data[i % c]! : 0));
  return out;
}

/** X + bias, the bias added first (see the header); X itself without a bias. */
function withBias(x: Expander, biasAt: number): string {
  const input = x.need(0, 'X');
  const bias = x.input(biasAt);
  return bias === undefined ? input : x.op('Add', [input, bias]);
}

const output = (x: Expander): string => x.node.outputs[0]!;

export const contribActivationOps = {
  Gelu: {
    domain: MS,
    sinceVersion: 1,
    doc: 'GELU with erf, 0.5·x·(1 + erf(x/√2)) (the com.microsoft op; ai.onnx has its own from opset 20). Expanded: Gelu.',
    shape: (inputs, _attrs, ctx) => sameAsInput(inputs, ctx),
    reference: (inputs, _attrs, ctx) => [mapWithBias(need(inputs, 0, ctx), undefined, (v) => gelu(v, 'none'))],
    expand(x) {
      x.op('Gelu', [x.need(0, 'X')], { approximate: 'none' }, output(x));
    },
  },

  BiasGelu: {
    domain: MS,
    sinceVersion: 1,
    doc: 'Gelu(A + B) with erf, B a 1-D bias of the last dim. Expanded: Add, Gelu.',
    shape: (inputs, _attrs, ctx) => sameAsInput(inputs, ctx, 1, true),
    reference: (inputs, _attrs, ctx) => [mapWithBias(need(inputs, 0, ctx), need(inputs, 1, ctx), (v) => gelu(v, 'none'))],
    expand(x) {
      x.need(1, 'B');
      x.op('Gelu', [withBias(x, 1)], { approximate: 'none' }, output(x));
    },
  },

  FastGelu: {
    domain: MS,
    sinceVersion: 1,
    doc: 'tanh-approximated GELU of X + bias (bias optional, 1-D of the last dim). Expanded: Add, Gelu(approximate tanh).',
    shape: (inputs, _attrs, ctx) => sameAsInput(inputs, ctx, 1),
    reference: (inputs, _attrs, ctx) => [mapWithBias(need(inputs, 0, ctx), inputs[1], (v) => gelu(v, 'tanh'))],
    expand(x) {
      x.op('Gelu', [withBias(x, 1)], { approximate: 'tanh' }, output(x));
    },
  },

  QuickGelu: {
    domain: MS,
    sinceVersion: 1,
    doc: 'x·sigmoid(alpha·x), alpha 1.702 by default. Expanded: Mul, Sigmoid, Mul.',
    shape: (inputs, _attrs, ctx) => sameAsInput(inputs, ctx),
    reference(inputs, attrs: Attrs, ctx) {
      const alpha = attrFloat(attrs, 'alpha', 1.702);
      return [mapWithBias(need(inputs, 0, ctx), undefined, (v) => v / (1 + Math.exp(-alpha * v)))];
    },
    expand(x, attrs) {
      const input = x.need(0, 'X');
      const scaled = x.op('Mul', [input, x.scalar(attrFloat(attrs, 'alpha', 1.702), 'float32')]);
      x.op('Mul', [input, x.op('Sigmoid', [scaled])], {}, output(x));
    },
  },

  BiasAdd: {
    domain: MS,
    sinceVersion: 1,
    doc: 'X + bias + skip (X and skip [N, S, C], bias [C]). Expanded: Add, Add.',
    shape(inputs, _attrs, ctx) {
      const [t] = sameAsInput(inputs, ctx, 1, true);
      const skip = need(inputs, 2, ctx);
      requireFloat(skip, 'skip', ctx);
      const dims = broadcastShapes([t!.dims, skip.dims], ctx);
      if (dims.join() !== t!.dims.join()) throw new ShapeError(ctx.opType, ctx.nodeName, `skip [${skip.dims.join(',')}] must have the input's shape [${t!.dims.join(',')}]`);
      return [t!];
    },
    reference(inputs, _attrs, ctx) {
      const out = mapWithBias(need(inputs, 0, ctx), need(inputs, 1, ctx), (v) => v);
      const skip = need(inputs, 2, ctx);
      for (let i = 0; i < out.data.length; i++) out.data[i] = out.data[i]! + skip.data[i]!;
      return [out];
    },
    expand(x) {
      x.need(1, 'bias');
      x.op('Add', [withBias(x, 1), x.need(2, 'skip')], {}, output(x));
    },
  },
} satisfies Record<string, ExpandedOpDef>;
