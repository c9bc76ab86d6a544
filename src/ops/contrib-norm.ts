// onnxruntime's fused normalisations (domain com.microsoft), expanded at load into primitives:
//
//   SkipLayerNormalization(input, skip, gamma, beta?, bias?)
//       s = input + bias + skip;  output = LayerNorm(s)·gamma + beta
//       outputs: output, mean?, inv_std_var? (float32 [..., 1]), input_skip_bias_sum? (s)
//       → Add(input, bias), Add(·, skip), LayerNormalization
//   SkipSimplifiedLayerNormalization(input, skip, gamma, bias?)
//       the same with RMSNorm: output = s·rstd·gamma, rstd = 1/√(mean(s²) + ε)
//       outputs: output, mean? (refused: RMSNorm has none), inv_std_var?, input_skip_bias_sum?
//       → Add, Add, SimplifiedLayerNormalization
//   EmbedLayerNormalization(input_ids, segment_ids?, word_embedding, position_embedding,
//                           segment_embedding?, gamma, beta, mask?, position_ids?)
//       e = word[ids] + position[position_ids, or 0..S−1] (+ segment[segment_ids]);
//       output = LayerNorm(e)·gamma + beta; mask_index[b] = count of mask[b, :] == 1 (0 without
//       a mask); embedding_sum = e
//       → Gather, Add, LayerNormalization; Equal, Cast, ReduceSum for the mask index
// As in the activations, a bias is added to the input first, so a projection whose bias the
// optimizer moved into the norm is `MatMul → Add(bias)` again. The references follow
// onnxruntime's CPU kernels: statistics over the last dim in float64, ε = 1e-12 by default.

import { ShapeError } from '../errors.js';
import type { Attrs } from '../ir/graph.js';
import { tensor, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { requireFloat } from './normalization.js';
import type { ExpandedOpDef, Expander, Inputs, OpContext } from './types.js';
import { attrFloat, need } from './util.js';

// Every contrib op here is version 1 of com.microsoft (the domain's only version so far): sinceVersion 1.
const MS = 'com.microsoft';
const EPS = 1e-12;

function fail(ctx: OpContext, detail: string): never {
  throw new ShapeError(ctx.opType, ctx.nodeName, detail);
}

/** A 1-D parameter of `h` values. */
function requireVector(t: TensorType | undefined, h: number, what: string, ctx: OpContext): void {
  if (!t) return;
  requireFloat(t, what, ctx);
  if (t.dims.length !== 1 || t.dims[0] !== h) fail(ctx, `${what} must be 1-D of ${h} values, got [${t.dims.join(',')}]`);
}

/** Output types of the skip norms: output, mean, inv_std_var, sum. */
function skipShape(inputs: Inputs<ValueInfo>, ctx: OpContext, simplified: boolean): TensorType[] {
  const x = need(inputs, 0, ctx);
  const skip = need(inputs, 1, ctx);
  requireFloat(x, 'input', ctx);
  requireFloat(skip, 'skip', ctx);
  if (x.dims.length < 2) fail(ctx, `input must have at least 2 dims, got [${x.dims.join(',')}]`);
  const h = x.dims[x.dims.length - 1]!;
  // onnxruntime also accepts a skip broadcast over the batch: [1, S, H] or [S, H].
  const same = (a: readonly number[], b: readonly number[]): boolean => a.join() === b.join();
  const ok =
    same(skip.dims, x.dims) ||
    (skip.dims.length === x.dims.length && skip.dims[0] === 1 && same(skip.dims.slice(1), x.dims.slice(1))) ||
    same(skip.dims, x.dims.slice(1));
  if (!ok) fail(ctx, `skip [${skip.dims.join(',')}] must have the input's shape [${x.dims.join(',')}] or broadcast over its batch`);
  requireVector(need(inputs, 2, ctx), h, 'gamma', ctx);
  if (!simplified) requireVector(inputs[3], h, 'beta', ctx);
  requireVector(inputs[simplified ? 3 : 4], h, 'bias', ctx);
  const stat = { dtype: 'float32' as const, dims: [...x.dims.slice(0, -1), 1] };
  return [{ dtype: x.dtype, dims: [...x.dims] }, stat, stat, { dtype: x.dtype, dims: [...x.dims] }];
}

/** Row statistics and the normalised output, float64, over the last dim. */
function normRows(s: Float64Array, h: number, gamma: RefTensor, beta: RefTensor | undefined, eps: number, rms: boolean): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const rows = s.length / h;
  const y = new Float64Array(s.length);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    if (!rms) {
      for (let k = 0; k < h; k++) mu += s[r * h + k]!;
      mu /= h;
    }
    let v = 0;
    for (let k = 0; k < h; k++) v += (s[r * h + k]! - mu) ** 2;
    const inv = 1 / Math.sqrt(v / h + eps);
    mean[r] = mu;
    rstd[r] = inv;
    for (let k = 0; k < h; k++) y[r * h + k] = (s[r * h + k]! - mu) * inv * gamma.data[k]! + (beta ? beta.data[k]! : 0);
  }
  return { y, mean, rstd };
}

function skipReference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext, simplified: boolean): RefTensor[] {
  const [out, stat] = skipShape(inputs, ctx, simplified) as [TensorType, TensorType];
  const x = need(inputs, 0, ctx);
  const skip = need(inputs, 1, ctx);
  const bias = inputs[simplified ? 3 : 4];
  const h = x.dims[x.dims.length - 1]!;
  const s = new Float64Array(x.data.length);
  for (let i = 0; i < s.length; i++) s[i] = x.data[i]! + skip.data[i % skip.data.length]! + (bias ? bias.data[i % h]! : 0);
  const r = normRows(s, h, need(inputs, 2, ctx), simplified ? undefined : inputs[3], attrFloat(attrs, 'epsilon', EPS), simplified);
  return [
    { dtype: out.dtype, dims: out.dims, data: r.y },
    { ...stat, data: r.mean },
    { ...stat, data: r.rstd },
    { dtype: out.dtype, dims: out.dims, data: s },
  ];
}

/** input + bias + skip as Add nodes, bias first; the last Add writes `sumName` when given. */
function skipSum(x: Expander, biasAt: number, sumName: string | undefined): string {
  const input = x.need(0, 'input');
  const bias = x.input(biasAt);
  const withBias = bias === undefined ? input : x.op('Add', [input, bias]);
  return x.op('Add', [withBias, x.need(1, 'skip')], {}, sumName);
}

function embedShape(inputs: Inputs<ValueInfo>, ctx: OpContext): TensorType[] {
  const ids = need(inputs, 0, ctx);
  if (ids.dims.length !== 2 || ids.dtype !== 'int32') fail(ctx, `input_ids must be int32 [batch, sequence], got ${ids.dtype} [${ids.dims.join(',')}]`);
  const [b, s] = ids.dims as [number, number];
  const word = need(inputs, 2, ctx);
  const pos = need(inputs, 3, ctx);
  requireFloat(word, 'word_embedding', ctx);
  if (word.dims.length !== 2) fail(ctx, `word_embedding must be 2-D, got [${word.dims.join(',')}]`);
  const h = word.dims[1]!;
  for (const [t, what] of [[pos, 'position_embedding'], [inputs[4], 'segment_embedding']] as const) {
    if (t && (t.dims.length !== 2 || t.dims[1] !== h)) fail(ctx, `${what} must be [*, ${h}], got [${t.dims.join(',')}]`);
  }
  if (!!inputs[1] !== !!inputs[4]) fail(ctx, 'segment_ids and segment_embedding are given together');
  requireVector(need(inputs, 5, ctx), h, 'gamma', ctx);
  requireVector(need(inputs, 6, ctx), h, 'beta', ctx);
  for (const [t, what] of [[inputs[1], 'segment_ids'], [inputs[7], 'mask']] as const) {
    if (t && t.dims.join() !== ids.dims.join()) fail(ctx, `${what} must be [${b},${s}] like input_ids, got [${t.dims.join(',')}]`);
  }
  const p = inputs[8];
  if (p && !(p.dims.length === 2 && (p.dims[0] === b || p.dims[0] === 1) && p.dims[1] === s)) fail(ctx, `position_ids must be [${b} or 1, ${s}], got [${p.dims.join(',')}]`);
  if (!p && pos.dims[0]! < s) fail(ctx, `position_embedding has ${pos.dims[0]} rows for a sequence of ${s}`);
  const out = { dtype: word.dtype, dims: [b, s, h] };
  return [out, { dtype: 'int32', dims: [b] }, out];
}

const declared = (x: Expander, k: number): string | undefined => x.node.outputs[k] || undefined;

/** Output names up to the last declared one, '' for the ones not declared. */
function outputList(outs: readonly (string | undefined)[]): string[] {
  let last = outs.length;
  while (last > 0 && outs[last - 1] === undefined) last--;
  return outs.slice(0, last).map((o) => o ?? '');
}

export const contribNormOps = {
  SkipLayerNormalization: {
    domain: MS,
    sinceVersion: 1,
    doc: 'LayerNorm(input + bias + skip)·gamma + beta over the last dim; outputs output, mean, inv_std_var, input_skip_bias_sum. Expanded: Add, Add, LayerNormalization.',
    shape: (inputs, _attrs, ctx) => skipShape(inputs, ctx, false),
    reference: (inputs, attrs, ctx) => skipReference(inputs, attrs, ctx, false),
    expand(x, attrs) {
      const sum = skipSum(x, 4, declared(x, 3));
      x.emit('LayerNormalization', [sum, x.need(2, 'gamma'), x.input(3)], { axis: -1, epsilon: attrFloat(attrs, 'epsilon', EPS) }, outputList([declared(x, 0), declared(x, 1), declared(x, 2)]));
    },
  },

  SkipSimplifiedLayerNormalization: {
    domain: MS,
    sinceVersion: 1,
    doc: 'RMSNorm(input + bias + skip)·gamma over the last dim; outputs output, inv_std_var, input_skip_bias_sum (no mean). Expanded: Add, Add, SimplifiedLayerNormalization.',
    shape: (inputs, _attrs, ctx) => skipShape(inputs, ctx, true),
    reference: (inputs, attrs, ctx) => skipReference(inputs, attrs, ctx, true),
    expand(x, attrs) {
      if (declared(x, 1)) x.unsupported('output 1 (mean) is not defined for a simplified (RMS) layer norm');
      const sum = skipSum(x, 3, declared(x, 3));
      x.emit('SimplifiedLayerNormalization', [sum, x.need(2, 'gamma')], { axis: -1, epsilon: attrFloat(attrs, 'epsilon', EPS) }, outputList([declared(x, 0), declared(x, 2)]));
    },
  },

  EmbedLayerNormalization: {
    domain: MS,
    sinceVersion: 1,
    doc: 'BERT embeddings: LayerNorm(word[ids] + position[position_ids or 0..S−1] + segment[segment_ids]); mask_index = count of mask == 1 per row; embedding_sum. Expanded: Gather, Add, LayerNormalization (+ Equal, Cast, ReduceSum).',
    shape: (inputs, _attrs, ctx) => embedShape(inputs, ctx),
    reference(inputs, attrs, ctx) {
      const [out] = embedShape(inputs, ctx) as [TensorType];
      const [b, s, h] = out.dims as [number, number, number];
      const ids = need(inputs, 0, ctx);
      const row = (table: RefTensor, index: number, what: string): number => {
        const n = table.dims[0]!;
        if (!Number.isInteger(index) || index < 0 || index >= n) fail(ctx, `${what} ${index} is out of range [0, ${n})`);
        return index * h;
      };
      const e = new Float64Array(b * s * h);
      for (let bi = 0; bi < b; bi++) {
        for (let si = 0; si < s; si++) {
          const at = bi * s + si;
          const p = inputs[8];
          const position = p ? p.data[(p.dims[0] === 1 ? 0 : bi * s) + si]! : si;
          const w = row(inputs[2]!, ids.data[at]!, 'input id');
          const q = row(inputs[3]!, position, 'position id');
          const g = inputs[1] ? row(inputs[4]!, inputs[1].data[at]!, 'segment id') : -1;
          for (let k = 0; k < h; k++) {
            e[at * h + k] = inputs[2]!.data[w + k]! + inputs[3]!.data[q + k]! + (g >= 0 ? inputs[4]!.data[g + k]! : 0);
          }
        }
      }
      const r = normRows(e, h, need(inputs, 5, ctx), need(inputs, 6, ctx), attrFloat(attrs, 'epsilon', EPS), false);
      const maskIndex = tensor('int32', [b]);
      const mask = inputs[7];
      if (mask) for (let bi = 0; bi < b; bi++) for (let si = 0; si < s; si++) if (mask.data[bi * s + si] === 1) maskIndex.data[bi]! += 1;
      return [{ ...out, data: r.y }, maskIndex, { ...out, data: e }];
    },
    expand(x, attrs) {
      const ids = x.need(0, 'input_ids');
      const word = x.op('Gather', [x.need(2, 'word_embedding'), ids], { axis: 0 });
      const positionIds = x.input(8);
      let positions: string;
      if (positionIds !== undefined) {
        positions = positionIds;
      } else {
        // 0..S−1 from the ids' shape: folded to a constant at specialisation.
        const s = x.op('Gather', [x.op('Shape', [ids]), x.scalar(1, 'int64')], { axis: 0 });
        positions = x.op('Range', [x.scalar(0, 'int64'), s, x.scalar(1, 'int64')]);
      }
      const terms = [word, x.op('Gather', [x.need(3, 'position_embedding'), positions], { axis: 0 })];
      const segmentIds = x.input(1);
      if (segmentIds !== undefined) terms.push(x.op('Gather', [x.need(4, 'segment_embedding'), segmentIds], { axis: 0 }));
      let sum = terms[0]!;
      terms.slice(1).forEach((t, k) => {
        sum = x.op('Add', [sum, t], {}, k === terms.length - 2 ? declared(x, 2) : undefined);
      });
      x.op('LayerNormalization', [sum, x.need(5, 'gamma'), x.need(6, 'beta')], { axis: -1, epsilon: attrFloat(attrs, 'epsilon', EPS) }, x.node.outputs[0]!);
      const maskIndex = declared(x, 1);
      if (maskIndex === undefined) return;
      const mask = x.input(7);
      if (mask !== undefined) {
        const ones = x.op('Cast', [x.op('Equal', [mask, x.scalar(1, 'int32')])], { to: 6 });
        x.op('ReduceSum', [ones, x.ints([1])], { keepdims: 0 }, maskIndex);
      } else {
        const batch = x.op('Slice', [x.op('Shape', [ids]), x.ints([0]), x.ints([1])]);
        x.op('ConstantOfShape', [batch], { value: { dtype: 'int32', dims: [1], data: Float64Array.of(0) } }, maskIndex);
      }
    },
  },
} satisfies Record<string, ExpandedOpDef>;
