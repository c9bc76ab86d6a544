// Matrix products: ONNX MatMul and Gemm, and the internal FusedMatMul that the compiler emits for
// `x·W + b` with IA3 scales and for backward products such as dX = dY·Wᵀ (transB, no copy).
//
// All three reduce to one batched problem, Y[z] = (alpha·(opA(A[z]) ⊙ inScale)·opB(B[z]) + beta·C)
// ⊙ outScale, lowered to shaders/matmul.wgsl (tiled, workgroup memory, vec4 loads) or, for at most
// 8 rows, shaders/matmul-gemv.wgsl (K split across a workgroup, B streamed once). Lowering folds
// batch dims into M when B is shared across the batch (x·W on [batch, seq, hidden] is one 2-D
// GEMM with more rows), merges batch dims that index both operands alike, and splits grids past
// the device's workgroups per dimension into several dispatches of the same pipeline. The tile is
// chosen for occupancy on GPUs, or for work per output on software adapters (DeviceTraits.software).
//
// FusedMatMul may read A and B, and write Y, as strided views of their buffers (attributes
// aShape/aStrides/aOffset, bShape/bStrides/bOffset, yShape/yStrides; compile/views.ts sets them):
// the operand's logical dims at element offset + Σ index·stride. A view whose last dim is not the
// contiguous one but whose next-to-last is is read as the transposed matrix; every batch dim keeps
// its own stride. The kernels take a row stride per matrix (lda, ldb, ldy) and per-batch-dim
// strides, and use vec4 loads/stores only where every quad of the view is aligned.
//
// Size: three ops reduced to one batched Problem: its shape rule, float64 reference, tile choice and
// grid splitting belong together.

import gemvText from '../../shaders/matmul-gemv.wgsl?raw';
import tiledText from '../../shaders/matmul.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import type { KernelDef, Program, UniformField } from '../gpu/kernel.js';
import type { DeviceTraits } from '../gpu/traits.js';
import { Shader } from '../gpu/wgsl.js';
import { FLOAT_TYPES, int8Storage, q4Storage, type DataType, type WeightStorage } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes } from '../ir/shape.js';
import { sizeOf, stridesOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { BufferRef, Inputs, LoweringSteps, OpContext, OpDef, LoweringContext } from './types.js';
import { attrFloat, attrInt, attrInts, need } from './util.js';

const BINDINGS = { inputs: ['a', 'b', 'c', 'inScale', 'outScale'], outputs: ['y'] } as const;

const UNIFORMS: readonly UniformField[] = [
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['zBase', 'u32'],
  ['mBase', 'u32'],
  ['nBase', 'u32'],
  ['aBase', 'u32'],
  ['bBase', 'u32'],
  ['yBase', 'u32'],
  ['cStrideM', 'u32'],
  ['cStrideN', 'u32'],
  ['alpha', 'f32'],
  ['beta', 'f32'],
  ['flags', 'u32'],
  ['batchDims', { array: 'u32', length: 4 }],
  ['aStrides', { array: 'u32', length: 4 }],
  ['bStrides', { array: 'u32', length: 4 }],
  ['yStrides', { array: 'u32', length: 4 }],
  ['lda', 'u32'],
  ['ldb', 'u32'],
  ['ldy', 'u32'],
];

/** Bits of the kernels' `flags` uniform, written into both shaders as WGSL constants. */
const FLAGS = { F_TRANS_A: 1, F_TRANS_B: 2, F_C: 4, F_IN_SCALE: 8, F_OUT_SCALE: 16 } as const;

/**
 * B's binding and readers per weight storage: `bQuad(i)` is elements i..i+3 (i a multiple of 4),
 * `bElem(e)` one element. Packed halves (ir/dtype.ts `f16x2`) are four to a vec2<u32>, widened by
 * WGSL's core `unpack2x16float`: half the bytes of f32 on every adapter, no `shader-f16` needed.
 */
const B_STORAGE = {
  f32: `@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
fn bQuad(i: u32) -> vec4<f32> { return B[i >> 2u]; }
fn bElem(e: u32) -> f32 { return B[e >> 2u][e & 3u]; }`,
  f16x2: `@group(0) @binding(1) var<storage, read> B: array<vec2<u32>>;
fn bQuad(i: u32) -> vec4<f32> { let w = B[i >> 2u]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn bElem(e: u32) -> f32 { let w = B[e >> 2u]; return unpack2x16float(select(w.x, w.y, (e & 2u) != 0u))[e & 1u]; }`,
  // W [Q_K, Q_N] as 4-bit codes, f32 scales and 4-bit zero points in one word array (ir/dtype.ts
  // Q4Layout); element e = k·Q_N + n is (code − zero point) · scale of its block.
  q4: `override Q_K: u32 = 1u;
override Q_N: u32 = 1u;
override Q_BS: u32 = 32u;
override Q_ZP: bool = false;
override Q_NB: u32 = (Q_K + Q_BS - 1u) / Q_BS;
override Q_ROW: u32 = Q_NB * Q_BS / 8u;
override Q_SOFF: u32 = Q_N * Q_ROW;
override Q_ZOFF: u32 = Q_SOFF + Q_N * Q_NB;
@group(0) @binding(1) var<storage, read> B: array<u32>;
fn bElem(e: u32) -> f32 {
  let k = e / Q_N;
  let n = e % Q_N;
  let code = (B[n * Q_ROW + (k >> 3u)] >> ((k & 7u) * 4u)) & 15u;
  let blk = k / Q_BS;
  var zp = 8u;
  if (Q_ZP) {
    let zi = n * ((Q_NB + 1u) / 2u) + (blk >> 1u);
    zp = (B[Q_ZOFF + (zi >> 2u)] >> ((zi & 3u) * 8u + (blk & 1u) * 4u)) & 15u;
  }
  return (f32(code) - f32(zp)) * bitcast<f32>(B[Q_SOFF + n * Q_NB + blk]);
}
fn bQuad(i: u32) -> vec4<f32> { return vec4<f32>(bElem(i), bElem(i + 1u), bElem(i + 2u), bElem(i + 3u)); }`,
  // W [Q_R, Q_C] as 8-bit codes four per word, then f32 scales and zero points per row (Q_AXIS 0)
  // or column (1) (ir/dtype.ts packInt8); element e is (code − zero point) · scale of its channel.
  i8: `override Q_R: u32 = 1u;
override Q_C: u32 = 1u;
override Q_AXIS: u32 = 1u;
override Q_SIGNED: bool = true;
override Q_CH: u32 = select(Q_C, Q_R, Q_AXIS == 0u);
override Q_SOFF: u32 = (Q_R * Q_C + 3u) / 4u;
@group(0) @binding(1) var<storage, read> B: array<u32>;
fn bElem(e: u32) -> f32 {
  let byte = (B[e >> 2u] >> ((e & 3u) * 8u)) & 255u;
  var code = f32(byte);
  if (Q_SIGNED) { code = f32(bitcast<i32>(byte << 24u) >> 24u); }
  let ch = select(e % Q_C, e / Q_C, Q_AXIS == 0u);
  return (code - bitcast<f32>(B[Q_SOFF + Q_CH + ch])) * bitcast<f32>(B[Q_SOFF + ch]);
}
fn bQuad(i: u32) -> vec4<f32> { return vec4<f32>(bElem(i), bElem(i + 1u), bElem(i + 2u), bElem(i + 3u)); }`,
} as const;

/** The tiled kernel and the small-M kernel read one Params struct and one set of flag bits. */
const shared = { structs: { Params: UNIFORMS }, consts: FLAGS };
const bindings = { inputs: [...BINDINGS.inputs], outputs: [...BINDINGS.outputs], uniforms: 'Params' };

/** The kernels of one B storage: tiled (vec4 or scalar stores of Y) and small-M. */
function matmulKernels(storage: keyof typeof B_STORAGE) {
  const suffix = storage === 'f32' ? '' : `-${storage}`;
  const tiled = new Shader('matmul.wgsl', tiledText, { ...shared, variant: B_STORAGE[storage] });
  const gemv = new Shader('matmul-gemv.wgsl', gemvText, { ...shared, variant: B_STORAGE[storage] });
  return {
    tiled,
    gemv,
    /** Tiled kernel storing vec4 rows of Y (N a multiple of 4). */
    vec4: tiled.kernel({ name: `matmul${suffix}`, entryPoint: 'main', ...bindings }),
    /** Tiled kernel storing scalars (any N). */
    scalar: tiled.kernel({ name: `matmul-scalar-store${suffix}`, entryPoint: 'main_scalar', ...bindings }),
    /** Small-M kernel (M ≤ 8). */
    small: gemv.kernel({ name: `matmul-gemv${suffix}`, ...bindings }),
  };
}

const KERNELS = { f32: matmulKernels('f32'), f16x2: matmulKernels('f16x2'), q4: matmulKernels('q4'), i8: matmulKernels('i8') } as const;
export const matmulShader = KERNELS.f32.tiled;
export const matmulGemvShader = KERNELS.f32.gemv;
/** The same files composed for B in packed halves, 4-bit blocks and 8-bit channels. */
export const matmulPackedShader = KERNELS.f16x2.tiled;
export const matmulGemvPackedShader = KERNELS.f16x2.gemv;
export const matmulQ4Shader = KERNELS.q4.tiled;
export const matmulGemvQ4Shader = KERNELS.q4.gemv;
export const matmulI8Shader = KERNELS.i8.tiled;
export const matmulGemvI8Shader = KERNELS.i8.gemv;

/** A tile configuration of the tiled kernel: WG_X×WG_Y invocations, each an RM×CN block of Y. */
export interface MatmulTile {
  readonly WG_X: number;
  readonly WG_Y: number;
  /** K tile depth. */
  readonly KT: number;
  /** Rows and columns per invocation: 4 or 8. */
  readonly RM: 4 | 8;
  readonly CN: 4 | 8;
  /**
   * Time per output element on a software adapter, relative to SOFTWARE_TILE (SwiftShader, 2
   * cores, 256×768×768): what the software rule weighs padded work by.
   */
  readonly swCost: number;
}

/**
 * Tile configurations for GPUs, largest first. Bigger tiles reuse each loaded value more, smaller
 * ones make more workgroups; the first whose grid has at least MIN_WORKGROUPS workgroups is used
 * (enough to fill the compute units of a large GPU a couple of times over), else the smallest.
 */
export const MATMUL_TILES: readonly MatmulTile[] = [
  { WG_X: 16, WG_Y: 16, KT: 16, RM: 8, CN: 8, swCost: 1.1 }, // 128×128, 16 KiB of workgroup memory
  { WG_X: 16, WG_Y: 16, KT: 16, RM: 8, CN: 4, swCost: 1.4 }, // 128×64, 12 KiB
  { WG_X: 16, WG_Y: 16, KT: 16, RM: 4, CN: 4, swCost: 1.6 }, // 64×64, 8 KiB
  { WG_X: 8, WG_Y: 8, KT: 32, RM: 4, CN: 4, swCost: 1.5 }, // 32×32, 8 KiB
];
const MIN_WORKGROUPS = 256;

/**
 * The tile a CPU runs best: a software adapter runs a handful of workgroups at a time, so filling
 * compute units is moot; what costs is work per output (workgroup-memory reads, staging, barriers),
 * lowest with 8×8 blocks. 64×64, 8 KiB.
 */
export const SOFTWARE_TILE: MatmulTile = { WG_X: 8, WG_Y: 8, KT: 16, RM: 8, CN: 8, swCost: 1 };

/** The tiled kernel's constraints on a tile (see shaders/matmul.wgsl); throws when one fails. */
export function checkTile(t: MatmulTile): void {
  const NT = t.WG_X * t.WG_Y;
  const TM = t.RM * t.WG_Y;
  const TN = t.CN * t.WG_X;
  const LA = (TM * t.KT) / 4 / NT;
  const LB = (TN * t.KT) / 4 / NT;
  const ok =
    t.KT % 4 === 0 &&
    NT % t.KT === 0 &&
    NT % (TM / 4) === 0 &&
    NT % (TN / 4) === 0 &&
    [1, 2, 3, 4].includes(LA) &&
    [1, 2, 3, 4].includes(LB);
  if (!ok) throw new Error(`matmul tile ${JSON.stringify(t)} breaks the tiled kernel's staging constraints`);
}

/**
 * The tile for an M×N product of `batch` entries on a device: on a GPU the largest tile that still
 * makes enough workgroups; on a software adapter (which runs shaders on the CPU, a handful of
 * workgroups at a time) the one with the least padded work × measured cost.
 */
export function pickTile(M: number, N: number, batch: number, device: DeviceTraits): MatmulTile {
  const tm = (t: MatmulTile): number => Math.ceil(M / (t.RM * t.WG_Y));
  const tn = (t: MatmulTile): number => Math.ceil(N / (t.CN * t.WG_X));
  if (device.software) {
    const cost = (t: MatmulTile): number => tm(t) * t.RM * t.WG_Y * tn(t) * t.CN * t.WG_X * t.swCost;
    return [SOFTWARE_TILE, ...MATMUL_TILES].reduce((best, t) => (cost(t) < cost(best) ? t : best));
  }
  return MATMUL_TILES.find((t) => tm(t) * tn(t) * batch >= MIN_WORKGROUPS) ?? MATMUL_TILES[MATMUL_TILES.length - 1]!;
}

/** Rows up to which the GEMV-style kernel runs instead of the tiled one. */
export const GEMV_MAX_ROWS = 8;
const GEMV_COLS = { n: 32, t: 8 } as const; // columns per workgroup, B [K,N] / B [N,K]

// ---------------------------------------------------------------------------------------------
// Shapes

/** The geometry of a (batched) product: opA(A) is [..., M, K], opB(B) is [..., K, N]. */
export interface MatmulGeometry {
  /** A and B dims after promoting 1-D operands to matrices. */
  readonly aDims: readonly number[];
  readonly bDims: readonly number[];
  /** Broadcast batch dims of the output. */
  readonly batch: readonly number[];
  readonly M: number;
  readonly K: number;
  readonly N: number;
  /** Output dims (promoted dims removed again). */
  readonly outDims: readonly number[];
}

function fmt(d: readonly number[]): string {
  return `[${d.join(',')}]`;
}

/**
 * Shape rule shared by the three ops: numpy matmul semantics on opA(A), opB(B). A 1-D A is a row
 * [1,K] and a 1-D B a column [K,1], the added dim removed from the result; a 1-D operand cannot be
 * transposed.
 */
export function matmulGeometry(
  aDims: readonly number[],
  bDims: readonly number[],
  transA: boolean,
  transB: boolean,
  ctx: OpContext,
): MatmulGeometry {
  if (aDims.length === 0 || bDims.length === 0) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `operands must have rank ≥ 1, got A ${fmt(aDims)} and B ${fmt(bDims)}`);
  }
  if ((aDims.length === 1 && transA) || (bDims.length === 1 && transB)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `a 1-D operand cannot be transposed (A ${fmt(aDims)}, B ${fmt(bDims)})`);
  }
  const a = aDims.length === 1 ? [1, aDims[0]!] : [...aDims];
  const b = bDims.length === 1 ? [bDims[0]!, 1] : [...bDims];
  const ra = a.length;
  const rb = b.length;
  const M = transA ? a[ra - 1]! : a[ra - 2]!;
  const Ka = transA ? a[ra - 2]! : a[ra - 1]!;
  const Kb = transB ? b[rb - 1]! : b[rb - 2]!;
  const N = transB ? b[rb - 2]! : b[rb - 1]!;
  if (Ka !== Kb) {
    throw new ShapeError(
      ctx.opType,
      ctx.nodeName,
      `inner dimensions differ: A ${fmt(aDims)}${transA ? 'ᵀ' : ''} has K = ${Ka}, B ${fmt(bDims)}${transB ? 'ᵀ' : ''} has K = ${Kb}`,
    );
  }
  const batch = broadcastShapes([a.slice(0, -2), b.slice(0, -2)], ctx);
  const outDims = [...batch];
  if (aDims.length > 1) outDims.push(M);
  if (bDims.length > 1) outDims.push(N);
  return { aDims: a, bDims: b, batch, M, K: Ka, N, outDims };
}

/**
 * Float operands of any float dtypes: the product is computed in f32 and has A's dtype. (ONNX asks
 * for one dtype; mixing arises inside the toolkit only: a float16 weight read without its Cast
 * (onnx/precision.ts), f32 IA3 vectors on float16 activations.)
 */
function floatOperands(ctx: OpContext, ...ts: (TensorType | undefined)[]): void {
  for (const t of ts) {
    if (t && !FLOAT_TYPES.has(t.dtype)) {
      throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `only float tensors are supported, got ${t.dtype}`, ctx.opset);
    }
  }
}

function flag(attrs: Attrs, name: string): boolean {
  return attrInt(attrs, name, 0) !== 0;
}

/** Gemm's C: unidirectionally broadcast to [M,N]; returns its (row, column) element strides. */
function gemmCStrides(c: readonly number[], M: number, N: number, broadcast: boolean, ctx: OpContext): [number, number] {
  const bad = (): never => {
    throw new ShapeError(ctx.opType, ctx.nodeName, `C ${fmt(c)} does not broadcast to [${M},${N}]`);
  };
  if (c.length > 2) bad();
  const cm = c.length === 2 ? c[0]! : 1;
  const cn = c.length >= 1 ? c[c.length - 1]! : 1;
  if (!broadcast && (c.length !== 2 || cm !== M || cn !== N)) bad();
  if ((cm !== 1 && cm !== M) || (cn !== 1 && cn !== N)) bad();
  return [cm === 1 ? 0 : cn, cn === 1 ? 0 : 1];
}

function checkVector(t: TensorType | undefined, n: number, what: string, ctx: OpContext): void {
  if (t !== undefined && sizeOf(t.dims) !== n) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} ${fmt(t.dims)} must have exactly ${n} elements`);
  }
}

// ---------------------------------------------------------------------------------------------
// The problem every op lowers to

/** Element layout of an operand or of Y: logical dims read (written) at offset + Σ index·stride. */
interface Strided {
  readonly dims: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** One batched product with its fused prologue/epilogue; inputs are op input indices. */
interface Problem {
  readonly geo: MatmulGeometry;
  readonly transA: boolean;
  readonly transB: boolean;
  readonly alpha: number;
  readonly beta: number;
  readonly a: number;
  readonly b: number;
  /** C or bias: input index and element strides along M and N. */
  readonly c?: { readonly index: number; readonly strideM: number; readonly strideN: number };
  readonly inScale?: number;
  readonly outScale?: number;
  /** Layouts of A and B (their logical dims, before 1-D promotion). */
  readonly aLayout: Strided;
  readonly bLayout: Strided;
  /** Y: the output tensor's dims, and the strides of [...batch, M, N] (promoted dims included) into it. */
  readonly yDims: readonly number[];
  readonly yStrides: readonly number[];
}

/** The row-major layout of `dims` at offset 0. */
function contiguous(dims: readonly number[]): Strided {
  return { dims, strides: stridesOf(dims), offset: 0 };
}

/**
 * An operand's layout as the kernels read it: per output batch dim (geo.batch, outermost first)
 * its stride (0 where broadcast), whether the stored matrix is transposed relative to its logical
 * dims (its last dim is not the contiguous one), and its row stride.
 */
interface OperandAccess {
  readonly batch: number[];
  readonly flip: boolean;
  readonly ld: number;
  readonly offset: number;
  /** Stride of the matrix's logical rows and columns (reference indexing). */
  readonly rows: number;
  readonly cols: number;
}

function operandAccess(l: Strided, batch: readonly number[], ctx: OpContext, what: string): OperandAccess {
  // A 1-D operand is a row (A) or column (B) of one contiguous vector: promote as the geometry does.
  const promoted = l.dims.length === 1 ? (what === 'A' ? [1, l.dims[0]!] : [l.dims[0]!, 1]) : l.dims;
  const strides = l.dims.length === 1 ? (what === 'A' ? [0, l.strides[0]!] : [l.strides[0]!, 0]) : l.strides;
  const r = promoted.length;
  const [R, C] = [promoted[r - 2]!, promoted[r - 1]!];
  const [sr, sc] = [strides[r - 2]!, strides[r - 1]!];
  let flip: boolean;
  let ld: number;
  if (sc === 1 || C === 1) [flip, ld] = [false, R === 1 ? Math.max(C, 1) : sr];
  else if (sr === 1 || R === 1) [flip, ld] = [true, C === 1 ? Math.max(R, 1) : sc];
  else throw new ShapeError(ctx.opType, ctx.nodeName, `${what}'s view has no contiguous dimension (strides [${strides.join(',')}])`);
  const bs = strides.slice(0, -2);
  const bd = promoted.slice(0, -2);
  const out = batch.map((d, i) => {
    const j = i - (batch.length - bd.length);
    return j < 0 || bd[j] === 1 || d === 1 ? 0 : bs[j]!;
  });
  return { batch: out, flip, ld, offset: l.offset, rows: sr, cols: sc };
}

/** float64 reference of a Problem, on reference tensors indexed like the op's inputs. */
function referenceProblem(p: Problem, inputs: Inputs<RefTensor>, dtype: DataType, ctx: OpContext): RefTensor {
  const { geo, transA, transB } = p;
  const { M, K, N, batch } = geo;
  const A = inputs[p.a]!.data;
  const B = inputs[p.b]!.data;
  const C = p.c ? inputs[p.c.index]!.data : undefined;
  const sIn = p.inScale === undefined ? undefined : inputs[p.inScale]!.data;
  const sOut = p.outScale === undefined ? undefined : inputs[p.outScale]!.data;
  const a = operandAccess(p.aLayout, batch, ctx, 'A');
  const b = operandAccess(p.bLayout, batch, ctx, 'B');
  const out = tensor(dtype, p.yDims);
  const Y = out.data;
  const nb = sizeOf(batch);
  const zStrides = stridesOf(batch);
  // Element (i, j) of opA(A), opB(B): the stored matrix is [M,K] ([K,M] when transposed).
  const [am, ak] = transA ? [a.cols, a.rows] : [a.rows, a.cols];
  const [bk, bn] = transB ? [b.cols, b.rows] : [b.rows, b.cols];
  const [ym, yn] = p.yStrides.slice(-2) as [number, number];
  for (let z = 0; z < nb; z++) {
    let ao = a.offset;
    let bo = b.offset;
    let yo = 0;
    for (let d = 0; d < batch.length; d++) {
      const c = Math.floor(z / zStrides[d]!) % batch[d]!;
      ao += c * a.batch[d]!;
      bo += c * b.batch[d]!;
      yo += c * p.yStrides[d]!;
    }
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = A[ao + m * am + k * ak]!;
          const bv = B[bo + k * bk + n * bn]!;
          s += (sIn ? av * sIn[k]! : av) * bv;
        }
        let v = p.alpha * s;
        if (C) v += p.beta * C[m * p.c!.strideM + n * p.c!.strideN]!;
        if (sOut) v *= sOut[n]!;
        Y[yo + m * ym + n * yn] = v;
      }
    }
  }
  return out;
}

/** One merged batch dim: output extent and element strides into A, B and Y. */
interface BatchDim {
  size: number;
  a: number;
  b: number;
  y: number;
}

/** Batch dims innermost first, size-1 dims dropped, neighbours merged where every stride allows. */
function mergedBatch(batch: readonly number[], a: OperandAccess, b: OperandAccess, y: readonly number[]): BatchDim[] {
  const dims: BatchDim[] = [];
  for (let d = batch.length - 1; d >= 0; d--) {
    const size = batch[d]!;
    if (size === 1) continue;
    const inner = dims[dims.length - 1];
    // An outer dim continues the inner one when each stride steps over the inner extent.
    const s = { a: a.batch[d]!, b: b.batch[d]!, y: y[d]! };
    if (inner && s.a === inner.a * inner.size && s.b === inner.b * inner.size && s.y === inner.y * inner.size) inner.size *= size;
    else dims.push({ size, ...s });
  }
  return dims;
}

const { F_TRANS_A, F_TRANS_B, F_C, F_IN_SCALE, F_OUT_SCALE } = FLAGS;

/** Lowers a Problem to dispatches of the tiled or GEMV kernel. */
function lowerProblem(p: Problem, storage: WeightStorage | undefined, ctx: LoweringContext, options: MatmulLoweringOptions): LoweringSteps {
  const q4 = q4Storage(storage);
  const i8 = int8Storage(storage);
  const kernels = KERNELS[q4 ? 'q4' : i8 ? 'i8' : storage === 'f16x2' ? 'f16x2' : 'f32'];
  // A quantised weight's layout is fixed per weight shape: pipeline constants, like the tile.
  const [bRows, bCols] = [p.geo.bDims.at(-2)!, p.geo.bDims.at(-1)!];
  const quantOverrides: Record<string, number> = q4
    ? { Q_K: bRows, Q_N: bCols, Q_BS: q4.blockSize, Q_ZP: q4.zeroPoints ? 1 : 0 }
    : i8
      ? { Q_R: bRows, Q_C: bCols, Q_AXIS: i8.axis, Q_SIGNED: i8.signed ? 1 : 0 }
      : {};
  const { geo } = p;
  const a = operandAccess(p.aLayout, geo.batch, ctx, 'A');
  const b = operandAccess(p.bLayout, geo.batch, ctx, 'B');
  // A view stored transposed relative to its logical dims flips the product's transpose.
  const transA = p.transA !== a.flip;
  const transB = p.transB !== b.flip;
  const ldy = p.yStrides.at(-2)!;
  let { M } = geo;
  const { K, N } = geo;
  let batch = mergedBatch(geo.batch, a, b, p.yStrides);
  // B shared by every batch entry, A and Y contiguous across them (their batch dims then merge into
  // one of stride M rows): the batch is just more rows of one 2-D product.
  if (!transA && batch.length === 1 && batch[0]!.b === 0 && batch[0]!.a === M * a.ld && batch[0]!.y === M * ldy) {
    M *= batch[0]!.size;
    batch = [];
  }
  const nBatch = batch.reduce((x, d) => x * d.size, 1);
  if (M === 0 || N === 0 || nBatch === 0) return { steps: [] };

  const flags =
    (transA ? F_TRANS_A : 0) |
    (transB ? F_TRANS_B : 0) |
    (p.c ? F_C : 0) |
    (p.inScale === undefined ? 0 : F_IN_SCALE) |
    (p.outScale === undefined ? 0 : F_OUT_SCALE);
  const aOffset = a.offset + (options.aOffset ?? 0);
  const yOffset = options.yOffset ?? 0;
  // Quads of a view are aligned when its offset, row stride and batch strides are multiples of 4.
  const aligned = (extent: number, ld: number, offset: number, strides: readonly number[]): boolean =>
    extent % 4 === 0 && ld % 4 === 0 && offset % 4 === 0 && strides.every((s) => s % 4 === 0);
  const vecB = aligned(transB ? K : N, b.ld, b.offset, batch.map((d) => d.b));
  let kernel: KernelDef;
  let overrides: Record<string, number>;
  let tilesM: number;
  let tilesN: number;
  if (M <= GEMV_MAX_ROWS) {
    kernel = kernels.small;
    overrides = { TRANS_B: transB ? 1 : 0, VEC_B: vecB ? 1 : 0, ROW_GROUPS: M <= 4 ? 1 : 2, ...quantOverrides };
    tilesM = 1;
    tilesN = Math.ceil(N / (transB ? GEMV_COLS.t : GEMV_COLS.n));
  } else {
    const tile = options.tile ?? pickTile(M, N, nBatch, ctx.device);
    const { WG_X, WG_Y, KT, RM, CN } = tile;
    kernel = aligned(N, ldy, yOffset, batch.map((d) => d.y)) ? kernels.vec4 : kernels.scalar;
    const vecA = aligned(transA ? M : K, a.ld, aOffset, batch.map((d) => d.a));
    overrides = { WG_X, WG_Y, KT, RM, CN, VEC_A: vecA ? 1 : 0, VEC_B: vecB ? 1 : 0, ...quantOverrides };
    tilesM = Math.ceil(M / (RM * WG_Y));
    tilesN = Math.ceil(N / (CN * WG_X));
  }

  // Up to four batch dims go to the kernel; outer ones become separate dispatches.
  const inner = batch.slice(0, 4);
  const outer = batch.slice(4);
  const nInner = inner.reduce((x, d) => x * d.size, 1);
  const nOuter = outer.reduce((x, d) => x * d.size, 1);
  const pad = (xs: number[], fill: number): number[] => [...xs, ...new Array<number>(4 - xs.length).fill(fill)];
  const base = {
    M,
    N,
    K,
    cStrideM: p.c?.strideM ?? 0,
    cStrideN: p.c?.strideN ?? 0,
    alpha: p.alpha,
    beta: p.beta,
    flags,
    batchDims: pad(inner.map((d) => d.size), 1),
    aStrides: pad(inner.map((d) => d.a), 0),
    bStrides: pad(inner.map((d) => d.b), 0),
    yStrides: pad(inner.map((d) => d.y), 0),
    lda: a.ld,
    ldb: b.ld,
    ldy,
  };
  // The last element each binding is indexed at (32-bit indices in the kernels).
  const last = (offset: number, rows: number, ld: number, cols: number, ds: (d: BatchDim) => number): number =>
    offset + (rows - 1) * ld + cols - 1 + batch.reduce((x, d) => x + (d.size - 1) * ds(d), 0);
  const maxElems = Math.max(
    last(aOffset, transA ? K : M, a.ld, transA ? M : K, (d) => d.a),
    last(b.offset, transB ? N : K, b.ld, transB ? K : N, (d) => d.b),
    last(yOffset, M, ldy, N, (d) => d.y),
  ) + 1;
  if (maxElems > 0xffffffff) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `tensors of ${maxElems} elements exceed 32-bit indexing`, ctx.opset);
  }

  const CH = options.maxWorkgroupsPerDim ?? ctx.device.limits.maxComputeWorkgroupsPerDimension;
  const steps: Program[] = [];
  for (let o = 0; o < nOuter; o++) {
    let aBase = aOffset;
    let bBase = b.offset;
    let yBase = yOffset;
    let rem = o;
    for (const d of outer) {
      const c = rem % d.size;
      rem = Math.floor(rem / d.size);
      aBase += c * d.a;
      bBase += c * d.b;
      yBase += c * d.y;
    }
    for (let zBase = 0; zBase < nInner; zBase += CH) {
      for (let mBase = 0; mBase < tilesM; mBase += CH) {
        for (let nBase = 0; nBase < tilesN; nBase += CH) {
          steps.push({
            kernel,
            overrides,
            uniforms: { ...base, zBase, mBase, nBase, aBase, bBase, yBase },
            workgroups: [Math.min(CH, tilesN - nBase), Math.min(CH, tilesM - mBase), Math.min(CH, nInner - zBase)],
          });
        }
      }
    }
  }
  // Absent optional inputs bind A in their slot; their selectors keep the kernel from reading it.
  const bindings: BufferRef[] = [
    { in: p.a },
    { in: p.b },
    { in: p.c?.index ?? p.a },
    { in: p.inScale ?? p.a },
    { in: p.outScale ?? p.a },
    { out: 0 },
  ];
  return { steps: steps.map((program) => ({ program, bindings })) };
}

// ---------------------------------------------------------------------------------------------
// The ops

function matmulProblem(inputs: Inputs<TensorType>, ctx: OpContext): Problem {
  const a = need(inputs, 0, ctx);
  const b = need(inputs, 1, ctx);
  floatOperands(ctx, a, b);
  const geo = matmulGeometry(a.dims, b.dims, false, false, ctx);
  return { geo, transA: false, transB: false, alpha: 1, beta: 1, a: 0, b: 1, ...contiguousLayouts(a.dims, b.dims, geo) };
}

/** The product's [...batch, M, N] written row-major into its own output dims. */
function contiguousOutput(geo: MatmulGeometry): { yDims: readonly number[]; yStrides: readonly number[] } {
  return { yDims: geo.outDims, yStrides: stridesOf([...geo.batch, geo.M, geo.N]) };
}

/** Layouts of a product whose operands and output are all contiguous. */
function contiguousLayouts(a: readonly number[], b: readonly number[], geo: MatmulGeometry) {
  return { aLayout: contiguous(a), bLayout: contiguous(b), ...contiguousOutput(geo) };
}

/**
 * Whether the kernels can read a view of `dims` at `strides`: they stage quads along a contiguous
 * dim, the last or the next-to-last (compile/views.ts folds only views that pass this).
 */
export function readableView(dims: readonly number[], strides: readonly number[]): boolean {
  const r = dims.length;
  return r >= 2 && (strides[r - 1] === 1 || dims[r - 1] === 1 || strides[r - 2] === 1 || dims[r - 2] === 1);
}

/**
 * FusedMatMul's view of operand `x` (attributes xShape, xStrides, xOffset) of a tensor of `dims`:
 * contiguous without them; else checked to stay inside the tensor.
 */
function operandView(x: 'a' | 'b', dims: readonly number[], attrs: Attrs, ctx: OpContext): Strided {
  const shape = attrInts(attrs, `${x}Shape`);
  if (!shape) return contiguous(dims);
  const strides = attrInts(attrs, `${x}Strides`) ?? [];
  const offset = attrInt(attrs, `${x}Offset`, 0);
  const bad = (why: string): never => {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${x}Shape [${shape.join(',')}], ${x}Strides [${strides.join(',')}], ${x}Offset ${offset}: ${why}`);
  };
  if (shape.length < 2 || strides.length !== shape.length) bad('a view needs rank ≥ 2 and one stride per dim');
  if (offset < 0 || shape.some((d) => d < 1) || strides.some((s) => s < 0)) bad('dims must be positive, strides and offset non-negative');
  const last = offset + shape.reduce((t, d, i) => t + (d - 1) * strides[i]!, 0);
  if (last >= sizeOf(dims)) bad(`reads element ${last} of a tensor of ${sizeOf(dims)} elements ${fmt(dims)}`);
  if (!readableView(shape, strides)) bad('neither of the last two dims is contiguous');
  return { dims: shape, strides, offset };
}

/**
 * FusedMatMul's output layout (attributes yShape, yStrides): the product's [...batch, M, N] written
 * at those strides into a tensor of yShape, which they must cover exactly once (a permutation of
 * its row-major order, as the Transpose and Reshape it absorbs make).
 */
function outputView(geo: MatmulGeometry, attrs: Attrs, ctx: OpContext): { yDims: readonly number[]; yStrides: readonly number[] } {
  const yDims = attrInts(attrs, 'yShape');
  if (!yDims) return contiguousOutput(geo);
  const yStrides = attrInts(attrs, 'yStrides') ?? [];
  const dims = [...geo.batch, geo.M, geo.N];
  const used = dims.map((d, i) => [yStrides[i]!, d] as const).filter(([, d]) => d > 1).sort((x, y) => x[0] - y[0]);
  let step = 1;
  const cover = yStrides.length === dims.length && sizeOf(yDims) === sizeOf(dims) && used.every(([s, d]) => s === step && (step *= d) > 0);
  if (!cover) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `yShape ${fmt(yDims)} with yStrides [${yStrides.join(',')}] does not hold the product ${fmt(dims)} exactly once`);
  }
  // The kernels store along N: its elements must be adjacent.
  if (yStrides[dims.length - 1] !== 1 && geo.N !== 1) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `yStrides [${yStrides.join(',')}] must keep the product's last dim contiguous (stride 1)`);
  }
  return { yDims, yStrides };
}

function gemmProblem(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): Problem {
  if (ctx.opset < 11 && inputs[2] === undefined) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `input C is required before opset 11 (opset ${ctx.opset})`);
  }
  const a = need(inputs, 0, ctx);
  const b = need(inputs, 1, ctx);
  const c = inputs[2];
  floatOperands(ctx, a, b, c);
  if (a.dims.length !== 2 || b.dims.length !== 2) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `A and B must be 2-D, got A ${fmt(a.dims)} and B ${fmt(b.dims)}`);
  }
  const transA = flag(attrs, 'transA');
  const transB = flag(attrs, 'transB');
  const geo = matmulGeometry(a.dims, b.dims, transA, transB, ctx);
  // Before opset 7, C broadcasts only when the `broadcast` attribute says so.
  const broadcast = ctx.opset >= 7 || flag(attrs, 'broadcast');
  const cs = c ? gemmCStrides(c.dims, geo.M, geo.N, broadcast, ctx) : undefined;
  return {
    geo,
    transA,
    transB,
    alpha: attrFloat(attrs, 'alpha', 1),
    beta: attrFloat(attrs, 'beta', 1),
    a: 0,
    b: 1,
    ...(cs ? { c: { index: 2, strideM: cs[0], strideN: cs[1] } } : {}),
    ...contiguousLayouts(a.dims, b.dims, geo),
  };
}

function fusedProblem(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): Problem {
  const a = need(inputs, 0, ctx);
  const b = need(inputs, 1, ctx);
  const [bias, inScale, outScale] = [inputs[2], inputs[3], inputs[4]];
  floatOperands(ctx, a, b, bias, inScale, outScale);
  for (const name of ['transA', 'transB']) {
    const v = attrInt(attrs, name, 0);
    if (v !== 0 && v !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, `attribute ${name} must be 0 or 1, got ${v}`);
  }
  const transA = flag(attrs, 'transA');
  const transB = flag(attrs, 'transB');
  const aLayout = operandView('a', a.dims, attrs, ctx);
  const bLayout = operandView('b', b.dims, attrs, ctx);
  const geo = matmulGeometry(aLayout.dims, bLayout.dims, transA, transB, ctx);
  checkVector(bias, geo.N, 'bias', ctx);
  checkVector(inScale, geo.K, 'inScale', ctx);
  checkVector(outScale, geo.N, 'outScale', ctx);
  return {
    geo,
    transA,
    transB,
    alpha: attrFloat(attrs, 'alpha', 1),
    beta: 1,
    a: 0,
    b: 1,
    ...(bias ? { c: { index: 2, strideM: 0, strideN: 1 } } : {}),
    ...(inScale ? { inScale: 3 } : {}),
    ...(outScale ? { outScale: 4 } : {}),
    aLayout,
    bLayout,
    ...outputView(geo, attrs, ctx),
  };
}

const PROBLEMS = {
  MatMul: (inputs: Inputs<TensorType>, _attrs: Attrs, ctx: OpContext) => matmulProblem(inputs, ctx),
  Gemm: gemmProblem,
  FusedMatMul: fusedProblem,
} as const;

export type MatmulOpType = keyof typeof PROBLEMS;

/** Choices a caller may force instead of the device's (tests and benchmarks of one variant). */
export interface MatmulLoweringOptions {
  /** Use this tile for the tiled kernel (checked against the kernel's staging constraints). */
  readonly tile?: MatmulTile;
  /** Bound on each grid dimension (the device's limit by default); larger grids become several dispatches. */
  readonly maxWorkgroupsPerDim?: number;
  /**
   * Element offsets into A and Y: the product of rows of a larger A (or into rows of a larger Y),
   * as the chunked LM head computes one chunk of rows at a time.
   */
  readonly aOffset?: number;
  readonly yOffset?: number;
}

/** The GPU lowering of MatMul, Gemm or FusedMatMul for `ctx.device`. */
export function lowerMatmul(
  opType: MatmulOpType,
  inputs: Inputs<ValueInfo>,
  attrs: Attrs,
  ctx: LoweringContext,
  options: MatmulLoweringOptions = {},
): LoweringSteps {
  if (options.tile) checkTile(options.tile);
  // B (input 1) may be a packed weight; A and the vectors are activations or f32 vectors.
  return lowerProblem(PROBLEMS[opType](inputs, attrs, ctx), inputs[1]?.storage, ctx, options);
}

function defineMatmulOp(opType: MatmulOpType, domain: string, doc: string): OpDef {
  const problem = PROBLEMS[opType];
  return {
    domain,
    doc,
    shape(inputs, attrs, ctx) {
      const p = problem(inputs, attrs, ctx);
      return [{ dtype: inputs[0]!.dtype, dims: [...p.yDims] }];
    },
    reference(inputs, attrs, ctx) {
      return [referenceProblem(problem(inputs, attrs, ctx), inputs, inputs[0]!.dtype, ctx)];
    },
    gpu(inputs, _outputs, attrs, ctx) {
      return lowerMatmul(opType, inputs, attrs, ctx);
    },
    packedInputs: [1],
  };
}

export const matmulOps = {
  MatMul: defineMatmulOp('MatMul', '', 'Matrix product with numpy semantics: 1-D operands promoted, batch dims broadcast.'),
  Gemm: defineMatmulOp('Gemm', '', 'Y = alpha·opA(A)·opB(B) + beta·C on 2-D A and B, C unidirectionally broadcast to [M,N].'),
  FusedMatMul: defineMatmulOp(
    'FusedMatMul',
    'ia3',
    'Y = ((alpha·(opA(A) ⊙ inScale)·opB(B)) + bias) ⊙ outScale: batched matmul with transposes, IA3 input scale (K), bias and IA3 output scale (N); ' +
      'A and B may be read as strided views (aShape/aStrides/aOffset, bShape/bStrides/bOffset: logical dims at offset + Σ index·stride) and Y written as one (yShape, yStrides of [...batch, M, N]).',
  ),
} satisfies Record<string, OpDef>;
