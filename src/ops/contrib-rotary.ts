// onnxruntime's RotaryEmbedding (domain com.microsoft), and the rotary steps GroupQueryAttention
// shares with it, expanded at load into primitives around the internal RotaryEmbedding kernel.
//
//   RotaryEmbedding(input, position_ids, cos_cache, sin_cache) → output
//     input [B, S, N·H] or [B, N, S, H]; position_ids [B, S], or one value p (positions p + s);
//     caches [max_position, R/2] with R the rotary dim: `rotary_embedding_dim`, or 2·cache width
//     (then H = R); `num_heads` splits a 3-D input when the dim is given. The first R values of
//     every head rotate by the cached angle of their position, pairing element k with k + R/2
//     (`interleaved` 0) or 2k with 2k + 1 (1); the other H − R pass through:
//       y_p = x_p·cos_k − x_q·sin_k,   y_q = x_q·cos_k + x_p·sin_k.
//   → Gather of the caches at the positions (the halves repeated to R values: Concat, or each value
//     twice for interleaved pairs), Reshape to heads, the internal RotaryEmbedding, Split/Concat
//     for a partial rotary dim.
// Positions past the cache are an error in the reference; on the GPU they are Gather's indices.

import { ShapeError } from '../errors.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { requireFloat } from './normalization.js';
import type { ExpandedOpDef, Expander, Inputs, OpContext } from './types.js';
import { attrInt, need } from './util.js';

// Every contrib op here is version 1 of com.microsoft (the domain's only version so far): sinceVersion 1.
const MS = 'com.microsoft';

function fail(ctx: OpContext, detail: string): never {
  throw new ShapeError(ctx.opType, ctx.nodeName, detail);
}

function flag(attrs: Attrs, name: string, ctx: OpContext): boolean {
  const v = attrInt(attrs, name, 0);
  if (v !== 0 && v !== 1) fail(ctx, `${name} must be 0 or 1, got ${v}`);
  return v === 1;
}

/** Rotates `r` values of a head at `base` (stride 1) by cache row `pos`, in float64. */
export function rotateRef(
  src: ArrayLike<number>,
  dst: Float64Array,
  base: number,
  r: number,
  cos: RefTensor,
  sin: RefTensor,
  pos: number,
  interleaved: boolean,
  what: string,
  ctx: OpContext,
): void {
  const half = r / 2;
  const rows = cos.dims[0]!;
  if (!Number.isInteger(pos) || pos < 0 || pos >= rows) fail(ctx, `${what} ${pos} is out of range [0, ${rows})`);
  const width = cos.dims[1]!;
  for (let k = 0; k < half; k++) {
    const p = interleaved ? 2 * k : k;
    const q = interleaved ? 2 * k + 1 : k + half;
    const c = cos.data[pos * width + k]!;
    const s = sin.data[pos * width + k]!;
    const [xp, xq] = [src[base + p]!, src[base + q]!];
    dst[base + p] = xp * c - xq * s;
    dst[base + q] = xq * c + xp * s;
  }
}

interface RotaryGeometry {
  readonly b: number;
  readonly s: number;
  readonly n: number;
  readonly h: number;
  readonly r: number;
  /** Input [B, N, S, H] rather than [B, S, N·H]. */
  readonly bnsh: boolean;
  /** position_ids holds one start position. */
  readonly offset: boolean;
}

function rotaryGeometry(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): RotaryGeometry {
  const x = need(inputs, 0, ctx);
  const pos = need(inputs, 1, ctx);
  const cos = need(inputs, 2, ctx);
  const sin = need(inputs, 3, ctx);
  requireFloat(x, 'input', ctx);
  requireFloat(cos, 'cos_cache', ctx);
  requireFloat(sin, 'sin_cache', ctx);
  if (x.dims.length !== 3 && x.dims.length !== 4) fail(ctx, `input must be [batch, sequence, hidden] or [batch, heads, sequence, head], got [${x.dims.join(',')}]`);
  if (cos.dims.length !== 2 || cos.dims.join() !== sin.dims.join()) fail(ctx, `cos_cache and sin_cache must be 2-D of one shape, got [${cos.dims.join(',')}] and [${sin.dims.join(',')}]`);
  const bnsh = x.dims.length === 4;
  const [b, s] = bnsh ? [x.dims[0]!, x.dims[2]!] : [x.dims[0]!, x.dims[1]!];
  const hidden = bnsh ? x.dims[1]! * x.dims[3]! : x.dims[2]!;
  const rotaryDim = attrInt(attrs, 'rotary_embedding_dim', 0);
  const numHeads = attrInt(attrs, 'num_heads', 0);
  if (rotaryDim > 0 && numHeads <= 0) fail(ctx, 'num_heads must be given with rotary_embedding_dim');
  const h = bnsh ? x.dims[3]! : rotaryDim === 0 ? 2 * cos.dims[1]! : hidden / numHeads;
  const r = rotaryDim > 0 ? rotaryDim : h;
  if (!Number.isInteger(h) || h <= 0 || hidden % h !== 0) fail(ctx, `hidden size ${hidden} does not split into heads of ${h}`);
  if (r > h || r % 2 !== 0 || cos.dims[1] !== r / 2) fail(ctx, `the rotary dim ${r} must be even, at most the head size ${h}, and twice the cache width ${cos.dims[1]}`);
  if (!['int64', 'int32'].includes(pos.dtype)) fail(ctx, `position_ids must be int64, got ${pos.dtype}`);
  const offset = sizeOf(pos.dims) === 1 && pos.dims.length <= 1;
  if (!offset && (pos.dims.length !== 2 || pos.dims[0] !== b || pos.dims[1] !== s)) fail(ctx, `position_ids must be one value or [${b},${s}], got [${pos.dims.join(',')}]`);
  flag(attrs, 'interleaved', ctx);
  return { b, s, n: hidden / h, h, r, bnsh, offset };
}

/**
 * The caches as R-wide rows for the internal kernel, which reads one cos and one sin per element:
 * halves repeated ([c0..c(R/2−1), c0..]) for rotate_half pairs, each value twice for interleaved.
 */
export function fullTables(x: Expander, cos: string, sin: string, interleaved: boolean): [string, string] {
  const full = (t: string): string =>
    interleaved
      ? x.op('Reshape', [x.op('Expand', [x.op('Unsqueeze', [t, x.ints([2])]), x.ints([1, 1, 2])]), x.ints([0, -1])])
      : x.op('Concat', [t, t], { axis: 1 });
  return [full(cos), full(sin)];
}

/**
 * Rotates the first `r` values of every head of `heads` ([..., H], H = `h`), with cos/sin rows
 * already gathered and broadcastable to it; writes `output` when given.
 */
export function rotateHeads(x: Expander, heads: string, c: string, s: string, r: number, h: number | undefined, interleaved: boolean, output?: string): string {
  const attrs = { interleaved: interleaved ? 1 : 0 };
  if (h !== undefined && r === h) return x.op('RotaryEmbedding', [heads, c, s], attrs, output);
  if (h === undefined) x.unsupported(`a rotary dim of ${r} needs the head size, which is not known before shapes are`);
  const [rot, pass] = x.emit('Split', [heads, x.ints([r, h - r])], { axis: -1 }, 2) as [string, string];
  return x.op('Concat', [x.op('RotaryEmbedding', [rot, c, s], attrs), pass], { axis: -1 }, output);
}

/** The static dims of a 2-D cache, or the node's UnsupportedOpError. */
export function cacheWidth(x: Expander, cache: string): number {
  const d = x.dims(cache);
  const w = d?.length === 2 ? d[1] : undefined;
  if (w === undefined) x.unsupported(`the width of cache '${cache}' must be known before shapes are (an initializer)`);
  return w;
}

export const contribRotaryOps = {
  RotaryEmbedding: {
    domain: MS,
    sinceVersion: 1,
    doc: 'rotary position embedding of [B, S, N·H] or [B, N, S, H] from cos/sin caches at position_ids ([B, S] or a start offset); interleaved, partial rotary_embedding_dim. Expanded: Gather, Concat, Reshape, RotaryEmbedding (ia3).',
    shape(inputs, attrs, ctx) {
      rotaryGeometry(inputs, attrs, ctx);
      const x = need(inputs, 0, ctx);
      return [{ dtype: x.dtype, dims: [...x.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const g = rotaryGeometry(inputs, attrs, ctx);
      const x = need(inputs, 0, ctx);
      const pos = need(inputs, 1, ctx);
      const out = tensor(x.dtype, x.dims, x.data);
      const inter = flag(attrs, 'interleaved', ctx);
      for (let b = 0; b < g.b; b++) {
        for (let s = 0; s < g.s; s++) {
          const p = g.offset ? pos.data[0]! + s : pos.data[b * g.s + s]!;
          for (let n = 0; n < g.n; n++) {
            const base = g.bnsh ? ((b * g.n + n) * g.s + s) * g.h : (b * g.s + s) * g.n * g.h + n * g.h;
            rotateRef(x.data, out.data, base, g.r, need(inputs, 2, ctx), need(inputs, 3, ctx), p, inter, 'position id', ctx);
          }
        }
      }
      return [out];
    },
    expand(x, attrs) {
      const input = x.need(0, 'input');
      const positionIds = x.need(1, 'position_ids');
      const cos = x.need(2, 'cos_cache');
      const sin = x.need(3, 'sin_cache');
      x.buffer(cos);
      x.buffer(sin);
      const rank = x.dims(input)?.length;
      const posRank = x.dims(positionIds)?.length;
      if (rank !== 3 && rank !== 4) return x.unsupported(`the rank of input '${input}' (3 or 4) must be known before shapes are`);
      if (posRank === undefined) return x.unsupported(`the rank of position_ids '${positionIds}' must be known before shapes are`);
      const interleaved = attrInt(attrs, 'interleaved', 0) === 1;
      const rotaryDim = attrInt(attrs, 'rotary_embedding_dim', 0);
      const numHeads = attrInt(attrs, 'num_heads', 0);
      const r = rotaryDim > 0 ? rotaryDim : 2 * cacheWidth(x, cos);
      const bnsh = rank === 4;
      let h: number | undefined = bnsh ? x.dims(input)![3] : rotaryDim === 0 ? r : undefined;
      const headsOf3d = h !== undefined ? [0, 0, -1, h] : [0, 0, numHeads, -1];
      if (h === undefined && !bnsh) {
        const hidden = x.dims(input)![2];
        if (hidden !== undefined && numHeads > 0) h = hidden / numHeads;
      }
      // Positions [B, S] (or [S] from a start offset), then cos/sin rows shaped to broadcast over heads.
      let positions = positionIds;
      const offset = posRank <= 1;
      if (offset) {
        const seq = x.op('Gather', [x.op('Shape', [input]), x.scalar(bnsh ? 2 : 1, 'int64')], { axis: 0 });
        const steps = x.op('Range', [x.scalar(0, 'int64'), seq, x.scalar(1, 'int64')]);
        positions = x.op('Add', [x.op('Reshape', [x.op('Cast', [positionIds], { to: 7 }), x.ints([-1])]), steps]);
      }
      const [cosFull, sinFull] = fullTables(x, cos, sin, interleaved);
      const rows = (t: string): string => {
        const g = x.op('Gather', [t, positions], { axis: 0 });
        // offset: [S, R] broadcasts over [B, S, N, R] only after a heads axis; [B, S, R] likewise.
        return bnsh ? (offset ? g : x.op('Unsqueeze', [g, x.ints([1])])) : x.op('Unsqueeze', [g, x.ints([offset ? 1 : 2])]);
      };
      const [c, s] = [rows(cosFull), rows(sinFull)];
      if (bnsh) {
        rotateHeads(x, input, c, s, r, h, interleaved, x.node.outputs[0]!);
        return;
      }
      const heads = x.op('Reshape', [input, x.ints(headsOf3d)]);
      x.op('Reshape', [rotateHeads(x, heads, c, s, r, h, interleaved), x.ints([0, 0, -1])], {}, x.node.outputs[0]!);
    },
  },
} satisfies Record<string, ExpandedOpDef>;
