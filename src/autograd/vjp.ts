// The gradient table: one vector-Jacobian rule per op type of the registry.
//
// `VJP` is a mapped type over `OpType`, so an op added to the registry does not compile until it
// has an entry here. An entry is one of:
//   - a VjpRule: given the forward node and the gradients of its outputs, it emits backward IR
//     nodes (through a GraphBuilder) and returns the gradient of each input that needs one;
//   - `null`: no gradient flows through the op (integer/bool outputs, comparisons, shape ops, and
//     piecewise-constant ops such as Floor, whose derivative is zero almost everywhere);
//   - `unsupported(reason)`: the op is differentiable but its rule is not implemented. The reverse
//     pass throws an UnsupportedOpError only when a path to the loss actually crosses the op.
// Rules compute only the inputs for which `needs(i)` holds: a frozen weight never gets a gradient,
// so no weight-gradient product is ever emitted for it. Rules compose registry ops only; the
// backward helpers (SoftmaxGrad, LayerNormalizationGrad, IA3ScaleGrad, ...) exist where a fused
// kernel beats a composition. Broadcasting is undone with SumToShape (builder.sumTo).
//
// Size: the VJP table is one mapped type over every op of the registry (the compiler checks it is
// complete); its rules stay beside it, a section per op family, like tinygrad's gradient table.

import { UnsupportedOpError } from '../errors.js';
import { FLOAT_TYPES, F32_MAX } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { normAxis, wrapIndex } from '../ir/shape.js';
import type { SpecNode } from '../ir/static-graph.js';
import { sizeOf, tensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { sliceGradAttrs } from '../ops/layout.js';
import { matmulGeometry } from '../ops/matmul.js';
import { OPS, type OpType } from '../ops/registry.js';
import type { Inputs, OpContext } from '../ops/types.js';
import { attrFloat, attrInt, attrInts, attrString } from '../ops/util.js';
import type { GraphBuilder } from './builder.js';

/** What a rule sees of one forward node. */
export interface VjpContext {
  readonly node: SpecNode;
  /** Types of the node's inputs, with values for constants; undefined for omitted inputs. */
  readonly inputs: Inputs<ValueInfo>;
  /** Gradient value of each output, or undefined where none flows (a zero gradient). */
  readonly dy: readonly (string | undefined)[];
  /** Whether input i needs a gradient (it depends on a trainable value). */
  needs(i: number): boolean;
  /** The name of forward output k, added to the forward node when it does not declare it. */
  output(k: number): string;
  /** The op context of the forward node (shape rules of the forward op take it). */
  readonly ctx: OpContext;
  readonly b: GraphBuilder;
  /** Throws an UnsupportedOpError naming the node: this part of its gradient is not implemented. */
  unsupported(detail: string): never;
}

/** Gradients per input (undefined where none is needed or it is zero). */
export type VjpRule = (c: VjpContext) => readonly (string | undefined)[];

/** A differentiable op whose gradient is not implemented. */
export interface Unsupported {
  readonly unsupported: string;
}

export type VjpEntry = VjpRule | Unsupported | null;

/** Marks a differentiable op whose rule is not implemented (an error only when a path needs it). */
export function unsupported(reason: string): Unsupported {
  return { unsupported: reason };
}

/** The error thrown for an `unsupported` entry, or by a rule's `c.unsupported(...)`. */
export function unsupportedError(node: SpecNode, detail: string): UnsupportedOpError {
  return new UnsupportedOpError(node.opType, node.name, `gradient is not implemented: ${detail}`, node.opset);
}

// ---------------------------------------------------------------------------------------------
// Helpers

const inName = (c: VjpContext, i: number): string => c.node.inputs[i]!;
const inDims = (c: VjpContext, i: number): readonly number[] => c.inputs[i]!.dims;
const dtypeOf = (c: VjpContext, i: number) => c.inputs[i]!.dtype;
const isFloat = (t: TensorType | undefined): boolean => t !== undefined && FLOAT_TYPES.has(t.dtype);

/** dy of a single-output op (the reverse pass calls a rule only when some dy flows). */
function dy0(c: VjpContext): string {
  const g = c.dy[0];
  if (g === undefined) throw new Error(`autograd: ${c.node.opType} node '${c.node.name}' has no output gradient`);
  return g;
}

/** Runs `f` for each input that needs a gradient. */
function each(c: VjpContext, n: number, f: (i: number) => string | undefined): (string | undefined)[] {
  return Array.from({ length: n }, (_, i) => (c.needs(i) ? f(i) : undefined));
}

/** Rule of a unary op from its gradient expression. */
const unary = (f: (c: VjpContext, dy: string, x: string) => string): VjpRule => (c) => [f(c, dy0(c), inName(c, 0))];

/** Rule of a backward helper `(dy, saved) → dx` that is linear in dy: its transpose is itself. */
function linearInDy(op: 'GeluGrad' | 'SigmoidGrad' | 'TanhGrad' | 'ReluGrad' | 'ErfGrad', savedHasZeroGrad = false): VjpRule {
  return (c) => {
    if (c.needs(1) && !savedHasZeroGrad) c.unsupported('second-order gradients (through the saved forward value) are not implemented');
    return [c.needs(0) ? c.b.op(op, [dy0(c), inName(c, 1)], c.node.attrs) : undefined];
  };
}

/** Second derivatives of the fused backward helpers. */
const secondOrder = unsupported('second-order gradients are not implemented');

/** Cast of a bool mask to the float dtype of `like`. */
function maskOf(b: GraphBuilder, cond: string, like: string): string {
  return b.castFloat(cond, b.type(like).dtype);
}

// ---------------------------------------------------------------------------------------------
// Element-wise

const Add: VjpRule = (c) => each(c, 2, (i) => c.b.sumTo(dy0(c), inDims(c, i)));

const Sub: VjpRule = (c) => [
  c.needs(0) ? c.b.sumTo(dy0(c), inDims(c, 0)) : undefined,
  c.needs(1) ? c.b.neg(c.b.sumTo(dy0(c), inDims(c, 1))) : undefined,
];

const Mul: VjpRule = (c) => each(c, 2, (i) => c.b.sumTo(c.b.mul(dy0(c), inName(c, 1 - i)), inDims(c, i)));

const Div: VjpRule = (c) => {
  const q = c.b.op('Div', [dy0(c), inName(c, 1)]);
  return [
    c.needs(0) ? c.b.sumTo(q, inDims(c, 0)) : undefined,
    // d(a/b)/db = -(a/b)/b: reuses the output instead of forming a/b².
    c.needs(1) ? c.b.neg(c.b.sumTo(c.b.mul(q, c.output(0)), inDims(c, 1))) : undefined,
  ];
};

const Pow: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const base = inName(c, 0);
  const dt = dtypeOf(c, 0);
  const expInfo = c.inputs[1]!;
  let dBase: string | undefined;
  if (c.needs(0)) {
    // A constant exponent specialises the rule; a trainable one must stay a runtime value.
    const k = !c.needs(1) && expInfo.value && expInfo.value.data.length === 1 ? expInfo.value.data[0]! : undefined;
    if (k === 0) dBase = undefined; // x^0 is constant
    else if (k === 1) dBase = b.sumTo(dy, inDims(c, 0));
    else if (k === 2) dBase = b.sumTo(b.scale(b.mul(dy, base), 2), inDims(c, 0));
    else if (k !== undefined) dBase = b.sumTo(b.scale(b.mul(dy, b.op('Pow', [base, b.scalar(k - 1, dt)])), k), inDims(c, 0));
    else {
      const e = b.castFloat(inName(c, 1), dt);
      const em1 = b.op('Sub', [e, b.scalar(1, dt)]);
      dBase = b.sumTo(b.mul(b.mul(dy, b.op('Pow', [base, em1])), e), inDims(c, 0));
    }
  }
  // NOTE: d/de a^e = a^e·ln a is NaN for a < 0 (as in PyTorch) and 0·(−∞) = NaN where a = 0.
  const dExp = c.needs(1) ? b.sumTo(b.mul(b.mul(dy, c.output(0)), b.op('Log', [base])), inDims(c, 1)) : undefined;
  return [dBase, dExp];
};

/** Min/Max of n inputs: the gradient goes to the inputs equal to the output. */
const MinMax: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const n = c.node.inputs.length;
  if (n === 1) return [dy];
  const y = c.output(0);
  // NOTE: ties share the gradient equally (PyTorch's rule for maximum/minimum), so it sums to dy.
  const masks = c.node.inputs.map((x) => maskOf(b, b.op('Equal', [x, y]), dy));
  const share = b.op('Div', [dy, b.op('Sum', masks)]);
  return each(c, n, (i) => b.sumTo(b.mul(share, masks[i]!), inDims(c, i)));
};

const SumRule: VjpRule = (c) => each(c, c.node.inputs.length, (i) => c.b.sumTo(dy0(c), inDims(c, i)));

const MeanRule: VjpRule = (c) => {
  const n = c.node.inputs.length;
  const s = c.b.scale(dy0(c), 1 / n);
  return each(c, n, (i) => c.b.sumTo(s, inDims(c, i)));
};

const Where: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const zero = b.scalar(0, b.type(dy).dtype);
  const cond = inName(c, 0);
  return [
    undefined,
    c.needs(1) ? b.sumTo(b.op('Where', [cond, dy, zero]), inDims(c, 1)) : undefined,
    c.needs(2) ? b.sumTo(b.op('Where', [cond, zero, dy]), inDims(c, 2)) : undefined,
  ];
};

// Float32's largest finite value: Clip's default bounds before opset 11.

const Clip: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const x = inName(c, 0);
  const dt = dtypeOf(c, 0);
  const zero = b.scalar(0, dt);
  let lo: string | undefined;
  let hi: string | undefined;
  if (c.ctx.opset < 11) {
    lo = b.scalar(attrFloat(c.node.attrs, 'min', -F32_MAX), dt);
    hi = b.scalar(attrFloat(c.node.attrs, 'max', F32_MAX), dt);
  } else {
    lo = c.node.inputs[1] || undefined;
    hi = c.node.inputs[2] || undefined;
  }
  // The gradient passes where lo ≤ x ≤ hi (PyTorch's clamp: the bound itself passes to x).
  let pass: string | undefined;
  if (lo) pass = b.op('GreaterOrEqual', [x, lo]);
  if (hi) {
    const le = b.op('LessOrEqual', [x, hi]);
    pass = pass ? b.op('And', [pass, le]) : le;
  }
  return [
    c.needs(0) ? (pass ? b.op('Where', [pass, dy, zero]) : dy) : undefined,
    c.needs(1) && lo ? b.sumTo(b.op('Where', [b.op('Less', [x, lo]), dy, zero]), inDims(c, 1)) : undefined,
    c.needs(2) && hi ? b.sumTo(b.op('Where', [b.op('Greater', [x, hi]), dy, zero]), inDims(c, 2)) : undefined,
  ];
};

const Cast: VjpRule = (c) => {
  const to = c.b.type(c.node.outputs[0]!);
  // Only float → float casts carry a gradient; a cast to int or bool is piecewise constant.
  if (!isFloat(to) || !isFloat(c.inputs[0])) return [];
  return [c.b.castFloat(dy0(c), dtypeOf(c, 0))];
};

/** sign(x) as {-1, 0, 1} of x's dtype. */
function sign(b: GraphBuilder, x: string): string {
  const zero = b.scalar(0, b.type(x).dtype);
  return b.op('Sub', [maskOf(b, b.op('Greater', [x, zero]), x), maskOf(b, b.op('Less', [x, zero]), x)]);
}

// ---------------------------------------------------------------------------------------------
// Matrix products

interface MatmulParts {
  readonly tA: boolean;
  readonly tB: boolean;
  readonly alpha: number;
  /** Gemm's C (input 2, scaled by beta) or FusedMatMul's bias (input 2, N elements). */
  readonly c?: { readonly beta: number; readonly bias: boolean };
  /** FusedMatMul's IA3 scales: input 3 (K elements), input 4 (N elements). */
  readonly inScale?: boolean;
  readonly outScale?: boolean;
}

/**
 * The VJP of Y = (alpha·(opA(A) ⊙ s_in)·opB(B) + beta·C) ⊙ s_out, batched with numpy broadcasting.
 * With W = opB(B) and P = opA(A) ⊙ s_in: G = dY ⊙ s_out, dP = alpha·G·Wᵀ, dW = alpha·Pᵀ·G.
 * Every product is a FusedMatMul whose transA/transB read the transposes in place (no copy), and
 * a shared 2-D weight's gradient folds the batch into the rows (one GEMM, no batched partials).
 * NOTE: the ONNX pipeline never differentiates a FusedMatMul with scales (fusion runs after the
 * backward pass, so IA3Scale's own rule keeps Z as a saved activation instead of recomputing it);
 * the scale branches serve graphs built in code, and tests reach them through Model.
 */
function matmulVjp(c: VjpContext, p: MatmulParts): (string | undefined)[] {
  const { b } = c;
  const dy = dy0(c);
  const A = inName(c, 0);
  const B = inName(c, 1);
  const aDims = inDims(c, 0);
  const bDims = inDims(c, 1);
  const geo = matmulGeometry(aDims, bDims, p.tA, p.tB, c.ctx);
  const { batch, M, K, N } = geo;
  const alpha = { alpha: p.alpha };
  const sIn = p.inScale && c.node.inputs[3] ? inName(c, 3) : undefined;
  const sOut = p.outScale && c.node.inputs[4] ? inName(c, 4) : undefined;
  const cIn = p.c && c.node.inputs[2] ? inName(c, 2) : undefined;
  // 1-D operands are promoted to matrices (views); so is dY.
  const A2 = b.reshape(A, geo.aDims);
  const B2 = b.reshape(B, geo.bDims);
  const dY = b.reshape(dy, [...batch, M, N]);

  // The output scale: G = dY ⊙ s_out; its own gradient Σ_rows dY ⊙ Z needs the pre-scale output Z.
  let G = dY;
  let dOut: string | undefined;
  if (sOut) {
    if (c.needs(4)) {
      // NOTE: Z is recomputed rather than taken as Y / s_out, which a zero scale would break.
      const z = b.reshape(b.op('FusedMatMul', [A, B, cIn, sIn], { ...alpha, transA: +p.tA, transB: +p.tB }), [...batch, M, N]);
      [G, dOut] = b.emit('IA3ScaleGrad', [dY, z, sOut], { input_grad: 1 }) as [string, string];
    } else {
      G = b.op('IA3Scale', [dY, sOut]);
    }
  }

  let dC: string | undefined;
  if (cIn && c.needs(2)) {
    if (p.c!.bias) dC = b.reshape(b.sumTo(G, [N]), inDims(c, 2));
    else dC = b.scale(b.sumTo(G, inDims(c, 2)), p.c!.beta);
  }

  // dA: dP = alpha·G·Wᵀ (W = opB(B), so Wᵀ reads B with the opposite transB).
  let dA: string | undefined;
  let dIn: string | undefined;
  const needIn = sIn !== undefined && c.needs(3);
  if (c.needs(0) || needIn) {
    let dA2: string | undefined;
    if (!p.tA) {
      const aFull = sameDims(geo.aDims, [...batch, M, K]);
      if (needIn && aFull) {
        // IA3ScaleGrad gives dA = dP ⊙ s_in and ds_in = Σ_rows dP ⊙ A in one fused pass.
        const dP = b.op('FusedMatMul', [G, B2], { ...alpha, transB: +!p.tB });
        const outs = b.emit('IA3ScaleGrad', [dP, A2, sIn!], { input_grad: c.needs(0) ? 1 : 0 });
        dA2 = c.needs(0) ? outs[0] : undefined;
        dIn = outs[1];
      } else if (needIn) {
        const dP = b.op('FusedMatMul', [G, B2], { ...alpha, transB: +!p.tB });
        dIn = b.reshape(b.sumTo(b.mul(dP, A2), [K]), inDims(c, 3));
        dA2 = c.needs(0) ? b.op('IA3Scale', [dP, sIn!]) : undefined;
      } else {
        // The input scale rides in the product's epilogue (it scales dP's K columns).
        dA2 = b.op('FusedMatMul', [G, B2, undefined, undefined, sIn], { ...alpha, transB: +!p.tB });
      }
    } else {
      // opA(A) = Aᵀ: work with dPᵀ = alpha·W·Gᵀ, [..., K, M], whose rows the input scale scales.
      const dPt = b.op('FusedMatMul', [B2, G], { ...alpha, transA: +p.tB, transB: 1 });
      const col = sIn ? b.reshape(sIn, [K, 1]) : undefined;
      if (needIn) dIn = b.reshape(b.sumTo(b.mul(dPt, A2), [K, 1]), inDims(c, 3));
      if (c.needs(0)) dA2 = col ? b.mul(dPt, col) : dPt;
    }
    if (dA2 !== undefined) dA = b.reshape(b.sumTo(dA2, geo.aDims), aDims);
  }

  // dB: dW = alpha·Pᵀ·G, or for transB, dB = dWᵀ = alpha·Gᵀ·P.
  let dB: string | undefined;
  if (c.needs(1)) {
    let a = A2;
    let g = G;
    // A weight shared across the batch: fold batch into M so one GEMM sums over every row.
    if (geo.bDims.length === 2 && batch.length > 0 && !p.tA) {
      const rows = sizeOf(batch) * M;
      a = b.reshape(A2, [rows, K]);
      g = b.reshape(G, [rows, N]);
    }
    let dB2: string;
    if (!p.tB) {
      const dW = b.op('FusedMatMul', [a, g], { ...alpha, transA: +!p.tA });
      dB2 = sIn ? b.mul(dW, b.reshape(sIn, [K, 1])) : dW;
    } else {
      // s_in scales the K columns of Gᵀ·opA(A): the product's output scale.
      dB2 = b.op('FusedMatMul', [g, a, undefined, undefined, sIn], { ...alpha, transA: 1, transB: +p.tA });
    }
    dB = b.reshape(b.sumTo(dB2, geo.bDims), bDims);
  }
  return [dA, dB, dC, dIn, dOut];
}

const sameDims = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

const flag = (attrs: Attrs, name: string): boolean => attrInt(attrs, name, 0) !== 0;

// ---------------------------------------------------------------------------------------------
// Softmax and normalisation

/**
 * The view of an ONNX softmax the backward works in: opset ≥ 13 reduces one axis; older opsets
 * coerce the input to 2-D at `axis` (default 1), so dy and y are viewed as [outer, inner].
 */
function softmaxAxisView(c: VjpContext): { axis: number; dims2?: number[] } {
  const dims = inDims(c, 0);
  const r = dims.length;
  if (c.ctx.opset >= 13) {
    const a = attrInt(c.node.attrs, 'axis', -1);
    return { axis: normAxis(a, r, c.ctx) };
  }
  const a0 = attrInt(c.node.attrs, 'axis', 1);
  const a = wrapIndex(a0, r); // [-r, r]: opset < 13 coerces to 2-D at any split point
  return { axis: 1, dims2: [sizeOf(dims.slice(0, a)), sizeOf(dims.slice(a))] };
}

const Softmax: VjpRule = (c) => {
  const { b } = c;
  const v = softmaxAxisView(c);
  const dims = inDims(c, 0);
  const dy = v.dims2 ? b.reshape(dy0(c), v.dims2) : dy0(c);
  const y = v.dims2 ? b.reshape(c.output(0), v.dims2) : c.output(0);
  return [b.reshape(b.op('SoftmaxGrad', [dy, y], { axis: v.axis }), dims)];
};

const LogSoftmax: VjpRule = (c) => {
  const { b } = c;
  const v = softmaxAxisView(c);
  const dims = inDims(c, 0);
  const dy = v.dims2 ? b.reshape(dy0(c), v.dims2) : dy0(c);
  const y = v.dims2 ? b.reshape(c.output(0), v.dims2) : c.output(0);
  // dx = dy − softmax(x)·Σ dy, with softmax(x) = exp(y).
  const s = b.op('ReduceSum', [dy, b.ints([v.axis])], { keepdims: 1 });
  return [b.reshape(b.op('Sub', [dy, b.mul(b.op('Exp', [y]), s)]), dims)];
};

const MaskedSoftmax: VjpRule = (c) => {
  const { b } = c;
  // NOTE: rows with no finite argument are all-zero outputs, so SoftmaxGrad gives them zero dx.
  const grad = (extra: readonly string[], attrs: Record<string, number>) => b.op('SoftmaxGrad', [dy0(c), c.output(0), ...extra], { axis: -1, ...attrs });
  // z = where(keep, x·scale / divisor, fill) + mask: x's gradient is zero where keep is false and
  // carries 1 / divisor (folded into SoftmaxGrad); the mask's is the plain one.
  const keep = c.node.inputs[2];
  const divisor = attrFloat(c.node.attrs, 'divisor', 1);
  const plain = keep || divisor !== 1 ? undefined : grad([], {});
  const dx = c.needs(0) ? b.scale(plain ?? grad(keep ? [keep] : [], { divisor }), attrFloat(c.node.attrs, 'scale', 1)) : undefined;
  return [dx, c.needs(1) ? b.sumTo(plain ?? grad([], {}), inDims(c, 1)) : undefined];
};

const LayerNormalization: VjpRule = (c) => {
  const { b } = c;
  if (c.dy[1] !== undefined || c.dy[2] !== undefined) c.unsupported('gradients flowing into the Mean or InvStdDev outputs');
  const weightGrad = c.needs(1) || c.needs(2);
  const axis = attrInt(c.node.attrs, 'axis', -1);
  const outs = b.emit(
    'LayerNormalizationGrad',
    [dy0(c), inName(c, 0), inName(c, 1), c.output(1), c.output(2)],
    { axis, weight_grad: weightGrad ? 1 : 0 },
  );
  return [
    c.needs(0) ? outs[0] : undefined,
    c.needs(1) ? outs[1] : undefined,
    c.needs(2) ? b.reshape(outs[2]!, inDims(c, 2)) : undefined,
  ];
};

const SimplifiedLayerNormalization: VjpRule = (c) => {
  const { b } = c;
  if (c.dy[1] !== undefined) c.unsupported('gradients flowing into the InvStdDev output');
  const weightGrad = c.needs(1);
  const axis = attrInt(c.node.attrs, 'axis', -1);
  const outs = b.emit('SimplifiedLayerNormalizationGrad', [dy0(c), inName(c, 0), inName(c, 1), c.output(1)], {
    axis,
    weight_grad: weightGrad ? 1 : 0,
  });
  return [c.needs(0) ? outs[0] : undefined, c.needs(1) ? outs[1] : undefined];
};

// ---------------------------------------------------------------------------------------------
// Reductions

/** The reduction's output shape with keepdims = 1 (from the op's own shape rule). */
function keptDims(c: VjpContext): number[] {
  const op = c.node.opType as OpType;
  return [...OPS[op].shape(c.inputs, { ...c.node.attrs, keepdims: 1 }, c.ctx)[0]!.dims];
}

const ReduceSum: VjpRule = (c) => [c.b.expand(c.b.reshape(dy0(c), keptDims(c)), inDims(c, 0))];

const ReduceMean: VjpRule = (c) => {
  const kept = keptDims(c);
  const n = sizeOf(inDims(c, 0)) / Math.max(1, sizeOf(kept));
  // Scale the small reduced tensor before broadcasting it.
  return [c.b.expand(c.b.scale(c.b.reshape(dy0(c), kept), 1 / n), inDims(c, 0))];
};

const ReduceMinMax: VjpRule = (c) => {
  const { b } = c;
  const kept = keptDims(c);
  const x = inName(c, 0);
  const mask = maskOf(b, b.op('Equal', [x, b.reshape(c.output(0), kept)]), x);
  // NOTE: ties share the gradient equally (PyTorch's amax/amin rule).
  const count = b.sumTo(mask, kept);
  return [b.mul(mask, b.op('Div', [b.reshape(dy0(c), kept), count]))];
};

const ReduceSumSquare: VjpRule = (c) => {
  const { b } = c;
  return [b.mul(inName(c, 0), b.scale(b.reshape(dy0(c), keptDims(c)), 2))];
};

const CumSum: VjpRule = (c) => {
  // The adjoint of a prefix sum is the suffix sum: same axis and exclusivity, direction flipped.
  const reverse = attrInt(c.node.attrs, 'reverse', 0) !== 0;
  return [c.b.op('CumSum', [dy0(c), inName(c, 1)], { exclusive: attrInt(c.node.attrs, 'exclusive', 0), reverse: reverse ? 0 : 1 })];
};

// ---------------------------------------------------------------------------------------------
// Layout

const Transpose: VjpRule = (c) => {
  const r = inDims(c, 0).length;
  const perm = attrInts(c.node.attrs, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  const inv = new Array<number>(r);
  perm.forEach((p, i) => (inv[p] = i));
  return [c.b.op('Transpose', [dy0(c)], { perm: inv })];
};

const View: VjpRule = (c) => [c.b.reshape(dy0(c), inDims(c, 0))];

const Same: VjpRule = (c) => [dy0(c)];

const Expand: VjpRule = (c) => [c.b.sumTo(dy0(c), inDims(c, 0))];

const Tile: VjpRule = (c) => {
  const { b } = c;
  const x = inDims(c, 0);
  const out = b.type(c.node.outputs[0]!).dims;
  if (x.some((d) => d === 0)) return [b.zeros({ dtype: dtypeOf(c, 0), dims: x })];
  // Output axis i is [repeat r_i, element d_i]: view dy so, and sum out the repeat axes.
  const inter = x.flatMap((d, i) => [out[i]! / d, d]);
  const keep = x.flatMap((d) => [1, d]);
  return [b.reshape(b.sumTo(b.reshape(dy0(c), inter), keep), x)];
};

const Slice: VjpRule = (c) => [c.b.op('SliceGrad', [dy0(c)], sliceGradAttrs(c.inputs, c.node.attrs, c.ctx))];

const SliceGrad: VjpRule = (c) => {
  const { b } = c;
  const a = c.node.attrs;
  const shape = attrInts(a, 'shape')!;
  const axes = attrInts(a, 'axes')!;
  const steps = attrInts(a, 'steps')!;
  // Normal-form end -1 (through index 0, negative step) would mean "last" to Slice: use -(dim+1).
  const ends = attrInts(a, 'ends')!.map((e, i) => (e < 0 ? -shape[axes[i]!]! - 1 : e));
  return [b.op('Slice', [dy0(c), b.ints(attrInts(a, 'starts')!), b.ints(ends), b.ints(axes), b.ints(steps)])];
};

const Concat: VjpRule = (c) => {
  const { b } = c;
  const n = c.node.inputs.length;
  const r = inDims(c, 0).length;
  const a0 = attrInt(c.node.attrs, 'axis', 1);
  const axis = normAxis(a0, r, c.ctx);
  if (n === 1) return [dy0(c)];
  let offset = 0;
  return Array.from({ length: n }, (_, i) => {
    const len = inDims(c, i)[axis]!;
    const start = offset;
    offset += len;
    return c.needs(i) ? b.op('Slice', [dy0(c), b.ints([start]), b.ints([start + len]), b.ints([axis])]) : undefined;
  });
};

const Split: VjpRule = (c) => {
  const { b } = c;
  const x = c.inputs[0]!;
  const r = x.dims.length;
  const a0 = attrInt(c.node.attrs, 'axis', 0);
  const axis = normAxis(a0, r, c.ctx);
  const outs = c.node.outputs.map((o) => b.type(o));
  const given = c.dy.flatMap((g, k) => (g === undefined ? [] : [k]));
  if (given.length === 1) {
    // One piece carries a gradient: write it into zeros in one pass.
    const k = given[0]!;
    const start = outs.slice(0, k).reduce((s, t) => s + t.dims[axis]!, 0);
    const len = outs[k]!.dims[axis]!;
    return [b.op('SliceGrad', [c.dy[k]!], { shape: [...x.dims], starts: [start], ends: [start + len], axes: [axis], steps: [1] })];
  }
  return [b.op('Concat', outs.map((t, k) => c.dy[k] ?? b.zeros(t)), { axis })];
};

/** Wraps constant Gather indices against the axis, as Gather does. */
function gatherIndices(c: VjpContext, axisDim: number): number[] | undefined {
  const idx = c.inputs[1]!.value;
  return idx ? Array.from(idx.data, (v) => wrapIndex(v, axisDim)) : undefined;
}

const Gather: VjpRule = (c) => {
  const { b } = c;
  const x = inDims(c, 0);
  const r = x.length;
  const a0 = attrInt(c.node.attrs, 'axis', 0);
  const axis = normAxis(a0, r, c.ctx);
  const idx = gatherIndices(c, x[axis]!);
  if (!idx) return c.unsupported('Gather with runtime indices (the data gradient needs a scatter-add op)');
  const m = idx.length;
  if (m === 0) return [b.zeros({ dtype: dtypeOf(c, 0), dims: x })];
  const step = m === 1 ? 1 : idx[1]! - idx[0]!;
  if (step === 0 || idx.some((v, i) => v !== idx[0]! + i * step)) {
    c.unsupported('Gather with indices that are not an arithmetic progression (the data gradient needs a scatter-add op)');
  }
  // Constant indices in arithmetic progression read a strided slice: the gradient is its SliceGrad.
  const last = idx[m - 1]!;
  const end = step > 0 ? Math.min(last + step, x[axis]!) : Math.max(last + step, -1);
  const dy = b.reshape(dy0(c), [...x.slice(0, axis), m, ...x.slice(axis + 1)]);
  return [b.op('SliceGrad', [dy], { shape: [...x], starts: [idx[0]!], ends: [end], axes: [axis], steps: [step] })];
};

/** Pad's per-axis (before, after) pads, by opset, and its mode. */
function padArgs(c: VjpContext): { mode: string; before: number[]; after: number[] } {
  const r = inDims(c, 0).length;
  const a = c.node.attrs;
  const mode = attrString(a, 'mode', 'constant');
  let pads: number[];
  let axes = Array.from({ length: r }, (_, i) => i);
  if (c.ctx.opset < 11) {
    pads = [...(attrInts(a, c.ctx.opset < 2 ? 'paddings' : 'pads') ?? [])];
  } else {
    pads = Array.from(c.inputs[1]!.value!.data);
    const ax = c.inputs[3]?.value;
    if (ax) axes = Array.from(ax.data, (v) => normAxis(v, r, c.ctx));
  }
  const before = new Array<number>(r).fill(0);
  const after = new Array<number>(r).fill(0);
  axes.forEach((ax, i) => {
    before[ax] = pads[i]!;
    after[ax] = pads[i + axes.length]!;
  });
  return { mode, before, after };
}

const Pad: VjpRule = (c) => {
  const { mode, before, after } = padArgs(c);
  if (mode !== 'constant') c.unsupported(`Pad in '${mode}' mode (its gradient folds the border back in)`);
  if (c.needs(2)) c.unsupported('the gradient of the constant pad value');
  // Constant padding is a zero-extended crop in each direction: its adjoint pads by the negation.
  const b = c.b;
  return [b.op('Pad', [dy0(c), b.ints([...before, ...after].map((p) => -p))], { mode: 'constant' })];
};

const Trilu: VjpRule = (c) => [c.b.op('Trilu', [dy0(c), c.node.inputs[1] || undefined], c.node.attrs)];

// ---------------------------------------------------------------------------------------------
// IA3, rotary, loss

const IA3Scale: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const n = c.node.inputs.length;
  const ls = c.node.inputs.slice(1);
  const needL = ls.some((_, k) => c.needs(k + 1));
  if (!needL) return [b.op('IA3Scale', [dy, ...ls])];
  // input_grad = 0 drops the dx stream where the scaled value needs no gradient (the first layer).
  const outs = b.emit('IA3ScaleGrad', [dy, inName(c, 0), ...ls], { input_grad: c.needs(0) ? 1 : 0 });
  return Array.from({ length: n }, (_, i) => (c.needs(i) ? outs[i] : undefined));
};

const RotaryEmbedding: VjpRule = (c) => {
  const { b } = c;
  const dy = dy0(c);
  const x = inName(c, 0);
  const dt = dtypeOf(c, 0);
  const attrs = { interleaved: attrInt(c.node.attrs, 'interleaved', 0) };
  return [
    c.needs(0) ? b.op('RotaryEmbeddingGrad', [dy, inName(c, 1), inName(c, 2)], attrs) : undefined,
    c.needs(1) ? b.sumTo(b.mul(dy, x), inDims(c, 1)) : undefined,
    // R(x) is the op itself with cos = 0, sin = 1.
    c.needs(2)
      ? b.sumTo(b.mul(dy, b.op('RotaryEmbedding', [x, b.constant(tensor(dt, [1], [0])), b.constant(tensor(dt, [1], [1]))], attrs)), inDims(c, 2))
      : undefined,
  ];
};

const RotaryEmbeddingGrad: VjpRule = (c) => {
  if (c.needs(1) || c.needs(2)) c.unsupported('second-order gradients through cos and sin');
  return [c.b.op('RotaryEmbedding', [dy0(c), inName(c, 1), inName(c, 2)], c.node.attrs)];
};

/**
 * The fused LM-head loss computes ∂loss/∂hidden itself (its output 2, computed in the same pass as
 * the loss once the reverse pass asks for it); the rule scales it by dloss. Its weight is frozen.
 */
const LMHeadCrossEntropy: VjpRule = (c) => {
  for (let i = 2; i < c.node.inputs.length; i++) {
    if (c.needs(i)) c.unsupported('the LM head weight gets no gradient here (withLoss leaves a trainable head to the unfused loss)');
  }
  if (c.dy[2] !== undefined) c.unsupported('second-order gradients (through dhidden) are not implemented');
  if (!c.needs(0) || c.dy[0] === undefined) return [];
  const dh = c.output(2);
  const g = c.dy[0];
  const seed = c.b.constants.get(g);
  return [seed && seed.data.length === 1 && seed.data[0] === 1 ? dh : c.b.mul(dh, g)];
};

const CrossEntropyLoss: VjpRule = (c) => {
  // The count output is piecewise constant: only the loss carries a gradient.
  const g = c.dy[0];
  if (g === undefined) return [];
  return [c.b.op('CrossEntropyLossGrad', [g, inName(c, 0), inName(c, 1)], c.node.attrs)];
};

// ---------------------------------------------------------------------------------------------
// The table

export const VJP: { readonly [K in OpType]: VjpEntry } = {
  // Unary
  Exp: unary((c, dy) => c.b.mul(dy, c.output(0))),
  Log: unary((c, dy, x) => c.b.op('Div', [dy, x])),
  // NOTE: infinite at x = 0, like the derivative itself.
  Sqrt: unary((c, dy) => c.b.scale(c.b.op('Div', [dy, c.output(0)]), 0.5)),
  Neg: unary((c, dy) => c.b.neg(dy)),
  // NOTE: the subgradient at 0 is 0 (PyTorch's sign convention).
  Abs: unary((c, dy, x) => c.b.mul(dy, sign(c.b, x))),
  Erf: unary((c, dy, x) => c.b.op('ErfGrad', [dy, x])),
  Reciprocal: unary((c, dy) => {
    const y = c.output(0);
    return c.b.neg(c.b.mul(dy, c.b.mul(y, y)));
  }),
  Tanh: unary((c, dy) => c.b.op('TanhGrad', [dy, c.output(0)])),
  Sigmoid: unary((c, dy) => c.b.op('SigmoidGrad', [dy, c.output(0)])),
  // NOTE: the subgradient at 0 is 0, as in PyTorch.
  Relu: unary((c, dy, x) => c.b.op('ReluGrad', [dy, x])),
  Sin: unary((c, dy, x) => c.b.mul(dy, c.b.op('Cos', [x]))),
  Cos: unary((c, dy, x) => c.b.neg(c.b.mul(dy, c.b.op('Sin', [x])))),
  Floor: null,
  Ceil: null,
  Not: null,
  Softplus: unary((c, dy, x) => c.b.mul(dy, c.b.op('Sigmoid', [x]))),
  Gelu: unary((c, dy, x) => c.b.op('GeluGrad', [dy, x], { approximate: attrString(c.node.attrs, 'approximate', 'none') })),
  // Binary
  Add,
  Sub,
  Mul,
  Div,
  Equal: null,
  Less: null,
  Greater: null,
  LessOrEqual: null,
  GreaterOrEqual: null,
  And: null,
  Or: null,
  Xor: null,
  Pow,
  Min: MinMax,
  Max: MinMax,
  Sum: SumRule,
  Mean: MeanRule,
  Where,
  Clip,
  Cast,
  // Backward helpers: linear in dy, so their dy-gradient is the op itself.
  GeluGrad: linearInDy('GeluGrad'),
  SigmoidGrad: linearInDy('SigmoidGrad'),
  TanhGrad: linearInDy('TanhGrad'),
  ReluGrad: linearInDy('ReluGrad', true),
  ErfGrad: linearInDy('ErfGrad'),
  // IA3
  IA3Scale,
  IA3ScaleGrad: secondOrder,
  // Layout
  Transpose,
  Gather,
  GatherElements: unsupported('GatherElements (the data gradient needs a scatter-add op)'),
  GatherBlocks: unsupported('GatherBlocks (the legaliser emits it after the reverse pass; a trained table is never split)'),
  Expand,
  Tile,
  Pad,
  Trilu,
  Slice,
  SliceGrad,
  Concat,
  Split,
  Reshape: View,
  Squeeze: View,
  Unsqueeze: View,
  Flatten: View,
  Identity: Same,
  Dropout: Same,
  Shape: null,
  Size: null,
  Range: null,
  ConstantOfShape: null,
  Constant: null,
  NonZero: null,
  // Loss
  CrossEntropyLoss,
  CrossEntropyLossGrad: secondOrder,
  LMHeadCrossEntropy,
  // Matrix products
  MatMul: (c) => matmulVjp(c, { tA: false, tB: false, alpha: 1 }),
  Gemm: (c) =>
    matmulVjp(c, {
      tA: flag(c.node.attrs, 'transA'),
      tB: flag(c.node.attrs, 'transB'),
      alpha: attrFloat(c.node.attrs, 'alpha', 1),
      c: { beta: attrFloat(c.node.attrs, 'beta', 1), bias: false },
    }),
  FusedMatMul: (c) =>
    matmulVjp(c, {
      tA: flag(c.node.attrs, 'transA'),
      tB: flag(c.node.attrs, 'transB'),
      alpha: attrFloat(c.node.attrs, 'alpha', 1),
      c: { beta: 1, bias: true },
      inScale: true,
      outScale: true,
    }),
  // Softmax and normalisation
  Softmax,
  LogSoftmax,
  MaskedSoftmax,
  SoftmaxGrad: secondOrder,
  LayerNormalization,
  LayerNormalizationGrad: secondOrder,
  SimplifiedLayerNormalization,
  SimplifiedLayerNormalizationGrad: secondOrder,
  // Reductions
  ReduceSum,
  ReduceMean,
  ReduceMax: ReduceMinMax,
  ReduceMin: ReduceMinMax,
  ReduceProd: unsupported('ReduceProd (a zero-safe product of the other elements is not implemented)'),
  ReduceSumSquare,
  ArgMax: null,
  CumSum,
  SumToShape: (c) => [c.b.expand(dy0(c), inDims(c, 0))],
  // Resolved or expanded at specialisation: never in a graph the reverse pass sees.
  If: unsupported('If is resolved into one branch at specialisation'),
  Einsum: unsupported('Einsum is expanded into other ops at specialisation'),
  OneHot: null,
  IndexCheck: null,
  // The straight-through estimator of the dynamic activation quantiser (ops/quantize.ts), as QAT does.
  DynamicQuantizeDequantize: Same,
  // Written by autograd/half.ts after the reverse pass: never in a graph the reverse pass sees.
  PackHalf: unsupported('PackHalf is placed after the reverse pass'),
  UnpackHalf: unsupported('UnpackHalf is placed after the reverse pass'),
  // Rotary
  RotaryEmbedding,
  RotaryEmbeddingGrad,
  // Attention masks are piecewise constant in every input.
  AttentionMask: null,
};
