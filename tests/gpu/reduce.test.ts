// Reductions on the GPU against the float64 reference: every Reduce* op over contiguous and
// scattered axes, keepdims, opset-dependent axes, int dtypes, the split path for long runs,
// ArgMax ties, CumSum in all four modes, SumToShape, forced tiles and grids folded past 65535.
import { describe, expect, it } from 'vitest';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { fromGpuBytes, toGpuArray, tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { planReduce, reduceOps, reduceProgram, scanProgram } from '../../src/ops/reduce.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomInts, randomTensor, type Tolerance } from '../util/tensors.js';

type Op = keyof typeof reduceOps;

const axesTensor = (axes: number[]): RefTensor => tensor('int64', [axes.length], axes);

/** GPU vs reference; input 1 (axes) is passed as a compile-time constant when present. */
async function check(op: Op, inputs: (RefTensor | undefined)[], attrs: Attrs = {}, opset = 18, tol: Tolerance = {}): Promise<RefTensor> {
  const gpu = await getGpu();
  const def = reduceOps[op];
  const ctx = context(op, `${op}_node`, opset);
  const want = runReference(def, inputs, attrs, ctx)[0]!;
  const got = (await runOnGpu(gpu, def, inputs, attrs, ctx, new Set([1])))[0]!;
  expect(got.dtype).toBe(want.dtype);
  const what = `${op} [${inputs[0]!.dims.join(',')}] ${JSON.stringify(attrs)} axes=${inputs[1] ? Array.from(inputs[1].data).join(',') : '-'}`;
  expectClose(got, want, tol, what);
  return want;
}

const SUM_TOL: Tolerance = { rtol: 1e-4, atol: 1e-4 };

/** Shapes with 1s and primes, and axis sets: single, contiguous runs, scattered, negative, all. */
const CASES: [number[], number[]][] = [
  [[7], [0]],
  [[1], [0]],
  [[5, 1], [1]],
  [[3, 5], [1]],
  [[3, 5], [0]],
  [[4, 1, 6], [0, 2]],
  [[2, 3, 4, 5], [1, 2]],
  [[2, 3, 4, 5], [1, 3]],
  [[2, 3, 4, 5], [0, 2]],
  [[2, 3, 4, 5], [-1]],
  [[13, 17, 3], []],
  [[37, 300], [1]],
  [[300, 37], [0]],
];

describe('Reduce ops', () => {
  it('ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceSumSquare over many axis sets', async () => {
    let seed = 1;
    for (const [dims, axes] of CASES) {
      const x = randomTensor(dims, seed++);
      for (const keepdims of [1, 0]) {
        for (const op of ['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceSumSquare'] as const) {
          await check(op, [x, axesTensor(axes)], { keepdims }, 18, SUM_TOL);
        }
      }
    }
  });

  it('ReduceProd on values near 1', async () => {
    await check('ReduceProd', [randomTensor([6, 9, 4], 40, 0.7, 1.3), axesTensor([1])], {}, 18, { rtol: 1e-4 });
    await check('ReduceProd', [randomTensor([6, 9, 4], 41, 0.9, 1.1), axesTensor([0, 2])], { keepdims: 0 }, 18, { rtol: 1e-4 });
  });

  it('takes axes as an attribute before opset 13 (ReduceSum) / 18 (others), and reduces all when omitted', async () => {
    const x = randomTensor([4, 6, 5], 50);
    await check('ReduceSum', [x], { axes: [0, 2] }, 11, SUM_TOL);
    await check('ReduceSum', [x, axesTensor([0, 2])], {}, 13, SUM_TOL);
    await check('ReduceMean', [x], { axes: [-1], keepdims: 0 }, 17, SUM_TOL);
    await check('ReduceMax', [x], {}, 17);
    await check('ReduceSum', [x, undefined], {}, 13, SUM_TOL);
    await check('ReduceMean', [x, axesTensor([])], {}, 18, SUM_TOL);
  });

  it('noop_with_empty_axes passes the input through (SumSquare still squares)', async () => {
    const x = randomTensor([3, 4], 60);
    const out = await check('ReduceSum', [x, axesTensor([])], { noop_with_empty_axes: 1 }, 13);
    expect(out.dims).toEqual([3, 4]);
    await check('ReduceSumSquare', [x, axesTensor([])], { noop_with_empty_axes: 1 }, 18);
    await check('ReduceSumSquare', [x, axesTensor([1])], {}, 18);
  });

  it('reduces int64 and int32 exactly (Mean truncates)', async () => {
    for (const dtype of ['int64', 'int32'] as DataType[]) {
      const x = randomInts([5, 7, 3], 70, -100, 100, dtype);
      for (const op of ['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin'] as const) {
        await check(op, [x, axesTensor([1])], {}, 18);
        await check(op, [x, axesTensor([0, 2])], { keepdims: 0 }, 18);
      }
      await check('ReduceProd', [randomInts([4, 5], 71, -3, 4, dtype), axesTensor([1])], {}, 18);
    }
  });

  it('splits long runs with few outputs into two passes (rows, columns, everything)', async () => {
    const wide = randomTensor([3, 5003], 80);
    expect(planReduce(wide.dims, [false, true], 'sum', true).length).toBe(2);
    for (const op of ['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin'] as const) {
      await check(op, [wide, axesTensor([1])], {}, 18, { rtol: 1e-4, atol: 1e-3 });
    }
    await check('ReduceSumSquare', [wide, axesTensor([1])], {}, 18, { rtol: 1e-4, atol: 1e-3 });
    const tall = randomTensor([4001, 5], 81);
    await check('ReduceSum', [tall, axesTensor([0])], {}, 18, { rtol: 1e-4, atol: 1e-3 });
    await check('ReduceMax', [tall, axesTensor([0])], {}, 18);
    await check('ReduceMean', [randomTensor([97, 301], 82), axesTensor([])], { keepdims: 0 }, 18, { rtol: 1e-4, atol: 1e-5 });
  });

  it('gives the identity for empty reductions (Mean: NaN)', async () => {
    const gpu = await getGpu();
    const x = tensor('float32', [3, 0], []);
    const ctx = context('Reduce', 'n', 18);
    const expected: [Op, number][] = [
      ['ReduceSum', 0],
      ['ReduceMax', -Infinity],
      ['ReduceMin', Infinity],
      ['ReduceProd', 1],
      ['ReduceMean', Number.NaN],
    ];
    for (const [op, v] of expected) {
      const got = (await runOnGpu(gpu, reduceOps[op], [x, axesTensor([1])], {}, ctx, new Set([1])))[0]!;
      expect(got.dims).toEqual([3, 1]);
      expect(Array.from(got.data), op).toEqual([v, v, v]);
      expect(Array.from(runReference(reduceOps[op], [x, axesTensor([1])], {}, ctx)[0]!.data), op).toEqual([v, v, v]);
    }
  });

  it('gives the same bits on every run (no atomics)', async () => {
    const gpu = await getGpu();
    const x = randomTensor([3, 5003], 90);
    const ctx = context('ReduceSum');
    const runs = await Promise.all([0, 1, 2].map(() => runOnGpu(gpu, reduceOps.ReduceSum, [x, axesTensor([1])], {}, ctx, new Set([1]))));
    expect(Array.from(runs[1]![0]!.data)).toEqual(Array.from(runs[0]![0]!.data));
    expect(Array.from(runs[2]![0]!.data)).toEqual(Array.from(runs[0]![0]!.data));
  });
});

describe('ArgMax', () => {
  it('finds the first (or last) maximum along each axis, with ties', async () => {
    let seed = 100;
    for (const dims of [[7], [5, 9], [3, 4, 6], [1, 300], [257, 3]]) {
      for (let axis = -1; axis < dims.length; axis++) {
        const x = randomInts(dims, seed++, -3, 3, 'float32');
        for (const select_last_index of [0, 1]) {
          for (const keepdims of [1, 0]) {
            const out = await check('ArgMax', [x], { axis, keepdims, select_last_index }, 13);
            expect(out.dtype).toBe('int64');
          }
        }
      }
    }
    await check('ArgMax', [randomInts([4, 9], seed++, -2, 2, 'int64')], { axis: 1 }, 13);
    await check('ArgMax', [tensor('float32', [2, 3], [-Infinity, -Infinity, -Infinity, 1, 5, 5])], { axis: 1 }, 13);
  });
});

describe('CumSum', () => {
  it('scans along any axis, inclusive or exclusive, forward or reverse', async () => {
    let seed = 200;
    for (const [dims, axis] of [
      [[1], 0],
      [[7], 0],
      [[3, 300], 1],
      [[300, 3], 0],
      [[2, 5, 3], 1],
      [[2, 5, 3], -1],
      [[4, 600], -1],
    ] as [number[], number][]) {
      const x = randomTensor(dims, seed++);
      for (const exclusive of [0, 1]) {
        for (const reverse of [0, 1]) {
          await check('CumSum', [x, tensor('int64', [], [axis])], { exclusive, reverse }, 14, { rtol: 1e-4, atol: 1e-4 });
        }
      }
    }
    await check('CumSum', [randomInts([3, 9], seed++, -50, 50), tensor('int32', [1], [1])], { reverse: 1 }, 14);
    await check('CumSum', [randomInts([3, 9], seed++, -50, 50, 'int32'), tensor('int64', [], [0])], { exclusive: 1 }, 14);
  });
});

describe('SumToShape', () => {
  it('sums the broadcast dims away, down to the target shape', async () => {
    let seed = 300;
    for (const [dims, shape] of [
      [[2, 3, 4], [3, 1]],
      [[2, 3, 4], [4]],
      [[4, 5], [1, 1]],
      [[4, 5], []],
      [[6, 1, 7], [6, 1, 1]],
      [[300, 37], [37]],
      [[3, 4], [3, 4]],
    ] as [number[], number[]][]) {
      const out = await check('SumToShape', [randomTensor(dims, seed++)], { shape }, 1, SUM_TOL);
      expect(out.dims).toEqual(shape);
    }
  });
});

describe('tiles and grid folding', () => {
  async function runPasses(x: RefTensor, programs: ReturnType<typeof reduceProgram>[], outCount: number): Promise<Float64Array> {
    const gpu = await getGpu();
    const bufs = [gpu.upload(toGpuArray(x)), ...programs.map((p) => gpu.buffers.acquire(4 * Math.max(1, p.uniforms.outputs as number)))];
    await gpu.run(programs.map((program, k) => ({ program, buffers: [bufs[k]!, bufs[k + 1]!] })));
    const out = fromGpuBytes({ dtype: x.dtype, dims: [outCount] }, await gpu.read(bufs[bufs.length - 1]!, 4 * outCount));
    for (const b of bufs) gpu.buffers.release(b);
    return out.data;
  }

  it('forced tiles give the reference result (partial tiles, both lane mappings)', async () => {
    const x = randomTensor([5, 11, 7], 400);
    for (const tile of [
      { ti: 1, tr: 1 },
      { ti: 4, tr: 8 },
      { ti: 32, tr: 2 },
      { ti: 3, tr: 16 },
    ]) {
      for (const [axes, flags] of [
        [[1], [false, true, false]],
        [[2], [false, false, true]],
      ] as [number[], boolean[]][]) {
        const passes = planReduce(x.dims, flags, 'max', true);
        const want = runReference(reduceOps.ReduceMax, [x, axesTensor(axes)], {}, context('ReduceMax', 'n', 18))[0]!;
        const got = await runPasses(x, passes.map((p) => reduceProgram(p, { tile })), want.data.length);
        expectClose({ ...want, data: got }, want, {}, `tile ${JSON.stringify(tile)} axes ${axes}`);
      }
    }
  });

  it('folds more than 65535 workgroups: one output per workgroup, and one scanned line per workgroup', async () => {
    const x = randomTensor([70_001, 3], 410);
    const [pass] = planReduce(x.dims, [false, true], 'sum', true);
    const program = reduceProgram(pass!, { tile: { ti: 1, tr: 1 } });
    expect(program.workgroups[1]).toBeGreaterThan(1);
    const want = runReference(reduceOps.ReduceSum, [x, axesTensor([1])], {}, context('ReduceSum', 'n', 18))[0]!;
    expectClose({ ...want, data: await runPasses(x, [program], 70_001) }, want, SUM_TOL, 'folded reduce');

    const gpu = await getGpu();
    const scan = scanProgram({ outer: 70_001, n: 3, inner: 1 }, true, false, false);
    expect(scan.workgroups[1]).toBeGreaterThan(1);
    const bx = gpu.upload(toGpuArray(x));
    const by = gpu.buffers.acquire(4 * x.data.length);
    await gpu.run([{ program: scan, buffers: [bx, by] }]);
    const got = fromGpuBytes(x, await gpu.read(by, 4 * x.data.length));
    const wantScan = runReference(reduceOps.CumSum, [x, tensor('int64', [], [1])], {}, context('CumSum', 'n', 14))[0]!;
    expectClose(got, wantScan, SUM_TOL, 'folded scan');
    gpu.buffers.release(bx);
    gpu.buffers.release(by);
  });

  it('folds at a small per-dimension bound, ignoring the overshooting workgroups', async () => {
    const x = randomTensor([54, 9], 420);
    const [pass] = planReduce(x.dims, [false, true], 'min', true);
    const program = reduceProgram(pass!, { tile: { ti: 2, tr: 4 }, maxWorkgroupsPerDim: 6 });
    expect(program.workgroups).toEqual([6, 5, 1]); // 27 workgroups folded as 6 × 5 = 30
    const want = runReference(reduceOps.ReduceMin, [x, axesTensor([1])], {}, context('ReduceMin', 'n', 18))[0]!;
    expectClose({ ...want, data: await runPasses(x, [program], 54) }, want, {}, 'folded min');
  });
});
