// Rotary position embeddings (internal ops, domain 'ia3').
//
//   RotaryEmbedding      (x [..., D], cos, sin) → y = x·cos + R(x)·sin
//   RotaryEmbeddingGrad  (dy [..., D], cos, sin) → dx = cos·dy + Rᵀ(sin·dy)      (Rᵀ = −R)
// x is typically [B, H, T, D]; cos and sin numpy-broadcast to x (typically [B, 1, T, D] or [T, D];
// a last dim of 1 is allowed too). D must be even. attr `interleaved`:
//   0 — Hugging Face rotate_half: R(x) = concat(−x[..., D/2:], x[..., :D/2])
//   1 — GPT-J pairs: R(x)[2k] = −x[2k+1], R(x)[2k+1] = x[2k]
// Both read cos/sin per element, so caches laid out either way (halves repeated, or each value
// repeated twice) work as given. Kernel: shaders/rotary.wgsl; inputs are bound as vec4 arrays, so
// GPU buffers must be padded to 16 bytes.

import rotaryText from '../../shaders/rotary.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../errors.js';
import { grid } from '../gpu/kernel.js';
import type { Attrs } from '../ir/graph.js';
import { broadcastShapes } from '../ir/shape.js';
import { sizeOf, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { MAX_VIEW_RANK, requireDims, requireFloat, rowBroadcast, rowOffset } from './normalization.js';
import type { Inputs, LoweringSteps, OpContext, OpDef } from './types.js';
import { attrInt, need } from './util.js';
import { Shader } from '../gpu/wgsl.js';

const WG = 256;

export const rotaryShader = new Shader('rotary.wgsl', rotaryText, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['rows', 'u32'],
      ['d', 'u32'],
      ['units', 'u32'], // invocations per row
      ['rank', 'u32'], // merged leading dims of the broadcast view
      ['clast', 'u32'],
      ['slast', 'u32'],
      ['dims', { array: 'u32', length: MAX_VIEW_RANK }],
      ['cstr', { array: 'u32', length: MAX_VIEW_RANK }],
      ['sstr', { array: 'u32', length: MAX_VIEW_RANK }],
    ],
  },
});

const rotaryKernel = rotaryShader.kernel({ name: 'rotary', inputs: ['x', 'cos', 'sin'], outputs: ['y'], uniforms: 'Params' });

function interleaved(attrs: Attrs, ctx: OpContext): boolean {
  const v = attrInt(attrs, 'interleaved', 0);
  if (v !== 0 && v !== 1) throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `interleaved must be 0 or 1, got ${v}`);
  return v === 1;
}

function rotaryShape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[] {
  const x = need(inputs, 0, ctx);
  const cos = need(inputs, 1, ctx);
  const sin = need(inputs, 2, ctx);
  requireFloat(x, 'x', ctx);
  requireFloat(cos, 'cos', ctx);
  requireFloat(sin, 'sin', ctx);
  const d = x.dims[x.dims.length - 1];
  if (d === undefined || d % 2 !== 0) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `the last dim of x must be even (pairs rotate together), got [${x.dims.join(',')}]`);
  }
  requireDims({ dtype: x.dtype, dims: broadcastShapes([x.dims, cos.dims, sin.dims], ctx) }, x.dims, 'x broadcast with cos and sin', ctx);
  rowBroadcast(x.dims, [cos.dims, sin.dims], ctx);
  interleaved(attrs, ctx);
  return [{ dtype: x.dtype, dims: [...x.dims] }];
}

/** Float64 rotation of every row of `x` (grad: the transpose), in the pair form of the kernel. */
function rotaryRef(x: RefTensor, cos: RefTensor, sin: RefTensor, inter: boolean, gradient: boolean, ctx: OpContext): RefTensor {
  const d = x.dims[x.dims.length - 1]!;
  const rows = d === 0 ? 0 : sizeOf(x.dims) / d;
  const bc = rowBroadcast(x.dims, [cos.dims, sin.dims], ctx);
  const [cl, sl] = bc.last as [number, number];
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    const cb = rowOffset(r, bc.dims, bc.strides[0]!);
    const sb = rowOffset(r, bc.dims, bc.strides[1]!);
    const o = r * d;
    for (let k = 0; k < d / 2; k++) {
      const p = inter ? 2 * k : k;
      const q = inter ? 2 * k + 1 : k + d / 2;
      const [xp, xq] = [x.data[o + p]!, x.data[o + q]!];
      const [cp, cq] = [cos.data[cb + p * cl]!, cos.data[cb + q * cl]!];
      const [sp, sq] = [sin.data[sb + p * sl]!, sin.data[sb + q * sl]!];
      if (gradient) {
        y[o + p] = cp * xp + sq * xq;
        y[o + q] = cq * xq - sp * xp;
      } else {
        y[o + p] = xp * cp - xq * sp;
        y[o + q] = xq * cq + xp * sq;
      }
    }
  }
  return { dtype: x.dtype, dims: [...x.dims], data: y };
}

function rotaryLowering(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext, gradient: boolean): LoweringSteps {
  const x = need(inputs, 0, ctx);
  const d = x.dims[x.dims.length - 1]!;
  if (sizeOf(x.dims) === 0) return { steps: [] };
  const inter = interleaved(attrs, ctx);
  const bc = rowBroadcast(x.dims, [need(inputs, 1, ctx).dims, need(inputs, 2, ctx).dims], ctx);
  // vec4 loads need whole vec4s per unit: 4 pairs of the two halves (d % 8) or 2 adjacent pairs (d % 4).
  const vec = inter ? d % 4 === 0 : d % 8 === 0;
  const units = vec ? (inter ? d / 4 : d / 8) : d / 2;
  const rows = sizeOf(x.dims) / d;
  return {
    steps: [
      {
        program: {
          kernel: rotaryKernel,
          overrides: { WG, VEC: vec ? 1 : 0, INTERLEAVED: inter ? 1 : 0, GRAD: gradient ? 1 : 0 },
          uniforms: {
            rows,
            d,
            units,
            rank: bc.dims.length,
            clast: bc.last[0]!,
            slast: bc.last[1]!,
            dims: bc.dims,
            cstr: bc.strides[0]!,
            sstr: bc.strides[1]!,
          },
          workgroups: grid(Math.ceil((rows * units) / WG)),
        },
        bindings: [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }],
      },
    ],
  };
}

export const rotaryOps = {
  RotaryEmbedding: {
    domain: 'ia3',
    doc: 'rotary embedding (x [..., D], cos, sin broadcast to x) → x·cos + R(x)·sin; attr interleaved (0 rotate_half, 1 GPT-J pairs)',
    shape: rotaryShape,
    reference(inputs, attrs, ctx) {
      const [x, cos, sin] = [need(inputs, 0, ctx), need(inputs, 1, ctx), need(inputs, 2, ctx)];
      return [rotaryRef(x, cos, sin, interleaved(attrs, ctx), false, ctx)];
    },
    gpu: (inputs, _outputs, attrs, ctx) => rotaryLowering(inputs, attrs, ctx, false),
  },

  RotaryEmbeddingGrad: {
    domain: 'ia3',
    doc: 'rotary embedding backward: (dy, cos, sin) → cos·dy + Rᵀ(sin·dy); attr interleaved',
    shape: rotaryShape,
    reference(inputs, attrs, ctx) {
      const [dy, cos, sin] = [need(inputs, 0, ctx), need(inputs, 1, ctx), need(inputs, 2, ctx)];
      return [rotaryRef(dy, cos, sin, interleaved(attrs, ctx), true, ctx)];
    },
    gpu: (inputs, _outputs, attrs, ctx) => rotaryLowering(inputs, attrs, ctx, true),
  },
} satisfies Record<string, OpDef>;
