// Weights too large for one binding, stored as blocks, and the op that reads an embedding table
// from its row blocks.
//
// A weight over the device's binding limit is kept as blocks along one axis, each a tensor of its
// own (a buffer of its own on the GPU). The axis follows from how the graph reads the weight, so
// that each reader can take the blocks one by one: an embedding table read by Gather on axis 0 is
// split into row blocks (GatherBlocks below), a matrix read as a matmul's B into blocks of its
// output columns (the legaliser concatenates the products, compile/legalize.ts), a head read by
// LMHeadCrossEntropy into blocks of the vocabulary. The streaming loader uploads a large weight
// straight into these blocks (onnx/stream.ts) with the same rule, so the legaliser finds them in
// the weight store by name. Block widths along a matrix's columns are multiples of 4 where
// possible (the matmul kernels' vec4 loads).
//
//   GatherBlocks (indices [...], W_0 [r_0, ...], W_1 [r_1, ...], …) → out [..., ...]
// is Gather(concat(W_0, W_1, …), indices, axis 0): one dispatch per block, each writing the
// elements whose index lies in its block (indices clamped to the whole table, as Gather on the GPU).

import { ShapeError } from '../errors.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { gatherProgram } from './layout-kernels.js';
import type { Inputs, LoweringSteps, OpContext, OpDef } from './types.js';
import { need } from './util.js';

/** A node as `blockAxis` (and the streaming sink) reads it: op type, inputs, outputs, attributes. */
export interface Reader {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, unknown>>;
}

/**
 * The axis along which the readers of `weight` (a rank-2 tensor) can take it in blocks, or a text
 * saying which reader cannot. Gather on axis 0 needs row blocks and the fused LM head blocks of
 * its vocabulary; a matmul takes B in blocks along either axis (output columns: products
 * concatenated; the contraction: products summed), preferring its output columns — so the first
 * matmul reader (the forward product, before any backward one) decides when nothing else does.
 */
export function blockAxis(weight: string, readers: readonly Reader[]): 0 | 1 | string {
  let required: 0 | 1 | undefined;
  let preferred: 0 | 1 | undefined;
  for (const r of readers) {
    const at = r.inputs.indexOf(weight);
    const transB = Number(r.attrs.transB ?? 0) === 1;
    let a: 0 | 1 | undefined;
    if (r.opType === 'Gather' && at === 0 && (Number(r.attrs.axis ?? 0) + 2) % 2 === 0) a = 0;
    else if (r.opType === 'GatherBlocks' && at >= 1) a = 0;
    else if (r.opType === 'LMHeadCrossEntropy' && at >= 2) a = transB ? 0 : 1;
    else if ((r.opType === 'MatMul' || r.opType === 'Gemm' || r.opType === 'FusedMatMul') && at === 1) {
      preferred ??= transB ? 0 : 1;
      continue;
    } else return `${r.opType} reads it as input ${at}, which cannot be taken in blocks`;
    if (required !== undefined && a !== required) return `its readers would split it along different axes (${r.opType} along axis ${a})`;
    required = a;
  }
  return required ?? preferred ?? 0;
}

/** One block of a weight: its name, the range [start, end) along `axis`, and its dims. */
export interface Block {
  readonly name: string;
  readonly start: number;
  readonly end: number;
  readonly dims: readonly number[];
}

/** The store name of a block of `weight`. */
export function blockName(weight: string, axis: number, start: number, end: number): string {
  return `${weight}#${axis}:${start}-${end}`;
}

/**
 * The blocks of a `dims` tensor of 4-byte elements along `axis`, each at most `limit` bytes, as
 * even as possible (column widths rounded to multiples of 4 when a block holds at least 4).
 * Undefined when one slice along the axis alone exceeds the limit.
 */
export function blockLayout(weight: string, dims: readonly number[], axis: number, limit: number): Block[] | undefined {
  const n = dims[axis]!;
  const slice = 4 * (sizeOf(dims) / Math.max(1, n));
  let most = Math.floor(limit / slice);
  if (most < 1) return undefined;
  if (axis === dims.length - 1 && most >= 4) most -= most % 4;
  const count = Math.ceil(n / most);
  let size = Math.ceil(n / count);
  if (axis === dims.length - 1 && size % 4 !== 0 && most >= 4) size = Math.min(most, size + 4 - (size % 4));
  const blocks: Block[] = [];
  for (let start = 0; start < n; start += size) {
    const end = Math.min(n, start + size);
    blocks.push({ name: blockName(weight, axis, start, end), start, end, dims: dims.map((d, i) => (i === axis ? end - start : d)) });
  }
  return blocks;
}

/** The values of `block` of a row-major `dims` tensor (a view for row blocks, a copy for columns). */
export function blockData<T extends Float32Array | Int32Array>(data: T, dims: readonly number[], axis: number, block: Block): T {
  const inner = sizeOf(dims.slice(axis + 1));
  if (axis === 0) return data.subarray(block.start * inner, block.end * inner) as T;
  const outer = sizeOf(dims.slice(0, axis));
  const n = dims[axis]!;
  const width = (block.end - block.start) * inner;
  const out = new (data.constructor as new (n: number) => T)(outer * width);
  for (let o = 0; o < outer; o++) out.set(data.subarray((o * n + block.start) * inner, (o * n + block.end) * inner), o * width);
  return out;
}

function plan(inputs: Inputs<TensorType>, ctx: OpContext) {
  const indices = need(inputs, 0, ctx);
  const blocks = inputs.slice(1).map((b, i) => {
    if (!b) throw new ShapeError(ctx.opType, ctx.nodeName, `block ${i} is missing`);
    return b;
  });
  if (blocks.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'needs at least one block');
  const row = blocks[0]!.dims.slice(1);
  for (const b of blocks) {
    if (b.dims.length !== row.length + 1 || b.dims.slice(1).some((d, i) => d !== row[i]) || b.dtype !== blocks[0]!.dtype) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `blocks must share dtype and trailing dims; got [${b.dims.join(',')}] and [${blocks[0]!.dims.join(',')}]`);
    }
  }
  return { indices, blocks, row, rows: blocks.reduce((s, b) => s + b.dims[0]!, 0), inner: sizeOf(row) };
}

export const blockOps = {
  GatherBlocks: {
    domain: 'ia3',
    doc: 'Gather on axis 0 from a table stored as row blocks: (indices, W_0, W_1, …) → Gather(concat(W_i), indices); one dispatch per block',
    shape(inputs, _attrs, ctx) {
      const p = plan(inputs, ctx);
      return [{ dtype: p.blocks[0]!.dtype, dims: [...p.indices.dims, ...p.row] }];
    },
    reference(inputs, _attrs, ctx) {
      const p = plan(inputs, ctx);
      const whole = new Float64Array(p.rows * p.inner);
      let at = 0;
      for (const b of p.blocks as RefTensor[]) {
        whole.set(b.data, at);
        at += b.data.length;
      }
      const idx = (p.indices as RefTensor).data;
      const out = tensor(p.blocks[0]!.dtype, [...p.indices.dims, ...p.row]);
      idx.forEach((v, i) => {
        if (v < -p.rows || v >= p.rows) throw new ShapeError(ctx.opType, ctx.nodeName, `index ${v} at position ${i} is out of range for ${p.rows} rows`);
        const r = v < 0 ? v + p.rows : v;
        out.data.set(whole.subarray(r * p.inner, (r + 1) * p.inner), i * p.inner);
      });
      return [out];
    },
    gpu(inputs, _outputs, _attrs, ctx): LoweringSteps {
      const p = plan(inputs, ctx);
      const steps: LoweringSteps['steps'][number][] = [];
      let lo = 0;
      p.blocks.forEach((b, i) => {
        const hi = lo + b.dims[0]!;
        const program = gatherProgram({ dims: [1, sizeOf(p.indices.dims), p.inner], idxStrides: [0, 1, 0], dataStrides: [0, 0, 1], axisDim: p.rows, axisStride: p.inner, block: [lo, hi] }, ctx);
        if (program) steps.push({ program, bindings: [{ in: 1 + i }, { in: 0 }, { out: 0 }] });
        lo = hi;
      });
      return { steps };
    },
  },
} satisfies Record<string, OpDef>;
