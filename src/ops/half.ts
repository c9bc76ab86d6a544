// Saved activations in half precision: `PackHalf(x) → words` and `UnpackHalf(words) → y` (domain
// ia3), which autograd/half.ts places around the forward values the backward keeps when a plan asks
// for `activationPrecision` 'f16' or 'bf16'. Only the backward reads the rounded copy: the forward,
// and so the loss, stay f32.
//
// `format` is 'f16' (IEEE half: 11 significant bits, finite values beyond ±65504 become ±∞) or
// 'bf16' (8 significant bits, f32's range). The words hold two halves each, element 2j in the low
// half (the `f16x2` order of packed weights); the packed value is typed int32 [n / 2], so the plan
// gives it n · 2 bytes. UnpackHalf's `shape` attribute is the tensor's dims. x must have a multiple
// of four elements (the kernels move quads).
//
// Both round to nearest even exactly alike on the GPU (shaders/half.wgsl, integer arithmetic) and
// in the reference (ir/dtype.ts), so a plan with packed activations still matches the float64
// executor on the same IR; the error against f32 activations is measured by
// tests/unit/autograd-models.test.ts and tests/gpu/train.test.ts.
// The ops exist only after autograd: they have no gradient (autograd/vjp.ts).

import text from '../../shaders/half.wgsl?raw';
import { ShapeError } from '../errors.js';
import { COPY_GPU_WORKGROUPS, COPY_SOFTWARE_WORKGROUPS } from '../gpu/copy.js';
import { grid, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { bfloat16ToFloat, floatToBfloat16, floatToHalf, halfToFloat, FLOAT_TYPES } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, tensor, type TensorType } from '../ir/tensor.js';
import type { LoweringContext, OpContext, OpDef } from './types.js';
import { attrInts, attrString, need } from './util.js';

/** How the backward keeps the activations it reads: as computed, or rounded to a 16-bit float. */
export type ActivationPrecision = 'f32' | 'f16' | 'bf16';
export const ACTIVATION_PRECISIONS: readonly ActivationPrecision[] = ['f32', 'f16', 'bf16'];

export const halfShader = new Shader('half.wgsl', text, {
  structs: {
    Params: [
      ['quads', 'u32'],
      ['bf16', 'u32'],
    ],
  },
});

const packKernel = halfShader.kernel({ name: 'pack-half', entryPoint: 'pack', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });
const unpackKernel = halfShader.kernel({ name: 'unpack-half', entryPoint: 'unpack', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

const WG = 256;

function formatOf(attrs: Attrs, ctx: OpContext): 'f16' | 'bf16' {
  const f = attrString(attrs, 'format', 'f16');
  if (f !== 'f16' && f !== 'bf16') throw new ShapeError(ctx.opType, ctx.nodeName, `format must be 'f16' or 'bf16', got '${f}'`);
  return f;
}

const encoders = {
  f16: { encode: floatToHalf, decode: halfToFloat },
  bf16: { encode: floatToBfloat16, decode: bfloat16ToFloat },
};

/** A grid-stride pass over `quads` quads, capped per adapter as the copy kernel is (gpu/copy.ts). */
function program(kernel: typeof packKernel, quads: number, bf16: boolean, ctx: LoweringContext): Program {
  const cap = ctx.device.software ? COPY_SOFTWARE_WORKGROUPS : COPY_GPU_WORKGROUPS;
  return { kernel, overrides: { WG }, uniforms: { quads, bf16: bf16 ? 1 : 0 }, workgroups: grid(Math.max(1, Math.min(cap, Math.ceil(quads / WG)))) };
}

const PackHalf: OpDef = {
  domain: 'ia3',
  doc: "PackHalf(x) → words: x (a float tensor of 4k elements) rounded to nearest even to `format` 'f16' or 'bf16', two per int32 word [2k]; what the backward keeps of an activation under activationPrecision.",
  shape(inputs, attrs, ctx) {
    const x = need(inputs, 0, ctx);
    formatOf(attrs, ctx);
    if (!FLOAT_TYPES.has(x.dtype)) throw new ShapeError(ctx.opType, ctx.nodeName, `x must be a float tensor, got ${x.dtype}`);
    const n = sizeOf(x.dims);
    if (n % 4 !== 0) throw new ShapeError(ctx.opType, ctx.nodeName, `x must have a multiple of 4 elements, got ${n}`);
    return [{ dtype: 'int32', dims: [n / 2] }];
  },
  reference(inputs, attrs, ctx) {
    const x = need(inputs, 0, ctx);
    const { encode } = encoders[formatOf(attrs, ctx)];
    const y = tensor('int32', [x.data.length / 2]);
    for (let j = 0; j < y.data.length; j++) y.data[j] = (encode(x.data[2 * j]!) | (encode(x.data[2 * j + 1]!) << 16)) | 0;
    return [y];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const quads = sizeOf(need(inputs, 0, ctx).dims) / 4;
    if (quads === 0) return { steps: [] };
    return { steps: [{ program: program(packKernel, quads, formatOf(attrs, ctx) === 'bf16', ctx), bindings: [{ in: 0 }, { out: 0 }] }] };
  },
};

function unpackShape(inputs: readonly (TensorType | undefined)[], attrs: Attrs, ctx: OpContext): number[] {
  const w = need(inputs, 0, ctx);
  formatOf(attrs, ctx);
  const dims = attrInts(attrs, 'shape');
  if (!dims || dims.some((d) => !Number.isInteger(d) || d < 0)) throw new ShapeError(ctx.opType, ctx.nodeName, 'shape must be a list of non-negative ints');
  if (w.dtype !== 'int32' || w.dims.length !== 1 || 2 * w.dims[0]! !== sizeOf(dims) || sizeOf(dims) % 4 !== 0) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `words must be int32 [${sizeOf(dims) / 2}] for shape [${dims.join(', ')}] (a multiple of 4 elements), got ${w.dtype} [${w.dims.join(', ')}]`);
  }
  return [...dims];
}

const UnpackHalf: OpDef = {
  domain: 'ia3',
  doc: "UnpackHalf(words) → y: PackHalf's words widened back to float32 of attribute `shape`, `format` 'f16' or 'bf16'; the backward's reader of an activation kept in half precision.",
  shape(inputs, attrs, ctx) {
    return [{ dtype: 'float32', dims: unpackShape(inputs, attrs, ctx) }];
  },
  reference(inputs, attrs, ctx) {
    const dims = unpackShape(inputs, attrs, ctx);
    const w = need(inputs, 0, ctx);
    const { decode } = encoders[formatOf(attrs, ctx)];
    const y = tensor('float32', dims);
    for (let j = 0; j < w.data.length; j++) {
      const word = w.data[j]! >>> 0;
      y.data[2 * j] = decode(word & 0xffff);
      y.data[2 * j + 1] = decode(word >>> 16);
    }
    return [y];
  },
  gpu(_inputs, outputs, attrs, ctx) {
    const quads = sizeOf(outputs[0]!.dims) / 4;
    if (quads === 0) return { steps: [] };
    return { steps: [{ program: program(unpackKernel, quads, formatOf(attrs, ctx) === 'bf16', ctx), bindings: [{ in: 0 }, { out: 0 }] }] };
  },
};

export const halfOps = { PackHalf, UnpackHalf } satisfies Record<string, OpDef>;
