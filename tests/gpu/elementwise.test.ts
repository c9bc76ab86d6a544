// Element-wise kernels on the GPU against the float64 reference: every op, every storage class,
// broadcasting of either side, both sides and scalars, the vec4 fast path and the strided path,
// rank 8 after coalescing, and a grid folded past 65535 workgroups.
import { describe, expect, it } from 'vitest';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { fromGpuBytes, toGpuArray, tensor, type RefTensor } from '../../src/ir/tensor.js';
import { elementwiseOps, elementwiseProgram, planBroadcast } from '../../src/ops/elementwise.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomInts, randomTensor, rng, type Tolerance } from '../util/tensors.js';

type Op = keyof typeof elementwiseOps;

const show = (ts: readonly (RefTensor | undefined)[]): string =>
  ts.map((t) => (t ? `${t.dtype}[${t.dims.join(',')}]` : '-')).join(' ');

/** Runs `op` on the GPU and on the reference and compares every output (dtype, dims, values). */
async function check(op: Op, inputs: (RefTensor | undefined)[], attrs: Attrs = {}, tol: Tolerance = {}, opset = 17): Promise<RefTensor> {
  const gpu = await getGpu();
  const def = elementwiseOps[op];
  const ctx = context(op, `${op}_node`, opset);
  const want = runReference(def, inputs, attrs, ctx);
  const got = await runOnGpu(gpu, def, inputs, attrs, ctx);
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    expect(g.dtype, `${op} output dtype`).toBe(want[i]!.dtype);
    expectClose(g, want[i]!, tol, `${op} ${show(inputs)}`);
  });
  return want[0]!;
}

/** Random floats of `dtype` (float32 by default) with magnitudes in [lo, hi] and random signs. */
function signed(dims: readonly number[], seed: number, lo: number, hi: number): RefTensor {
  const t = randomTensor(dims, seed, lo, hi);
  const r = rng(seed + 1000);
  for (let i = 0; i < t.data.length; i++) if (r() < 0.5) t.data[i] = -t.data[i]!;
  return t;
}

function bools(dims: readonly number[], seed: number): RefTensor {
  return randomInts(dims, seed, 0, 2, 'bool');
}

/** Broadcast pairs: equal shapes, scalars on either side, both sides broadcasting, primes. */
const PAIRS: [number[], number[]][] = [
  [[7], [7]],
  [[1], [5]],
  [[4, 5], []],
  [[], [3, 2]],
  [[3, 1], [1, 4]],
  [[2, 3, 5], [5]],
  [[2, 3, 5], [3, 1]],
  [[1, 13], [11, 1]],
  [[6, 1, 5], [1, 7, 1]],
  [[37, 129], [37, 129]],
  [[2, 1, 2, 1, 2, 1, 2, 3], [1, 2, 1, 2, 1, 2, 1, 3]],
];

describe('binary float ops', () => {
  it('Add, Sub, Mul, Div over every broadcast pattern', async () => {
    let seed = 1;
    for (const [da, db] of PAIRS) {
      const a = randomTensor(da, seed++, -2, 2);
      const b = randomTensor(db, seed++, -2, 2);
      const d = signed(db, seed++, 0.25, 2);
      await check('Add', [a, b]);
      await check('Sub', [b, a]);
      await check('Mul', [a, b]);
      await check('Div', [a, d]);
    }
  });

  it('covers both paths on larger tensors (strided 77100 elements, fast 2^18 + 3)', async () => {
    await check('Add', [randomTensor([257, 300], 11), randomTensor([300], 12)]);
    await check('Mul', [randomTensor([1, 300], 13), randomTensor([257, 1], 14)]);
    const n = (1 << 18) + 3;
    await check('Sub', [randomTensor([n], 15), randomTensor([n], 16)]);
  });

  it('takes the vec4 fast path only when every input is full-size or a single element', () => {
    expect(planBroadcast([[4, 5], []], [4, 5]).fast).toBe(true);
    expect(planBroadcast([[4, 5], [1, 1]], [4, 5]).scalars).toBe(2);
    expect(planBroadcast([[4, 5], [5]], [4, 5]).fast).toBe(false);
  });

  it('Pow: positive bases, negative bases with integral exponents, small integral exponents', async () => {
    await check('Pow', [randomTensor([5, 7], 21, 0.1, 3), randomTensor([7], 22, -2.5, 2.5)], {}, { rtol: 2e-4 });
    const ints = randomInts([5, 7], 23, -3, 5, 'float32');
    await check('Pow', [randomTensor([5, 7], 24, -3, 3), ints], {}, { rtol: 2e-4 });
    for (const e of [0, 1, 2, 3, 0.5, -1]) {
      await check('Pow', [randomTensor([9], 25 + e, 0, 4), tensor('float32', [], [e])], {}, { rtol: 2e-4 });
    }
    // A float base with an int64 exponent, and an int base with a float exponent (truncated).
    await check('Pow', [randomTensor([3, 4], 31, -2, 2), randomInts([4], 32, -2, 4)], {}, { rtol: 2e-4 });
    await check('Pow', [randomInts([3, 4], 33, 1, 6), tensor('float32', [1], [1.5])]);
  });

  it('Min and Max of two broadcast inputs', async () => {
    await check('Min', [randomTensor([3, 1, 5], 41), randomTensor([4, 1], 42)]);
    await check('Max', [randomTensor([3, 1, 5], 43), randomTensor([4, 1], 44)]);
  });
});

describe('integer and bool ops', () => {
  it('Add, Sub, Mul, Div (truncating), Pow, Neg, Abs, Relu on int64 and int32', async () => {
    let seed = 100;
    for (const dtype of ['int64', 'int32'] as DataType[]) {
      for (const [da, db] of [
        [[6], [6]],
        [[3, 1], [1, 5]],
        [[2, 3, 5], [5]],
      ] as [number[], number[]][]) {
        const a = randomInts(da, seed++, -50, 50, dtype);
        const b = randomInts(db, seed++, -50, 50, dtype);
        const d = randomInts(db, seed++, 1, 9, dtype);
        const r = rng(seed++);
        for (let i = 0; i < d.data.length; i++) if (r() < 0.5) d.data[i] = -d.data[i]!;
        await check('Add', [a, b]);
        await check('Sub', [a, b]);
        await check('Mul', [a, b]);
        await check('Div', [a, d]);
        await check('Max', [a, b]);
        await check('Min', [a, b]);
      }
      const base = randomInts([4, 5], seed++, -4, 5, dtype);
      await check('Pow', [base, randomInts([5], seed++, -2, 6, dtype)]);
      const x = randomInts([3, 7], seed++, -20, 20, dtype);
      await check('Neg', [x]);
      await check('Abs', [x]);
      await check('Relu', [x]);
    }
  });

  it('comparisons give bool, with ties, on floats and ints', async () => {
    let seed = 200;
    for (const dtype of ['float32', 'int64'] as DataType[]) {
      for (const [da, db] of [
        [[8], [8]],
        [[3, 1], [1, 4]],
        [[2, 3, 5], []],
      ] as [number[], number[]][]) {
        const a = randomInts(da, seed++, -2, 3, dtype);
        const b = randomInts(db, seed++, -2, 3, dtype);
        for (const op of ['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual'] as const) {
          const out = await check(op, [a, b]);
          expect(out.dtype).toBe('bool');
        }
      }
    }
    await check('Equal', [bools([4, 3], 250), bools([3], 251)]);
  });

  it('And, Or, Xor, Not', async () => {
    const a = bools([4, 1, 5], 300);
    const b = bools([3, 1], 301);
    await check('And', [a, b]);
    await check('Or', [a, b]);
    await check('Xor', [a, b]);
    await check('Not', [a]);
  });
});

describe('unary float ops', () => {
  const x = (seed: number, lo: number, hi: number): RefTensor => randomTensor([7, 149], seed, lo, hi);
  it('matches the reference over ranges that exercise each approximation', async () => {
    await check('Exp', [x(1, -10, 10)]);
    await check('Log', [x(2, 0.01, 100)]);
    await check('Sqrt', [x(3, 0, 100)]);
    await check('Neg', [x(4, -5, 5)]);
    await check('Abs', [x(5, -5, 5)]);
    await check('Reciprocal', [signed([7, 149], 6, 0.1, 10)]);
    await check('Relu', [x(7, -5, 5)]);
    await check('Floor', [x(8, -5, 5)]);
    await check('Ceil', [x(9, -5, 5)]);
    // Our own range reduction and polynomials: float32 accuracy (WGSL's builtins only promise
    // 2^-11 on [-pi, pi]), also at the large angles of rotary embeddings of late positions.
    await check('Sin', [x(10, -Math.PI, Math.PI)], {}, { atol: 1e-6 });
    await check('Cos', [x(11, -Math.PI, Math.PI)], {}, { atol: 1e-6 });
    await check('Sin', [x(12, -2000, 2000)], {}, { atol: 2e-4 });
    await check('Cos', [x(13, -2000, 2000)], {}, { atol: 2e-4 });
  });

  it('keeps relative precision in the tails and near zero (erf, tanh, sigmoid, softplus)', async () => {
    await check('Erf', [x(20, -6, 6)], {}, { rtol: 2e-6, atol: 1e-7 });
    await check('Erf', [x(21, -1e-2, 1e-2)], {}, { rtol: 2e-6, atol: 1e-12 });
    await check('Tanh', [x(22, -12, 12)], {}, { atol: 1e-6 });
    await check('Tanh', [x(23, -1e-3, 1e-3)], {}, { atol: 1e-12 });
    await check('Sigmoid', [x(24, -30, 30)], {}, { atol: 1e-12 });
    await check('Softplus', [x(25, -20, 20)], {}, { atol: 1e-10 });
    await check('Softplus', [x(26, -3, 3)]);
  });

  it("Gelu, approximate 'none' and 'tanh'", async () => {
    for (const approximate of ['none', 'tanh']) {
      // Relative precision down to gelu(-8) ~ -1e-15: the lower tail never goes through 1 - erf.
      await check('Gelu', [x(30, -8, 8)], { approximate }, { rtol: 5e-5, atol: 1e-30 }, 20);
      await check('Gelu', [x(31, -1e-2, 1e-2)], { approximate }, { rtol: 2e-5, atol: 1e-12 }, 20);
    }
  });
});

describe('Where, Clip, Cast', () => {
  it('Where broadcasts condition and both branches, for floats and ints', async () => {
    await check('Where', [bools([3, 1, 5], 400), randomTensor([4, 1], 401), randomTensor([5], 402)]);
    await check('Where', [bools([1], 403), randomTensor([2, 3], 404), randomTensor([2, 3], 405)]);
    await check('Where', [bools([6, 7], 406), randomInts([6, 7], 407, -9, 9), randomInts([], 408, -9, 9)]);
    await check('Where', [bools([2, 1, 3], 409), bools([1, 4, 1], 410), bools([3], 411)]);
  });

  it('Clip: bounds as attributes (opset 6), as inputs (opset 13), either bound alone, lo > hi', async () => {
    const v = randomTensor([5, 11], 420, -3, 3);
    const s = (x: number, dtype: DataType = 'float32'): RefTensor => tensor(dtype, [], [x]);
    await check('Clip', [v], { min: -1, max: 0.5 }, {}, 6);
    await check('Clip', [v], { max: 0.5 }, {}, 6);
    await check('Clip', [v, s(-1), s(0.5)], {}, {}, 13);
    await check('Clip', [v, s(-1), undefined], {}, {}, 13);
    await check('Clip', [v, undefined, s(0.5)], {}, {}, 13);
    await check('Clip', [v], {}, {}, 13);
    await check('Clip', [v, s(1), s(-1)], {}, {}, 13);
    await check('Clip', [randomInts([4, 4], 421, -10, 10), s(-3, 'int64'), s(4, 'int64')], {}, {}, 13);
  });

  it('Cast between every supported pair of storage classes', async () => {
    const f = randomTensor([9, 13], 430, -300, 300);
    for (let i = 0; i < 10; i++) f.data[i * 7] = [0, -0.5, 0.5, -1, 1, 255.9, -128.5, 127.5, 65519, -65504][i]!;
    const targets = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 };
    for (const [name, to] of Object.entries(targets)) {
      await check('Cast', [f], { to }, name === 'float16' ? { rtol: 2e-3 } : {});
    }
    const i64 = randomInts([9, 13], 431, -400, 400);
    i64.data[0] = 0;
    for (const to of Object.values(targets)) await check('Cast', [i64], { to });
    const b = bools([5, 3], 432);
    for (const to of [1, 7, 3, 2, 9]) await check('Cast', [b], { to });
    await check('Cast', [randomInts([5], 433, -100, 100, 'int8')], { to: 2 });
    await check('Cast', [randomTensor([6], 434, -2, 2, 'float16')], { to: 1 });
  });

  it('Cast to float16 overflows to ±inf past binary16 range', async () => {
    const gpu = await getGpu();
    const x = tensor('float32', [6], [65519, 65520, -70000, 1e30, -65504, 3]);
    const ctx = context('Cast');
    const got = (await runOnGpu(gpu, elementwiseOps.Cast, [x], { to: 10 }, ctx))[0]!;
    const want = runReference(elementwiseOps.Cast, [x], { to: 10 }, ctx)[0]!;
    expect(Array.from(want.data)).toEqual([65504, Infinity, -Infinity, Infinity, -65504, 3]);
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
  });
});

describe('variadic ops', () => {
  it('Sum, Mean, Min, Max over 1 to 4 broadcast inputs', async () => {
    const ins = [randomTensor([3, 1, 4], 500), randomTensor([5, 1], 501), randomTensor([4], 502), randomTensor([], 503)];
    for (let k = 1; k <= 4; k++) {
      await check('Sum', ins.slice(0, k));
      await check('Mean', ins.slice(0, k));
      await check('Max', ins.slice(0, k));
      await check('Min', ins.slice(0, k));
    }
    const ints = [randomInts([2, 3], 510, -9, 9), randomInts([3], 511, -9, 9), randomInts([2, 1], 512, -9, 9)];
    await check('Max', ints);
    await check('Min', ints);
  });
});

describe('backward helpers', () => {
  it('GeluGrad, SigmoidGrad, TanhGrad, ReluGrad, ErfGrad', async () => {
    const dims = [9, 31];
    const dy = randomTensor(dims, 600, -2, 2);
    const x = randomTensor(dims, 601, -6, 6);
    for (const approximate of ['none', 'tanh']) await check('GeluGrad', [dy, x], { approximate }, { rtol: 5e-5, atol: 1e-7 });
    const y = randomTensor(dims, 602, 0, 1);
    await check('SigmoidGrad', [dy, y]);
    await check('TanhGrad', [dy, randomTensor(dims, 603, -1, 1)]);
    // Exact zeros of x: ReluGrad passes nothing through at 0.
    await check('ReluGrad', [dy, randomInts(dims, 604, -2, 3, 'float32')]);
    await check('ErfGrad', [dy, x]);
  });
});

describe('output padding', () => {
  it('leaves the padding words of a partial last vec4 untouched (fast and strided paths)', async () => {
    const gpu = await getGpu();
    for (const [da, db] of [
      [[5, 7], [5, 7]],
      [[5, 7], [7]],
    ] as [number[], number[]][]) {
      const a = randomTensor(da, 720);
      const b = randomTensor(db, 721);
      const n = a.data.length; // 35: the last vec4 holds 3 elements and 1 padding word
      const words = Math.ceil(n / 4) * 4;
      const out = gpu.buffers.acquire(4 * words);
      gpu.write(out, new Float32Array(words).fill(-7.25));
      const bufA = gpu.upload(toGpuArray(a));
      const bufB = gpu.upload(toGpuArray(b));
      await gpu.run([{ program: elementwiseProgram('MUL_F', [da, db], da), buffers: [bufA, bufB, bufA, out] }]);
      const got = new Float32Array(await gpu.read(out, 4 * words));
      expect(Array.from(got.slice(n))).toEqual(new Array(words - n).fill(-7.25));
      const want = runReference(elementwiseOps.Mul, [a, b], {}, context('Mul'))[0]!;
      expectClose(fromGpuBytes({ dtype: 'float32', dims: da }, got.buffer), want);
      for (const buf of [bufA, bufB, out]) gpu.buffers.release(buf);
    }
  });
});

describe('grid folding', () => {
  it('folds more than 65535 workgroups (workgroup size 1) on both paths', async () => {
    const gpu = await getGpu();
    const cases: [number[], number[]][] = [
      [[280_001], [280_001]],
      [[700, 401], [401]],
    ];
    for (const [da, db] of cases) {
      const a = randomTensor(da, 700);
      const b = randomTensor(db, 701);
      const program = elementwiseProgram('ADD_F', [da, db], da, {}, { workgroupSize: 1 });
      expect(program.workgroups[1]).toBeGreaterThan(1);
      const bufA = gpu.upload(toGpuArray(a));
      const bufB = gpu.upload(toGpuArray(b));
      const out = gpu.buffers.acquire(4 * a.data.length);
      await gpu.run([{ program, buffers: [bufA, bufB, bufA, out] }]);
      const got = fromGpuBytes({ dtype: 'float32', dims: da }, await gpu.read(out, 4 * a.data.length));
      const want = runReference(elementwiseOps.Add, [a, b], {}, context('Add'))[0]!;
      expectClose(got, want, {}, `Add [${da}] + [${db}] folded`);
      for (const buf of [bufA, bufB, out]) gpu.buffers.release(buf);
    }
  });

  it('folds at a small per-dimension bound, with overshooting workgroups ignored', async () => {
    const gpu = await getGpu();
    const dims = [5, 203];
    const a = randomTensor(dims, 710);
    const program = elementwiseProgram('EXP', [dims], dims, {}, { workgroupSize: 4, maxWorkgroupsPerDim: 10 });
    expect(program.workgroups).toEqual([10, 7, 1]); // 64 workgroups folded as 10 × 7 = 70
    const bufA = gpu.upload(toGpuArray(a));
    const out = gpu.buffers.acquire(4 * a.data.length);
    await gpu.run([{ program, buffers: [bufA, bufA, bufA, out] }]);
    const got = fromGpuBytes({ dtype: 'float32', dims }, await gpu.read(out, 4 * a.data.length));
    expectClose(got, runReference(elementwiseOps.Exp, [a], {}, context('Exp'))[0]!);
    gpu.buffers.release(bufA);
    gpu.buffers.release(out);
  });
});
