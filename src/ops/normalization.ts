// Softmax and normalisation ops.
//
// ONNX: Softmax, LogSoftmax (both opset regimes), LayerNormalization (17; onnxruntime's before), and onnxruntime's
// SimplifiedLayerNormalization (RMSNorm; onnxruntime registers it in the ai.onnx domain).
// Internal (domain 'ia3'): MaskedSoftmax — softmax(x·scale + mask), the attention pattern in one
// kernel — and the backward ops SoftmaxGrad, LayerNormalizationGrad, SimplifiedLayerNormalizationGrad.
//
// Row conventions shared with the kernels (shaders/softmax.wgsl, shaders/normalization.wgsl):
//   - A softmax row with no finite value (every argument −∞) is written as zeros by Softmax and
//     MaskedSoftmax, and as −∞ by LogSoftmax; never NaN. (onnxruntime gives NaN there; torch gives
//     NaN for −∞ masks and a uniform row for finfo.min masks, which stay finite and so are uniform
//     here too.) Rows that mix −∞ and finite values are ordinary softmaxes.
//   - Layer-norm statistics (Mean, InvStdDev) are float32 with the normalised dims kept as 1.
//   - Float inputs are bound as vec4 arrays, so GPU buffers must be padded to 16 bytes.
//
// Size: softmax and layer normalisation are one family of row-wise reductions: they share the view
// helpers (row broadcasting, mask views, which loss.ts and rotary.ts reuse) and the kernel layouts.

import normText from '../../shaders/normalization.wgsl?raw';
import softmaxText from '../../shaders/softmax.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import { grid, type Program } from '../gpu/kernel.js';
import type { DeviceTraits } from '../gpu/traits.js';
import { Shader } from '../gpu/wgsl.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes, broadcastStrides, normAxis } from '../ir/shape.js';
import { sizeOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { BufferRef, Inputs, LoweringContext, LoweringSteps, OpContext, OpDef } from './types.js';
import { attrFloat, attrInt, need } from './util.js';

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by loss.ts and rotary.ts)

/** Invocations per workgroup of the row kernels on a GPU (and of the single-workgroup sums). */
export const ROW_WG = 256;

/** Most merged leading dims a broadcast view passes to a kernel (two vec4<u32> uniforms). */
export const MAX_VIEW_RANK = 8;

/** Invocations per workgroup of the row kernels on a software adapter. */
const SOFTWARE_ROW_WG = 64;

/** How a row kernel maps rows to invocations: its WG and TPR overrides and its workgroup grid. */
export interface RowLayout {
  /** Invocations per workgroup. */
  readonly WG: number;
  /** Invocations that share one row: a power of two dividing WG. */
  readonly TPR: number;
  readonly workgroups: [number, number, number];
}

/**
 * The layout of a row kernel over `rows` rows of `units` loads (vec4s or scalars) each.
 *
 * On a GPU, few invocations per row for short rows, so that several rows fill a workgroup, and a
 * whole workgroup for long rows (three TPR values only, to keep the number of pipelines small).
 * On a software adapter (DeviceTraits.software) the segment's tree reduction is what costs: each
 * workgroup barrier suspends and resumes every SIMD group of the workgroup as a coroutine, so 64
 * invocations per row took 10–35× longer than one (SwiftShader, LayerNormalization on 256–1024
 * rows of 256). There one invocation walks a whole row (no tree), in workgroups of 64 so that a
 * few hundred rows still spread over the cores; only when rows are too few for that do 8 share one.
 */
export function rowLayout(units: number, rows: number, device: DeviceTraits): RowLayout {
  const [WG, TPR] = device.software
    ? [SOFTWARE_ROW_WG, rows >= 2 * SOFTWARE_ROW_WG ? 1 : 8]
    : [ROW_WG, units <= 32 ? 8 : units <= 256 ? 64 : ROW_WG];
  return { WG, TPR, workgroups: grid(Math.ceil(rows / (WG / TPR))) };
}

/** Throws a ShapeError unless `t` has a float dtype. */
export function requireFloat(t: TensorType, what: string, ctx: OpContext): void {
  if (!FLOAT_TYPES.has(t.dtype)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} must be a float tensor, got ${t.dtype}`);
  }
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Throws a ShapeError unless `t` has exactly the dims `dims`. */
export function requireDims(t: TensorType, dims: readonly number[], what: string, ctx: OpContext): void {
  if (!sameDims(t.dims, dims)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} has shape [${t.dims.join(',')}], expected [${dims.join(',')}]`);
  }
}

/**
 * How operands numpy-broadcast to `full` are read row by row (a row = full's last axis): for each
 * operand a stride along the last axis (0 or 1) and strides over full's leading dims, with size-1
 * dims dropped and adjacent dims merged wherever every operand allows it (so a kernel walks at most
 * a few dims to find a row's base offset).
 */
export interface RowBroadcast {
  readonly dims: number[];
  readonly strides: number[][];
  readonly last: number[];
}

export function rowBroadcast(full: readonly number[], operands: readonly (readonly number[])[], ctx: OpContext): RowBroadcast {
  const r = full.length;
  const all = operands.map((d) => broadcastStrides(d, full));
  const dims: number[] = [];
  const strides: number[][] = operands.map(() => []);
  for (let i = 0; i < r - 1; i++) {
    const d = full[i]!;
    if (d === 1) continue;
    const k = dims.length;
    // Row-major merge of (previous, this): valid when prevStride == thisStride · thisDim.
    if (k > 0 && all.every((s, o) => strides[o]![k - 1] === s[i]! * d)) {
      dims[k - 1]! *= d;
      strides.forEach((st, o) => (st[k - 1] = all[o]![i]!));
    } else {
      dims.push(d);
      strides.forEach((st, o) => st.push(all[o]![i]!));
    }
  }
  if (dims.length > MAX_VIEW_RANK) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `broadcast over more than ${MAX_VIEW_RANK} distinct dims`);
  }
  return { dims, strides, last: all.map((s) => (r === 0 ? 0 : s[r - 1]!)) };
}

/**
 * Binding of output `k` of a node that may declare fewer outputs than the op can produce
 * (ctx.numOutputs: e.g. a LayerNormalization exported for inference has only Y): the output when
 * declared, else a new scratch buffer of `bytes` appended to `temps` (kernels write every slot).
 */
export function outOrScratch(k: number, ctx: OpContext, temps: number[], bytes: number): BufferRef {
  return k < (ctx.numOutputs ?? Infinity) ? { out: k } : { tmp: temps.push(bytes) - 1 };
}

/** Offset of row `row` (row-major over `dims`) under `strides`: the reference of the kernels' walk. */
export function rowOffset(row: number, dims: readonly number[], strides: readonly number[]): number {
  let off = 0;
  let rem = row;
  for (let k = dims.length - 1; k >= 0; k--) {
    off += (rem % dims[k]!) * strides[k]!;
    rem = Math.floor(rem / dims[k]!);
  }
  return off;
}

// ---------------------------------------------------------------------------------------------
// Softmax family

const SOFTMAX = 0;
const LOG_SOFTMAX = 1;
const MASKED = 2;
const SOFTMAX_GRAD = 3;

export const softmaxShader = new Shader('softmax.wgsl', softmaxText, {
  prelude: ['grid', 'f32max'],
  structs: {
    Params: [
      ['rows', 'u32'], // `rows`: number of rows; `cols`: outer * inner
      ['len', 'u32'], // elements along the softmax axis
      ['inner', 'u32'], // stride of the softmax axis (`cols`)
      ['scale', 'f32'], // MaskedSoftmax: x multiplier
      ['mrank', 'u32'], // MaskedSoftmax: merged leading dims of the mask view
      ['mlast', 'u32'], // MaskedSoftmax: mask stride along the last axis (0 or 1)
      ['div', 'f32'], // MaskedSoftmax: x divisor; SoftmaxGrad: dx divisor
      ['fill', 'f32'], // with keep: the argument where keep is false
      ['keep', 'u32'], // 1: a keep tensor is bound (MaskedSoftmax, SoftmaxGrad)
      ['klast', 'u32'], // keep stride along the last axis (0 or 1)
      ['mdims', { array: 'u32', length: MAX_VIEW_RANK }],
      ['mstrides', { array: 'u32', length: MAX_VIEW_RANK }],
      ['kstrides', { array: 'u32', length: MAX_VIEW_RANK }],
    ],
  },
});

const softmaxRowsKernel = softmaxShader.kernel({ name: 'softmax.rows', entryPoint: 'rows', inputs: ['a', 'b', 'k'], outputs: ['dst'], uniforms: 'Params' });

const softmaxColsKernel = softmaxShader.kernel({ name: 'softmax.cols', entryPoint: 'cols', inputs: ['a', 'b', 'k'], outputs: ['dst'], uniforms: 'Params' });

/** A softmax problem: the tensor as [outer, len, inner] around the reduced axis. */
interface SoftmaxView {
  readonly outer: number;
  readonly len: number;
  readonly inner: number;
}

/**
 * The softmax view of an ONNX Softmax/LogSoftmax input. Opset ≥ 13 reduces one axis (default -1);
 * older opsets coerce the input to 2-D at `axis` (default 1) and reduce the whole trailing block.
 */
function onnxSoftmaxView(dims: readonly number[], attrs: Attrs, ctx: OpContext): SoftmaxView {
  if (ctx.opset < 13) {
    const a = normAxis(attrInt(attrs, 'axis', 1), dims.length, ctx);
    return { outer: sizeOf(dims.slice(0, a)), len: sizeOf(dims.slice(a)), inner: 1 };
  }
  return axisView(dims, attrInt(attrs, 'axis', -1), ctx);
}

function axisView(dims: readonly number[], axis: number, ctx: OpContext): SoftmaxView {
  const a = normAxis(axis, dims.length, ctx);
  return { outer: sizeOf(dims.slice(0, a)), len: dims[a]!, inner: sizeOf(dims.slice(a + 1)) };
}

/** Float64 softmax / log-softmax of `z` over the view (the −∞-row convention of this module). */
function softmaxRef(z: Float64Array, v: SoftmaxView, log: boolean): Float64Array {
  const out = new Float64Array(z.length);
  for (let o = 0; o < v.outer; o++) {
    for (let i = 0; i < v.inner; i++) {
      const at = (k: number) => (o * v.len + k) * v.inner + i;
      let m = -Infinity;
      for (let k = 0; k < v.len; k++) m = Math.max(m, z[at(k)]!);
      if (m === -Infinity) {
        for (let k = 0; k < v.len; k++) out[at(k)] = log ? -Infinity : 0;
        continue;
      }
      let s = 0;
      for (let k = 0; k < v.len; k++) s += Math.exp(z[at(k)]! - m);
      for (let k = 0; k < v.len; k++) {
        out[at(k)] = log ? z[at(k)]! - m - Math.log(s) : Math.exp(z[at(k)]! - m) / s;
      }
    }
  }
  return out;
}

/**
 * The broadcast operands of a masked softmax or of a gradient with keep: `bc` over [mask, keep]
 * (MaskedSoftmax) or [keep] (SoftmaxGrad), `keep` whether a keep tensor is bound.
 */
interface MaskView {
  readonly scale: number;
  readonly div: number;
  readonly fill: number;
  readonly keep: boolean;
  readonly bc: RowBroadcast;
}

/** Lowers one softmax-family op over a view: the `rows` kernel when inner == 1, else `cols`. */
function softmaxLowering(op: number, v: SoftmaxView, bindings: readonly BufferRef[], ctx: LoweringContext, mask?: MaskView): LoweringSteps {
  if (v.outer * v.len * v.inner === 0) return { steps: [] };
  // The keep view's strides are the last operand's of bc (the only one for SoftmaxGrad).
  const k = mask?.keep ? mask.bc.strides.length - 1 : -1;
  const common = {
    len: v.len,
    inner: v.inner,
    scale: mask?.scale ?? 1,
    mrank: mask?.bc.dims.length ?? 0,
    mlast: op === MASKED ? mask!.bc.last[0]! : 0,
    div: mask?.div ?? 1,
    fill: mask?.fill ?? 0,
    keep: k >= 0 ? 1 : 0,
    klast: k >= 0 ? mask!.bc.last[k]! : 0,
    mdims: mask?.bc.dims ?? [],
    mstrides: op === MASKED ? mask!.bc.strides[0]! : [],
    kstrides: k >= 0 ? mask!.bc.strides[k]! : [],
  };
  let program: Program;
  if (v.inner === 1) {
    const vec = v.len % 4 === 0 ? 1 : 0;
    const { WG, TPR, workgroups } = rowLayout(vec ? v.len / 4 : v.len, v.outer, ctx.device);
    program = {
      kernel: softmaxRowsKernel,
      overrides: { WG, TPR, OP: op, VEC: vec },
      uniforms: { rows: v.outer, ...common },
      workgroups,
    };
  } else {
    const wg = 64;
    const rows = v.outer * v.inner;
    program = {
      kernel: softmaxColsKernel,
      overrides: { WG: wg, TPR: wg, OP: op, VEC: 0 },
      uniforms: { rows, ...common },
      workgroups: grid(Math.ceil(rows / wg)),
    };
  }
  return { steps: [{ program, bindings }] };
}

// Bindings a, b, k, dst: an operand the op lacks is bound to input 0 again (never read).
const UNARY: readonly BufferRef[] = [{ in: 0 }, { in: 0 }, { in: 0 }, { out: 0 }];
const BINARY: readonly BufferRef[] = [{ in: 0 }, { in: 1 }, { in: 0 }, { out: 0 }];
const WITH_KEEP: readonly BufferRef[] = [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }];

function softmaxShape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[] {
  const x = need(inputs, 0, ctx);
  requireFloat(x, 'input', ctx);
  onnxSoftmaxView(x.dims, attrs, ctx); // validates the axis
  return [{ dtype: x.dtype, dims: [...x.dims] }];
}

function onnxSoftmax(log: boolean, doc: string): OpDef {
  return {
    domain: '',
    sinceVersion: 1,
    doc,
    shape: softmaxShape,
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const out = softmaxRef(x.data, onnxSoftmaxView(x.dims, attrs, ctx), log);
      return [{ dtype: x.dtype, dims: [...x.dims], data: out }];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      return softmaxLowering(log ? LOG_SOFTMAX : SOFTMAX, onnxSoftmaxView(x.dims, attrs, ctx), UNARY, ctx);
    },
  };
}

/** The optional keep operand (input 2) of MaskedSoftmax and SoftmaxGrad: bool, broadcast to x. */
function keepOf(inputs: Inputs<TensorType>, x: TensorType, ctx: OpContext): TensorType | undefined {
  const keep = inputs[2];
  if (!keep) return undefined;
  if (keep.dtype !== 'bool') throw new ShapeError(ctx.opType, ctx.nodeName, `keep must be a bool tensor, got ${keep.dtype}`);
  requireDims({ dtype: x.dtype, dims: broadcastShapes([x.dims, keep.dims], ctx) }, x.dims, 'x broadcast with keep', ctx);
  return keep;
}

/** The broadcast view of a masked softmax (mask given) or of a softmax gradient (no mask). */
function maskedView(x: TensorType, mask: TensorType | undefined, keep: TensorType | undefined, attrs: Attrs, ctx: OpContext): MaskView {
  const operands = [...(mask ? [mask.dims] : []), ...(keep ? [keep.dims] : [])];
  return {
    scale: attrFloat(attrs, 'scale', 1),
    div: attrFloat(attrs, 'divisor', 1),
    fill: attrFloat(attrs, 'fill', 0),
    keep: keep !== undefined,
    bc: rowBroadcast(x.dims, operands, ctx),
  };
}

/** Whether element (row r, column j) is kept: no keep operand, or its broadcast value is true. */
function keptAt(keep: RefTensor | undefined, bc: RowBroadcast, r: number, j: number): boolean {
  if (!keep) return true;
  const k = bc.strides.length - 1;
  return keep.data[rowOffset(r, bc.dims, bc.strides[k]!) + j * bc.last[k]!] !== 0;
}

// ---------------------------------------------------------------------------------------------
// Layer normalisation family

const LAYER_NORM = 0;
const RMS_NORM = 1;
const COL_WG = 64;

export const normShader = new Shader('normalization.wgsl', normText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['rows', 'u32'],
      ['n', 'u32'],
      ['eps', 'f32'],
      ['flags', 'u32'], // fwd: bit 0 set when a bias is bound
      ['chunk', 'u32'], // wpart: rows per chunk
      ['nchunks', 'u32'], // wpart, wfinal: number of chunks
      ['cblocks', 'u32'], // wpart: workgroups per chunk (ceil(n / WG))
      ['which', 'u32'], // wfinal: 0 sums dScale, 1 sums dBias
    ],
  },
});

const normKernel = (entryPoint: string, inputs: string[], outputs: string[]) =>
  normShader.kernel({ name: `norm.${entryPoint}`, entryPoint, inputs, outputs, uniforms: 'Params' });
const normFwdKernel = normKernel('fwd', ['x', 'scale', 'bias'], ['y', 'mean', 'rstd']);
const normBwdKernel = normKernel('bwd', ['dy', 'x', 'scale', 'mean', 'rstd'], ['dx']);
const normWPartKernel = normKernel('wpart', ['dy', 'x', 'mean', 'rstd'], ['part']);
const normWFinalKernel = normKernel('wfinal', ['part'], ['out']);

/** A layer-norm problem: `rows` rows of `n` normalised values (n = Π dims[axis:]). */
interface NormView {
  readonly axis: number;
  readonly rows: number;
  readonly n: number;
  readonly statDims: number[];
}

function normView(dims: readonly number[], attrs: Attrs, ctx: OpContext): NormView {
  const axis = normAxis(attrInt(attrs, 'axis', -1), dims.length, ctx);
  const n = sizeOf(dims.slice(axis));
  if (n === 0) throw new ShapeError(ctx.opType, ctx.nodeName, `the normalised dims [${dims.slice(axis).join(',')}] are empty`);
  return {
    axis,
    rows: sizeOf(dims.slice(0, axis)),
    n,
    statDims: dims.map((d, i) => (i < axis ? d : 1)),
  };
}

/**
 * Scale and bias must hold one value per normalised element in the same layout: their dims must
 * broadcast to X's normalised dims without repeating any value (equal sizes).
 */
function requireParam(t: TensorType, x: TensorType, v: NormView, what: string, ctx: OpContext): void {
  requireFloat(t, what, ctx);
  const normDims = x.dims.slice(v.axis);
  const ok =
    sizeOf(t.dims) === v.n &&
    t.dims.every((d, i) => {
      const j = normDims.length - t.dims.length + i;
      return j < 0 ? d === 1 : d === normDims[j] || d === 1;
    });
  if (!ok) {
    throw new ShapeError(
      ctx.opType,
      ctx.nodeName,
      `${what} of shape [${t.dims.join(',')}] does not match the normalised dims [${normDims.join(',')}]`,
    );
  }
}

function requireStash(attrs: Attrs, ctx: OpContext): void {
  const stash = attrInt(attrs, 'stash_type', 1);
  if (stash !== 1) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `stash_type ${stash} (only 1, float32 statistics, is supported)`, ctx.opset);
  }
}

function weightGrad(attrs: Attrs, ctx: OpContext): boolean {
  const w = attrInt(attrs, 'weight_grad', 0);
  if (w !== 0 && w !== 1) throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `weight_grad must be 0 or 1, got ${w}`);
  return w === 1;
}

/** Float64 layer norm (rms: RMSNorm, mean fixed at 0). Returns Y, Mean (unused for RMS), InvStdDev. */
function normForwardRef(x: RefTensor, scale: RefTensor, bias: RefTensor | undefined, v: NormView, eps: number, rms: boolean) {
  const y = new Float64Array(x.data.length);
  const mean = new Float64Array(v.rows);
  const rstd = new Float64Array(v.rows);
  for (let r = 0; r < v.rows; r++) {
    const o = r * v.n;
    let mu = 0;
    if (!rms) {
      for (let j = 0; j < v.n; j++) mu += x.data[o + j]!;
      mu /= v.n;
    }
    let ss = 0;
    for (let j = 0; j < v.n; j++) ss += (x.data[o + j]! - mu) ** 2;
    const rs = 1 / Math.sqrt(ss / v.n + eps);
    for (let j = 0; j < v.n; j++) {
      y[o + j] = (x.data[o + j]! - mu) * rs * scale.data[j]! + (bias ? bias.data[j]! : 0);
    }
    mean[r] = mu;
    rstd[r] = rs;
  }
  return { y, mean, rstd };
}

/** Float64 backward of layer norm / RMSNorm from the saved statistics. */
function normBackwardRef(
  dy: RefTensor,
  x: RefTensor,
  scale: RefTensor,
  mean: RefTensor | undefined,
  rstd: RefTensor,
  v: NormView,
) {
  const dx = new Float64Array(x.data.length);
  const dScale = new Float64Array(v.n);
  const dBias = new Float64Array(v.n);
  for (let r = 0; r < v.rows; r++) {
    const o = r * v.n;
    const mu = mean ? mean.data[r]! : 0;
    const rs = rstd.data[r]!;
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < v.n; j++) {
      const g = dy.data[o + j]! * scale.data[j]!;
      const xh = (x.data[o + j]! - mu) * rs;
      sg += g;
      sgx += g * xh;
      dScale[j] += dy.data[o + j]! * xh;
      dBias[j] += dy.data[o + j]!;
    }
    const mg = mean ? sg / v.n : 0;
    const mgx = sgx / v.n;
    for (let j = 0; j < v.n; j++) {
      const g = dy.data[o + j]! * scale.data[j]!;
      const xh = (x.data[o + j]! - mu) * rs;
      dx[o + j] = rs * (g - mg - xh * mgx);
    }
  }
  return { dx, dScale, dBias };
}

/** The overrides and grid of the `fwd` and `bwd` row kernels. */
function rowProgram(op: number, v: NormView, device: DeviceTraits) {
  const vec = v.n % 4 === 0 ? 1 : 0;
  const { WG, TPR, workgroups } = rowLayout(vec ? v.n / 4 : v.n, v.rows, device);
  return { overrides: { WG, TPR, OP: op, VEC: vec }, workgroups };
}

function normUniformValues(v: NormView, extra: Partial<Record<'eps' | 'flags' | 'chunk' | 'nchunks' | 'cblocks' | 'which', number>> = {}) {
  return { rows: v.rows, n: v.n, eps: 0, flags: 0, chunk: 1, nchunks: 0, cblocks: 1, which: 0, ...extra };
}

/**
 * The forward row kernel. Its Mean and InvStdDev slots go to scratch buffers (rows floats each)
 * when the node does not declare them, and Mean always does for RMSNorm, which has none.
 */
function normForwardLowering(op: number, v: NormView, eps: number, hasBias: boolean, ctx: LoweringContext): LoweringSteps {
  if (v.rows === 0) return { steps: [] };
  const { overrides, workgroups } = rowProgram(op, v, ctx.device);
  const temps: number[] = [];
  const stats: BufferRef[] =
    op === LAYER_NORM
      ? [outOrScratch(1, ctx, temps, 4 * v.rows), outOrScratch(2, ctx, temps, 4 * v.rows)]
      : [{ tmp: temps.push(4 * v.rows) - 1 }, outOrScratch(1, ctx, temps, 4 * v.rows)];
  const bindings: BufferRef[] = [{ in: 0 }, { in: 1 }, { in: hasBias ? 2 : 1 }, { out: 0 }, ...stats];
  return {
    temps,
    steps: [
      {
        program: {
          kernel: normFwdKernel,
          overrides,
          uniforms: normUniformValues(v, { eps, flags: hasBias ? 1 : 0 }),
          workgroups,
        },
        bindings,
      },
    ],
  };
}

/**
 * dX (row kernel), then, with weight gradients, the two-stage column sums into dScale (and dBias for
 * layer norm). `statRefs` are the bindings of Mean and InvStdDev (RMS: InvStdDev twice).
 */
function normBackwardLowering(
  op: number,
  v: NormView,
  weights: boolean,
  statRefs: readonly [BufferRef, BufferRef],
  ctx: LoweringContext,
): LoweringSteps {
  const steps: { program: Program; bindings: BufferRef[] }[] = [];
  if (v.rows > 0) {
    steps.push({
      program: { kernel: normBwdKernel, ...rowProgram(op, v, ctx.device), uniforms: normUniformValues(v) },
      bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, statRefs[0], statRefs[1], { out: 0 }],
    });
  }
  // Weight gradients the node does not declare are not computed.
  const outs = Math.min(op === LAYER_NORM ? 2 : 1, (ctx.numOutputs ?? Infinity) - 1);
  if (!weights || outs <= 0) return { steps };
  // ~128 chunks: enough columns × chunks in flight, and a short serial sum in `wfinal`.
  const chunk = Math.max(1, Math.ceil(v.rows / 128));
  const nchunks = Math.ceil(v.rows / chunk);
  const cblocks = Math.ceil(v.n / COL_WG);
  const uniforms = normUniformValues(v, { chunk, nchunks, cblocks });
  const col = { WG: COL_WG, TPR: COL_WG, OP: op, VEC: 0 };
  steps.push({
    program: { kernel: normWPartKernel, overrides: col, uniforms, workgroups: grid(cblocks * nchunks) },
    bindings: [{ in: 0 }, { in: 1 }, statRefs[0], statRefs[1], { tmp: 0 }],
  });
  for (let which = 0; which < outs; which++) {
    steps.push({
      program: { kernel: normWFinalKernel, overrides: col, uniforms: { ...uniforms, which }, workgroups: grid(cblocks) },
      bindings: [{ tmp: 0 }, { out: 1 + which }],
    });
  }
  return { temps: [4 * Math.max(1, nchunks * 2 * v.n)], steps };
}

// ---------------------------------------------------------------------------------------------
// The op table

export const normalizationOps = {
  Softmax: onnxSoftmax(false, 'softmax along one axis (opset ≥ 13) or over the 2-D coercion at axis (opset < 13)'),

  LogSoftmax: onnxSoftmax(true, 'log-softmax along one axis (opset ≥ 13) or over the 2-D coercion at axis (opset < 13)'),

  MaskedSoftmax: {
    domain: 'ia3',
    doc: 'softmax(where(keep, x·scale / divisor, fill) + mask) over the last axis; mask and the optional bool keep numpy-broadcast to x; rows with no finite argument give zeros',
    shape(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const mask = need(inputs, 1, ctx);
      requireFloat(x, 'x', ctx);
      requireFloat(mask, 'mask', ctx);
      if (x.dims.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'x must have at least one dim');
      requireDims({ dtype: x.dtype, dims: broadcastShapes([x.dims, mask.dims], ctx) }, x.dims, 'x broadcast with mask', ctx);
      maskedView(x, mask, keepOf(inputs, x, ctx), attrs, ctx);
      return [{ dtype: x.dtype, dims: [...x.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const mask = need(inputs, 1, ctx);
      const keep = inputs[2];
      const v = maskedView(x, mask, keep, attrs, ctx);
      const len = x.dims[x.dims.length - 1]!;
      const rows = sizeOf(x.dims) / Math.max(1, len);
      const z = new Float64Array(x.data.length);
      for (let r = 0; r < rows; r++) {
        const mb = rowOffset(r, v.bc.dims, v.bc.strides[0]!);
        for (let j = 0; j < len; j++) {
          const s = keptAt(keep, v.bc, r, j) ? (x.data[r * len + j]! * v.scale) / v.div : v.fill;
          z[r * len + j] = s + mask.data[mb + j * v.bc.last[0]!]!;
        }
      }
      return [{ dtype: x.dtype, dims: [...x.dims], data: softmaxRef(z, { outer: rows, len, inner: 1 }, false) }];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const keep = keepOf(inputs, x, ctx);
      const len = x.dims[x.dims.length - 1]!;
      const view = { outer: sizeOf(x.dims.slice(0, -1)), len, inner: 1 };
      return softmaxLowering(MASKED, view, keep ? WITH_KEEP : BINARY, ctx, maskedView(x, need(inputs, 1, ctx), keep, attrs, ctx));
    },
  },

  SoftmaxGrad: {
    domain: 'ia3',
    doc: 'softmax backward: inputs (dy, y, [keep]), attrs axis (default -1), divisor (default 1); dx = where(keep, y ⊙ (dy − Σ_axis dy⊙y) / divisor, 0), keep (bool, broadcast to dy) only along the last axis',
    shape(inputs, attrs, ctx) {
      const dy = need(inputs, 0, ctx);
      const y = need(inputs, 1, ctx);
      requireFloat(dy, 'dy', ctx);
      requireFloat(y, 'y', ctx);
      requireDims(y, dy.dims, 'y', ctx);
      const v = axisView(dy.dims, attrInt(attrs, 'axis', -1), ctx);
      if (keepOf(inputs, dy, ctx) && v.inner !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, 'keep is supported along the last axis only');
      return [{ dtype: dy.dtype, dims: [...dy.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const dy = need(inputs, 0, ctx);
      const y = need(inputs, 1, ctx);
      const keep = inputs[2];
      const v = axisView(dy.dims, attrInt(attrs, 'axis', -1), ctx);
      const m = maskedView(dy, undefined, keep, attrs, ctx);
      const dx = tensor(dy.dtype, dy.dims);
      for (let o = 0; o < v.outer; o++) {
        for (let i = 0; i < v.inner; i++) {
          const at = (k: number) => (o * v.len + k) * v.inner + i;
          let s = 0;
          for (let k = 0; k < v.len; k++) s += dy.data[at(k)]! * y.data[at(k)]!;
          for (let k = 0; k < v.len; k++) {
            dx.data[at(k)] = keptAt(keep, m.bc, o, k) ? (y.data[at(k)]! * (dy.data[at(k)]! - s)) / m.div : 0;
          }
        }
      }
      return [dx];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const dy = need(inputs, 0, ctx);
      const keep = keepOf(inputs, dy, ctx);
      const view = axisView(dy.dims, attrInt(attrs, 'axis', -1), ctx);
      return softmaxLowering(SOFTMAX_GRAD, view, keep ? WITH_KEEP : BINARY, ctx, maskedView(dy, undefined, keep, attrs, ctx));
    },
  },

  LayerNormalization: {
    domain: '',
    // ONNX added it at opset 17; onnxruntime also runs it in older ai.onnx opsets (its contrib schema).
    sinceVersion: 1,
    doc: 'layer normalisation over dims[axis:]; outputs Y, Mean, InvStdDev (float32, normalised dims kept as 1); opset 17 in ONNX, accepted from 1 as onnxruntime does',
    shape(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      requireFloat(x, 'X', ctx);
      const v = normView(x.dims, attrs, ctx);
      requireParam(need(inputs, 1, ctx), x, v, 'Scale', ctx);
      const b = inputs[2];
      if (b) requireParam(b, x, v, 'B', ctx);
      requireStash(attrs, ctx);
      return [
        { dtype: x.dtype, dims: [...x.dims] },
        { dtype: 'float32', dims: v.statDims },
        { dtype: 'float32', dims: v.statDims },
      ];
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const v = normView(x.dims, attrs, ctx);
      const r = normForwardRef(x, need(inputs, 1, ctx), inputs[2], v, attrFloat(attrs, 'epsilon', 1e-5), false);
      return [
        { dtype: x.dtype, dims: [...x.dims], data: r.y },
        { dtype: 'float32', dims: v.statDims, data: r.mean },
        { dtype: 'float32', dims: v.statDims, data: r.rstd },
      ];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const v = normView(need(inputs, 0, ctx).dims, attrs, ctx);
      return normForwardLowering(LAYER_NORM, v, attrFloat(attrs, 'epsilon', 1e-5), inputs[2] !== undefined, ctx);
    },
  },

  LayerNormalizationGrad: {
    domain: 'ia3',
    doc: 'layer-norm backward: inputs (dY, X, Scale, Mean, InvStdDev), attrs axis, weight_grad; outputs dX, [dScale, dBias]',
    shape(inputs, attrs, ctx) {
      const dy = need(inputs, 0, ctx);
      const x = need(inputs, 1, ctx);
      requireFloat(dy, 'dY', ctx);
      requireFloat(x, 'X', ctx);
      requireDims(dy, x.dims, 'dY', ctx);
      const v = normView(x.dims, attrs, ctx);
      const scale = need(inputs, 2, ctx);
      requireParam(scale, x, v, 'Scale', ctx);
      for (const [i, what] of [[3, 'Mean'], [4, 'InvStdDev']] as const) {
        const t = need(inputs, i, ctx);
        requireFloat(t, what, ctx);
        if (sizeOf(t.dims) !== v.rows) {
          throw new ShapeError(ctx.opType, ctx.nodeName, `${what} has ${sizeOf(t.dims)} values, expected ${v.rows} (one per row)`);
        }
      }
      const out: TensorType[] = [{ dtype: x.dtype, dims: [...x.dims] }];
      if (weightGrad(attrs, ctx)) out.push({ dtype: scale.dtype, dims: [...scale.dims] }, { dtype: scale.dtype, dims: [...scale.dims] });
      return out;
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 1, ctx);
      const scale = need(inputs, 2, ctx);
      const v = normView(x.dims, attrs, ctx);
      const r = normBackwardRef(need(inputs, 0, ctx), x, scale, need(inputs, 3, ctx), need(inputs, 4, ctx), v);
      const out: RefTensor[] = [{ dtype: x.dtype, dims: [...x.dims], data: r.dx }];
      if (weightGrad(attrs, ctx)) {
        out.push({ dtype: scale.dtype, dims: [...scale.dims], data: r.dScale });
        out.push({ dtype: scale.dtype, dims: [...scale.dims], data: r.dBias });
      }
      return out;
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const v = normView(need(inputs, 1, ctx).dims, attrs, ctx);
      return normBackwardLowering(LAYER_NORM, v, weightGrad(attrs, ctx), [{ in: 3 }, { in: 4 }], ctx);
    },
  },

  SimplifiedLayerNormalization: {
    domain: '',
    sinceVersion: 1,
    doc: "onnxruntime's RMSNorm over dims[axis:]: Y = X·rstd·Scale, rstd = 1/√(mean(X²) + ε); outputs Y, InvStdDev",
    shape(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      requireFloat(x, 'X', ctx);
      const v = normView(x.dims, attrs, ctx);
      requireParam(need(inputs, 1, ctx), x, v, 'scale', ctx);
      requireStash(attrs, ctx);
      return [
        { dtype: x.dtype, dims: [...x.dims] },
        { dtype: 'float32', dims: v.statDims },
      ];
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 0, ctx);
      const v = normView(x.dims, attrs, ctx);
      const r = normForwardRef(x, need(inputs, 1, ctx), undefined, v, attrFloat(attrs, 'epsilon', 1e-5), true);
      return [
        { dtype: x.dtype, dims: [...x.dims], data: r.y },
        { dtype: 'float32', dims: v.statDims, data: r.rstd },
      ];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const v = normView(need(inputs, 0, ctx).dims, attrs, ctx);
      return normForwardLowering(RMS_NORM, v, attrFloat(attrs, 'epsilon', 1e-5), false, ctx);
    },
  },

  SimplifiedLayerNormalizationGrad: {
    domain: 'ia3',
    doc: 'RMSNorm backward: inputs (dY, X, Scale, InvStdDev), attrs axis, weight_grad; outputs dX, [dScale]',
    shape(inputs, attrs, ctx) {
      const dy = need(inputs, 0, ctx);
      const x = need(inputs, 1, ctx);
      requireFloat(dy, 'dY', ctx);
      requireFloat(x, 'X', ctx);
      requireDims(dy, x.dims, 'dY', ctx);
      const v = normView(x.dims, attrs, ctx);
      const scale = need(inputs, 2, ctx);
      requireParam(scale, x, v, 'Scale', ctx);
      const rstd = need(inputs, 3, ctx);
      requireFloat(rstd, 'InvStdDev', ctx);
      if (sizeOf(rstd.dims) !== v.rows) {
        throw new ShapeError(ctx.opType, ctx.nodeName, `InvStdDev has ${sizeOf(rstd.dims)} values, expected ${v.rows} (one per row)`);
      }
      const out: TensorType[] = [{ dtype: x.dtype, dims: [...x.dims] }];
      if (weightGrad(attrs, ctx)) out.push({ dtype: scale.dtype, dims: [...scale.dims] });
      return out;
    },
    reference(inputs, attrs, ctx) {
      const x = need(inputs, 1, ctx);
      const scale = need(inputs, 2, ctx);
      const v = normView(x.dims, attrs, ctx);
      const r = normBackwardRef(need(inputs, 0, ctx), x, scale, undefined, need(inputs, 3, ctx), v);
      const out: RefTensor[] = [{ dtype: x.dtype, dims: [...x.dims], data: r.dx }];
      if (weightGrad(attrs, ctx)) out.push({ dtype: scale.dtype, dims: [...scale.dims], data: r.dScale });
      return out;
    },
    gpu(inputs, _outputs, attrs, ctx) {
      const v = normView(need(inputs, 1, ctx).dims, attrs, ctx);
      return normBackwardLowering(RMS_NORM, v, weightGrad(attrs, ctx), [{ in: 3 }, { in: 3 }], ctx);
    },
  },
} satisfies Record<string, OpDef>;
