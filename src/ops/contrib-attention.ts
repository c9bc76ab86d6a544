// onnxruntime's fused attention ops (domain com.microsoft), expanded at load into primitives:
//
//   Attention           the optimizer's BERT/GPT-2 attention: packed Q/K/V projection weights and
//                       bias inside the op, mask_index in any of onnxruntime's forms, unidirectional,
//                       past/present stacked as [2, B, N, P, H], attention_bias, qkv_hidden_sizes.
//   MultiHeadAttention  projections outside the op: separate Q/K/V (+ their packed bias), packed
//                       QKV [B, S, N, 3, H] or KV [B, L, N, 2, H], K/V already in heads [B, N, L, H];
//                       key_padding_mask, attention_bias, past_key/past_value, unidirectional.
//   GroupQueryAttention onnxruntime-genai's attention: packed or separate Q/K/V, kv_num_heads ≤
//                       num_heads, rotary inside (do_rotary, cos/sin caches, rotary_interleaved),
//                       seqlens_k / total_sequence_length, local_window_size, softcap, past/present.
//
// Every expansion ends in one core: heads as [B, N, S, H] (Reshape + Transpose), the past
// concatenated in front of the new keys, scores = scale·Q·Kᵀ (FusedMatMul with transB), the mask as
// an additive bias (AttentionMask, plus attention_bias), MaskedSoftmax, ·V, heads merged back. With
// fewer K/V heads (grouped queries) the queries of each K/V head are reshaped into its rows
// ([B, kvN, g·S, H]), so K and V are never repeated. Projections the op performs itself (Attention's
// weights) become MatMul + Add + Split, and `attention()` records the Q/K/V values, so module
// discovery sees `x·W + b` and IA3 can scale the key and value columns after their biases.
//
// GroupQueryAttention's present follows onnxruntime's layout: per batch the valid past
// (seqlens_k + 1 − S keys), then the new keys, zeros after; the attention reads the same keys from
// [past | new] with a per-batch mask (AttentionMask's seqlens rule), which is what the gradient
// flows through. A shared past/present buffer (total_sequence_length ≠ past + new) is refused.
//
// The references are written from onnxruntime's kernels (attention_helper's PrepareMask, the GQA
// CPU kernel) in float64, independently of the expansions they are the oracle of.
//
// Size: three ops that share one attention core, its float64 reference and the mask rules.

import { ShapeError } from '../errors.js';
import { F32_MAX } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { cacheWidth, fullTables, rotateHeads, rotateRef } from './contrib-rotary.js';
import { requireFloat } from './normalization.js';
import type { ExpandedOpDef, Expander, Inputs, OpContext } from './types.js';
import { attrFloat, attrInt, attrInts, need } from './util.js';

// Every contrib op here is version 1 of com.microsoft (the domain's only version so far): sinceVersion 1.
const MS = 'com.microsoft';

function fail(ctx: OpContext, detail: string): never {
  throw new ShapeError(ctx.opType, ctx.nodeName, detail);
}

const shapeOf = (t: TensorType): string => `[${t.dims.join(',')}]`;
const isInt = (t: TensorType): boolean => t.dtype === 'int32' || t.dtype === 'int64' || t.dtype === 'bool';

// ---------------------------------------------------------------------------------------------
// The float64 reference core

/** Heads as [B, n, len, h] in float64. */
interface Heads {
  readonly data: Float64Array;
  readonly n: number;
  readonly len: number;
  readonly h: number;
}

/** Heads of columns [off, off + n·h) of a [B, len, cols] tensor. */
function headsOf(src: ArrayLike<number>, b: number, len: number, cols: number, off: number, n: number, h: number): Heads {
  const data = new Float64Array(b * n * len * h);
  for (let bi = 0; bi < b; bi++) for (let l = 0; l < len; l++) for (let ni = 0; ni < n; ni++) for (let d = 0; d < h; d++) {
    data[((bi * n + ni) * len + l) * h + d] = src[(bi * len + l) * cols + off + ni * h + d]!;
  }
  return { data, n, len, h };
}

/** [past | cur] along the sequence (past may be absent). */
function concatHeads(b: number, past: Heads | undefined, cur: Heads): Heads {
  if (!past) return cur;
  const len = past.len + cur.len;
  const data = new Float64Array(b * cur.n * len * cur.h);
  for (let bi = 0; bi < b; bi++) for (let ni = 0; ni < cur.n; ni++) {
    const at = (bi * cur.n + ni) * len * cur.h;
    data.set(past.data.subarray((bi * cur.n + ni) * past.len * cur.h, (bi * cur.n + ni + 1) * past.len * cur.h), at);
    data.set(cur.data.subarray((bi * cur.n + ni) * cur.len * cur.h, (bi * cur.n + ni + 1) * cur.len * cur.h), at + past.len * cur.h);
  }
  return { data, n: cur.n, len, h: cur.h };
}

/**
 * softmax(scale·q·kᵀ (softcapped) + bias)·v per batch and query head, with query head `hd` reading
 * K/V head ⌊hd / (N / kvN)⌋; a row whose every key is −∞ gives zeros. Returns [B, S, N·Hv].
 */
function attendRef(b: number, q: Heads, k: Heads, v: Heads, scale: number, softcap: number, bias: (bi: number, hd: number, i: number, j: number) => number): Float64Array {
  const out = new Float64Array(b * q.len * q.n * v.h);
  const group = q.n / k.n;
  const scores = new Float64Array(k.len);
  for (let bi = 0; bi < b; bi++) for (let hd = 0; hd < q.n; hd++) {
    const kv = Math.floor(hd / group);
    for (let i = 0; i < q.len; i++) {
      let max = -Infinity;
      for (let j = 0; j < k.len; j++) {
        let dot = 0;
        for (let d = 0; d < q.h; d++) dot += q.data[((bi * q.n + hd) * q.len + i) * q.h + d]! * k.data[((bi * k.n + kv) * k.len + j) * k.h + d]!;
        let sc = scale * dot;
        if (softcap > 0) sc = softcap * Math.tanh(sc / softcap);
        sc += bias(bi, hd, i, j);
        scores[j] = sc;
        if (sc > max) max = sc;
      }
      let sum = 0;
      for (let j = 0; j < k.len; j++) {
        scores[j] = max === -Infinity ? 0 : Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let d = 0; d < v.h; d++) {
        let acc = 0;
        for (let j = 0; j < k.len; j++) acc += (sum === 0 ? 0 : scores[j]! / sum) * v.data[((bi * v.n + kv) * v.len + j) * v.h + d]!;
        out[(bi * q.len + i) * q.n * v.h + hd * v.h + d] = acc;
      }
    }
  }
  return out;
}

/**
 * onnxruntime's PrepareMask (Attention, MultiHeadAttention): 0 or `filter` from the mask index in
 * its form, −FLT_MAX for keys after P + i when causal.
 */
function maskBiasRef(mask: RefTensor | undefined, b: number, s: number, t: number, causal: boolean, filter: number, ctx: OpContext) {
  const p = t - s;
  const m = mask?.data;
  const d = mask?.dims ?? [];
  if (mask) {
    const ok = (d.length === 1 && (d[0] === b || d[0] === 2 * b)) || (d.length === 2 && d[0] === b && d[1] === t) || (d.length === 3 && d[0] === b && d[1] === s && d[2] === t) || (d.length === 4 && d[0] === b && d[1] === 1 && d[2]! >= t && d[3]! >= t);
    if (!ok) fail(ctx, `mask ${shapeOf(mask)} is not one of onnxruntime's forms for batch ${b}, sequence ${s}, total ${t}`);
  }
  const f = Math.fround(filter);
  return (bi: number, _hd: number, i: number, j: number): number => {
    if (causal && j > p + i) return -F32_MAX;
    if (!m) return 0;
    let hidden: boolean;
    if (d.length === 1) hidden = j >= m[bi]! || (d[0] === 2 * b && j < Math.min(m[b + bi]!, t));
    else if (d.length === 2) hidden = !(m[bi * t + j]! > 0);
    else if (d.length === 3) hidden = !(m[(bi * s + i) * t + j]! > 0);
    else hidden = !(m[(bi * d[2]! + p + i) * d[3]! + j]! > 0);
    return hidden ? f : 0;
  };
}

/** attention_bias [B or 1, N or 1, S, T], as a function of (b, head, i, j). */
function addBias(base: (bi: number, hd: number, i: number, j: number) => number, ab: RefTensor | undefined) {
  if (!ab) return base;
  const [b0, n0, s, t] = ab.dims as [number, number, number, number];
  return (bi: number, hd: number, i: number, j: number): number => base(bi, hd, i, j) + ab.data[(((b0 === 1 ? 0 : bi) * n0 + (n0 === 1 ? 0 : hd)) * s + i) * t + j]!;
}

function checkAttentionBias(ab: TensorType | undefined, b: number, n: number, s: number, t: number, ctx: OpContext): void {
  if (!ab) return;
  requireFloat(ab, 'attention_bias', ctx);
  const d = ab.dims;
  if (d.length !== 4 || (d[0] !== b && d[0] !== 1) || (d[1] !== n && d[1] !== 1) || d[2] !== s || d[3] !== t) {
    fail(ctx, `attention_bias must be [${b} or 1, ${n} or 1, ${s}, ${t}], got ${shapeOf(ab)}`);
  }
}

function checkMaskType(mask: TensorType | undefined, what: string, ctx: OpContext): void {
  if (mask && !isInt(mask)) fail(ctx, `${what} must be an int32 tensor, got ${mask.dtype}`);
}

// ---------------------------------------------------------------------------------------------
// The expansion core

/** [B, L, heads·H] → [B, heads, L, H]. */
function toHeads(x: Expander, v: string, heads: number, h?: number): string {
  return x.op('Transpose', [x.op('Reshape', [v, x.ints([0, 0, heads, h ?? -1])])], { perm: [0, 2, 1, 3] });
}

interface CoreSpec {
  readonly q: string; // [B, N, S, H]
  readonly k: string; // [B, kvN, L, H]
  readonly v: string;
  readonly numHeads: number;
  readonly kvHeads: number;
  readonly pastK?: string; // [B, kvN, P, H]
  readonly pastV?: string;
  readonly scale: number;
  readonly softcap?: number;
  /** The AttentionMask inputs after `scores` and its attributes; undefined for no mask at all. */
  readonly mask?: { readonly inputs: readonly (string | undefined)[]; readonly attrs: Attrs };
  readonly attentionBias?: string;
  /** Name of the output [B, S, N·Hv]. */
  readonly output: string;
}

/** The attention of `spec`; returns the keys and values attended to ([B, kvN, T, H]). */
function attendCore(x: Expander, c: CoreSpec): { k: string; v: string } {
  const k = c.pastK ? x.op('Concat', [c.pastK, c.k], { axis: 2 }) : c.k;
  const v = c.pastV ? x.op('Concat', [c.pastV, c.v], { axis: 2 }) : c.v;
  const grouped = c.kvHeads !== c.numHeads;
  // Grouped queries: the g query heads of a K/V head become its g·S rows (a view).
  const q = grouped ? x.op('Reshape', [c.q, x.ints([0, c.kvHeads, -1, 0])]) : c.q;
  let scores = x.op('FusedMatMul', [q, k], { transB: 1, alpha: c.scale });
  if (grouped) scores = x.op('Reshape', [scores, x.ints([0, c.numHeads, -1, 0])]);
  if (c.softcap !== undefined && c.softcap > 0) {
    scores = x.op('Mul', [x.op('Tanh', [x.op('Mul', [scores, x.scalar(1 / c.softcap, 'float32')])]), x.scalar(c.softcap, 'float32')]);
  }
  let bias = c.mask ? x.op('AttentionMask', [scores, ...c.mask.inputs], c.mask.attrs) : undefined;
  if (c.attentionBias) bias = bias ? x.op('Add', [bias, c.attentionBias]) : c.attentionBias;
  let probs = bias ? x.op('MaskedSoftmax', [scores, bias], { scale: 1 }) : x.op('Softmax', [scores], { axis: -1 });
  if (grouped) probs = x.op('Reshape', [probs, x.ints([0, c.kvHeads, -1, 0])]);
  let ctx = x.op('MatMul', [probs, v]);
  if (grouped) ctx = x.op('Reshape', [ctx, x.ints([0, c.numHeads, -1, 0])]);
  x.op('Reshape', [x.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), x.ints([0, 0, -1])], {}, c.output);
  return { k, v };
}

function positiveInt(x: Expander, attrs: Attrs, name: string): number {
  const v = attrInt(attrs, name, 0);
  if (!Number.isInteger(v) || v <= 0) x.unsupported(`attribute ${name} must be a positive integer, got ${v}`);
  return v;
}

/** The static last dim of a value, or the node's UnsupportedOpError saying why it is needed. */
function lastDim(x: Expander, v: string, why: string): number {
  const d = x.dims(v);
  const n = d?.[d.length - 1];
  if (n === undefined) x.unsupported(`the last dim of '${v}' must be known before shapes are, for ${why}`);
  return n;
}

const declared = (x: Expander, k: number): string | undefined => x.node.outputs[k] || undefined;

// ---------------------------------------------------------------------------------------------
// Attention

interface AttentionGeometry {
  b: number;
  s: number;
  n: number;
  sizes: [number, number, number];
  h: number;
  hv: number;
  p: number;
}

function attentionGeometry(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): AttentionGeometry {
  const x = need(inputs, 0, ctx);
  const w = need(inputs, 1, ctx);
  requireFloat(x, 'input', ctx);
  requireFloat(w, 'weights', ctx);
  if (x.dims.length !== 3) fail(ctx, `input must be [batch, sequence, hidden], got ${shapeOf(x)}`);
  if (w.dims.length !== 2 || w.dims[0] !== x.dims[2]) fail(ctx, `weights must be [${x.dims[2]}, q + k + v hidden], got ${shapeOf(w)}`);
  const n = attrInt(attrs, 'num_heads', 0);
  if (n <= 0) fail(ctx, 'num_heads must be positive');
  const given = attrInts(attrs, 'qkv_hidden_sizes');
  const sizes = (given && given.length > 0 ? [...given] : [w.dims[1]! / 3, w.dims[1]! / 3, w.dims[1]! / 3]) as [number, number, number];
  if (sizes.length !== 3 || sizes.some((v) => !Number.isInteger(v) || v <= 0 || v % n !== 0) || sizes[0] + sizes[1] + sizes[2] !== w.dims[1] || sizes[0] !== sizes[1]) {
    fail(ctx, `qkv_hidden_sizes [${sizes.join(',')}] must be multiples of num_heads ${n}, q = k, summing to the weights' ${w.dims[1]} columns`);
  }
  const bias = inputs[2];
  if (bias && (bias.dims.length !== 1 || bias.dims[0] !== w.dims[1])) fail(ctx, `bias must be [${w.dims[1]}], got ${shapeOf(bias)}`);
  const [b, s] = x.dims as [number, number];
  const [h, hv] = [sizes[0] / n, sizes[2] / n];
  const past = inputs[4];
  let p = 0;
  if (past) {
    if (past.dims.length !== 5 || past.dims[0] !== 2 || past.dims[1] !== b || past.dims[2] !== n || past.dims[4] !== h || h !== hv) {
      fail(ctx, `past must be [2, ${b}, ${n}, past, ${h}] (with equal q/k/v head sizes), got ${shapeOf(past)}`);
    }
    p = past.dims[3]!;
  }
  checkMaskType(inputs[3], 'mask_index', ctx);
  checkAttentionBias(inputs[5], b, n, s, p + s, ctx);
  if (inputs[6]) fail(ctx, 'past_sequence_length (a shared past/present buffer) is not supported');
  for (const a of ['do_rotary', 'past_present_share_buffer']) if (attrInt(attrs, a, 0) !== 0) fail(ctx, `${a}=1 is not supported`);
  return { b, s, n, sizes, h, hv, p };
}

function attentionReference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const g = attentionGeometry(inputs, attrs, ctx);
  const x = need(inputs, 0, ctx);
  const w = need(inputs, 1, ctx);
  const bias = inputs[2];
  const [din, cols] = w.dims as [number, number];
  const proj = new Float64Array(g.b * g.s * cols);
  for (let r = 0; r < g.b * g.s; r++) for (let c = 0; c < cols; c++) {
    let acc = bias ? bias.data[c]! : 0;
    for (let k = 0; k < din; k++) acc += x.data[r * din + k]! * w.data[k * cols + c]!;
    proj[r * cols + c] = acc;
  }
  const past = inputs[4];
  const pastHeads = (which: number): Heads | undefined =>
    past ? { data: past.data.slice(which * g.b * g.n * g.p * g.h, (which + 1) * g.b * g.n * g.p * g.h), n: g.n, len: g.p, h: g.h } : undefined;
  const q = headsOf(proj, g.b, g.s, cols, 0, g.n, g.h);
  const k = concatHeads(g.b, pastHeads(0), headsOf(proj, g.b, g.s, cols, g.sizes[0], g.n, g.h));
  const v = concatHeads(g.b, pastHeads(1), headsOf(proj, g.b, g.s, cols, g.sizes[0] + g.sizes[1], g.n, g.hv));
  const t = g.p + g.s;
  const scaleAttr = attrFloat(attrs, 'scale', 0);
  const mask = maskBiasRef(inputs[3], g.b, g.s, t, attrInt(attrs, 'unidirectional', 0) === 1, attrFloat(attrs, 'mask_filter_value', -10000), ctx);
  const out = attendRef(g.b, q, k, v, scaleAttr !== 0 ? scaleAttr : 1 / Math.sqrt(g.h), 0, addBias(mask, inputs[5]));
  const output: RefTensor = { dtype: x.dtype, dims: [g.b, g.s, g.sizes[2]], data: out };
  if (g.h !== g.hv) return [output]; // present stacks keys and values: their head sizes must agree
  const present = new Float64Array(2 * k.data.length);
  present.set(k.data);
  present.set(v.data, k.data.length);
  return [output, { dtype: x.dtype, dims: [2, g.b, g.n, t, g.h], data: present }];
}

function expandAttention(x: Expander, attrs: Attrs): void {
  const input = x.need(0, 'input');
  const weights = x.need(1, 'weights');
  const n = positiveInt(x, attrs, 'num_heads');
  for (const a of ['do_rotary', 'past_present_share_buffer']) if (attrInt(attrs, a, 0) !== 0) x.unsupported(`${a}=1 is not supported`);
  if (x.input(6)) x.unsupported('past_sequence_length (a shared past/present buffer) is not supported');
  const given = attrInts(attrs, 'qkv_hidden_sizes');
  let sizes: readonly number[];
  if (given && given.length > 0) sizes = given;
  else {
    const cols = lastDim(x, weights, 'the q/k/v split of the packed weights');
    sizes = [cols / 3, cols / 3, cols / 3];
  }
  const h = sizes[0]! / n;
  let qkv = x.op('MatMul', [input, weights]);
  const bias = x.input(2);
  if (bias) qkv = x.op('Add', [qkv, bias]);
  const [q, k, v] = x.emit('Split', [qkv, x.ints(sizes)], { axis: -1 }, 3) as [string, string, string];
  x.attention({ query: q, key: k, value: v, output: x.node.outputs[0]! });
  const past = x.input(4);
  const half = (i: number): string => x.op('Gather', [past!, x.scalar(i, 'int64')], { axis: 0 });
  const mask = x.input(3);
  const causal = attrInt(attrs, 'unidirectional', 0);
  const scale = attrFloat(attrs, 'scale', 0);
  const kv = attendCore(x, {
    q: toHeads(x, q, n, h),
    k: toHeads(x, k, n, h),
    v: toHeads(x, v, n),
    numHeads: n,
    kvHeads: n,
    ...(past ? { pastK: half(0), pastV: half(1) } : {}),
    scale: scale !== 0 ? scale : 1 / Math.sqrt(h),
    ...(mask || causal ? { mask: { inputs: [mask], attrs: { causal, mask_filter_value: attrFloat(attrs, 'mask_filter_value', -10000) } } } : {}),
    ...(x.input(5) ? { attentionBias: x.input(5)! } : {}),
    output: x.node.outputs[0]!,
  });
  const present = declared(x, 1);
  if (present) {
    const stack = (t: string): string => x.op('Unsqueeze', [t, x.ints([0])]);
    x.op('Concat', [stack(kv.k), stack(kv.v)], { axis: 0 }, present);
  }
}

// ---------------------------------------------------------------------------------------------
// MultiHeadAttention

type KvForm = 'separate' | 'packedQkv' | 'packedKv' | 'bnsh';

interface MhaGeometry {
  b: number;
  s: number;
  l: number;
  n: number;
  h: number;
  hv: number;
  p: number;
  form: KvForm;
}

function mhaGeometry(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): MhaGeometry {
  const q = need(inputs, 0, ctx);
  const [key, value, bias] = [inputs[1], inputs[2], inputs[3]];
  requireFloat(q, 'query', ctx);
  const n = attrInt(attrs, 'num_heads', 0);
  if (n <= 0) fail(ctx, 'num_heads must be positive');
  let g: MhaGeometry;
  if (!key && !value) {
    if (q.dims.length !== 5 || q.dims[2] !== n || q.dims[3] !== 3) fail(ctx, `packed QKV must be [batch, sequence, ${n}, 3, head], got ${shapeOf(q)}`);
    g = { b: q.dims[0]!, s: q.dims[1]!, l: q.dims[1]!, n, h: q.dims[4]!, hv: q.dims[4]!, p: 0, form: 'packedQkv' };
  } else {
    if (q.dims.length !== 3 || q.dims[2]! % n !== 0) fail(ctx, `query must be [batch, sequence, heads·head], got ${shapeOf(q)}`);
    const [b, s, d] = q.dims as [number, number, number];
    const h = d / n;
    if (!key) fail(ctx, 'value without key');
    requireFloat(key!, 'key', ctx);
    if (!value) {
      if (key!.dims.length !== 5 || key!.dims[0] !== b || key!.dims[2] !== n || key!.dims[3] !== 2 || key!.dims[4] !== h) fail(ctx, `packed KV must be [${b}, kv_sequence, ${n}, 2, ${h}], got ${shapeOf(key!)}`);
      g = { b, s, l: key!.dims[1]!, n, h, hv: h, p: 0, form: 'packedKv' };
    } else if (key!.dims.length === 4) {
      if (key!.dims[0] !== b || key!.dims[1] !== n || key!.dims[3] !== h || value.dims.length !== 4 || value.dims[0] !== b || value.dims[1] !== n || value.dims[2] !== key!.dims[2]) {
        fail(ctx, `key/value in heads must be [${b}, ${n}, kv_sequence, head], got ${shapeOf(key!)} and ${shapeOf(value)}`);
      }
      g = { b, s, l: key!.dims[2]!, n, h, hv: value.dims[3]!, p: 0, form: 'bnsh' };
    } else {
      if (key!.dims.length !== 3 || key!.dims[0] !== b || key!.dims[2] !== d || value.dims.length !== 3 || value.dims[0] !== b || value.dims[1] !== key!.dims[1] || value.dims[2]! % n !== 0) {
        fail(ctx, `key must be [${b}, kv_sequence, ${d}] and value [${b}, kv_sequence, heads·head], got ${shapeOf(key!)} and ${shapeOf(value)}`);
      }
      g = { b, s, l: key!.dims[1]!, n, h, hv: value.dims[2]! / n, p: 0, form: 'separate' };
    }
  }
  if (bias) {
    if (g.form !== 'separate') fail(ctx, `a bias is supported with separate query, key and value only (got the ${g.form} form)`);
    if (bias.dims.length !== 1 || bias.dims[0] !== 2 * g.n * g.h + g.n * g.hv) fail(ctx, `bias must be [${2 * g.n * g.h + g.n * g.hv}], got ${shapeOf(bias)}`);
  }
  const [pk, pv] = [inputs[6], inputs[7]];
  if (!!pk !== !!pv) fail(ctx, 'past_key and past_value are given together');
  if (pk && pv) {
    if (g.form === 'bnsh') fail(ctx, 'past_key with key/value already in heads (cross attention) is not supported');
    if (pk.dims.length !== 4 || pk.dims[0] !== g.b || pk.dims[1] !== n || pk.dims[3] !== g.h || pv.dims.length !== 4 || pv.dims[0] !== g.b || pv.dims[1] !== n || pv.dims[2] !== pk.dims[2] || pv.dims[3] !== g.hv) {
      fail(ctx, `past_key/past_value must be [${g.b}, ${n}, past, head], got ${shapeOf(pk)} and ${shapeOf(pv)}`);
    }
    g.p = pk.dims[2]!;
  }
  if (inputs[8] || inputs[9]) fail(ctx, 'past_sequence_length and cache_indirection (shared buffers, beam search) are not supported');
  checkMaskType(inputs[4], 'key_padding_mask', ctx);
  const t = g.p + g.l;
  const mask = inputs[4];
  if (mask && mask.dims.length === 1 && mask.dims[0] === 3 * g.b + 2) fail(ctx, 'a key_padding_mask of 3·batch + 2 values (packed sequences) is not supported');
  if (attrInt(attrs, 'unidirectional', 0) === 1 && g.l !== g.s) fail(ctx, 'unidirectional attention needs as many keys as queries');
  checkAttentionBias(inputs[5], g.b, n, g.s, t, ctx);
  return g;
}

/** Q, K, V heads of MultiHeadAttention's inputs, biases added, in float64. */
function mhaHeads(inputs: Inputs<RefTensor>, g: MhaGeometry): [Heads, Heads, Heads] {
  const q = inputs[0]!;
  if (g.form === 'packedQkv') {
    const part = (which: number, h: number): Heads => {
      const data = new Float64Array(g.b * g.n * g.s * h);
      for (let b = 0; b < g.b; b++) for (let s = 0; s < g.s; s++) for (let n = 0; n < g.n; n++) for (let d = 0; d < h; d++) {
        data[((b * g.n + n) * g.s + s) * h + d] = q.data[(((b * g.s + s) * g.n + n) * 3 + which) * h + d]!;
      }
      return { data, n: g.n, len: g.s, h };
    };
    return [part(0, g.h), part(1, g.h), part(2, g.hv)];
  }
  const bias = inputs[3];
  const withBias = (t: RefTensor, off: number): Float64Array => {
    const cols = t.dims[t.dims.length - 1]!;
    return Float64Array.from(t.data, (v, i) => v + (bias ? bias.data[off + (i % cols)]! : 0));
  };
  const qh = headsOf(withBias(q, 0), g.b, g.s, g.n * g.h, 0, g.n, g.h);
  const key = inputs[1]!;
  if (g.form === 'packedKv') {
    const part = (which: number): Heads => {
      const data = new Float64Array(g.b * g.n * g.l * g.h);
      for (let b = 0; b < g.b; b++) for (let l = 0; l < g.l; l++) for (let n = 0; n < g.n; n++) for (let d = 0; d < g.h; d++) {
        data[((b * g.n + n) * g.l + l) * g.h + d] = key.data[(((b * g.l + l) * g.n + n) * 2 + which) * g.h + d]!;
      }
      return { data, n: g.n, len: g.l, h: g.h };
    };
    return [qh, part(0), part(1)];
  }
  const value = inputs[2]!;
  if (g.form === 'bnsh') return [qh, { data: key.data, n: g.n, len: g.l, h: g.h }, { data: value.data, n: g.n, len: g.l, h: g.hv }];
  return [qh, headsOf(withBias(key, g.n * g.h), g.b, g.l, g.n * g.h, 0, g.n, g.h), headsOf(withBias(value, 2 * g.n * g.h), g.b, g.l, g.n * g.hv, 0, g.n, g.hv)];
}

function mhaReference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const g = mhaGeometry(inputs, attrs, ctx);
  const [q, k0, v0] = mhaHeads(inputs, g);
  const past = (t: RefTensor | undefined, h: number): Heads | undefined => (t ? { data: t.data, n: g.n, len: g.p, h } : undefined);
  const k = concatHeads(g.b, past(inputs[6], g.h), k0);
  const v = concatHeads(g.b, past(inputs[7], g.hv), v0);
  const t = g.p + g.l;
  const scaleAttr = attrFloat(attrs, 'scale', 0);
  const mask = maskBiasRef(inputs[4], g.b, g.s, t, attrInt(attrs, 'unidirectional', 0) === 1, attrFloat(attrs, 'mask_filter_value', -10000), ctx);
  const out = attendRef(g.b, q, k, v, scaleAttr !== 0 ? scaleAttr : 1 / Math.sqrt(g.h), 0, addBias(mask, inputs[5]));
  const dtype = inputs[0]!.dtype;
  return [
    { dtype, dims: [g.b, g.s, g.n * g.hv], data: out },
    { dtype, dims: [g.b, g.n, t, g.h], data: k.data },
    { dtype, dims: [g.b, g.n, t, g.hv], data: v.data },
  ];
}

function expandMha(x: Expander, attrs: Attrs): void {
  const query = x.need(0, 'query');
  const n = positiveInt(x, attrs, 'num_heads');
  const [key, value, bias] = [x.input(1), x.input(2), x.input(3)];
  if (x.input(8) || x.input(9)) x.unsupported('past_sequence_length and cache_indirection (shared buffers, beam search) are not supported');
  if (declared(x, 3)) x.unsupported('output 3 (qk) is not supported');
  let qh: string;
  let kh: string;
  let vh: string;
  let h: number | undefined;
  // Heads from a packed [B, L, N, parts, H]: every part as [B, N, L, H].
  const packedParts = (t: string, parts: number): string[] =>
    x.emit('Split', [t, x.ints(Array(parts).fill(1) as number[])], { axis: 3 }, parts).map((one) => x.op('Transpose', [x.op('Squeeze', [one, x.ints([3])])], { perm: [0, 2, 1, 3] }));
  if (!key && !value) {
    if (bias) x.unsupported('a bias with packed QKV is not supported');
    [qh, kh, vh] = packedParts(query, 3) as [string, string, string];
    h = x.dims(query)?.[4];
  } else {
    if (!key) x.unsupported('value without key');
    const d = x.dims(query)?.[2];
    h = d === undefined ? undefined : d / n;
    const keyRank = x.dims(key)?.length;
    if (!value) {
      if (bias) x.unsupported('a bias with packed KV is not supported');
      [kh, vh] = packedParts(key, 2) as [string, string];
      qh = toHeads(x, query, n, h);
    } else if (keyRank === 4) {
      if (bias) x.unsupported('a bias with key/value already in heads is not supported');
      [qh, kh, vh] = [toHeads(x, query, n, h), key, value];
    } else if (keyRank === 3) {
      let [q, k, v] = [query, key, value];
      if (bias) {
        const qd = lastDim(x, query, 'splitting the packed bias');
        const total = lastDim(x, bias, 'splitting the packed bias');
        const [bq, bk, bv] = x.emit('Split', [bias, x.ints([qd, qd, total - 2 * qd])], { axis: 0 }, 3) as [string, string, string];
        [q, k, v] = [x.op('Add', [query, bq]), x.op('Add', [key, bk]), x.op('Add', [value, bv])];
      }
      x.attention({ query: q, key: k, value: v, output: x.node.outputs[0]! });
      [qh, kh, vh] = [toHeads(x, q, n, h), toHeads(x, k, n, h), toHeads(x, v, n)];
    } else {
      x.unsupported(`the rank of key '${key}' (3, or 4 for heads) must be known before shapes are`);
    }
  }
  const scale = attrFloat(attrs, 'scale', 0);
  if (scale === 0 && h === undefined) x.unsupported('the head size must be known before shapes are for the default scale 1/√head');
  const mask = x.input(4);
  const causal = attrInt(attrs, 'unidirectional', 0);
  const kv = attendCore(x, {
    q: qh,
    k: kh,
    v: vh,
    numHeads: n,
    kvHeads: n,
    ...(x.input(6) && x.input(7) ? { pastK: x.input(6)!, pastV: x.input(7)! } : {}),
    scale: scale !== 0 ? scale : 1 / Math.sqrt(h!),
    ...(mask || causal ? { mask: { inputs: [mask], attrs: { causal, mask_filter_value: attrFloat(attrs, 'mask_filter_value', -10000) } } } : {}),
    ...(x.input(5) ? { attentionBias: x.input(5)! } : {}),
    output: x.node.outputs[0]!,
  });
  if (declared(x, 1)) x.op('Identity', [kv.k], {}, declared(x, 1));
  if (declared(x, 2)) x.op('Identity', [kv.v], {}, declared(x, 2));
}

// ---------------------------------------------------------------------------------------------
// GroupQueryAttention

interface GqaGeometry {
  b: number;
  s: number;
  n: number;
  kvn: number;
  h: number;
  p: number;
  packed: boolean;
  /** Rotary dim (0 without do_rotary). */
  r: number;
}

function gqaGeometry(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): GqaGeometry {
  const q = need(inputs, 0, ctx);
  requireFloat(q, 'query', ctx);
  const n = attrInt(attrs, 'num_heads', 0);
  const kvn = attrInt(attrs, 'kv_num_heads', 0);
  if (n <= 0 || kvn <= 0 || n % kvn !== 0) fail(ctx, `num_heads ${n} must be a positive multiple of kv_num_heads ${kvn}`);
  if (q.dims.length !== 3) fail(ctx, `query must be [batch, sequence, hidden], got ${shapeOf(q)}`);
  const [b, s, d] = q.dims as [number, number, number];
  const [key, value] = [inputs[1], inputs[2]];
  const packed = !key && !value;
  if (!!key !== !!value) fail(ctx, 'key and value are given together');
  const h = packed ? d / (n + 2 * kvn) : d / n;
  if (!Number.isInteger(h)) fail(ctx, `query's ${d} values do not split into ${packed ? n + 2 * kvn : n} heads`);
  if (!packed) {
    for (const [t, what] of [[key!, 'key'], [value!, 'value']] as const) {
      if (t.dims.length !== 3 || t.dims[0] !== b || t.dims[1] !== s || t.dims[2] !== kvn * h) fail(ctx, `${what} must be [${b}, ${s}, ${kvn * h}], got ${shapeOf(t)}`);
    }
  }
  const [pk, pv] = [inputs[3], inputs[4]];
  if (!!pk !== !!pv) fail(ctx, 'past_key and past_value are given together');
  let p = 0;
  if (pk && pv) {
    if (pk.dims.length !== 4 || pk.dims[0] !== b || pk.dims[1] !== kvn || pk.dims[3] !== h || pv.dims.join() !== pk.dims.join()) {
      fail(ctx, `past_key/past_value must be [${b}, ${kvn}, past, ${h}], got ${shapeOf(pk)} and ${shapeOf(pv)}`);
    }
    p = pk.dims[2]!;
  }
  const seqlens = need(inputs, 5, ctx);
  const total = need(inputs, 6, ctx);
  if (!isInt(seqlens) || seqlens.dims.length !== 1 || seqlens.dims[0] !== b) fail(ctx, `seqlens_k must be int32 [${b}], got ${seqlens.dtype} ${shapeOf(seqlens)}`);
  if (!isInt(total) || sizeOf(total.dims) !== 1) fail(ctx, `total_sequence_length must hold one int32, got ${total.dtype} ${shapeOf(total)}`);
  if (total.value && total.value.data[0] !== p + s) {
    fail(ctx, `total_sequence_length ${total.value.data[0]} differs from past + new keys ${p + s} (a shared past/present buffer), which is not supported`);
  }
  let r = 0;
  if (attrInt(attrs, 'do_rotary', 0) === 1) {
    const [cos, sin] = [need(inputs, 7, ctx), need(inputs, 8, ctx)];
    if (cos.dims.length !== 2 || cos.dims.join() !== sin.dims.join() || 2 * cos.dims[1]! > h) fail(ctx, `cos_cache/sin_cache must be [max_position, ≤ ${h / 2}], got ${shapeOf(cos)} and ${shapeOf(sin)}`);
    r = 2 * cos.dims[1]!;
  }
  for (const [i, what] of [[9, 'position_ids'], [10, 'attention_bias'], [11, 'head_sink']] as const) if (inputs[i]) fail(ctx, `input ${i} (${what}) is not supported`);
  for (const a of ['smooth_softmax', 'qk_output']) if (attrInt(attrs, a, 0) !== 0) fail(ctx, `${a} is not supported`);
  return { b, s, n, kvn, h, p, packed, r };
}

function gqaReference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const g = gqaGeometry(inputs, attrs, ctx);
  const q = need(inputs, 0, ctx);
  const cols = q.dims[2]!;
  const total = inputs[6]!.data[0]!;
  const first = g.s === total;
  const seqlens = inputs[5]!.data;
  const qd = g.n * g.h;
  const kd = g.kvn * g.h;
  let qh = headsOf(q.data, g.b, g.s, cols, 0, g.n, g.h);
  let kh = g.packed ? headsOf(q.data, g.b, g.s, cols, qd, g.kvn, g.h) : headsOf(inputs[1]!.data, g.b, g.s, kd, 0, g.kvn, g.h);
  const vh = g.packed ? headsOf(q.data, g.b, g.s, cols, qd + kd, g.kvn, g.h) : headsOf(inputs[2]!.data, g.b, g.s, kd, 0, g.kvn, g.h);
  const pastOf = (bi: number): number => (first ? 0 : seqlens[bi]! + 1 - g.s);
  const inter = attrInt(attrs, 'rotary_interleaved', 0) === 1;
  if (g.r > 0) {
    const rotate = (t: Heads): Heads => {
      const out = Float64Array.from(t.data);
      for (let bi = 0; bi < g.b; bi++) for (let ni = 0; ni < t.n; ni++) for (let s = 0; s < g.s; s++) {
        rotateRef(t.data, out, ((bi * t.n + ni) * g.s + s) * g.h, g.r, inputs[7]!, inputs[8]!, first ? s : pastOf(bi) + s, inter, 'rotary position', ctx);
      }
      return { ...t, data: out };
    };
    [qh, kh] = [rotate(qh), rotate(kh)];
  }
  // onnxruntime's present: per batch the valid past, then the new keys, zeros after.
  const tp = Math.max(total, g.p);
  const present = (past: RefTensor | undefined, cur: Heads): Heads => {
    const data = new Float64Array(g.b * g.kvn * tp * g.h);
    for (let bi = 0; bi < g.b; bi++) for (let ni = 0; ni < g.kvn; ni++) {
      const base = (bi * g.kvn + ni) * tp * g.h;
      const pb = pastOf(bi);
      if (past) for (let t = 0; t < pb; t++) for (let d = 0; d < g.h; d++) data[base + t * g.h + d] = past.data[((bi * g.kvn + ni) * g.p + t) * g.h + d]!;
      for (let s = 0; s < g.s; s++) for (let d = 0; d < g.h; d++) data[base + (pb + s) * g.h + d] = cur.data[((bi * g.kvn + ni) * g.s + s) * g.h + d]!;
    }
    return { data, n: g.kvn, len: tp, h: g.h };
  };
  const pk = present(inputs[3], kh);
  const pv = present(inputs[4], vh);
  const window = attrInt(attrs, 'local_window_size', -1);
  const mask = (bi: number, _hd: number, i: number, j: number): number => {
    const at = pastOf(bi) + i; // the query's position
    return j <= at && (window <= 0 || at - j <= window) ? 0 : -Infinity;
  };
  const scaleAttr = attrFloat(attrs, 'scale', 0);
  const out = attendRef(g.b, qh, pk, pv, scaleAttr !== 0 ? scaleAttr : 1 / Math.sqrt(g.h), attrFloat(attrs, 'softcap', 0), mask);
  return [
    { dtype: q.dtype, dims: [g.b, g.s, qd], data: out },
    { dtype: q.dtype, dims: [g.b, g.kvn, tp, g.h], data: pk.data },
    { dtype: q.dtype, dims: [g.b, g.kvn, tp, g.h], data: pv.data },
  ];
}

/** onnxruntime's present layout from [past | new] ([B, kvN, P + S, H]): see the module header. */
function gqaPresent(x: Expander, all: string, pastLen: string, pastB: string, seq: string, output: string): void {
  const t = x.op('Gather', [x.op('Shape', [all]), x.scalar(2, 'int64')], { axis: 0 });
  const steps = x.op('Range', [x.scalar(0, 'int64'), t, x.scalar(1, 'int64')]); // [T]
  const pb = x.op('Unsqueeze', [pastB, x.ints([1])]); // [B, 1]
  const fromNew = x.op('Add', [x.op('Sub', [steps, pb]), pastLen]);
  const last = x.op('Sub', [t, x.scalar(1, 'int64')]);
  const clamp = (v: string): string => x.op('Max', [x.op('Min', [v, last]), x.scalar(0, 'int64')]);
  const index = x.op('Where', [x.op('Less', [steps, pb]), steps, clamp(fromNew)]); // [B, T]
  const index4 = x.op('Expand', [x.op('Unsqueeze', [index, x.ints([1, 3])]), x.op('Shape', [all])]);
  const kept = x.op('Unsqueeze', [x.op('Less', [steps, x.op('Add', [pb, seq])]), x.ints([1, 3])]);
  const gathered = x.op('GatherElements', [all, index4], { axis: 2 });
  // Zero past the kept entries, in the caches' own dtype (float32 or float16) whatever it is.
  x.op('Where', [kept, gathered, x.op('Sub', [gathered, gathered])], {}, output);
}

function expandGqa(x: Expander, attrs: Attrs): void {
  const query = x.need(0, 'query');
  const n = positiveInt(x, attrs, 'num_heads');
  const kvn = positiveInt(x, attrs, 'kv_num_heads');
  for (const [i, what] of [[9, 'position_ids'], [10, 'attention_bias'], [11, 'head_sink']] as const) if (x.input(i)) x.unsupported(`input ${i} (${what}) is not supported`);
  for (const a of ['smooth_softmax', 'qk_output']) if (attrInt(attrs, a, 0) !== 0) x.unsupported(`${a} is not supported`);
  if (declared(x, 3)) x.unsupported('output 3 (output_qk) is not supported');
  const seqlens = x.need(5, 'seqlens_k');
  const total = x.need(6, 'total_sequence_length');
  const [key, value] = [x.input(1), x.input(2)];
  let q: string;
  let k: string;
  let v: string;
  // The head size, from the query's width or else from the declared past (what a quantized
  // projection's output, unknown before shapes, does not tell).
  const width = x.dims(query)?.[2];
  const pastH = x.input(3) ? x.dims(x.input(3)!)?.[3] : undefined;
  const packed = !key && !value;
  const h: number | undefined = width !== undefined ? width / (packed ? n + 2 * kvn : n) : pastH;
  if (h !== undefined && !Number.isInteger(h)) x.unsupported(`the query's width ${width} is not a whole number of heads (num_heads ${n}${packed ? `, kv_num_heads ${kvn}` : ''})`);
  if (packed) {
    if (h === undefined) x.unsupported("the head size (the packed query's width, or the past's last dim) must be known before shapes are, to split the packed query/key/value");
    [q, k, v] = x.emit('Split', [query, x.ints([n * h, kvn * h, kvn * h])], { axis: -1 }, 3) as [string, string, string];
  } else {
    if (!key || !value) x.unsupported('key and value are given together');
    [q, k, v] = [query, key, value];
  }
  x.attention({ query: q, key: k, value: v, output: x.node.outputs[0]! });
  const scale = attrFloat(attrs, 'scale', 0);
  if (scale === 0 && h === undefined) x.unsupported('the head size must be known before shapes are for the default scale 1/√head');
  // Per batch: is this the first prompt (S == total), and the past length past_b it continues.
  const seq = x.op('Gather', [x.op('Shape', [q]), x.scalar(1, 'int64')], { axis: 0 });
  const first = x.op('Equal', [x.op('Reshape', [x.op('Cast', [total], { to: 7 }), x.ints([-1])]), seq]); // [1]
  const continued = x.op('Sub', [x.op('Add', [x.op('Cast', [seqlens], { to: 7 }), x.scalar(1, 'int64')]), seq]);
  const pastB = x.op('Where', [first, x.scalar(0, 'int64'), continued]); // [B]
  let qs = x.op('Reshape', [q, x.ints([0, 0, n, h ?? -1])]); // [B, S, N, H]
  let ks = x.op('Reshape', [k, x.ints([0, 0, kvn, h ?? -1])]);
  if (attrInt(attrs, 'do_rotary', 0) === 1) {
    const cos = x.need(7, 'cos_cache');
    const sin = x.need(8, 'sin_cache');
    x.buffer(cos);
    x.buffer(sin);
    const r = 2 * cacheWidth(x, cos);
    const interleaved = attrInt(attrs, 'rotary_interleaved', 0) === 1;
    const positions = x.op('Add', [x.op('Unsqueeze', [pastB, x.ints([1])]), x.op('Range', [x.scalar(0, 'int64'), seq, x.scalar(1, 'int64')])]); // [B, S]
    const [cosFull, sinFull] = fullTables(x, cos, sin, interleaved);
    const rows = (t: string): string => x.op('Unsqueeze', [x.op('Gather', [t, positions], { axis: 0 }), x.ints([2])]); // [B, S, 1, R]
    const [c, s] = [rows(cosFull), rows(sinFull)];
    qs = rotateHeads(x, qs, c, s, r, h, interleaved);
    ks = rotateHeads(x, ks, c, s, r, h, interleaved);
  }
  const bnsh = (t: string): string => x.op('Transpose', [t], { perm: [0, 2, 1, 3] });
  const [pastK, pastV] = [x.input(3), x.input(4)];
  if (!!pastK !== !!pastV) x.unsupported('past_key and past_value are given together');
  const softcap = attrFloat(attrs, 'softcap', 0);
  const window = attrInt(attrs, 'local_window_size', -1);
  const kv = attendCore(x, {
    q: bnsh(qs),
    k: bnsh(ks),
    v: toHeads(x, v, kvn, h),
    numHeads: n,
    kvHeads: kvn,
    ...(pastK && pastV ? { pastK, pastV } : {}),
    scale: scale !== 0 ? scale : 1 / Math.sqrt(h!),
    softcap,
    mask: { inputs: [undefined, seqlens, total], attrs: { window } },
    output: x.node.outputs[0]!,
  });
  const pastLen = pastK ? x.op('Gather', [x.op('Shape', [pastK]), x.scalar(2, 'int64')], { axis: 0 }) : x.scalar(0, 'int64');
  if (declared(x, 1)) gqaPresent(x, kv.k, pastLen, pastB, seq, declared(x, 1)!);
  if (declared(x, 2)) gqaPresent(x, kv.v, pastLen, pastB, seq, declared(x, 2)!);
}

export const contribAttentionOps = {
  Attention: {
    domain: MS,
    sinceVersion: 1,
    doc: 'multi-head attention with packed Q/K/V weights and bias, every mask_index form ([B], [2B], [B, T], [B, S, T], [B, 1, M, M]), unidirectional, past/present [2, B, N, T, H], attention_bias, qkv_hidden_sizes, scale; not do_rotary or a shared past buffer. Expanded: MatMul, Add, Split, Reshape, Transpose, Concat, FusedMatMul, AttentionMask, MaskedSoftmax, MatMul.',
    shape(inputs, attrs, ctx) {
      const g = attentionGeometry(inputs, attrs, ctx);
      const dtype = inputs[0]!.dtype;
      const output = { dtype, dims: [g.b, g.s, g.sizes[2]] };
      return g.h === g.hv ? [output, { dtype, dims: [2, g.b, g.n, g.p + g.s, g.h] }] : [output];
    },
    reference: attentionReference,
    expand: expandAttention,
  },

  MultiHeadAttention: {
    domain: MS,
    sinceVersion: 1,
    doc: 'multi-head attention on projected Q/K/V: separate (+ packed bias), packed QKV [B, S, N, 3, H] or KV [B, L, N, 2, H], K/V in heads [B, N, L, H]; key_padding_mask [B], [B, T], [B, S, T]; attention_bias, past_key/past_value, unidirectional. Expanded like Attention.',
    shape(inputs, attrs, ctx) {
      const g = mhaGeometry(inputs, attrs, ctx);
      const dtype = inputs[0]!.dtype;
      const t = g.p + g.l;
      return [{ dtype, dims: [g.b, g.s, g.n * g.hv] }, { dtype, dims: [g.b, g.n, t, g.h] }, { dtype, dims: [g.b, g.n, t, g.hv] }];
    },
    reference: mhaReference,
    expand: expandMha,
  },

  GroupQueryAttention: {
    domain: MS,
    sinceVersion: 1,
    doc: 'grouped-query attention (kv_num_heads ≤ num_heads), packed or separate Q/K/V, rotary inside (do_rotary, rotary_interleaved, partial caches), seqlens_k/total_sequence_length, local_window_size, softcap, past/present in onnxruntime\'s layout; not a shared past/present buffer. Expanded: Split, Reshape, RotaryEmbedding (ia3), Transpose, Concat, FusedMatMul, AttentionMask, MaskedSoftmax, MatMul, GatherElements.',
    shape(inputs, attrs, ctx) {
      const g = gqaGeometry(inputs, attrs, ctx);
      const dtype = inputs[0]!.dtype;
      const present = { dtype, dims: [g.b, g.kvn, g.p + g.s, g.h] };
      return [{ dtype, dims: [g.b, g.s, g.n * g.h] }, present, present];
    },
    reference: gqaReference,
    expand: expandGqa,
  },
} satisfies Record<string, ExpandedOpDef>;
