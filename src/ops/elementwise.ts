// Element-wise ops: ONNX unary, binary, variadic and ternary ops with NumPy broadcasting, plus the
// toolkit's backward helpers (GeluGrad, SigmoidGrad, TanhGrad, ReluGrad, ErfGrad; domain 'ia3').
//
// Every op lowers to one kernel family (shaders/elementwise.wgsl) selected by an `OP` override.
// The host side does what does not depend on the element: it checks dtypes, picks the opcode for
// the storage class (f32 for float dtypes, i32 for integer and bool), coalesces the broadcast into
// at most MAX_RANK dims with per-input strides, and takes the vec4 fast path when every input is
// either the output's size or a single element. Casts that change no stored word lower to an alias.
//
// Integer arithmetic runs in 32 bits on the GPU (int64 values must fit, as everywhere on the GPU);
// the reference wraps int32 results like C and keeps int64 results exact. 8-bit integer arithmetic
// is refused rather than silently computed in 32 bits; 8-bit values may still be cast and compared.
//
// Size: one op family over one kernel — some fifty ops as a table, with the dtype rules and float64
// references they share (erf, gelu and f16 rounding included, which JavaScript lacks); splitting
// the table would split the family.

import text from '../../shaders/elementwise.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import { grid, MAX_WORKGROUPS_PER_DIM, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { DTYPES, F32_MAX, INT_TYPES, dtypeFromOnnx, isFloat, type DataType } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes, broadcastStrides, forEachIndex } from '../ir/shape.js';
import { sizeOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { BufferRef, Inputs, Lowering, OpContext, OpDef } from './types.js';
import { attrFloat, attrInt, attrString, need } from './util.js';

/** Opcodes of shaders/elementwise.wgsl (its `const` table must agree; a unit test checks it). */
export const EW_OP = {
  EXP: 1, LOG: 2, SQRT: 3, NEG_F: 4, ABS_F: 5, ERF: 6, RECIP: 7, TANH: 8, SIGMOID: 9, RELU_F: 10,
  SIN: 11, COS: 12, FLOOR: 13, CEIL: 14, SOFTPLUS: 15, GELU: 16, GELU_TANH: 17, CLIP_P: 18,
  NEG_I: 20, ABS_I: 21, RELU_I: 22, NOT: 23,
  F_TO_I: 30, F_TO_I8: 31, F_TO_U8: 32, F_TO_BOOL: 33, F_TO_F16: 34,
  I_TO_F: 35, I_TO_F16: 36, I_TO_I8: 37, I_TO_U8: 38, I_TO_BOOL: 39,
  ADD_F: 40, SUB_F: 41, MUL_F: 42, DIV_F: 43, POW_FF: 44, POW_FI: 45, MIN_F: 46, MAX_F: 47, MEAN_F: 48,
  EQ_F: 49, LT_F: 50, GT_F: 51, LE_F: 52, GE_F: 53,
  ADD_I: 60, SUB_I: 61, MUL_I: 62, DIV_I: 63, POW_II: 64, POW_IF: 65, MIN_I: 66, MAX_I: 67,
  EQ_I: 68, LT_I: 69, GT_I: 70, LE_I: 71, GE_I: 72, AND: 73, OR: 74, XOR: 75,
  WHERE: 80, CLIP_F: 81, CLIP_I: 82,
  GELU_GRAD: 90, GELU_TANH_GRAD: 91, SIGMOID_GRAD: 92, TANH_GRAD: 93, RELU_GRAD: 94, ERF_GRAD: 95,
} as const;

export type EwOp = keyof typeof EW_OP;

/** Most dims a broadcast may keep after coalescing (the kernel's uniform arrays hold 8). */
export const MAX_RANK = 8;

export const elementwiseShader = new Shader('elementwise.wgsl', text, {
  prelude: ['grid', 'gelu'],
  structs: {
    Params: [
      ['n', 'u32'], // output elements
      ['rank', 'u32'], // coalesced rank (strided path)
      ['scalars', 'u32'], // FAST path: bit k set when input k is a single element
      ['p0', 'f32'], // op parameters (Clip bounds from attributes, Mean's input count)
      ['p1', 'f32'],
      ['shape', { array: 'u32', length: MAX_RANK }], // coalesced output dims, innermost first
      ['sa', { array: 'u32', length: MAX_RANK }], // element strides of a, b, c along those dims
      ['sb', { array: 'u32', length: MAX_RANK }],
      ['sc', { array: 'u32', length: MAX_RANK }],
    ],
  },
});

export const elementwiseKernel = elementwiseShader.kernel({ name: 'elementwise', inputs: ['a', 'b', 'c'], outputs: ['y'], uniforms: 'Params' });

/** Launch tuning, for tests and benchmarks: workgroup size and the per-dimension grid bound. */
export interface LaunchOptions {
  workgroupSize?: number;
  maxWorkgroupsPerDim?: number;
}

/** How an element-wise dispatch walks its inputs. */
export interface BroadcastPlan {
  /** Every input is the output's size or a single element: plain vec4 loads. */
  fast: boolean;
  /** Bit k: input k is a single element (fast path splat). */
  scalars: number;
  /** Coalesced output dims, innermost first (strided path). */
  shape: number[];
  /** Per input, its element strides along `shape` (0 along broadcast dims). */
  strides: number[][];
}

/** Strides to read `dims` broadcast to `outDims`; a single element reads offset 0 everywhere. */
function readStrides(dims: readonly number[], outDims: readonly number[]): number[] {
  if (sizeOf(dims) === 1) return new Array<number>(outDims.length).fill(0);
  return broadcastStrides(dims, outDims);
}

/**
 * Plans the broadcast of `inputs` to `outDims`: drops dims of 1 and merges neighbouring dims that
 * every input walks contiguously (or broadcasts along both), so `[B,T,H] + [H]` becomes 2 dims.
 */
export function planBroadcast(inputs: readonly (readonly number[])[], outDims: readonly number[]): BroadcastPlan {
  const n = sizeOf(outDims);
  let scalars = 0;
  inputs.forEach((d, k) => {
    if (sizeOf(d) === 1) scalars |= 1 << k;
  });
  const fast = inputs.every((d) => sizeOf(d) === n || sizeOf(d) === 1);
  const full = inputs.map((d) => readStrides(d, outDims));
  const shape: number[] = [];
  const strides: number[][] = inputs.map(() => []);
  for (let d = outDims.length - 1; d >= 0; d--) {
    const size = outDims[d]!;
    if (size === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && full.every((s, k) => s[d] === strides[k]![last]! * shape[last]!)) {
      shape[last]! *= size;
    } else {
      shape.push(size);
      full.forEach((s, k) => strides[k]!.push(s[d]!));
    }
  }
  return { fast, scalars, shape, strides };
}

/**
 * One dispatch of the element-wise kernel computing `op` over 1 to 3 inputs broadcast to `outDims`.
 * `p0`, `p1` are the op's scalar parameters (Clip bounds, Mean's count).
 */
export function elementwiseProgram(
  op: EwOp,
  inputs: readonly (readonly number[])[],
  outDims: readonly number[],
  params: { p0?: number; p1?: number } = {},
  options: LaunchOptions = {},
  ctx?: OpContext,
): Program {
  const plan = planBroadcast(inputs, outDims);
  if (!plan.fast && plan.shape.length > MAX_RANK) {
    const detail = `broadcast needs ${plan.shape.length} dims after merging; the GPU kernel handles ${MAX_RANK}`;
    if (ctx) throw new UnsupportedOpError(ctx.opType, ctx.nodeName, detail, ctx.opset);
    throw new Error(detail);
  }
  const wg = options.workgroupSize ?? 256;
  const n = sizeOf(outDims);
  const pad = (k: number): number[] => plan.strides[k] ?? plan.strides[0] ?? [];
  return {
    kernel: elementwiseKernel,
    overrides: { OP: EW_OP[op], WG: wg, FAST: plan.fast ? 1 : 0 },
    uniforms: {
      n,
      // The fast path never reads the coalesced layout.
      rank: plan.fast ? 0 : plan.shape.length,
      scalars: plan.scalars,
      p0: params.p0 ?? 0,
      p1: params.p1 ?? 0,
      shape: plan.fast ? [] : plan.shape,
      sa: plan.fast ? [] : pad(0),
      sb: plan.fast ? [] : pad(1),
      sc: plan.fast ? [] : pad(2),
    },
    workgroups: grid(Math.ceil(n / 4 / wg), options.maxWorkgroupsPerDim ?? MAX_WORKGROUPS_PER_DIM),
  };
}

/** Binds input slots `ins` (unused kernel slots re-bind the first input) and output 0. */
function bindings(ins: readonly BufferRef[], out: BufferRef): BufferRef[] {
  return [ins[0]!, ins[1] ?? ins[0]!, ins[2] ?? ins[0]!, out];
}

/** A one-dispatch lowering of `op` over the given op inputs. */
function single(
  op: EwOp,
  ins: readonly number[],
  inputs: Inputs<ValueInfo>,
  out: TensorType,
  ctx: OpContext,
  params: { p0?: number; p1?: number } = {},
): Lowering {
  const dims = ins.map((i) => need(inputs, i, ctx).dims);
  return {
    steps: [
      {
        program: elementwiseProgram(op, dims, out.dims, params, {}, ctx),
        bindings: bindings(
          ins.map((i) => ({ in: i })),
          { out: 0 },
        ),
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Dtype rules and the float64 reference.

type Accepts = 'float' | 'numeric' | 'bool' | 'comparable' | 'any';

function checkType(dtype: DataType, accepts: Accepts, ctx: OpContext, what = 'input'): void {
  const ok =
    accepts === 'any' ||
    (accepts === 'float' && isFloat(dtype)) ||
    (accepts === 'bool' && dtype === 'bool') ||
    (accepts === 'numeric' && (isFloat(dtype) || INT_TYPES.has(dtype))) ||
    (accepts === 'comparable' && dtype !== 'bool');
  if (!ok) {
    const want = { float: 'a float', numeric: 'a numeric', bool: 'a bool', comparable: 'a numeric', any: 'any' }[accepts];
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} has dtype ${dtype}; the op takes ${want} tensor`);
  }
  // 8-bit integer arithmetic would need wrapping at every step on the GPU's 32-bit integers.
  if (accepts === 'numeric' && INT_TYPES.has(dtype) && !DTYPES[dtype].arithmetic) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `${dtype} arithmetic is not supported (int32/int64 only)`, ctx.opset);
  }
}

function sameTypes(ts: readonly TensorType[], ctx: OpContext): DataType {
  const dtype = ts[0]!.dtype;
  for (const t of ts) {
    if (t.dtype !== dtype) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `inputs have different dtypes (${ts.map((x) => x.dtype).join(', ')})`);
    }
  }
  return dtype;
}

/** Wraps an integer result to its dtype as C does (int64 is kept exact). */
function fitInt(dtype: DataType, v: number): number {
  switch (dtype) {
    case 'int32':
      return v | 0;
    case 'int8':
      return ((((v + 128) % 256) + 256) % 256) - 128;
    case 'uint8':
      return ((v % 256) + 256) % 256;
    case 'bool':
      return v !== 0 ? 1 : 0;
    default:
      return v;
  }
}

/** Element-wise map over inputs broadcast to `outDims` (reference executor). */
function mapRef(ts: readonly RefTensor[], outDims: readonly number[], dtype: DataType, f: (v: number[]) => number): RefTensor {
  const out = tensor(dtype, outDims);
  const strides = ts.map((t) => readStrides(t.dims, outDims));
  const vals = new Array<number>(ts.length).fill(0);
  forEachIndex(outDims, (i, coords) => {
    for (let k = 0; k < ts.length; k++) {
      let off = 0;
      const s = strides[k]!;
      for (let d = 0; d < coords.length; d++) off += coords[d]! * s[d]!;
      vals[k] = ts[k]!.data[off]!;
    }
    out.data[i] = f(vals);
  });
  return out;
}

// Float64 special functions of the reference (JavaScript has no erf).

/** erf(x) to ~1e-15: the positive-term series below |x| = 2, the erfc continued fraction above. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 2) return Math.sign(x) * (1 - erfcLarge(ax));
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

/** erfc(x) for x >= 2 by Laplace's continued fraction (converged to ~1e-15 at depth 80). */
function erfcLarge(x: number): number {
  let k = x;
  for (let n = 80; n >= 1; n--) k = x + n / 2 / k;
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * k);
}

/** erfc without cancellation for large positive arguments. */
export function erfc(x: number): number {
  return x >= 2 ? erfcLarge(x) : 1 - erf(x);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/** Standard normal CDF. */
function phi(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** GELU, exact (`approximate = 'none'`) or tanh form. */
export function gelu(x: number, approximate: 'none' | 'tanh'): number {
  if (approximate === 'none') return x * phi(x);
  // 0.5 x (1 + tanh u) = x sigmoid(2u): the same value without cancellation for x << 0.
  return x * sigmoid(2 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
}

/** d gelu(x) / dx. */
export function geluDerivative(x: number, approximate: 'none' | 'tanh'): number {
  if (approximate === 'none') return phi(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
  // With s = sigmoid(2u) = (1 + tanh u) / 2: d/dx [x s] = s + x s (1 - s) 2u'.
  const s = sigmoid(2 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
  return s + x * s * (1 - s) * 2 * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
}

/** Rounds a float64 to the nearest binary16 value (ties to even), overflowing to ±Infinity. */
export function f16round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = Math.abs(x);
  if (ax >= 65520) return Math.sign(x) * Infinity;
  // Quantum of the binade (subnormals share the smallest one, 2^-24).
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e -= 1;
  else if (2 ** (e + 1) <= ax) e += 1;
  const q = 2 ** (Math.max(e, -14) - 10);
  const m = ax / q;
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  return Math.sign(x) * r * q;
}

/** x^y with C pow's sign rules (NaN for a negative base and a non-integral exponent). */
function powFloat(x: number, y: number): number {
  return Math.pow(x, y);
}

/** Integer power; a negative exponent truncates 1 / b^|e| toward zero (0^-n gives 0 here). */
function powInt(b: number, e: number): number {
  if (e < 0) {
    if (b === 1) return 1;
    if (b === -1) return Math.abs(e) % 2 === 1 ? -1 : 1;
    return 0;
  }
  let r = 1;
  for (let k = 0; k < e; k++) r *= b;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Unary ops.

interface UnarySpec {
  doc: string;
  accepts: Accepts;
  /** Float reference, and the opcode for f32 storage. */
  f?: (x: number, attrs: Attrs) => number;
  gpuF?: EwOp | ((attrs: Attrs, ctx: OpContext) => EwOp);
  /** Integer (or bool) reference, and the opcode for i32 storage. */
  i?: (x: number) => number;
  gpuI?: EwOp;
  sinceVersion?: number;
  /** Attribute validation shared by the shape rule, the reference and the lowering. */
  check?: (attrs: Attrs, ctx: OpContext) => void;
}

function unary(spec: UnarySpec): OpDef {
  const pick = (dtype: DataType, ctx: OpContext): 'f' | 'i' => {
    checkType(dtype, spec.accepts, ctx);
    const kind = isFloat(dtype) ? 'f' : 'i';
    if ((kind === 'f' && !spec.f) || (kind === 'i' && !spec.i)) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `input has dtype ${dtype}, which the op does not take`);
    }
    return kind;
  };
  return {
    domain: '',
    ...(spec.sinceVersion ? { sinceVersion: spec.sinceVersion } : {}),
    doc: spec.doc,
    shape(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      pick(x.dtype, ctx);
      spec.check?.(attrs, ctx);
      return [{ dtype: x.dtype, dims: [...x.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const kind = pick(x.dtype, ctx);
      spec.check?.(attrs, ctx);
      const out = tensor(x.dtype, x.dims);
      for (let k = 0; k < x.data.length; k++) {
        out.data[k] = kind === 'f' ? spec.f!(x.data[k]!, attrs) : fitInt(x.dtype, spec.i!(x.data[k]!));
      }
      return [out];
    },
    gpu(inputs, outputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const kind = pick(x.dtype, ctx);
      const g = kind === 'f' ? spec.gpuF! : spec.gpuI!;
      const op = typeof g === 'function' ? g(attrs, ctx) : g;
      return single(op, [0], inputs, outputs[0]!, ctx);
    },
  };
}

function geluMode(attrs: Attrs, ctx: OpContext): 'none' | 'tanh' {
  const a = attrString(attrs, 'approximate', 'none');
  if (a !== 'none' && a !== 'tanh') {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `approximate='${a}' (expected 'none' or 'tanh')`, ctx.opset);
  }
  return a;
}

const unaryOps = {
  Exp: unary({ sinceVersion: 6, doc: 'e^x', accepts: 'float', f: Math.exp, gpuF: 'EXP' }),
  Log: unary({ sinceVersion: 6, doc: 'natural logarithm', accepts: 'float', f: Math.log, gpuF: 'LOG' }),
  Sqrt: unary({ sinceVersion: 6, doc: 'square root', accepts: 'float', f: Math.sqrt, gpuF: 'SQRT' }),
  Neg: unary({ sinceVersion: 6, doc: '-x', accepts: 'numeric', f: (x) => -x, gpuF: 'NEG_F', i: (x) => -x, gpuI: 'NEG_I' }),
  Abs: unary({ sinceVersion: 6, doc: '|x|', accepts: 'numeric', f: Math.abs, gpuF: 'ABS_F', i: Math.abs, gpuI: 'ABS_I' }),
  Erf: unary({ sinceVersion: 9, doc: 'Gauss error function', accepts: 'float', f: erf, gpuF: 'ERF' }),
  Reciprocal: unary({ sinceVersion: 6, doc: '1/x', accepts: 'float', f: (x) => 1 / x, gpuF: 'RECIP' }),
  Tanh: unary({ sinceVersion: 6, doc: 'hyperbolic tangent', accepts: 'float', f: Math.tanh, gpuF: 'TANH' }),
  Sigmoid: unary({ sinceVersion: 6, doc: 'logistic sigmoid 1/(1+e^-x)', accepts: 'float', f: sigmoid, gpuF: 'SIGMOID' }),
  Relu: unary({ sinceVersion: 6, doc: 'max(x, 0)', accepts: 'numeric', f: (x) => Math.max(x, 0), gpuF: 'RELU_F', i: (x) => Math.max(x, 0), gpuI: 'RELU_I' }),
  Sin: unary({ sinceVersion: 7, doc: 'sine', accepts: 'float', f: Math.sin, gpuF: 'SIN' }),
  Cos: unary({ sinceVersion: 7, doc: 'cosine', accepts: 'float', f: Math.cos, gpuF: 'COS' }),
  Floor: unary({ sinceVersion: 6, doc: 'round down', accepts: 'float', f: Math.floor, gpuF: 'FLOOR' }),
  Ceil: unary({ sinceVersion: 6, doc: 'round up', accepts: 'float', f: Math.ceil, gpuF: 'CEIL' }),
  Not: unary({ doc: 'logical not', accepts: 'bool', i: (x) => (x === 0 ? 1 : 0), gpuI: 'NOT' }),
  Softplus: unary({
    doc: 'log(1 + e^x), computed without overflow',
    accepts: 'float',
    f: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
    gpuF: 'SOFTPLUS',
  }),
  Gelu: unary({
    doc: "GELU (opset 20), approximate = 'none' (erf) or 'tanh'",
    accepts: 'float',
    sinceVersion: 20,
    f: (x, attrs) => gelu(x, attrs.approximate === 'tanh' ? 'tanh' : 'none'),
    gpuF: (attrs, ctx) => (geluMode(attrs, ctx) === 'tanh' ? 'GELU_TANH' : 'GELU'),
    check: geluMode,
  }),
} satisfies Record<string, OpDef>;

// ---------------------------------------------------------------------------------------------
// Binary ops with broadcasting.

interface BinarySpec {
  doc: string;
  accepts: Accepts;
  /** Output dtype: the inputs' own, or bool. */
  out: 'same' | 'bool';
  f?: (a: number, b: number) => number;
  gpuF?: EwOp;
  i?: (a: number, b: number, ctx: OpContext) => number;
  gpuI?: EwOp;
  /** The first opset with NumPy broadcasting (7; 12 for the ops added then). */
  sinceVersion: number;
}

function binaryTypes(inputs: Inputs<TensorType>, spec: BinarySpec, ctx: OpContext) {
  const a = need(inputs, 0, ctx);
  const b = need(inputs, 1, ctx);
  const dtype = sameTypes([a, b], ctx);
  checkType(dtype, spec.accepts, ctx);
  const kind: 'f' | 'i' = isFloat(dtype) ? 'f' : 'i';
  if ((kind === 'f' && !spec.f) || (kind === 'i' && !spec.i)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `inputs have dtype ${dtype}, which the op does not take`);
  }
  const dims = broadcastShapes([a.dims, b.dims], ctx);
  return { a, b, dtype, kind, dims, outType: spec.out === 'bool' ? ('bool' as const) : dtype };
}

function binary(spec: BinarySpec): OpDef {
  return {
    domain: '',
    sinceVersion: spec.sinceVersion,
    doc: spec.doc,
    shape(inputs, _attrs, ctx) {
      const t = binaryTypes(inputs, spec, ctx);
      return [{ dtype: t.outType, dims: t.dims }];
    },
    reference(inputs, _attrs, ctx) {
      const t = binaryTypes(inputs, spec, ctx);
      const f = t.kind === 'f' ? spec.f! : (x: number, y: number) => spec.i!(x, y, ctx);
      const wrap = spec.out === 'same' && t.kind === 'i';
      const out = mapRef([t.a as RefTensor, t.b as RefTensor], t.dims, t.outType, ([x, y]) => {
        const v = f(x!, y!);
        return wrap ? fitInt(t.dtype, v) : v;
      });
      return [out];
    },
    gpu(inputs, outputs, _attrs, ctx) {
      const t = binaryTypes(inputs, spec, ctx);
      return single(t.kind === 'f' ? spec.gpuF! : spec.gpuI!, [0, 1], inputs, outputs[0]!, ctx);
    },
  };
}

const bool = (c: boolean): number => (c ? 1 : 0);

function intDiv(a: number, b: number, ctx: OpContext): number {
  if (b === 0) throw new RangeError(`${ctx.opType} node '${ctx.nodeName}': integer division by zero`);
  return Math.trunc(a / b);
}

/** Int32 products exactly (a float64 product of two int32 values can lose low bits). */
function intMul(a: number, b: number): number {
  const p = a * b;
  return Math.abs(p) < 2 ** 53 ? p : Math.imul(a, b);
}

const binaryOps = {
  Add: binary({ sinceVersion: 7, doc: 'a + b', accepts: 'numeric', out: 'same', f: (a, b) => a + b, gpuF: 'ADD_F', i: (a, b) => a + b, gpuI: 'ADD_I' }),
  Sub: binary({ sinceVersion: 7, doc: 'a - b', accepts: 'numeric', out: 'same', f: (a, b) => a - b, gpuF: 'SUB_F', i: (a, b) => a - b, gpuI: 'SUB_I' }),
  Mul: binary({ sinceVersion: 7, doc: 'a * b', accepts: 'numeric', out: 'same', f: (a, b) => a * b, gpuF: 'MUL_F', i: intMul, gpuI: 'MUL_I' }),
  Div: binary({ sinceVersion: 7,
    doc: 'a / b (integer division truncates toward zero, as C)',
    accepts: 'numeric',
    out: 'same',
    f: (a, b) => a / b,
    gpuF: 'DIV_F',
    i: intDiv,
    gpuI: 'DIV_I',
  }),
  Equal: binary({ sinceVersion: 7, doc: 'a == b → bool', accepts: 'any', out: 'bool', f: (a, b) => bool(a === b), gpuF: 'EQ_F', i: (a, b) => bool(a === b), gpuI: 'EQ_I' }),
  Less: binary({ sinceVersion: 7, doc: 'a < b → bool', accepts: 'comparable', out: 'bool', f: (a, b) => bool(a < b), gpuF: 'LT_F', i: (a, b) => bool(a < b), gpuI: 'LT_I' }),
  Greater: binary({ sinceVersion: 7, doc: 'a > b → bool', accepts: 'comparable', out: 'bool', f: (a, b) => bool(a > b), gpuF: 'GT_F', i: (a, b) => bool(a > b), gpuI: 'GT_I' }),
  LessOrEqual: binary({ sinceVersion: 12, doc: 'a <= b → bool', accepts: 'comparable', out: 'bool', f: (a, b) => bool(a <= b), gpuF: 'LE_F', i: (a, b) => bool(a <= b), gpuI: 'LE_I' }),
  GreaterOrEqual: binary({ sinceVersion: 12, doc: 'a >= b → bool', accepts: 'comparable', out: 'bool', f: (a, b) => bool(a >= b), gpuF: 'GE_F', i: (a, b) => bool(a >= b), gpuI: 'GE_I' }),
  And: binary({ sinceVersion: 7, doc: 'logical and', accepts: 'bool', out: 'bool', i: (a, b) => bool(a !== 0 && b !== 0), gpuI: 'AND' }),
  Or: binary({ sinceVersion: 7, doc: 'logical or', accepts: 'bool', out: 'bool', i: (a, b) => bool(a !== 0 || b !== 0), gpuI: 'OR' }),
  Xor: binary({ sinceVersion: 7, doc: 'logical xor', accepts: 'bool', out: 'bool', i: (a, b) => bool((a !== 0) !== (b !== 0)), gpuI: 'XOR' }),
} satisfies Record<string, OpDef>;

// Pow: base T and exponent T1 may differ (opset 12+); the output has the base's dtype.
function powTypes(inputs: Inputs<TensorType>, ctx: OpContext) {
  const a = need(inputs, 0, ctx);
  const b = need(inputs, 1, ctx);
  checkType(a.dtype, 'numeric', ctx, 'base');
  checkType(b.dtype, 'numeric', ctx, 'exponent');
  const fa = isFloat(a.dtype);
  const fb = isFloat(b.dtype);
  const op: EwOp = fa ? (fb ? 'POW_FF' : 'POW_FI') : fb ? 'POW_IF' : 'POW_II';
  return { a, b, op, dims: broadcastShapes([a.dims, b.dims], ctx) };
}

const Pow: OpDef = {
  domain: '',
  sinceVersion: 7, // NumPy broadcasting; 12 let the exponent's type differ, which this handles too
  doc: 'a^b; float base with a negative value needs an integral exponent; int base: exact integer power',
  shape(inputs, _attrs, ctx) {
    const t = powTypes(inputs, ctx);
    return [{ dtype: t.a.dtype, dims: t.dims }];
  },
  reference(inputs, _attrs, ctx) {
    const t = powTypes(inputs, ctx);
    const dtype = t.a.dtype;
    const f = (x: number, y: number): number => {
      switch (t.op) {
        case 'POW_II':
          return fitInt(dtype, powInt(x, y));
        case 'POW_IF':
          // Computed in floating point, then truncated like a C cast.
          return fitInt(dtype, Math.trunc(powFloat(x, y)));
        default:
          return powFloat(x, y);
      }
    };
    return [mapRef([t.a as RefTensor, t.b as RefTensor], t.dims, dtype, ([x, y]) => f(x!, y!))];
  },
  gpu(inputs, outputs, _attrs, ctx) {
    return single(powTypes(inputs, ctx).op, [0, 1], inputs, outputs[0]!, ctx);
  },
};

// ---------------------------------------------------------------------------------------------
// Variadic ops: Min, Max, Sum, Mean over 1..n broadcast inputs.

interface VariadicSpec {
  doc: string;
  accepts: Accepts;
  f: (a: number, b: number) => number;
  gpuF: EwOp;
  gpuI?: EwOp;
  /** Mean divides the folded sum by the input count. */
  mean?: boolean;
  /** Opset 6 dropped the legacy `consumed_inputs`; 8 added broadcasting, a superset of 6's equal shapes. */
  sinceVersion: number;
}

function variadicTypes(inputs: Inputs<TensorType>, spec: VariadicSpec, ctx: OpContext) {
  if (inputs.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'needs at least one input');
  const ts = inputs.map((_, i) => need(inputs, i, ctx));
  const dtype = sameTypes(ts, ctx);
  checkType(dtype, spec.accepts, ctx);
  if (!isFloat(dtype) && !spec.gpuI) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `inputs have dtype ${dtype}; the op takes float tensors`);
  }
  return { ts, dtype, dims: broadcastShapes(ts.map((t) => t.dims), ctx) };
}

function variadic(spec: VariadicSpec): OpDef {
  return {
    domain: '',
    sinceVersion: spec.sinceVersion,
    doc: spec.doc,
    shape(inputs, _attrs, ctx) {
      const t = variadicTypes(inputs, spec, ctx);
      return [{ dtype: t.dtype, dims: t.dims }];
    },
    reference(inputs, _attrs, ctx) {
      const t = variadicTypes(inputs, spec, ctx);
      const k = t.ts.length;
      const out = mapRef(t.ts as RefTensor[], t.dims, t.dtype, (v) => {
        let acc = v[0]!;
        for (let j = 1; j < k; j++) acc = spec.f(acc, v[j]!);
        if (spec.mean) acc /= k;
        return isFloat(t.dtype) ? acc : fitInt(t.dtype, acc);
      });
      return [out];
    },
    gpu(inputs, outputs, _attrs, ctx) {
      const t = variadicTypes(inputs, spec, ctx);
      const k = t.ts.length;
      if (k === 1) return { alias: 0 };
      const op = isFloat(t.dtype) ? spec.gpuF : spec.gpuI!;
      // A chain of k-1 binary dispatches ping-ponging between a scratch buffer and the output,
      // arranged so that the last one writes the output. Partial results have the broadcast
      // shape of the inputs folded so far.
      const steps: { program: Program; bindings: BufferRef[] }[] = [];
      let prev: BufferRef = { in: 0 };
      let prevDims: readonly number[] = t.ts[0]!.dims;
      for (let j = 1; j < k; j++) {
        const dims = broadcastShapes([prevDims, t.ts[j]!.dims], ctx);
        const target: BufferRef = (k - 1 - j) % 2 === 0 ? { out: 0 } : { tmp: 0 };
        const last = j === k - 1;
        const stepOp: EwOp = spec.mean && last ? 'MEAN_F' : op;
        steps.push({
          program: elementwiseProgram(stepOp, [prevDims, t.ts[j]!.dims], dims, { p0: k }, {}, ctx),
          bindings: bindings([prev, { in: j }], target),
        });
        prev = target;
        prevDims = dims;
      }
      return { temps: k > 2 ? [4 * Math.max(1, sizeOf(outputs[0]!.dims))] : [], steps };
    },
  };
}

const variadicOps = {
  Min: variadic({ sinceVersion: 6, doc: 'element-wise minimum of 1..n inputs', accepts: 'numeric', f: Math.min, gpuF: 'MIN_F', gpuI: 'MIN_I' }),
  Max: variadic({ sinceVersion: 6, doc: 'element-wise maximum of 1..n inputs', accepts: 'numeric', f: Math.max, gpuF: 'MAX_F', gpuI: 'MAX_I' }),
  Sum: variadic({ sinceVersion: 6, doc: 'element-wise sum of 1..n inputs', accepts: 'float', f: (a, b) => a + b, gpuF: 'ADD_F' }),
  Mean: variadic({ sinceVersion: 6, doc: 'element-wise mean of 1..n inputs', accepts: 'float', f: (a, b) => a + b, gpuF: 'ADD_F', mean: true }),
} satisfies Record<string, OpDef>;

// ---------------------------------------------------------------------------------------------
// Where, Clip, Cast.

function whereTypes(inputs: Inputs<TensorType>, ctx: OpContext) {
  const c = need(inputs, 0, ctx);
  const x = need(inputs, 1, ctx);
  const y = need(inputs, 2, ctx);
  if (c.dtype !== 'bool') throw new ShapeError(ctx.opType, ctx.nodeName, `condition has dtype ${c.dtype}, expected bool`);
  const dtype = sameTypes([x, y], ctx);
  return { c, x, y, dtype, dims: broadcastShapes([c.dims, x.dims, y.dims], ctx) };
}

const Where: OpDef = {
  domain: '',
  sinceVersion: 9,
  doc: 'condition ? x : y, all three broadcast',
  shape(inputs, _attrs, ctx) {
    const t = whereTypes(inputs, ctx);
    return [{ dtype: t.dtype, dims: t.dims }];
  },
  reference(inputs, _attrs, ctx) {
    const t = whereTypes(inputs, ctx);
    return [mapRef([t.c, t.x, t.y] as RefTensor[], t.dims, t.dtype, ([c, x, y]) => (c !== 0 ? x! : y!))];
  },
  gpu(inputs, outputs, _attrs, ctx) {
    whereTypes(inputs, ctx);
    return single('WHERE', [0, 1, 2], inputs, outputs[0]!, ctx);
  },
};

// float32's extreme finite values: Clip's bounds before opset 11.

function clipTypes(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext) {
  const x = need(inputs, 0, ctx);
  checkType(x.dtype, 'numeric', ctx);
  if (ctx.opset < 11) {
    if (!isFloat(x.dtype)) throw new ShapeError(ctx.opType, ctx.nodeName, `input has dtype ${x.dtype}; Clip before opset 11 takes floats`);
    if (inputs.length > 1) throw new ShapeError(ctx.opType, ctx.nodeName, 'min and max are attributes before opset 11, not inputs');
    return { x, lo: attrFloat(attrs, 'min', -F32_MAX), hi: attrFloat(attrs, 'max', F32_MAX), loIn: undefined, hiIn: undefined };
  }
  if (attrs.min !== undefined || attrs.max !== undefined) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `min and max are inputs from opset 11 (this node is opset ${ctx.opset})`);
  }
  const bound = (i: number, what: string): TensorType | undefined => {
    const b = inputs[i];
    if (b === undefined) return undefined;
    if (sizeOf(b.dims) !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, `${what} must be a single value, got shape [${b.dims.join(',')}]`);
    if (b.dtype !== x.dtype) throw new ShapeError(ctx.opType, ctx.nodeName, `${what} has dtype ${b.dtype}, input has ${x.dtype}`);
    return b;
  };
  return { x, lo: undefined, hi: undefined, loIn: bound(1, 'min'), hiIn: bound(2, 'max') };
}

const Clip: OpDef = {
  domain: '',
  sinceVersion: 6, // Clip-1's legacy consumed_inputs dropped; bounds are attributes until 11
  doc: 'min(max(x, min), max); bounds are attributes before opset 11, optional scalar inputs from 11',
  shape(inputs, attrs, ctx) {
    const { x } = clipTypes(inputs, attrs, ctx);
    return [{ dtype: x.dtype, dims: [...x.dims] }];
  },
  reference(inputs, attrs, ctx) {
    const t = clipTypes(inputs, attrs, ctx);
    const lo = t.loIn ? (t.loIn as RefTensor).data[0]! : (t.lo ?? -Infinity);
    const hi = t.hiIn ? (t.hiIn as RefTensor).data[0]! : (t.hi ?? Infinity);
    const x = t.x as RefTensor;
    const out = tensor(x.dtype, x.dims);
    for (let k = 0; k < x.data.length; k++) out.data[k] = Math.min(Math.max(x.data[k]!, lo), hi);
    return [out];
  },
  gpu(inputs, outputs, attrs, ctx) {
    const t = clipTypes(inputs, attrs, ctx);
    const out = outputs[0]!;
    if (t.lo !== undefined) return single('CLIP_P', [0], inputs, out, ctx, { p0: t.lo, p1: t.hi });
    const f = isFloat(t.x.dtype);
    if (t.loIn && t.hiIn) return single(f ? 'CLIP_F' : 'CLIP_I', [0, 1, 2], inputs, out, ctx);
    if (t.loIn) return single(f ? 'MAX_F' : 'MAX_I', [0, 1], inputs, out, ctx);
    if (t.hiIn) return single(f ? 'MIN_F' : 'MIN_I', [0, 2], inputs, out, ctx);
    return { alias: 0 };
  },
};

function castTarget(attrs: Attrs, ctx: OpContext): DataType {
  const code = attrInt(attrs, 'to', -1);
  if (code === -1) throw new ShapeError(ctx.opType, ctx.nodeName, "missing attribute 'to'");
  const to = dtypeFromOnnx(code);
  if (!to) throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `cast to ONNX data type ${code} is not supported`, ctx.opset);
  return to;
}

/** ONNX Cast of one value: float→int truncates toward zero (saturating at int32), ints wrap. */
export function castValue(v: number, from: DataType, to: DataType): number {
  switch (to) {
    case 'float32':
      return Math.fround(v);
    case 'float16':
      return f16round(v);
    case 'float64':
      return v;
    case 'bool':
      return v !== 0 ? 1 : 0;
    default: {
      if (!isFloat(from)) return fitInt(to, v);
      if (Number.isNaN(v)) return 0;
      const t = Math.trunc(v) + 0; // + 0 turns -0 into the integer 0
      if (to === 'int64') return t;
      // Out-of-range floats saturate at the int32 range (as WGSL's conversion does) before any
      // 8-bit wrap; in-range values are exact.
      return fitInt(to, Math.min(Math.max(t, -0x80000000), 0x7fffffff));
    }
  }
}

/** The kernel op of a Cast between storage classes, or undefined when no stored word changes. */
function castOp(from: DataType, to: DataType): EwOp | undefined {
  if (isFloat(from)) {
    switch (to) {
      case 'float32':
      case 'float64':
        return undefined;
      case 'float16':
        return from === 'float16' ? undefined : 'F_TO_F16';
      case 'int8':
        return 'F_TO_I8';
      case 'uint8':
        return 'F_TO_U8';
      case 'bool':
        return 'F_TO_BOOL';
      default:
        return 'F_TO_I';
    }
  }
  switch (to) {
    case 'float32':
    case 'float64':
      return 'I_TO_F';
    case 'float16':
      return 'I_TO_F16';
    case 'int8':
      return from === 'int8' || from === 'bool' ? undefined : 'I_TO_I8';
    case 'uint8':
      return from === 'uint8' || from === 'bool' ? undefined : 'I_TO_U8';
    case 'bool':
      return from === 'bool' ? undefined : 'I_TO_BOOL';
    default:
      return undefined;
  }
}

const Cast: OpDef = {
  domain: '',
  sinceVersion: 6, // Cast-1 named the target type by a string
  doc: "converts to dtype `to` (TensorProto code): float→int truncates toward zero, to bool is x != 0",
  shape(inputs, attrs, ctx) {
    const x = need(inputs, 0, ctx);
    return [{ dtype: castTarget(attrs, ctx), dims: [...x.dims] }];
  },
  reference(inputs, attrs, ctx) {
    const x = need(inputs, 0, ctx);
    const to = castTarget(attrs, ctx);
    const out = tensor(to, x.dims);
    for (let k = 0; k < x.data.length; k++) out.data[k] = castValue(x.data[k]!, x.dtype, to);
    return [out];
  },
  gpu(inputs, outputs, attrs, ctx) {
    const x = need(inputs, 0, ctx);
    const op = castOp(x.dtype, castTarget(attrs, ctx));
    return op ? single(op, [0], inputs, outputs[0]!, ctx) : { alias: 0 };
  },
};

// ---------------------------------------------------------------------------------------------
// Backward helpers (domain 'ia3'): (dy, saved) -> dx, element-wise, same shapes.

interface GradSpec {
  doc: string;
  /** dx for one element from dy and the saved forward value. */
  f: (dy: number, s: number, attrs: Attrs) => number;
  gpu: EwOp | ((attrs: Attrs, ctx: OpContext) => EwOp);
  check?: (attrs: Attrs, ctx: OpContext) => void;
}

function gradTypes(inputs: Inputs<TensorType>, ctx: OpContext) {
  const dy = need(inputs, 0, ctx);
  const s = need(inputs, 1, ctx);
  checkType(dy.dtype, 'float', ctx, 'dy');
  sameTypes([dy, s], ctx);
  if (dy.dims.length !== s.dims.length || dy.dims.some((d, i) => d !== s.dims[i])) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `dy [${dy.dims.join(',')}] and the saved value [${s.dims.join(',')}] differ in shape`);
  }
  return { dy, s };
}

function grad(spec: GradSpec): OpDef {
  return {
    domain: 'ia3',
    doc: spec.doc,
    shape(inputs, attrs, ctx) {
      const { dy } = gradTypes(inputs, ctx);
      spec.check?.(attrs, ctx);
      return [{ dtype: dy.dtype, dims: [...dy.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const { dy, s } = gradTypes(inputs, ctx);
      spec.check?.(attrs, ctx);
      const out = tensor(dy.dtype, dy.dims);
      const a = (dy as RefTensor).data;
      const b = (s as RefTensor).data;
      for (let k = 0; k < a.length; k++) out.data[k] = spec.f(a[k]!, b[k]!, attrs);
      return [out];
    },
    gpu(inputs, outputs, attrs, ctx) {
      gradTypes(inputs, ctx);
      const op = typeof spec.gpu === 'function' ? spec.gpu(attrs, ctx) : spec.gpu;
      return single(op, [0, 1], inputs, outputs[0]!, ctx);
    },
  };
}

const gradOps = {
  GeluGrad: grad({
    doc: "(dy, x) → dy·gelu'(x); attr approximate 'none' | 'tanh'",
    f: (dy, x, attrs) => dy * geluDerivative(x, attrs.approximate === 'tanh' ? 'tanh' : 'none'),
    gpu: (attrs, ctx) => (geluMode(attrs, ctx) === 'tanh' ? 'GELU_TANH_GRAD' : 'GELU_GRAD'),
    check: geluMode,
  }),
  SigmoidGrad: grad({ doc: '(dy, y = sigmoid(x)) → dy·y·(1-y)', f: (dy, y) => dy * y * (1 - y), gpu: 'SIGMOID_GRAD' }),
  TanhGrad: grad({ doc: '(dy, y = tanh(x)) → dy·(1-y²)', f: (dy, y) => dy * (1 - y * y), gpu: 'TANH_GRAD' }),
  ReluGrad: grad({ doc: '(dy, x) → dy where x > 0, else 0', f: (dy, x) => (x > 0 ? dy : 0), gpu: 'RELU_GRAD' }),
  ErfGrad: grad({ doc: '(dy, x) → dy·2/√π·e^(-x²)', f: (dy, x) => (dy * 2 * Math.exp(-x * x)) / Math.sqrt(Math.PI), gpu: 'ERF_GRAD' }),
} satisfies Record<string, OpDef>;

/** The element-wise family of the op registry. */
export const elementwiseOps = {
  ...unaryOps,
  ...binaryOps,
  Pow,
  ...variadicOps,
  Where,
  Clip,
  Cast,
  ...gradOps,
} satisfies Record<string, OpDef>;
