// GPU kernels of the softmax and normalisation ops against their float64 references: row lengths
// of 1, primes, multiples and non-multiples of 4 (vec4 and scalar paths), rows longer than a
// workgroup, more rows than one workgroup holds, strided axes, broadcast masks and −∞ rows; and
// the row kernels in the software adapter's layout (one or eight invocations per row, no tree).
import { describe, expect, it } from 'vitest';
import { grid } from '../../src/gpu/kernel.js';
import { DEFAULT_TRAITS, deviceTraits, type DeviceTraits } from '../../src/gpu/traits.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { normalizationOps as ops, rowLayout } from '../../src/ops/normalization.js';
import type { OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { closeness, expectClose, randomTensor, type Tolerance } from '../util/tensors.js';

type Op = keyof typeof ops;

/** Runs `op` on the GPU and the reference; compares every output. */
async function check(
  op: Op,
  inputs: (RefTensor | undefined)[],
  attrs: Attrs = {},
  tol: Tolerance = {},
  opset = 17,
  fold = false,
  device: DeviceTraits = DEFAULT_TRAITS,
): Promise<RefTensor[]> {
  const ctx = context(op, `gpu_${op}`, opset, device);
  const got = await runOnGpu(await getGpu(), fold ? folded(ops[op]) : ops[op], inputs, attrs, ctx);
  const want = runReference(ops[op], inputs, attrs, ctx);
  expect(got).toHaveLength(want.length);
  const label = `${op} [${inputs[0]!.dims}] ${JSON.stringify(attrs)}`;
  got.forEach((g, i) => expectCloseInf(g, want[i]!, tol, `${label} output ${i}`));
  return got;
}

/** expectClose that also accepts matching infinities (and requires them to match exactly). */
function expectCloseInf(actual: RefTensor, expected: RefTensor, tol: Tolerance, what: string): void {
  const finite = (t: RefTensor) => ({ ...t, data: t.data.map((v) => (Number.isFinite(v) ? v : 0)) });
  for (let i = 0; i < expected.data.length; i++) {
    if (!Number.isFinite(expected.data[i]!) || !Number.isFinite(actual.data[i]!)) {
      expect(actual.data[i], `${what}: element ${i}`).toBe(expected.data[i]);
    }
  }
  expectClose(finite(actual), finite(expected), tol, what);
}

/**
 * The op with every 1-D grid of its lowering folded into x/y at ⌈√count⌉ workgroups per dimension
 * (usually overshooting the count): the layout grid() uses beyond 65535 workgroups, tested without
 * launching that many on SwiftShader.
 */
function folded(def: OpDef): OpDef {
  if (def.gpu === 'fold') return def;
  const lower = def.gpu;
  return {
    ...def,
    gpu(inputs, outputs, attrs, ctx) {
      const l = lower(inputs, outputs, attrs, ctx);
      if ('alias' in l) return l;
      const refold = (w: readonly [number, number, number]) => (w[1] === 1 && w[2] === 1 && w[0] > 2 ? grid(w[0], Math.ceil(Math.sqrt(w[0]))) : w);
      return { ...l, steps: l.steps.map((s) => ({ ...s, program: { ...s.program, workgroups: refold(s.program.workgroups) } })) };
    },
  };
}

const f32 = (t: RefTensor): RefTensor => ({ ...t, data: t.data.map(Math.fround) });

describe('Softmax and LogSoftmax on the GPU', () => {
  const lengths = [1, 2, 3, 4, 7, 8, 31, 32, 33, 64, 127, 128, 257, 1000, 2999, 3000];
  it(`matches the reference over the last axis for row lengths ${lengths.join(', ')}`, async () => {
    for (const [i, len] of lengths.entries()) {
      const x = randomTensor([3, len], 100 + i, -8, 8);
      await check('Softmax', [x], {}, { rtol: 1e-4, atol: 1e-7 });
      await check('LogSoftmax', [x], {}, { rtol: 1e-4, atol: 1e-5 });
    }
  });

  it('handles more rows than one workgroup holds', async () => {
    for (const [rows, len] of [
      [70, 5],
      [70, 8],
      [9, 100],
      [5, 3000],
    ]) {
      await check('Softmax', [randomTensor([rows!, len!], rows! * len!, -5, 5)], {}, { rtol: 1e-4, atol: 1e-7 });
    }
  });

  it('reduces a strided axis (opset 13) and the 2-D coercion (opset 11)', async () => {
    for (const [dims, axis] of [
      [[2, 5, 3], 1],
      [[3, 40, 70], 1],
      [[4, 3], 0],
      [[2, 3, 1], 1],
    ] as [number[], number][]) {
      const x = randomTensor(dims, dims.length * 7 + axis, -4, 4);
      await check('Softmax', [x], { axis }, { rtol: 1e-4, atol: 1e-7 }, 13);
      await check('LogSoftmax', [x], { axis }, { rtol: 1e-4, atol: 1e-5 }, 13);
    }
    const x = randomTensor([2, 3, 4], 9, -4, 4);
    await check('Softmax', [x], { axis: 1 }, { rtol: 1e-4, atol: 1e-7 }, 11);
    await check('LogSoftmax', [x], {}, { rtol: 1e-4, atol: 1e-5 }, 11);
  });

  it('writes −∞ rows as zeros / −∞ without NaN, on both load paths', async () => {
    for (const len of [4, 5]) {
      const x = randomTensor([3, len], len);
      for (let j = 0; j < len; j++) x.data[len + j] = -Infinity; // row 1: all −∞
      x.data[2 * len] = -Infinity; // row 2: one −∞
      const [y] = await check('Softmax', [x]);
      expect(Array.from(y!.data.slice(len, 2 * len))).toEqual(new Array(len).fill(0));
      const [l] = await check('LogSoftmax', [x]);
      expect(l!.data.some(Number.isNaN)).toBe(false);
    }
  });

  it('folds its grid into x and y (as beyond 65535 workgroups)', async () => {
    for (const [dims, axis] of [
      [[70, 5], -1],
      [[9, 3000], -1],
      [[3, 40, 70], 1],
    ] as [number[], number][]) {
      await check('Softmax', [randomTensor(dims, dims[1]!, -3, 3)], { axis }, { rtol: 1e-4, atol: 1e-7 }, 13, true);
    }
  });
});

describe('MaskedSoftmax on the GPU', () => {
  const min = -3.4028234663852886e38;
  for (const len of [7, 8]) {
    it(`broadcasts masks of every common shape (row length ${len})`, async () => {
      const dims = [2, 3, 5, len];
      const x = randomTensor(dims, 200 + len, -3, 3);
      for (const mdims of [[2, 1, 1, len], [5, len], [2, 1, 5, len], [1], [2, 3, 5, 1], dims]) {
        const mask = randomTensor(mdims, mdims.length * 31 + len, -6, 0);
        await check('MaskedSoftmax', [x, mask], { scale: 0.125 }, { rtol: 1e-4, atol: 1e-7 });
      }
    });
  }

  it('masks with −∞ and finfo.min, including fully masked rows', async () => {
    for (const len of [6, 12]) {
      const x = randomTensor([2, 2, 4, len], len, -3, 3);
      // Causal mask [4, len]: key j visible to query i when j ≤ i; row 0 of the −∞ variant fully masked.
      for (const fill of [-Infinity, min]) {
        const mask = tensor('float32', [4, len]);
        for (let i = 0; i < 4; i++) for (let j = 0; j < len; j++) mask.data[i * len + j] = j <= i ? 0 : fill;
        for (let j = 0; j < len; j++) mask.data[j] = fill;
        const [y] = await check('MaskedSoftmax', [x, mask], { scale: 0.5 }, { rtol: 1e-4, atol: 1e-7 });
        expect(y!.data.some(Number.isNaN)).toBe(false);
      }
    }
  });
});

describe('The fused attention softmax (keep and divisor) on the GPU', () => {
  // GPT-2's Div → Where(causal, ·, fill) → Add(padding mask) → Softmax, as compile/fuse.ts fuses it,
  // and its backward SoftmaxGrad → Where(causal, ·, 0) → Div; on both load paths and both layouts.
  const causal = (t: number, len: number): RefTensor => {
    const k = tensor('bool', [1, 1, t, len]);
    for (let i = 0; i < t; i++) for (let j = 0; j < len; j++) k.data[i * len + j] = j <= i + len - t ? 1 : 0;
    return k;
  };
  for (const device of [DEFAULT_TRAITS, deviceTraits({ software: true })]) {
    for (const len of [7, 8]) {
      it(`matches the reference, row length ${len}${device.software ? ', software layout' : ''}`, async () => {
        const dims = [2, 3, 5, len];
        const x = randomTensor(dims, 700 + len, -20, 20);
        const keep = causal(5, len);
        for (const mdims of [[2, 1, 1, len], [1]]) {
          const mask = randomTensor(mdims, 710 + len, -6, 0);
          for (const fill of [-10000, -3.4028234663852886e38]) {
            await check('MaskedSoftmax', [x, mask, keep], { divisor: 8, fill }, { rtol: 1e-4, atol: 1e-7 }, 1, false, device);
          }
        }
        const y = f32(runReference(ops.MaskedSoftmax, [x, randomTensor([1], 1), keep], { divisor: 8, fill: -10000 }, context('MaskedSoftmax'))[0]!);
        const dy = randomTensor(dims, 720 + len);
        await check('SoftmaxGrad', [dy, y, keep], { axis: -1, divisor: 8 }, { rtol: 1e-3, atol: 1e-6 }, 1, false, device);
        await check('SoftmaxGrad', [dy, y], { axis: -1, divisor: 3 }, { rtol: 1e-3, atol: 1e-6 }, 1, false, device);
      });
    }
  }
});

describe('SoftmaxGrad on the GPU', () => {
  it('matches the reference over the last axis and strided axes', async () => {
    for (const [dims, axis] of [
      [[3, 1], -1],
      [[5, 7], -1],
      [[4, 64], -1],
      [[2, 3001], -1],
      [[40, 12], -1],
      [[2, 5, 3], 1],
      [[6, 2], 0],
    ] as [number[], number][]) {
      const y = f32(runReference(ops.Softmax, [randomTensor(dims, 300 + dims[0]!, -3, 3)], { axis }, context('Softmax'))[0]!);
      const dy = randomTensor(dims, 301 + dims[1]!);
      await check('SoftmaxGrad', [dy, y], { axis }, { rtol: 1e-3, atol: 1e-6 });
    }
  });
});

describe('LayerNormalization on the GPU', () => {
  const cases: [number[], number][] = [
    [[1, 1], -1],
    [[3, 1], -1],
    [[5, 3], -1],
    [[4, 7], -1],
    [[2, 3, 8], -1],
    [[2, 3, 4], 1],
    [[70, 5], -1],
    [[9, 768], -1],
    [[2, 3000], -1],
    [[3, 2999], -1],
  ];
  it('matches Y, Mean and InvStdDev with and without bias', async () => {
    for (const [i, [dims, axis]] of cases.entries()) {
      const a = axis < 0 ? dims.length + axis : axis;
      const pdims = dims.slice(a);
      // An offset mean tests the stability of the variance (x ≈ 50 ± 1).
      const x = randomTensor(dims, 400 + i, 49, 51);
      const scale = randomTensor(pdims, 401 + i, 0.5, 1.5);
      const bias = randomTensor(pdims, 402 + i);
      await check('LayerNormalization', [x, scale, bias], { axis, epsilon: 1e-5 }, { rtol: 1e-3, atol: 1e-3 });
      await check('LayerNormalization', [randomTensor(dims, 403 + i, -2, 2), scale], { axis }, { rtol: 1e-4, atol: 1e-4 });
    }
  });

  it('matches SimplifiedLayerNormalization (RMSNorm)', async () => {
    for (const [i, [dims, axis]] of cases.entries()) {
      const a = axis < 0 ? dims.length + axis : axis;
      const x = randomTensor(dims, 500 + i, -2, 2);
      const scale = randomTensor(dims.slice(a), 501 + i, 0.5, 1.5);
      await check('SimplifiedLayerNormalization', [x, scale], { axis, epsilon: 1e-6 }, { rtol: 1e-4, atol: 1e-5 });
    }
  });
});

describe('Layer-norm gradients on the GPU', () => {
  const cases: [number[], number][] = [
    [[1, 1], -1],
    [[3, 5], -1],
    [[2, 3, 4], 1],
    [[300, 12], -1],
    [[4, 768], -1],
    [[2, 3001], -1],
  ];
  it('LayerNormalizationGrad: dX, and dScale / dBias when asked', async () => {
    for (const [i, [dims, axis]] of cases.entries()) {
      const a = axis < 0 ? dims.length + axis : axis;
      const x = randomTensor(dims, 600 + i, -2, 2);
      const scale = randomTensor(dims.slice(a), 601 + i, 0.5, 1.5);
      const [, mean, inv] = runReference(ops.LayerNormalization, [x, scale], { axis }, context('LayerNormalization')).map(f32);
      const dy = randomTensor(dims, 602 + i);
      for (const weight_grad of [0, 1]) {
        await check('LayerNormalizationGrad', [dy, x, scale, mean!, inv!], { axis, weight_grad }, { rtol: 1e-3, atol: 1e-4 });
      }
    }
  });

  it('SimplifiedLayerNormalizationGrad: dX, and dScale when asked', async () => {
    for (const [i, [dims, axis]] of cases.entries()) {
      const a = axis < 0 ? dims.length + axis : axis;
      const x = randomTensor(dims, 700 + i, -2, 2);
      const scale = randomTensor(dims.slice(a), 701 + i, 0.5, 1.5);
      const [, inv] = runReference(ops.SimplifiedLayerNormalization, [x, scale], { axis }, context('SimplifiedLayerNormalization')).map(f32);
      const dy = randomTensor(dims, 702 + i);
      for (const weight_grad of [0, 1]) {
        await check('SimplifiedLayerNormalizationGrad', [dy, x, scale, inv!], { axis, weight_grad }, { rtol: 1e-3, atol: 1e-4 });
      }
    }
  });

  it('folds its grids into x and y (as beyond 65535 workgroups)', async () => {
    const dims = [300, 12];
    const x = randomTensor(dims, 900, -2, 2);
    const scale = randomTensor([12], 901, 0.5, 1.5);
    const bias = randomTensor([12], 902);
    const [, mean, inv] = await check('LayerNormalization', [x, scale, bias], {}, { rtol: 1e-4, atol: 1e-4 }, 17, true);
    const [, rinv] = await check('SimplifiedLayerNormalization', [x, scale], {}, { rtol: 1e-4, atol: 1e-4 }, 17, true);
    const dy = randomTensor(dims, 903);
    await check('LayerNormalizationGrad', [dy, x, scale, mean!, inv!], { weight_grad: 1 }, { rtol: 1e-3, atol: 1e-4 }, 17, true);
    await check('SimplifiedLayerNormalizationGrad', [dy, x, scale, rinv!], { weight_grad: 1 }, { rtol: 1e-3, atol: 1e-4 }, 17, true);
  });

  it('computes what a node declares when it omits optional outputs (ctx.numOutputs)', async () => {
    const gpu = await getGpu();
    const dims = [6, 10];
    const x = randomTensor(dims, 950, -2, 2);
    const scale = randomTensor([10], 951, 0.5, 1.5);
    const bias = randomTensor([10], 952);
    const only = (op: Op, n: number) => ({ ...context(op, `gpu_${op}`), numOutputs: n });
    for (const [op, inputs] of [
      ['LayerNormalization', [x, scale, bias]],
      ['SimplifiedLayerNormalization', [x, scale]],
    ] as [Op, RefTensor[]][]) {
      const ctx = only(op, 1);
      const [y] = await runOnGpu(gpu, ops[op], inputs, {}, ctx);
      expectClose(y!, runReference(ops[op], inputs, {}, ctx)[0]!, { rtol: 1e-4, atol: 1e-5 }, `${op} Y alone`);
    }
    // Y and Mean only: Mean is written, InvStdDev goes to scratch.
    const ctx2 = only('LayerNormalization', 2);
    const [, mean] = await runOnGpu(gpu, ops.LayerNormalization, [x, scale, bias], {}, ctx2);
    expectClose(mean!, runReference(ops.LayerNormalization, [x, scale, bias], {}, ctx2)[1]!, { rtol: 1e-5, atol: 1e-6 }, 'Mean');
    // weight_grad with only dX and dScale declared.
    const [, m, inv] = runReference(ops.LayerNormalization, [x, scale], {}, context('LayerNormalization')).map(f32);
    const dy = randomTensor(dims, 953);
    const gctx = only('LayerNormalizationGrad', 2);
    const got = await runOnGpu(gpu, ops.LayerNormalizationGrad, [dy, x, scale, m!, inv!], { weight_grad: 1 }, gctx);
    const want = runReference(ops.LayerNormalizationGrad, [dy, x, scale, m!, inv!], { weight_grad: 1 }, gctx);
    expectClose(got[0]!, want[0]!, { rtol: 1e-3, atol: 1e-4 }, 'dX');
    expectClose(got[1]!, want[1]!, { rtol: 1e-3, atol: 1e-4 }, 'dScale');
  });

  it('reduces weight gradients deterministically (bit-identical reruns)', async () => {
    const dims = [300, 12];
    const x = randomTensor(dims, 800, -2, 2);
    const scale = randomTensor([12], 801, 0.5, 1.5);
    const [, mean, inv] = runReference(ops.LayerNormalization, [x, scale], {}, context('LayerNormalization')).map(f32);
    const dy = randomTensor(dims, 802);
    const gpu = await getGpu();
    const ctx = context('LayerNormalizationGrad');
    const a = await runOnGpu(gpu, ops.LayerNormalizationGrad, [dy, x, scale, mean!, inv!], { weight_grad: 1 }, ctx);
    const b = await runOnGpu(gpu, ops.LayerNormalizationGrad, [dy, x, scale, mean!, inv!], { weight_grad: 1 }, ctx);
    a.forEach((t, i) => expect(closeness(t.data, b[i]!.data, { rtol: 0, atol: 0 }).maxAbs).toBe(0));
  });
});

describe('Row kernels in the software-adapter layout (DeviceTraits.software)', () => {
  const sw = deviceTraits({ software: true });
  // [rows, n]: 128 rows or more take one invocation per row (here 3 workgroups of 64, the last
  // partial); fewer take eight per row (a tree of 3 levels). Row lengths on both load paths.
  const cases: [number, number][] = [
    [130, 12],
    [131, 7],
    [70, 64],
    [3, 257],
  ];
  it('picks one invocation per row for many rows, eight for few, in workgroups of 64', () => {
    expect(rowLayout(16, 130, sw)).toEqual({ WG: 64, TPR: 1, workgroups: [3, 1, 1] });
    expect(rowLayout(16, 70, sw)).toEqual({ WG: 64, TPR: 8, workgroups: [9, 1, 1] });
    expect(rowLayout(16, 130, DEFAULT_TRAITS).TPR).toBe(8);
  });

  it('matches softmax, layer norm and their gradients', async () => {
    for (const [i, [rows, n]] of cases.entries()) {
      const dims = [rows, n];
      const x = randomTensor(dims, 1100 + i, -3, 3);
      const dy = randomTensor(dims, 1110 + i);
      const scale = randomTensor([n], 1120 + i, 0.5, 1.5);
      const bias = randomTensor([n], 1130 + i);
      await check('Softmax', [x], {}, { rtol: 1e-4, atol: 1e-7 }, 17, false, sw);
      await check('LogSoftmax', [x], {}, { rtol: 1e-4, atol: 1e-5 }, 17, false, sw);
      const y = f32(runReference(ops.Softmax, [x], {}, context('Softmax'))[0]!);
      await check('SoftmaxGrad', [dy, y], { axis: -1 }, { rtol: 1e-3, atol: 1e-6 }, 17, false, sw);
      const [, mean, inv] = await check('LayerNormalization', [x, scale, bias], { epsilon: 1e-5 }, { rtol: 1e-4, atol: 1e-4 }, 17, false, sw);
      const [, rinv] = await check('SimplifiedLayerNormalization', [x, scale], {}, { rtol: 1e-4, atol: 1e-5 }, 17, false, sw);
      await check('LayerNormalizationGrad', [dy, x, scale, mean!, inv!], { weight_grad: 1 }, { rtol: 1e-3, atol: 1e-4 }, 17, false, sw);
      await check('SimplifiedLayerNormalizationGrad', [dy, x, scale, rinv!], { weight_grad: 0 }, { rtol: 1e-3, atol: 1e-4 }, 17, false, sw);
    }
  });
});
