// GPU tests of the layout ops: every lowering against the float64 reference, bit-exact (layout ops
// only move words), on seeded random inputs over ranks 1-5, dims of 1, primes, negative axes, and
// the awkward corners (Slice clamping and negative steps, uneven Split, empty regions, the tiled
// transpose on a 513x769 matrix).
import { describe, expect, it } from 'vitest';
import type { Attrs } from '../../src/ir/graph.js';
import { fromGpuBytes, toGpuArray, sizeOf, tensor, type RefTensor } from '../../src/ir/tensor.js';
import { runOnGpu, runReference } from '../../src/ops/execute.js';
import { layoutOps, sliceGradAttrs } from '../../src/ops/layout.js';
import type { BufferRef, OpContext, OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { randomInts, randomTensor, rng } from '../util/tensors.js';

const INT64_MAX = 9223372036854775807; // as float64: 2^63, what an int64 sentinel decodes to
const INT64_MIN = -9223372036854775808;

function ints(values: readonly number[], dims: readonly number[] = [values.length]): RefTensor {
  return tensor('int64', dims, values);
}

/** A context; `numOutputs` (the node's output count, which Split may need) rides along when given. */
function ctxOf(opType: string, opset = 17, numOutputs?: number): OpContext {
  const ctx: OpContext & { numOutputs?: number } = { opType, nodeName: `${opType}_test`, opset };
  if (numOutputs !== undefined) ctx.numOutputs = numOutputs;
  return ctx;
}

/**
 * runOnGpu, except that constant inputs are never uploaded: a lowering reads them at compile time
 * and must not bind them (and int64 sentinels such as INT64_MAX do not fit the GPU's i32).
 */
async function runLowered(def: OpDef, inputs: (RefTensor | undefined)[], attrs: Attrs, ctx: OpContext, constants: ReadonlySet<number>): Promise<RefTensor[]> {
  const gpu = await getGpu();
  const infos = inputs.map((t, i) => (t === undefined ? undefined : { dtype: t.dtype, dims: t.dims, ...(constants.has(i) ? { value: t } : {}) }));
  const outTypes = def.shape(infos, attrs, ctx);
  if (def.gpu === 'fold') throw new Error(`${ctx.opType} is a fold op`);
  const lowering = def.gpu(infos, outTypes, attrs, { ...ctx, device: gpu.traits });
  if ('alias' in lowering) return runOnGpu(gpu, def, inputs, attrs, ctx, constants);
  const pool = gpu.buffers;
  const held: GPUBuffer[] = [];
  const take = (b: GPUBuffer): GPUBuffer => (held.push(b), b);
  const inBufs = inputs.map((t, i) => (t === undefined || constants.has(i) ? undefined : take(gpu.upload(toGpuArray(t)))));
  const outBufs = outTypes.map((t) => take(pool.acquire(4 * Math.max(1, sizeOf(t.dims)))));
  const temps = (lowering.temps ?? []).map((bytes) => take(pool.acquire(Math.max(4, bytes))));
  try {
    const resolve = (r: BufferRef): GPUBuffer => {
      if ('in' in r) {
        const b = inBufs[r.in];
        if (!b) throw new Error(`${ctx.opType}: the lowering binds input ${r.in}, which is a constant or missing`);
        return b;
      }
      return 'out' in r ? outBufs[r.out]! : temps[r.tmp]!;
    };
    await gpu.run(lowering.steps.map((st) => ({ program: st.program, buffers: st.bindings.map(resolve) })));
    return await Promise.all(outTypes.map(async (t, i) => fromGpuBytes(t, await gpu.read(outBufs[i]!, 4 * sizeOf(t.dims)))));
  } finally {
    for (const b of held) pool.release(b);
  }
}

/** Fails at the first element where the GPU and the reference differ (layout ops are exact). */
function expectSame(actual: RefTensor, expected: RefTensor, what: string): void {
  expect(actual.dims, `${what}: dims`).toEqual(expected.dims);
  expect(actual.dtype, `${what}: dtype`).toBe(expected.dtype);
  for (let i = 0; i < expected.data.length; i++) {
    if (actual.data[i] !== expected.data[i]) {
      expect.fail(`${what}: element ${i} is ${actual.data[i]}, expected ${expected.data[i]}`);
    }
  }
}

/** Runs `op` on the GPU and on the reference; inputs after the first are constants unless told. */
async function check(
  opType: keyof typeof layoutOps,
  inputs: (RefTensor | undefined)[],
  attrs: Attrs = {},
  opts: { opset?: number; constants?: number[]; numOutputs?: number; what?: string } = {},
): Promise<RefTensor[]> {
  const def: OpDef = layoutOps[opType];
  const ctx = ctxOf(opType, opts.opset ?? 17, opts.numOutputs);
  const constants = new Set(opts.constants ?? inputs.map((_, i) => i).filter((i) => i > 0));
  const expected = runReference(def, inputs, attrs, ctx);
  const actual = await runLowered(def, inputs, attrs, ctx, constants);
  expect(actual.length).toBe(expected.length);
  const what = opts.what ?? `${opType} ${inputs.map((t) => (t ? `[${t.dims.join(',')}]` : '-')).join(' ')} ${JSON.stringify(attrs)}`;
  actual.forEach((t, i) => expectSame(t, expected[i]!, `${what} output ${i}`));
  return actual;
}

let seed = 1;
const rand = (dims: readonly number[]): RefTensor => randomTensor(dims, seed++);
const randInt = (dims: readonly number[]): RefTensor => randomInts(dims, seed++, -1000, 1000);

describe('Transpose', () => {
  it('matches the reference for many permutations of ranks 1-5', async () => {
    const cases: [number[], number[] | undefined][] = [
      [[7], undefined],
      [[3, 5], undefined],
      [[1, 7], [1, 0]],
      [[2, 3, 5], [0, 2, 1]],
      [[2, 3, 5], [2, 0, 1]],
      [[2, 3, 5], [1, 2, 0]],
      [[2, 3, 5], undefined],
      [[4, 1, 6], [2, 1, 0]],
      [[2, 5, 3, 7], [0, 2, 1, 3]], // attention head split
      [[2, 5, 9, 7], [0, 2, 3, 1]], // NHWC -> NCHW: reduces to a batched 2-D swap
      [[2, 3, 11, 13], [0, 1, 3, 2]], // K^T: batched tiled transpose
      [[3, 1, 2, 5], [3, 2, 1, 0]],
      [[2, 3, 1, 5, 2], [4, 0, 3, 1, 2]],
      [[2, 3, 4, 5, 3], [1, 3, 0, 4, 2]],
      [[1, 1, 1], [2, 0, 1]],
    ];
    for (const [dims, perm] of cases) {
      await check('Transpose', [rand(dims)], perm ? { perm } : {});
    }
  });

  it('transposes integer tensors bit-exactly', async () => {
    await check('Transpose', [randInt([5, 17, 9])], { perm: [2, 0, 1] });
    await check('Transpose', [randInt([33, 40])], { perm: [1, 0] });
  });

  it('transposes a large 513x769 matrix through the tiled kernel', async () => {
    await check('Transpose', [rand([513, 769])], {}, { what: 'Transpose 513x769' });
    await check('Transpose', [rand([3, 67, 45])], { perm: [0, 2, 1] });
  });
});

describe('Gather and GatherElements', () => {
  it('gathers rows with negative indices (embedding lookup)', async () => {
    await check('Gather', [rand([50, 8]), ints([0, 49, -1, -50, 7, 7], [2, 3])], {}, { constants: [] });
    await check('Gather', [rand([13, 12]), ints([3])], {}, { constants: [] });
    await check('Gather', [rand([13, 5]), ints([-2], [])], {}, { constants: [] }); // scalar index drops the axis
  });

  it('gathers along axis 1 and negative axes, any rank', async () => {
    await check('Gather', [rand([3, 5, 4]), ints([-1, 0, 4, -5], [2, 2])], { axis: 1 }, { constants: [] });
    await check('Gather', [rand([2, 3, 4, 5]), ints([4, 0, -3])], { axis: -1 }, { constants: [] });
    await check('Gather', [rand([2, 1, 3, 7, 2]), ints([0, 0])], { axis: 1 }, { constants: [] });
    await check('Gather', [randInt([6, 7]), tensor('int32', [3], [6, -7, 0])], { axis: 1 }, { constants: [] });
  });

  it('out-of-range indices on the GPU: NaN for float data, clamped integers (the reference throws)', async () => {
    const gpu = await getGpu();
    const data = rand([4, 3]);
    const [out] = await runOnGpu(gpu, layoutOps.Gather, [data, ints([9, 1, -9])], {}, ctxOf('Gather'), new Set([1]));
    const got = Array.from(out!.data);
    expect(got.slice(0, 3).every(Number.isNaN)).toBe(true);
    expect(got.slice(3, 6)).toEqual(Array.from(data.data.slice(3, 6)));
    expect(got.slice(6, 9).every(Number.isNaN)).toBe(true);
    const table = randInt([4, 3]);
    const [clamped] = await runOnGpu(gpu, layoutOps.Gather, [table, ints([9, -9])], {}, ctxOf('Gather'), new Set([1]));
    expect(Array.from(clamped!.data)).toEqual([...Array.from(table.data.slice(9, 12)), ...Array.from(table.data.slice(0, 3))]);
  });

  it('GatherElements matches the reference on each axis', async () => {
    await check('GatherElements', [rand([3, 4]), randomInts([3, 4], 5, -3, 3)], { axis: 0 }, { constants: [] });
    await check('GatherElements', [rand([3, 4]), randomInts([2, 6], 6, -4, 4)], { axis: 1 }, { constants: [] });
    await check('GatherElements', [rand([2, 5, 3]), randomInts([2, 2, 3], 7, -5, 5)], { axis: -2 }, { constants: [] });
  });
});

describe('Slice', () => {
  const cases: { dims: number[]; starts: number[]; ends: number[]; axes?: number[]; steps?: number[] }[] = [
    { dims: [10], starts: [2], ends: [7] },
    { dims: [10], starts: [-3], ends: [INT64_MAX] },
    { dims: [10], starts: [INT64_MAX], ends: [INT64_MIN], steps: [-1] }, // full reverse
    { dims: [10], starts: [8], ends: [1], steps: [-3] },
    { dims: [10], starts: [-1], ends: [-100], steps: [-2] },
    { dims: [10], starts: [20], ends: [30] }, // empty: clamped past the end
    { dims: [10], starts: [5], ends: [2] }, // empty: end before start
    { dims: [10], starts: [-100], ends: [100], steps: [3] },
    { dims: [7, 5], starts: [1, -4], ends: [6, 5], steps: [2, 1] },
    { dims: [7, 5], starts: [0], ends: [INT64_MAX], axes: [-1], steps: [-1] },
    { dims: [3, 4, 5], starts: [2, 1], ends: [-100, 3], axes: [0, 2], steps: [-1, 1] },
    { dims: [3, 1, 5], starts: [0, 0], ends: [1, 1], axes: [1, 0] },
    { dims: [2, 3, 4, 5], starts: [1, 0, 3], ends: [3, 5, 0], axes: [1, -1, 2], steps: [1, 2, -2] },
    { dims: [2, 3, 2, 3, 5], starts: [1, 4], ends: [2, 0], axes: [0, 4], steps: [1, -1] },
    { dims: [4, 16], starts: [1, 4], ends: [3, 12], axes: [0, 1] }, // aligned rows: vec4 path
    { dims: [2, 8, 8], starts: [0], ends: [4], axes: [-1] },
  ];
  it('matches the reference in every clamping and step corner (opset 13 inputs)', async () => {
    for (const c of cases) {
      const inputs = [rand(c.dims), ints(c.starts), ints(c.ends), c.axes ? ints(c.axes) : undefined, c.steps ? ints(c.steps) : undefined];
      await check('Slice', inputs, {}, { opset: 13, what: `Slice ${JSON.stringify(c)}` });
    }
  });

  it('reads starts/ends/axes attributes at opset 1 and slices int tensors', async () => {
    await check('Slice', [rand([5, 6])], { starts: [1, -2], ends: [4, 1000], axes: [0, 1] }, { opset: 1 });
    await check('Slice', [rand([5, 6, 3])], { starts: [0, 2], ends: [2, 4] }, { opset: 9 });
    await check('Slice', [randInt([9, 4]), ints([7]), ints([0]), ints([0]), ints([-2])], {}, { opset: 11 });
  });

  it('SliceGrad writes dy onto the sliced lattice, zeros elsewhere', async () => {
    const ctx = ctxOf('Slice', 13);
    for (const c of cases.slice(0, 14)) {
      const data = { dtype: 'float32' as const, dims: c.dims };
      const sliceInputs = [data, ints(c.starts), ints(c.ends), c.axes ? ints(c.axes) : undefined, c.steps ? ints(c.steps) : undefined];
      const attrs = sliceGradAttrs(
        sliceInputs.map((t, i) => (t === undefined || i === 0 ? t : { dtype: t.dtype, dims: t.dims, value: t as RefTensor })),
        {},
        ctx,
      );
      const [y] = layoutOps.Slice.shape(sliceInputs.map((t, i) => (t && i > 0 ? { ...t, value: t as RefTensor } : t)), {}, ctx);
      await check('SliceGrad', [rand(y!.dims)], attrs, { what: `SliceGrad ${JSON.stringify(c)}` });
    }
  });
});

describe('Concat and Split', () => {
  it('concatenates 1 and 4 inputs along each axis, including empty ones', async () => {
    const base = [3, 4, 5];
    for (let axis = -3; axis < 3; axis++) {
      const a = (axis + 3) % 3;
      const parts = [2, 1, 0, 3].map((n) => rand(base.map((d, i) => (i === a ? n : d))));
      await check('Concat', parts, { axis }, { constants: [] });
      await check('Concat', [parts[0]!], { axis }, { constants: [] });
    }
    await check('Concat', [randInt([2, 2, 3, 1, 4]), randInt([2, 2, 3, 2, 4])], { axis: 3 }, { constants: [] });
    await check('Concat', [rand([8, 4]), rand([8, 12])], { axis: 1 }, { constants: [] }); // vec4 rows
  });

  it('splits unevenly by the split input (opset 13), attribute (opset 11) and num_outputs (opset 18)', async () => {
    await check('Split', [rand([3, 10, 2]), ints([3, 0, 7])], { axis: 1 }, { opset: 13 });
    await check('Split', [rand([7, 3])], { axis: 0, split: [1, 2, 4] }, { opset: 11 });
    await check('Split', [randInt([2, 10])], { axis: -1, num_outputs: 4 }, { opset: 18 }); // 3,3,3,1
    await check('Split', [rand([2, 3, 12, 1, 2])], { axis: 2 }, { opset: 13, numOutputs: 3 });
    await check('Split', [rand([1, 1, 1])], { axis: 2 }, { opset: 17, numOutputs: 1 });
  });
});

describe('Expand, Tile, Pad, Trilu', () => {
  it('Expand broadcasts against the shape input', async () => {
    await check('Expand', [rand([3, 1]), ints([2, 3, 4])]);
    await check('Expand', [rand([1]), ints([5])]);
    await check('Expand', [rand([2, 1, 4]), ints([3, 1])]);
    await check('Expand', [randInt([1, 3, 1, 1]), ints([2, 1, 3, 2, 1])]);
  });

  it('Tile repeats each axis', async () => {
    await check('Tile', [rand([2, 3]), ints([2, 3])]);
    await check('Tile', [rand([5]), ints([1])]);
    await check('Tile', [randInt([2, 1, 3, 1]), ints([1, 4, 2, 3])]);
    await check('Tile', [rand([3, 2]), ints([2]), ints([1], [])], {}, { opset: 1 });
  });

  it('Pad in constant, reflect, edge and wrap modes, with cropping and axes', async () => {
    const x = rand([3, 4, 2]);
    await check('Pad', [x, ints([1, 0, 2, 0, 3, 1]), tensor('float32', [], [2.5])]);
    await check('Pad', [x, ints([2, 3, 0, 1, 5, 1])], { mode: 'reflect' });
    await check('Pad', [x, ints([2, 3, 0, 1, 5, 1])], { mode: 'edge' });
    await check('Pad', [x, ints([4, 3, 1, 7, 5, 1])], { mode: 'wrap' }, { opset: 19 });
    await check('Pad', [x, ints([-1, 2, 0, 0, -2, 1])], { mode: 'constant' });
    await check('Pad', [x, ints([-1, 1, 1, -2]), undefined, ints([0, 1])], { mode: 'reflect' }, { opset: 18 });
    await check('Pad', [x, ints([1, 2, 3, 4]), undefined, ints([-1, 0])], {}, { opset: 18 });
    await check('Pad', [rand([5])], { pads: [2, 3], value: -1.5 }, { opset: 2 });
    await check('Pad', [randInt([2, 3]), ints([1, 1, 1, 1]), ints([7], [])], {});
    await check('Pad', [rand([1, 3]), ints([3, 2, 2, 4])], { mode: 'reflect' });
  });

  it('Trilu keeps the upper or lower triangle for any k', async () => {
    for (const k of [undefined, -1, 0, 2, -7, 100]) {
      for (const upper of [0, 1]) {
        const inputs = [rand([2, 3, 5, 4]), k === undefined ? undefined : ints([k], [])];
        await check('Trilu', inputs, { upper }, { opset: 14 });
      }
    }
    await check('Trilu', [randInt([7, 3])], { upper: 0 }, { opset: 14 });
  });
});

describe('Dropout and views', () => {
  it('Dropout copies the input and fills the mask with ones', async () => {
    const [y, mask] = await check('Dropout', [rand([3, 7])], {}, { opset: 13 });
    expect(mask!.dtype).toBe('bool');
    expect(mask!.data.every((v) => v === 1)).toBe(true);
    expect(y!.dims).toEqual([3, 7]);
  });

  it('views keep the data and change the shape', async () => {
    await check('Reshape', [rand([2, 3, 4]), ints([0, -1])], {}, { opset: 14 });
    await check('Squeeze', [rand([1, 3, 1]), ints([-1])], {}, { opset: 13 });
    await check('Unsqueeze', [rand([3]), ints([0, -1])], {}, { opset: 13 });
    await check('Flatten', [rand([2, 3, 4])], { axis: -1 });
    await check('Identity', [randInt([5])]);
  });
});

describe('randomised sweeps over ranks 1-5', () => {
  const r = rng(2024);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const randDims = (rank: number): number[] => Array.from({ length: rank }, () => pick([1, 2, 3, 4, 5, 7]));
  const shuffle = (n: number): number[] => {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
  };

  it('Transpose, Slice, Expand, Tile and Concat agree with the reference on random shapes', async () => {
    for (let t = 0; t < 25; t++) {
      const rank = 1 + (t % 5);
      const dims = randDims(rank);
      const x = t % 3 === 0 ? randInt(dims) : rand(dims);
      await check('Transpose', [x], { perm: shuffle(rank) });
      const axes = shuffle(rank).slice(0, 1 + Math.floor(r() * rank));
      const starts = axes.map((a) => Math.floor(r() * (2 * dims[a]! + 3)) - dims[a]! - 1);
      const ends = axes.map((a) => pick([INT64_MAX, INT64_MIN, -1, 0, dims[a]!, Math.floor(r() * dims[a]!)]));
      const steps = axes.map(() => pick([1, 2, 3, -1, -2]));
      await check('Slice', [x, ints(starts), ints(ends), ints(axes.map((a) => a - (r() < 0.5 ? rank : 0))), ints(steps)], {}, { opset: 13 });
      const target = dims.map((d) => (d === 1 ? pick([1, 3, 4]) : d));
      await check('Expand', [x, ints([pick([1, 2]), ...target])]);
      await check('Tile', [x, ints(dims.map(() => pick([1, 2, 3])))]);
      const axis = Math.floor(r() * rank);
      const like = (d: number[]): RefTensor => (x.dtype === 'int64' ? randInt(d) : rand(d));
      const parts = [x, ...[1, 2].map((k) => like(dims.map((d, i) => (i === axis ? k + (t % 2) : d))))];
      await check('Concat', parts, { axis: axis - rank }, { constants: [] });
    }
  });

  it('folds a grid beyond 65535 workgroups (16.8M elements)', async () => {
    await check('Expand', [rand([1, 3]), ints([5_592_400, 3])], {}, { what: 'Expand to 16.8M elements' });
  });
});
