// The IA3 ops: the element-wise scale PEFT's IA3 layers apply, and its fused backward.
//
// `IA3Scale(x, l1, [l2], [l3], [l4])` multiplies the last dim of x by l1 ⊙ l2 ⊙ … (several active
// adapters multiply their vectors). It serves both PEFT placements: output scaling `(x·W + b) ⊙ l`
// with l stored `(out, 1)`, and input scaling `x ⊙ l` before the MatMul with l stored `(1, in)`;
// only the element count of each l matters, and each gradient comes back in its vector's own shape.
//
// `IA3ScaleGrad(dy, x, l1, …)` → `(dx, dl1, …)`. `input_grad = 0` drops dx (output 0 is an empty
// [0] tensor): backward stops at the earliest trainable value, so the first scaled layer's input
// needs no gradient and the pass skips the dx stream entirely.
// `activation = 'gelu' | 'gelu_tanh'` (a fusion of compile/fuse.ts, never written by autograd):
// the scaled tensor was gelu(x), x the pre-GELU state; dl reads gelu(x) computed inline and dx is
// the gradient of x (GeluGrad fused in). x may then be a view of dy's shape (same element count
// and last dim).
//
// Lowering (shaders/ia3.wgsl): the forward is one streaming pass; the backward is one fused pass
// (dx plus per-chunk column partials of dy ⊙ x) and one small pass per vector that sums the chunks
// in fixed order. `ia3Tiling` chooses the tile shape from (rows, C) and the device's traits (GPU or
// software adapter, from the lowering context), so a shape bucket maps to fixed pipelines and uniforms.

import text from '../../shaders/ia3.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import { grid, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import { gelu, geluDerivative } from './elementwise.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import type { BufferRef, Inputs, LoweringSteps, OpContext, OpDef } from './types.js';

/** Most vectors one IA3 op multiplies: the grad kernel then binds 8 storage buffers, WebGPU's minimum. */
export const MAX_IA3_VECTORS = 4;

export const ia3Shader = new Shader('ia3.wgsl', text, {
  prelude: ['grid', 'gelu'],
  structs: {
    Tiles: [
      ['rows', 'u32'],
      ['lanes', 'u32'], // C, or C / 4 in the _v4 entries
      ['colBlocks', 'u32'], // ceil(lanes / CT)
      ['chunkRows', 'u32'], // rows per chunk, a multiple of RT
      ['tiles', 'u32'], // chunks · colBlocks
    ],
    Finish: [
      ['cols', 'u32'],
      ['chunks', 'u32'],
      ['skip', 'u32'], // k: the vector whose gradient this pass writes (its own factor is left out)
    ],
  },
});

const L_INPUTS = ['l1', 'l2', 'l3', 'l4'];

function kernel(name: string, entryPoint: string, inputs: string[], outputs: string[], uniforms: 'Tiles' | 'Finish') {
  return ia3Shader.kernel({ name, entryPoint, inputs, outputs, uniforms });
}

// The scalar and vec4 entries share one source; they differ in the element type of x/y/dy/dx.
const scaleKernels = {
  s: kernel('ia3_scale', 'scale_s', ['x', ...L_INPUTS], ['y'], 'Tiles'),
  v4: kernel('ia3_scale_v4', 'scale_v4', ['x', ...L_INPUTS], ['y'], 'Tiles'),
};
const gradKernels = {
  s: kernel('ia3_scale_grad', 'grad_s', ['x', ...L_INPUTS, 'dy'], ['dx', 'partials'], 'Tiles'),
  v4: kernel('ia3_scale_grad_v4', 'grad_v4', ['x', ...L_INPUTS, 'dy'], ['dx', 'partials'], 'Tiles'),
};
const finishKernel = kernel('ia3_scale_grad_finish', 'finish', ['partials', ...L_INPUTS], ['dl'], 'Finish');

/** Threads per workgroup of every IA3 kernel (WebGPU's guaranteed maximum). */
const WG_THREADS = 256;
/** Workgroups a dispatch aims for: a few waves on a large GPU (≈1000 resident workgroups). */
const TARGET_TILES = 2048;
/** Workgroups a dispatch aims for on a software adapter: a few per CPU core. */
const SOFTWARE_TARGET_TILES = 32;

const pow2ceil = (v: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, v)));

/** The tile shape of an IA3 pass over x viewed as [rows, C]; see shaders/ia3.wgsl. */
export interface IA3Tiling {
  /** C % 4 == 0: x, y, dy and dx move as vec4. */
  readonly vec4: boolean;
  /** Lanes per row: C, or C / 4 when vec4. */
  readonly lanes: number;
  /** Workgroup size: `ct` lanes × `rt` row groups (rt a power of two, ct·rt ≤ 256). */
  readonly ct: number;
  readonly rt: number;
  readonly colBlocks: number;
  /** Rows per chunk (a multiple of rt); chunk count = rows of the partials buffer. */
  readonly chunkRows: number;
  readonly chunks: number;
  /** Workgroups in the dispatch: chunks × colBlocks (folded by `grid`). */
  readonly tiles: number;
}

/**
 * Chooses the tiling of an IA3 pass. `minRowsPerThread` trades parallelism for less reduction work
 * (the backward wants each thread to sum several rows before the workgroup tree).
 * `softwareAdapter` (DeviceTraits.software): a software adapter runs the invocations of a workgroup
 * one SIMD group after another on a CPU core, so a workgroup barrier turns every group into a
 * coroutine that must be suspended and resumed (the row-group tree then costs ~10× the streaming
 * itself), and each workgroup has a fixed launch cost. Its tiling has one row group (rt = 1: no
 * barrier, no workgroup memory) and a few dozen workgroups whose threads each walk many rows.
 * Results are bit-identical run to run either way.
 */
export function ia3Tiling(rows: number, C: number, minRowsPerThread: number, softwareAdapter: boolean): IA3Tiling {
  const vec4 = C % 4 === 0 && C > 0;
  const lanes = vec4 ? C / 4 : C;
  const ct = Math.min(64, pow2ceil(lanes));
  // Few rows: shrink the workgroup rather than leave row groups idle.
  const rt = softwareAdapter ? 1 : Math.min(WG_THREADS / ct, pow2ceil(rows));
  const colBlocks = Math.max(1, Math.ceil(lanes / ct));
  const target = softwareAdapter ? SOFTWARE_TARGET_TILES : TARGET_TILES;
  const chunksWanted = Math.max(1, Math.floor(target / colBlocks));
  const rowsPerChunk = Math.max(rt * minRowsPerThread, Math.ceil(rows / chunksWanted));
  const chunkRows = Math.ceil(rowsPerChunk / rt) * rt;
  const chunks = rows === 0 || lanes === 0 ? 0 : Math.ceil(rows / chunkRows);
  return { vec4, lanes, ct, rt, colBlocks, chunkRows, chunks, tiles: chunks * colBlocks };
}

function tileUniforms(rows: number, t: IA3Tiling): Record<string, number> {
  return { rows, lanes: t.lanes, colBlocks: t.colBlocks, chunkRows: t.chunkRows, tiles: t.tiles };
}

const FORWARD_ROWS_PER_THREAD = 4;
const BACKWARD_ROWS_PER_THREAD = 8;

// ---------------------------------------------------------------------------------------------
// Shape checks shared by both ops.

interface Layout {
  rows: number;
  C: number;
  /** Input index of l1; the vectors are inputs first..first+count-1. */
  first: number;
  count: number;
}

function vectorLayout(inputs: Inputs<TensorType>, xIndex: number, ctx: OpContext): Layout {
  const x = inputs[xIndex];
  if (x === undefined) throw new ShapeError(ctx.opType, ctx.nodeName, `required input ${xIndex} (x) is missing`);
  if (!FLOAT_TYPES.has(x.dtype)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `x must be a float tensor, got ${x.dtype}`);
  }
  if (x.dims.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'x must have at least one dim');
  const C = x.dims[x.dims.length - 1]!;
  const first = xIndex + 1;
  if (inputs.length > first + MAX_IA3_VECTORS) {
    throw new UnsupportedOpError(
      ctx.opType,
      ctx.nodeName,
      `${inputs.length - first} IA3 vectors given; at most ${MAX_IA3_VECTORS} adapters can be active at once`,
    );
  }
  let count = 0;
  for (let i = first; i < inputs.length; i++) {
    const l = inputs[i];
    if (l === undefined) {
      // Optional vectors may only be left off at the end.
      if (inputs.slice(i + 1).some((v) => v !== undefined)) {
        throw new ShapeError(ctx.opType, ctx.nodeName, `IA3 vector input ${i} is missing but a later one is given`);
      }
      break;
    }
    if (!FLOAT_TYPES.has(l.dtype)) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `IA3 vector input ${i} must be float, got ${l.dtype}`);
    }
    if (sizeOf(l.dims) !== C) {
      throw new ShapeError(
        ctx.opType,
        ctx.nodeName,
        `IA3 vector input ${i} has shape [${l.dims.join(',')}] (${sizeOf(l.dims)} elements); ` +
          `the last dim of x [${x.dims.join(',')}] needs ${C}`,
      );
    }
    count++;
  }
  if (count === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'at least one IA3 vector is required');
  return { rows: C === 0 ? 0 : sizeOf(x.dims) / C, C, first, count };
}

/** The activation IA3ScaleGrad applies to x (attribute `activation`); undefined: none. */
function activationAttr(attrs: Attrs, ctx: OpContext): 'none' | 'tanh' | undefined {
  const v = attrs['activation'];
  if (v === undefined) return undefined;
  if (v === 'gelu') return 'none';
  if (v === 'gelu_tanh') return 'tanh';
  throw new ShapeError(ctx.opType, ctx.nodeName, `attribute activation must be 'gelu' or 'gelu_tanh', got ${String(v)}`);
}

function inputGradAttr(attrs: Attrs, ctx: OpContext): boolean {
  const v = attrs['input_grad'] ?? 1;
  if (v !== 0 && v !== 1) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `attribute input_grad must be 0 or 1, got ${String(v)}`);
  }
  return v === 1;
}

/** s[c] = Π_{k≠skip} l_k[c] (skip = -1 for the full product). */
function vectorProduct(ls: readonly RefTensor[], C: number, skip: number): Float64Array {
  const s = new Float64Array(C).fill(1);
  ls.forEach((l, k) => {
    if (k === skip) return;
    for (let c = 0; c < C; c++) s[c]! *= l.data[c]!;
  });
  return s;
}

/** Bindings of l1..l4 for a kernel: vectors past `count` alias l1 (the kernel never reads them). */
function vectorBindings(first: number, count: number): BufferRef[] {
  return Array.from({ length: MAX_IA3_VECTORS }, (_, k) => ({ in: first + (k < count ? k : 0) }));
}

// ---------------------------------------------------------------------------------------------

const IA3Scale: OpDef = {
  domain: 'ia3',
  doc: 'y = x ⊙ (l1 ⊙ … ⊙ lk) over the last dim of x (k ≤ 4); each l has C elements in any shape',
  shape(inputs, _attrs, ctx) {
    vectorLayout(inputs, 0, ctx);
    const x = inputs[0]!;
    return [{ dtype: x.dtype, dims: [...x.dims] }];
  },
  reference(inputs, _attrs, ctx) {
    const { C, first, count } = vectorLayout(inputs, 0, ctx);
    const x = inputs[0]!;
    const s = vectorProduct(inputs.slice(first, first + count) as RefTensor[], C, -1);
    const y = tensor(x.dtype, x.dims);
    for (let i = 0; i < y.data.length; i++) y.data[i] = x.data[i]! * s[i % C]!;
    return [y];
  },
  gpu(inputs, _outputs, _attrs, ctx): LoweringSteps {
    const { rows, C, first, count } = vectorLayout(inputs, 0, ctx);
    const t = ia3Tiling(rows, C, FORWARD_ROWS_PER_THREAD, ctx.device.software);
    const program: Program = {
      kernel: t.vec4 ? scaleKernels.v4 : scaleKernels.s,
      overrides: { NL: count, CT: t.ct, RT: t.rt },
      uniforms: tileUniforms(rows, t),
      workgroups: grid(t.tiles),
    };
    return { steps: [{ program, bindings: [{ in: 0 }, ...vectorBindings(first, count), { out: 0 }] }] };
  },
};

function gradShape(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): TensorType[] {
  const { first, count } = vectorLayout(inputs, 1, ctx);
  const inputGrad = inputGradAttr(attrs, ctx);
  const dy = inputs[0];
  const x = inputs[1]!;
  if (dy === undefined) throw new ShapeError(ctx.opType, ctx.nodeName, 'required input 0 (dy) is missing');
  if (!FLOAT_TYPES.has(dy.dtype)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `dy must be a float tensor, got ${dy.dtype}`);
  }
  // With an activation x may be a view of dy (the pre-GELU state before a Reshape).
  const view = activationAttr(attrs, ctx) !== undefined && sizeOf(dy.dims) === sizeOf(x.dims) && dy.dims.at(-1) === x.dims.at(-1);
  if (!view && (dy.dims.length !== x.dims.length || dy.dims.some((d, i) => d !== x.dims[i]))) {
    throw new ShapeError(
      ctx.opType,
      ctx.nodeName,
      `dy [${dy.dims.join(',')}] and x [${x.dims.join(',')}] must have the same shape`,
    );
  }
  const dx: TensorType = { dtype: x.dtype, dims: inputGrad ? [...x.dims] : [0] };
  const dls = inputs.slice(first, first + count).map((l) => ({ dtype: l!.dtype, dims: [...l!.dims] }));
  return [dx, ...dls];
}

const IA3ScaleGrad: OpDef = {
  domain: 'ia3',
  doc: "backward of IA3Scale: (dy, x, l1..lk) → (dx, dl1..dlk); input_grad=0 leaves dx empty ([0]); activation 'gelu' | 'gelu_tanh': the scaled value was gelu(x), dx is x's gradient",
  shape: gradShape,
  reference(inputs, attrs, ctx) {
    const [dxType] = gradShape(inputs, attrs, ctx);
    const { C, first, count } = vectorLayout(inputs, 1, ctx);
    const dy = inputs[0]!;
    const x = inputs[1]!;
    const ls = inputs.slice(first, first + count) as RefTensor[];
    const act = activationAttr(attrs, ctx);
    const dx = tensor(dxType!.dtype, dxType!.dims);
    if (dx.data.length > 0) {
      const s = vectorProduct(ls, C, -1);
      for (let i = 0; i < dx.data.length; i++) {
        const d = dy.data[i]! * s[i % C]!;
        dx.data[i] = act === undefined ? d : d * geluDerivative(x.data[i]!, act);
      }
    }
    const colSum = new Float64Array(C);
    for (let i = 0; i < dy.data.length; i++) colSum[i % C]! += dy.data[i]! * (act === undefined ? x.data[i]! : gelu(x.data[i]!, act));
    const dls = ls.map((l, k) => {
      const others = vectorProduct(ls, C, k);
      const dl = tensor(l.dtype, l.dims);
      for (let c = 0; c < C; c++) dl.data[c] = colSum[c]! * others[c]!;
      return dl;
    });
    return [dx, ...dls];
  },
  gpu(inputs, _outputs, attrs, ctx): LoweringSteps {
    const { rows, C, first, count } = vectorLayout(inputs, 1, ctx);
    const inputGrad = inputGradAttr(attrs, ctx);
    const act = activationAttr(attrs, ctx);
    const software = ctx.device.software;
    const t = ia3Tiling(rows, C, BACKWARD_ROWS_PER_THREAD, software);
    const ls = vectorBindings(first, count);
    // temp 0: partials [chunks, C]; temp 1 (input_grad = 0): a 16-byte stand-in for the dx binding,
    // which the kernel never writes (DX = 0) but the bind group layout still requires.
    const temps = [4 * t.chunks * C, ...(inputGrad ? [] : [16])];
    const main: Program = {
      kernel: t.vec4 ? gradKernels.v4 : gradKernels.s,
      overrides: { NL: count, CT: t.ct, RT: t.rt, DX: inputGrad ? 1 : 0, ACT: act === undefined ? 0 : act === 'tanh' ? 2 : 1 },
      uniforms: tileUniforms(rows, t),
      workgroups: grid(t.tiles),
    };
    const fct = Math.min(64, pow2ceil(C));
    // The finish pass is tiny; a fixed shape keeps its pipeline count down. Its row groups split
    // the chunks, except on a software adapter (rt = 1, no barrier), where chunks are few anyway.
    const frt = software ? 1 : WG_THREADS / fct;
    const steps: LoweringSteps['steps'][number][] = [
      { program: main, bindings: [{ in: 1 }, ...ls, { in: 0 }, inputGrad ? { out: 0 } : { tmp: 1 }, { tmp: 0 }] },
    ];
    for (let k = 0; k < count; k++) {
      steps.push({
        program: {
          kernel: finishKernel,
          overrides: { NL: count, CT: fct, RT: frt },
          uniforms: { cols: C, chunks: t.chunks, skip: k },
          workgroups: grid(Math.ceil(C / fct)),
        },
        bindings: [{ tmp: 0 }, ...ls, { out: 1 + k }],
      });
    }
    return { temps, steps };
  },
};

/** The IA3 family of the op registry (domain 'ia3'). */
export const ia3Ops = { IA3Scale, IA3ScaleGrad } satisfies Record<string, OpDef>;
