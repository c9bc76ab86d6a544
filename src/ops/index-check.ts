// IndexCheck (domain ia3): the out-of-range flag of a gather whose indices are computed on the GPU.
//
// Specialisation puts one before each Gather/GatherElements whose indices it cannot prove in
// range (onnx/index-checks.ts); the plan keeps its three status words to the end of the step and
// the host raises IndexOutOfRangeError when the count is not zero. The words: [count of indices
// outside [-axis_dim, axis_dim - 1], e(max offending index), ~e(min offending index)] as int32 bits,
// with e(j) = j xor 0x80000000 (so the GPU can use unsigned atomicMax from an all-zero start;
// shaders/index-check.wgsl). The reference computes the same words; `decodeIndexStatus` reads them.

import text from '../../shaders/index-check.wgsl?raw';
import { grid } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { INT_TYPES } from '../ir/dtype.js';
import { tensor, sizeOf, type RefTensor } from '../ir/tensor.js';
import { shapeError } from './layout-common.js';
import { fillProgram } from './layout-kernels.js';
import type { OpDef } from './types.js';
import { attrInt, need } from './util.js';

export const indexCheckShader = new Shader('index-check.wgsl', text, {
  prelude: ['grid'],
  structs: {
    Params: [
      ['n', 'u32'],
      ['axis_dim', 'i32'],
    ],
  },
});

export const indexCheckKernel = indexCheckShader.kernel({ name: 'index-check', inputs: ['indices'], outputs: ['status'], uniforms: 'Params' });

const WG = 256;

/** e(j): the order-preserving u32 encoding of an i32, as the int32 word that holds it. */
const encode = (j: number): number => (j ^ 0x80000000) | 0;

/** The status words of `indices` against an axis of `axisDim`. */
export function indexStatus(indices: ArrayLike<number>, axisDim: number): [number, number, number] {
  let count = 0;
  let max = 0;
  let min = 0;
  for (let k = 0; k < indices.length; k++) {
    const j = indices[k]!;
    if (j >= -axisDim && j < axisDim) continue;
    if (count === 0 || j > max) max = j;
    if (count === 0 || j < min) min = j;
    count++;
  }
  return count === 0 ? [0, 0, 0] : [count, encode(max), ~encode(min)];
}

/** The offending indices' count, largest and smallest from the status words (as GPU int32 words). */
export function decodeIndexStatus(words: ArrayLike<number>): { count: number; max: number; min: number } {
  const count = words[0]! >>> 0;
  return { count, max: encode(words[1]!), min: encode(~words[2]!) };
}

const IndexCheck: OpDef = {
  domain: 'ia3',
  doc: 'IndexCheck(indices) with attr axis_dim → int32 [3]: the count of indices outside [-axis_dim, axis_dim-1] and the largest and smallest of them (encoded), read after a step to raise onnxruntime\'s out-of-bounds error',
  shape(inputs, attrs, ctx) {
    const idx = need(inputs, 0, ctx);
    if (!INT_TYPES.has(idx.dtype)) throw shapeError(ctx, `indices must be an integer tensor, got ${idx.dtype}`);
    if (attrInt(attrs, 'axis_dim', -1) < 0) throw shapeError(ctx, "attribute 'axis_dim' must be a non-negative int");
    return [{ dtype: 'int32', dims: [3] }];
  },
  reference(inputs, attrs, ctx) {
    const idx = need(inputs, 0, ctx) as RefTensor;
    return [tensor('int32', [3], indexStatus(idx.data, attrInt(attrs, 'axis_dim', 0)))];
  },
  gpu(inputs, _outputs, attrs, ctx) {
    const n = sizeOf(need(inputs, 0, ctx).dims);
    const clear = fillProgram(3, 0, ctx)!;
    const steps: { program: typeof clear; bindings: ({ in: number } | { out: number })[] }[] = [{ program: clear, bindings: [{ in: 0 }, { out: 0 }] }];
    if (n > 0) {
      steps.push({
        program: { kernel: indexCheckKernel, overrides: { WG }, uniforms: { n, axis_dim: attrInt(attrs, 'axis_dim', 0) }, workgroups: grid(Math.ceil(n / WG)) },
        bindings: [{ in: 0 }, { out: 0 }],
      });
    }
    return { steps };
  },
};

export const indexCheckOps = { IndexCheck } satisfies Record<string, OpDef>;
