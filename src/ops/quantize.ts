// DynamicQuantizeDequantize (domain ia3): onnxruntime's dynamic uint8 activation quantiser followed
// by its exact inverse — what a transformers.js `q8` file's DynamicQuantizeLinear → MatMulInteger
// → Cast → Mul(scales) computes, seen from the float side (onnx/precision.ts lowers those chains
// to this op and one MatMul on the 8-bit weight kept packed).
//
//   min, max = min(0, min x), max(0, max x);  scale = (max − min) / 255 (1 when max == min)
//   zp = round_half_even(clamp(−min / scale, 0, 255))
//   y = (clamp(round_half_even(x / scale) + zp, 0, 255) − zp) · scale
//
// in f32, as onnxruntime's GetQuantizationParameter and MLAS's QuantizeLinear compute it (the
// reference rounds each step to f32 too, so both sides quantise alike). Since
// Σ (xq − xzp)(wq − wzp) · xs · ws = Σ y · (wq − wzp) · ws exactly in real arithmetic, the MatMul
// that follows reproduces MatMulInteger's product within float rounding.
//
// Gradient: the straight-through estimator (identity, autograd/vjp.ts), as quantisation-aware
// training uses: the quantiser's true derivative is zero almost everywhere. The float64 CPU
// executor runs the same rule, so gradient tests compare like with like.
//
// Lowering (shaders/quantize.wgsl): a one-workgroup range pass writes [scale, zp] to a scratch
// buffer, then an element-wise pass quantises and dequantises.

import text from '../../shaders/quantize.wgsl?raw';
import { ShapeError } from '../errors.js';
import { grid } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import { sizeOf, tensor, type RefTensor } from '../ir/tensor.js';
import type { OpDef } from './types.js';
import { need } from './util.js';

export const quantizeShader = new Shader('quantize.wgsl', text, {
  prelude: ['grid'],
  structs: { Params: [['n', 'u32']] },
});

const rangeKernel = quantizeShader.kernel({ name: 'fakequant-range', entryPoint: 'range', inputs: ['x'], outputs: ['y', 'qp'], uniforms: 'Params' });
const applyKernel = quantizeShader.kernel({ name: 'fakequant-apply', entryPoint: 'apply', inputs: ['x'], outputs: ['y', 'qp'], uniforms: 'Params' });

const WG = 256;

/** Rounds half to even (C's nearbyint in the default mode; WGSL's round). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** onnxruntime's DynamicQuantizeLinear parameters of `x` (uint8), in f32 arithmetic. */
export function dynamicQuantParams(x: ArrayLike<number>): { scale: number; zeroPoint: number } {
  let min = 0;
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    const v = Math.fround(x[i]!);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const scale = max === min ? 1 : Math.fround(Math.fround(max - min) / 255);
  const zeroPoint = roundHalfEven(Math.min(255, Math.max(0, Math.fround(0 - Math.fround(min / scale)))));
  return { scale, zeroPoint };
}

const DynamicQuantizeDequantize: OpDef = {
  domain: 'ia3',
  doc: "DynamicQuantizeDequantize(x) → y: onnxruntime's DynamicQuantizeLinear (uint8, per tensor, range including 0) then its dequantisation, in f32; gradient: straight-through (identity). Lowered from transformers.js q8 chains (DynamicQuantizeLinear, MatMulInteger, Cast, Mul).",
  shape(inputs, _attrs, ctx) {
    const x = need(inputs, 0, ctx);
    if (!FLOAT_TYPES.has(x.dtype)) throw new ShapeError(ctx.opType, ctx.nodeName, `x must be a float tensor, got ${x.dtype}`);
    return [{ dtype: x.dtype, dims: [...x.dims] }];
  },
  reference(inputs, _attrs, ctx) {
    const x = need(inputs, 0, ctx) as RefTensor;
    const { scale, zeroPoint } = dynamicQuantParams(x.data);
    const y = tensor(x.dtype, x.dims);
    for (let i = 0; i < x.data.length; i++) {
      const q = Math.min(255, Math.max(0, roundHalfEven(Math.fround(Math.fround(x.data[i]!) / scale)) + zeroPoint));
      y.data[i] = Math.fround((q - zeroPoint) * scale);
    }
    return [y];
  },
  gpu(inputs, _outputs, _attrs, ctx) {
    const n = sizeOf(need(inputs, 0, ctx).dims);
    if (n === 0) return { steps: [] };
    const bindings = [{ in: 0 }, { out: 0 }, { tmp: 0 }];
    return {
      temps: [8],
      steps: [
        { program: { kernel: rangeKernel, overrides: { WG }, uniforms: { n }, workgroups: [1, 1, 1] }, bindings },
        { program: { kernel: applyKernel, overrides: { WG }, uniforms: { n }, workgroups: grid(Math.ceil(n / WG)) }, bindings },
      ],
    };
  },
};

export const quantizeOps = { DynamicQuantizeDequantize } satisfies Record<string, OpDef>;
