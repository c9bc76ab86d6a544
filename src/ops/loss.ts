// The fused cross-entropy loss of language-model and classification training (internal ops).
//
//   CrossEntropyLoss      (logits [..., V] float, labels [...] int) → (loss [], count [])
//   CrossEntropyLossGrad  (dloss [], logits, labels) → dlogits [..., V]
// attrs: ignore_index (default -100), reduction ('mean' default | 'sum').
//
// A position counts when its label is not ignore_index and lies in [0, V). The loss is the sum of
// −log softmax(logits)[label] over counted positions, divided by `count` for 'mean'. With no
// counted position both loss and count are 0 (torch gives NaN; 0 with count 0 lets training skip
// the batch without poisoning running averages). `count` is float32 (exact below 2^24).
// A label outside [0, V) other than ignore_index is an input error: the float64 reference throws
// an InputError naming the position; the GPU cannot raise, so such a row contributes nothing to
// the loss, the count or the gradient.
// Kernels (shaders/loss.wgsl): one pass per row with an online max/sum-exp, then a deterministic
// single-workgroup sum over rows; the gradient recomputes each row's max/sum inline instead of
// storing probabilities. Logits are bound as a vec4 array, so buffers must be padded to 16 bytes.

import lossText from '../../shaders/loss.wgsl?raw';
import { InputError, ShapeError, UnsupportedOpError } from '../errors.js';
import type { Program } from '../gpu/kernel.js';
import type { DeviceTraits } from '../gpu/traits.js';
import { Shader } from '../gpu/wgsl.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, type RefTensor, type TensorType } from '../ir/tensor.js';
import { outOrScratch, requireFloat, ROW_WG, rowLayout } from './normalization.js';
import type { LoweringSteps, OpContext, OpDef } from './types.js';
import { attrInt, attrString, need } from './util.js';

export const lossShader = new Shader('loss.wgsl', lossText, {
  prelude: ['grid', 'f32max', 'lse'],
  structs: {
    Params: [
      ['rows', 'u32'],
      ['v', 'u32'], // vocabulary size (row length)
      ['ignore', 'i32'], // ignore_index
      ['mean', 'u32'], // 1: reduction 'mean', 0: 'sum'
    ],
  },
});

const kernel = (name: string, inputs: string[], outputs: string[]) => lossShader.kernel({ name: `loss.${name}`, entryPoint: name, inputs, outputs, uniforms: 'Params' });

const rowsKernel = kernel('ce_rows', ['logits', 'labels'], ['part']);
const reduceKernel = kernel('ce_reduce', ['part'], ['loss', 'count']);
const countKernel = kernel('ce_count', ['labels'], ['count']);
const gradKernel = kernel('ce_grad', ['logits', 'labels', 'dloss', 'count'], ['dlogits']);

interface CeConfig {
  readonly ignore: number;
  readonly mean: boolean;
  readonly rows: number;
  readonly v: number;
}

/**
 * The checks a cross-entropy over `scores` (logits, or the hidden states of a fused head) and its
 * integer `labels` share: labels shaped as `scores` without its last dim. Returns those leading dims.
 */
export function checkLabels(scores: TensorType, labels: TensorType, what: string, ctx: OpContext): readonly number[] {
  requireFloat(scores, what, ctx);
  if (FLOAT_TYPES.has(labels.dtype) || labels.dtype === 'bool') {
    throw new ShapeError(ctx.opType, ctx.nodeName, `labels must be an integer tensor, got ${labels.dtype}`);
  }
  const r = scores.dims.length;
  if (r === 0) throw new ShapeError(ctx.opType, ctx.nodeName, `${what} must have at least one dim`);
  const lead = scores.dims.slice(0, -1);
  if (labels.dims.length !== lead.length || labels.dims.some((d, i) => d !== lead[i])) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `labels of shape [${labels.dims.join(',')}] do not match ${what} [${scores.dims.join(',')}] without its last dim`);
  }
  return lead;
}

/** The `reduction` and `ignore_index` attributes of a cross-entropy, as PyTorch's. */
export function lossAttributes(attrs: Attrs, ctx: OpContext): { ignore: number; mean: boolean } {
  const reduction = attrString(attrs, 'reduction', 'mean');
  if (reduction !== 'mean' && reduction !== 'sum') {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `reduction '${reduction}' (only 'mean' and 'sum')`);
  }
  const ignore = attrInt(attrs, 'ignore_index', -100);
  if (!Number.isInteger(ignore) || ignore < -0x80000000 || ignore > 0x7fffffff) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `ignore_index ${ignore} does not fit 32 bits`);
  }
  return { ignore, mean: reduction === 'mean' };
}

function config(logits: TensorType, labels: TensorType, attrs: Attrs, ctx: OpContext): CeConfig {
  const lead = checkLabels(logits, labels, 'logits', ctx);
  const v = logits.dims[logits.dims.length - 1]!;
  if (v === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'the vocabulary (last dim of logits) is empty');
  return { ...lossAttributes(attrs, ctx), rows: sizeOf(lead), v };

}

/** Coordinates of flat position `r` in `dims`, for error messages. */
function position(r: number, dims: readonly number[]): string {
  const c: number[] = [];
  let rem = r;
  for (let k = dims.length - 1; k >= 0; k--) {
    c.unshift(rem % dims[k]!);
    rem = Math.floor(rem / dims[k]!);
  }
  return `[${c.join(',')}]`;
}

/** Per-row float64 log-sum-exp and which rows count; throws on an out-of-range label. */
function rowsRef(logits: RefTensor, labels: RefTensor, c: CeConfig, ctx: OpContext) {
  const lse = new Float64Array(c.rows);
  const counted: boolean[] = [];
  for (let r = 0; r < c.rows; r++) {
    const label = labels.data[r]!;
    if (label === c.ignore) {
      counted.push(false);
      continue;
    }
    if (!(label >= 0 && label < c.v)) {
      throw new InputError(
        `${ctx.opType} node '${ctx.nodeName}': label ${label} at position ${position(r, labels.dims)} is outside [0, ${c.v}) ` +
          `and is not ignore_index (${c.ignore})`,
      );
    }
    let m = -Infinity;
    for (let j = 0; j < c.v; j++) m = Math.max(m, logits.data[r * c.v + j]!);
    let s = 0;
    for (let j = 0; j < c.v; j++) s += Math.exp(logits.data[r * c.v + j]! - m);
    lse[r] = m + Math.log(s);
    counted.push(true);
  }
  return { lse, counted, count: counted.filter((b) => b).length };
}

function uniforms(c: CeConfig) {
  return { rows: c.rows, v: c.v, ignore: c.ignore, mean: c.mean ? 1 : 0 };
}

/** The overrides and grid of the row kernels (`ce_rows`, `ce_grad`). */
function rowProgram(c: CeConfig, device: DeviceTraits) {
  const vec = c.v % 4 === 0 ? 1 : 0;
  const { WG, TPR, workgroups } = rowLayout(vec ? c.v / 4 : c.v, c.rows, device);
  return { overrides: { WG, TPR, VEC: vec }, workgroups };
}

/** Overrides of the single-workgroup sums (the whole workgroup is one segment). */
const SUM_OVERRIDES = { WG: ROW_WG, TPR: ROW_WG, VEC: 0 };

/** One workgroup counting the labels of `rows` rows that count (not `ignore`, inside [0, v)): (labels) → (count). */
export function labelCountProgram(rows: number, v: number, ignore: number): Program {
  return { kernel: countKernel, overrides: SUM_OVERRIDES, uniforms: { rows, v, ignore, mean: 1 }, workgroups: [1, 1, 1] };
}

export const lossOps = {
  CrossEntropyLoss: {
    domain: 'ia3',
    doc: "fused softmax cross-entropy: (logits [..., V], labels [...]) → (loss [], count []); attrs ignore_index, reduction 'mean' | 'sum'; 0 when nothing counts",
    shape(inputs, attrs, ctx) {
      config(need(inputs, 0, ctx), need(inputs, 1, ctx), attrs, ctx);
      return [
        { dtype: need(inputs, 0, ctx).dtype, dims: [] },
        { dtype: 'float32', dims: [] },
      ];
    },
    reference(inputs, attrs, ctx) {
      const logits = need(inputs, 0, ctx);
      const labels = need(inputs, 1, ctx);
      const c = config(logits, labels, attrs, ctx);
      const { lse, counted, count } = rowsRef(logits, labels, c, ctx);
      let sum = 0;
      for (let r = 0; r < c.rows; r++) if (counted[r]) sum += lse[r]! - logits.data[r * c.v + labels.data[r]!]!;
      const loss = c.mean && count > 0 ? sum / count : sum;
      return [
        { dtype: logits.dtype, dims: [], data: Float64Array.of(loss) },
        { dtype: 'float32', dims: [], data: Float64Array.of(count) },
      ];
    },
    gpu(inputs, _outputs, attrs, ctx): LoweringSteps {
      const c = config(need(inputs, 0, ctx), need(inputs, 1, ctx), attrs, ctx);
      const u = uniforms(c);
      const temps = [4 * Math.max(1, 2 * c.rows)];
      const count = outOrScratch(1, ctx, temps, 4); // the count slot, when the node omits it
      return {
        temps,
        steps: [
          {
            program: { kernel: rowsKernel, ...rowProgram(c, ctx.device), uniforms: u },
            bindings: [{ in: 0 }, { in: 1 }, { tmp: 0 }],
          },
          {
            program: { kernel: reduceKernel, overrides: SUM_OVERRIDES, uniforms: u, workgroups: [1, 1, 1] },
            bindings: [{ tmp: 0 }, { out: 0 }, count],
          },
        ],
      };
    },
  },

  CrossEntropyLossGrad: {
    domain: 'ia3',
    doc: 'cross-entropy backward: (dloss [], logits, labels) → dlogits = dloss·(softmax − onehot)/count on counted rows, 0 elsewhere',
    shape(inputs, attrs, ctx) {
      const dloss = need(inputs, 0, ctx);
      const logits = need(inputs, 1, ctx);
      requireFloat(dloss, 'dloss', ctx);
      if (sizeOf(dloss.dims) !== 1) {
        throw new ShapeError(ctx.opType, ctx.nodeName, `dloss must be a scalar, got shape [${dloss.dims.join(',')}]`);
      }
      config(logits, need(inputs, 2, ctx), attrs, ctx);
      return [{ dtype: logits.dtype, dims: [...logits.dims] }];
    },
    reference(inputs, attrs, ctx) {
      const dloss = need(inputs, 0, ctx).data[0]!;
      const logits = need(inputs, 1, ctx);
      const labels = need(inputs, 2, ctx);
      const c = config(logits, labels, attrs, ctx);
      const { lse, counted, count } = rowsRef(logits, labels, c, ctx);
      const coef = c.mean && count > 0 ? dloss / count : dloss;
      const out = new Float64Array(logits.data.length);
      for (let r = 0; r < c.rows; r++) {
        if (!counted[r]) continue;
        for (let j = 0; j < c.v; j++) {
          const i = r * c.v + j;
          out[i] = coef * (Math.exp(logits.data[i]! - lse[r]!) - (j === labels.data[r] ? 1 : 0));
        }
      }
      return [{ dtype: logits.dtype, dims: [...logits.dims], data: out }];
    },
    gpu(inputs, _outputs, attrs, ctx): LoweringSteps {
      const c = config(need(inputs, 1, ctx), need(inputs, 2, ctx), attrs, ctx);
      if (c.rows === 0) return { steps: [] };
      const u = uniforms(c);
      return {
        temps: [4],
        steps: [
          { program: labelCountProgram(c.rows, c.v, c.ignore), bindings: [{ in: 2 }, { tmp: 0 }] },
          {
            program: { kernel: gradKernel, ...rowProgram(c, ctx.device), uniforms: u },
            bindings: [{ in: 1 }, { in: 2 }, { in: 0 }, { tmp: 0 }, { out: 0 }],
          },
        ],
      };
    },
  },
} satisfies Record<string, OpDef>;
