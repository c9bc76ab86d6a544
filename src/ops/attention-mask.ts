// AttentionMask (internal, domain 'ia3'): the additive bias [B, 1, S, T] that onnxruntime's attention
// ops derive from their mask inputs, for MaskedSoftmax to add to the scores.
//
//   AttentionMask(scores [B, N, S, T], mask?, seqlens_k?, total_sequence_length?) → bias [B, 1, S, T]
//
// `scores` only carries the shape (it is never read); the keys are P = T − S past ones then the S
// new ones. The mask's form follows from its shape, as in onnxruntime's PrepareMask:
// [B] end positions, [2B] end and start positions, [B, T] raw, [B, S, T] raw per query, or
// [B, 1, M, M2] (Megatron, read at rows P..P+S); masked entries get `mask_filter_value`. `causal`
// hides keys after P + i with −FLT_MAX. With seqlens_k and total_sequence_length instead, it is
// GroupQueryAttention's causal rule with per-batch past lengths and a `local_window_size`, and
// hidden keys get −∞ (probability exactly 0). The output is piecewise constant in everything, so
// it has no gradient (VJP null). Kernel: shaders/attention-mask.wgsl, one invocation per element.
// Expanded attention ops are its only users, which is why it needs no ONNX name.

import maskText from '../../shaders/attention-mask.wgsl?raw';
import { ShapeError } from '../errors.js';
import { grid } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { F32_MAX, FLOAT_TYPES } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { Inputs, LoweringSteps, OpContext, OpDef } from './types.js';
import { attrFloat, attrInt, need } from './util.js';

const WG = 256;

export const maskShader = new Shader('attention-mask.wgsl', maskText, {
  prelude: ['grid', 'f32max'],
  structs: {
    Params: [
      ['b', 'u32'],
      ['s', 'u32'],
      ['t', 'u32'],
      ['p', 'u32'],
      ['form', 'u32'],
      ['causal', 'u32'],
      ['window', 'i32'],
      ['fill', 'f32'],
      ['m1', 'u32'],
      ['m2', 'u32'],
    ],
  },
});

const maskedKernel = maskShader.kernel({ name: 'attention-mask.masked', entryPoint: 'masked', inputs: ['mask'], outputs: ['bias'], uniforms: 'Params' });
const nomaskKernel = maskShader.kernel({ name: 'attention-mask.nomask', entryPoint: 'nomask', inputs: [], outputs: ['cbias'], uniforms: 'Params' });
const seqlenKernel = maskShader.kernel({ name: 'attention-mask.seqlen', entryPoint: 'seqlen', inputs: ['seqlens', 'total'], outputs: ['gbias'], uniforms: 'Params' });

/** Mask forms, numbered as the kernel's P.form. */
const FORMS = { none: 0, end: 1, endStart: 2, raw2: 3, raw3: 4, megatron: 5, seqlens: 6 } as const;
type Form = keyof typeof FORMS;

interface MaskGeometry {
  readonly b: number;
  readonly s: number;
  readonly t: number;
  readonly p: number;
  readonly form: Form;
  /** Megatron mask rows and columns. */
  readonly m1: number;
  readonly m2: number;
}

const isInt = (t: TensorType): boolean => !FLOAT_TYPES.has(t.dtype);

function geometry(inputs: Inputs<TensorType>, ctx: OpContext): MaskGeometry {
  const scores = need(inputs, 0, ctx);
  const fail = (detail: string): never => {
    throw new ShapeError(ctx.opType, ctx.nodeName, detail);
  };
  if (scores.dims.length !== 4) fail(`scores must be [batch, heads, sequence, total], got [${scores.dims.join(',')}]`);
  const [b, , s, t] = scores.dims as [number, number, number, number];
  const p = t - s;
  if (p < 0) fail(`the total key length ${t} is shorter than the query length ${s}`);
  const base = { b, s, t, p, m1: 0, m2: 0 };
  const [mask, seqlens, total] = [inputs[1], inputs[2], inputs[3]];
  if (seqlens || total) {
    if (mask) fail('a mask and seqlens_k cannot be given together');
    if (!seqlens || !total) fail('seqlens_k and total_sequence_length are given together');
    if (!isInt(seqlens!) || seqlens!.dims.length !== 1 || seqlens!.dims[0] !== b) fail(`seqlens_k must be an int tensor [${b}], got ${seqlens!.dtype} [${seqlens!.dims.join(',')}]`);
    if (!isInt(total!) || sizeOf(total!.dims) !== 1) fail(`total_sequence_length must hold one int, got ${total!.dtype} [${total!.dims.join(',')}]`);
    const known = (total as ValueInfo).value?.data[0];
    if (known !== undefined && known !== t) {
      fail(`total_sequence_length ${known} differs from past + new keys ${t} (a shared past/present buffer), which is not supported`);
    }
    return { ...base, form: 'seqlens' };
  }
  if (!mask) return { ...base, form: 'none' };
  if (!isInt(mask)) fail(`the mask must be an int tensor, got ${mask.dtype}`);
  const d = mask.dims;
  const shape = `[${d.join(',')}]`;
  switch (d.length) {
    case 1:
      if (d[0] === b) return { ...base, form: 'end' };
      if (d[0] === 2 * b) return { ...base, form: 'endStart' };
      return fail(`a 1-D mask index must have batch_size (${b}) or 2·batch_size values, got ${shape}`);
    case 2:
      if (d[0] === b && d[1] === t) return { ...base, form: 'raw2' };
      return fail(`a 2-D mask must be [batch, total_sequence_length] = [${b},${t}], got ${shape}`);
    case 3:
      if (d[0] === b && d[1] === s && d[2] === t) return { ...base, form: 'raw3' };
      return fail(`a 3-D mask must be [batch, sequence, total_sequence_length] = [${b},${s},${t}], got ${shape}`);
    case 4:
      if (d[0] === b && d[1] === 1 && d[2]! >= t && d[3]! >= t) return { ...base, form: 'megatron', m1: d[2]!, m2: d[3]! };
      return fail(`a 4-D mask must be [batch, 1, max_sequence_length, max_sequence_length] covering ${t} positions, got ${shape}`);
    default:
      return fail(`a mask of rank ${d.length} is not one of onnxruntime's forms ${shape}`);
  }
}

function flags(attrs: Attrs, ctx: OpContext): { causal: boolean; filter: number; window: number } {
  const causal = attrInt(attrs, 'causal', 0);
  if (causal !== 0 && causal !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, `causal must be 0 or 1, got ${causal}`);
  return { causal: causal === 1, filter: Math.fround(attrFloat(attrs, 'mask_filter_value', -10000)), window: attrInt(attrs, 'window', -1) };
}

/** The float64 bias of every (b, i, j). */
function maskReference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor {
  const g = geometry(inputs, ctx);
  const f = flags(attrs, ctx);
  const out = new Float64Array(g.b * g.s * g.t);
  const m = inputs[1]?.data;
  for (let b = 0; b < g.b; b++) {
    for (let i = 0; i < g.s; i++) {
      for (let j = 0; j < g.t; j++) {
        let v = 0;
        if (g.form === 'seqlens') {
          const first = inputs[3]!.data[0] === g.s;
          const pastB = first ? 0 : inputs[2]!.data[b]! + 1 - g.s;
          const past = j < g.p;
          let visible = past ? j < pastB : j - g.p <= i;
          const back = past ? pastB + i - j : i - (j - g.p);
          if (f.window > 0 && back > f.window) visible = false;
          v = visible ? 0 : -Infinity;
        } else {
          let hidden = false;
          if (g.form === 'end') hidden = j >= m![b]!;
          else if (g.form === 'endStart') hidden = j >= m![b]! || j < Math.min(m![g.b + b]!, g.t);
          else if (g.form === 'raw2') hidden = m![b * g.t + j]! <= 0;
          else if (g.form === 'raw3') hidden = m![(b * g.s + i) * g.t + j]! <= 0;
          else if (g.form === 'megatron') hidden = m![(b * g.m1 + g.p + i) * g.m2 + j]! <= 0;
          v = hidden ? f.filter : 0;
          if (f.causal && j > g.p + i) v = -F32_MAX;
        }
        out[(b * g.s + i) * g.t + j] = v;
      }
    }
  }
  return { dtype: 'float32', dims: [g.b, 1, g.s, g.t], data: out };
}

function maskLowering(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): LoweringSteps {
  const g = geometry(inputs, ctx);
  const f = flags(attrs, ctx);
  const n = g.b * g.s * g.t;
  if (n === 0) return { steps: [] };
  const uniforms = { b: g.b, s: g.s, t: g.t, p: g.p, form: FORMS[g.form], causal: f.causal ? 1 : 0, window: f.window, fill: f.filter, m1: g.m1, m2: g.m2 };
  const workgroups = grid(Math.ceil(n / WG));
  if (g.form === 'seqlens') {
    return { steps: [{ program: { kernel: seqlenKernel, overrides: { WG }, uniforms, workgroups }, bindings: [{ in: 2 }, { in: 3 }, { out: 0 }] }] };
  }
  if (g.form === 'none') {
    return { steps: [{ program: { kernel: nomaskKernel, overrides: { WG }, uniforms, workgroups }, bindings: [{ out: 0 }] }] };
  }
  return { steps: [{ program: { kernel: maskedKernel, overrides: { WG }, uniforms, workgroups }, bindings: [{ in: 1 }, { out: 0 }] }] };
}

export const attentionMaskOps = {
  AttentionMask: {
    domain: 'ia3',
    doc: "additive attention bias [B, 1, S, T] from onnxruntime's mask forms ([B], [2B], [B, T], [B, S, T], [B, 1, M, M]) or GroupQueryAttention's seqlens_k; attrs causal, mask_filter_value, window",
    shape(inputs, attrs, ctx) {
      const g = geometry(inputs, ctx);
      flags(attrs, ctx);
      const scores = need(inputs, 0, ctx);
      if (!FLOAT_TYPES.has(scores.dtype)) throw new ShapeError(ctx.opType, ctx.nodeName, `scores must be a float tensor, got ${scores.dtype}`);
      return [{ dtype: 'float32', dims: [g.b, 1, g.s, g.t] }];
    },
    reference: (inputs, attrs, ctx) => [maskReference(inputs, attrs, ctx)],
    gpu: (inputs, _outputs, attrs, ctx) => maskLowering(inputs, attrs, ctx),
  },
} satisfies Record<string, OpDef>;
