// Shape rules, float64 references and lowering choices of MatMul, Gemm and FusedMatMul (no GPU).
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor, type TensorType } from '../../src/ir/tensor.js';
import { context, runReference } from '../../src/ops/execute.js';
import { DEFAULT_TRAITS, deviceTraits } from '../../src/gpu/traits.js';
import { checkTile, lowerMatmul, MATMUL_TILES, matmulOps, pickTile, SOFTWARE_TILE } from '../../src/ops/matmul.js';
import type { OpContext } from '../../src/ops/types.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

const { MatMul, Gemm, FusedMatMul } = matmulOps;

const t = (dims: number[], dtype: DataType = 'float32'): TensorType => ({ dtype, dims });

function shapeOf(op: typeof MatMul, dims: (number[] | undefined)[], attrs: Attrs = {}, ctx: OpContext = context('X')): readonly number[] {
  return op.shape(dims.map((d) => (d ? t(d) : undefined)), attrs, ctx)[0]!.dims;
}

describe('MatMul shape rule', () => {
  it('promotes 1-D operands and removes the added dim', () => {
    expect(shapeOf(MatMul, [[4], [4, 5]])).toEqual([5]);
    expect(shapeOf(MatMul, [[3, 4], [4]])).toEqual([3]);
    expect(shapeOf(MatMul, [[4], [4]])).toEqual([]);
    expect(shapeOf(MatMul, [[2, 3, 4], [4]])).toEqual([2, 3]);
    expect(shapeOf(MatMul, [[4], [2, 4, 5]])).toEqual([2, 5]);
  });

  it('broadcasts batch dims numpy-style', () => {
    expect(shapeOf(MatMul, [[2, 1, 3, 4], [5, 4, 6]])).toEqual([2, 5, 3, 6]);
    expect(shapeOf(MatMul, [[3, 4], [7, 4, 6]])).toEqual([7, 3, 6]);
    expect(shapeOf(MatMul, [[1, 1, 3, 4], [4, 6]])).toEqual([1, 1, 3, 6]);
  });

  it('names the op and the node when K differs', () => {
    const ctx = context('MatMul', '/layers.0/mlp/fc1/MatMul');
    const err = (() => {
      try {
        shapeOf(MatMul, [[3, 4], [5, 6]], {}, ctx);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as Error).message).toMatch(/^MatMul node '\/layers\.0\/mlp\/fc1\/MatMul': inner dimensions differ/);
    expect((err as Error).message).toMatch(/\[3,4\].*K = 4.*\[5,6\].*K = 5/);
  });

  it('rejects unbroadcastable batches, scalars and integer dtypes; mixed float dtypes keep A\'s', () => {
    expect(() => shapeOf(MatMul, [[2, 3, 4], [3, 4, 5]], {}, context('MatMul', 'mm'))).toThrow(/MatMul node 'mm'.*do not broadcast/);
    expect(() => shapeOf(MatMul, [[], [4]])).toThrow(ShapeError);
    const ctx = context('MatMul', 'mm', 13);
    expect(() => MatMul.shape([t([2, 2], 'int64'), t([2, 2], 'int64')], {}, ctx)).toThrow(UnsupportedOpError);
    expect(() => MatMul.shape([t([2, 2], 'int64'), t([2, 2], 'int64')], {}, ctx)).toThrow(/opset 13/);
    // A half weight read without its Cast (onnx/precision.ts): computed in f32, A's dtype out.
    expect(MatMul.shape([t([2, 2]), t([2, 2], 'float16')], {}, ctx)[0]!.dtype).toBe('float32');
    expect(MatMul.shape([t([2, 2], 'float16'), t([2, 2])], {}, ctx)[0]!.dtype).toBe('float16');
  });
});

describe('Gemm shape rule', () => {
  it('applies transposes and accepts every unidirectional broadcast of C', () => {
    expect(shapeOf(Gemm, [[4, 3], [5, 4]], { transA: 1, transB: 1 })).toEqual([3, 5]);
    for (const c of [[], [1], [5], [1, 5], [3, 1], [3, 5]]) expect(shapeOf(Gemm, [[3, 4], [4, 5], c])).toEqual([3, 5]);
  });

  it('rejects a C that does not broadcast, non-2-D operands, and a missing C before opset 11', () => {
    expect(() => shapeOf(Gemm, [[3, 4], [4, 5], [3]], {}, context('Gemm', 'g'))).toThrow(/Gemm node 'g': C \[3\] does not broadcast to \[3,5\]/);
    expect(() => shapeOf(Gemm, [[3, 4], [4, 5], [1, 3, 5]])).toThrow(ShapeError);
    expect(() => shapeOf(Gemm, [[2, 3, 4], [4, 5]])).toThrow(/must be 2-D/);
    expect(() => shapeOf(Gemm, [[3, 4], [4, 5]], {}, context('Gemm', 'g', 9))).toThrow(/input C is required before opset 11/);
    expect(shapeOf(Gemm, [[3, 4], [4, 5]], {}, context('Gemm', 'g', 11))).toEqual([3, 5]);
  });

  it('broadcasts C before opset 7 only when the broadcast attribute is set', () => {
    const ctx = context('Gemm', 'g', 6);
    expect(() => shapeOf(Gemm, [[3, 4], [4, 5], [5]], {}, ctx)).toThrow(/does not broadcast/);
    expect(shapeOf(Gemm, [[3, 4], [4, 5], [5]], { broadcast: 1 }, ctx)).toEqual([3, 5]);
    expect(shapeOf(Gemm, [[3, 4], [4, 5], [3, 5]], {}, ctx)).toEqual([3, 5]);
  });
});

describe('FusedMatMul shape rule', () => {
  it('transposes the last two dims and broadcasts batches', () => {
    expect(shapeOf(FusedMatMul, [[2, 7, 3], [5, 7]], { transA: 1, transB: 1 })).toEqual([2, 3, 5]);
    expect(shapeOf(FusedMatMul, [[2, 3, 7], [4, 1, 7, 5], [5], [1, 7], [5, 1]])).toEqual([4, 2, 3, 5]);
  });

  it('checks the element counts of bias, inScale and outScale', () => {
    const ctx = context('FusedMatMul', 'f');
    expect(() => shapeOf(FusedMatMul, [[3, 7], [7, 5], [7]], {}, ctx)).toThrow(/FusedMatMul node 'f': bias \[7\] must have exactly 5/);
    expect(() => shapeOf(FusedMatMul, [[3, 7], [7, 5], undefined, [5]], {}, ctx)).toThrow(/inScale \[5\] must have exactly 7/);
    expect(() => shapeOf(FusedMatMul, [[3, 7], [7, 5], undefined, undefined, [1, 7]], {}, ctx)).toThrow(/outScale \[1,7\]/);
  });

  it('rejects transposed 1-D operands and flags other than 0/1', () => {
    expect(() => shapeOf(FusedMatMul, [[7], [7, 5]], { transA: 1 })).toThrow(/1-D operand cannot be transposed/);
    expect(() => shapeOf(FusedMatMul, [[3, 7], [7, 5]], { transB: 2 })).toThrow(/transB must be 0 or 1/);
    expect(shapeOf(FusedMatMul, [[7], [5, 7]], { transB: 1 })).toEqual([5]);
  });
});

describe('references', () => {
  const ctx = (op: string) => context(op);
  const T = (dims: number[], data: number[]): RefTensor => tensor('float32', dims, data);

  it('match hand-computed products', () => {
    const [y] = runReference(MatMul, [T([2, 2], [1, 2, 3, 4]), T([2, 2], [5, 6, 7, 8])], {}, ctx('MatMul'));
    expect(Array.from(y!.data)).toEqual([19, 22, 43, 50]);
    // opA = [[1,3],[2,4]], opB = [[5,7],[6,8]]: product [[23,31],[34,46]]; 2·that + 0.5·[1,2].
    const [g] = runReference(
      Gemm,
      [T([2, 2], [1, 2, 3, 4]), T([2, 2], [5, 6, 7, 8]), T([2], [1, 2])],
      { transA: 1, transB: 1, alpha: 2, beta: 0.5 },
      ctx('Gemm'),
    );
    expect(Array.from(g!.data)).toEqual([46.5, 63, 68.5, 93]);
    // ([1,2] ⊙ [2,3]) · [[1,0,2],[0,1,3]] = [2,6,22]; + 1 = [3,7,23]; ⊙ [1,2,0.5] = [3,14,11.5].
    const [f] = runReference(
      FusedMatMul,
      [T([1, 2], [1, 2]), T([2, 3], [1, 0, 2, 0, 1, 3]), T([3], [1, 1, 1]), T([1, 2], [2, 3]), T([3, 1], [1, 2, 0.5])],
      {},
      ctx('FusedMatMul'),
    );
    expect(Array.from(f!.data)).toEqual([3, 14, 11.5]);
    const [v] = runReference(MatMul, [T([3], [1, 2, 3]), T([3], [4, 5, 6])], {}, ctx('MatMul'));
    expect(v!.dims).toEqual([]);
    expect(Array.from(v!.data)).toEqual([32]);
  });

  it('a broadcast batched product equals the 2-D product of each batch pair', () => {
    const a = randomTensor([2, 1, 3, 4], 1);
    const b = randomTensor([5, 4, 6], 2);
    const [y] = runReference(MatMul, [a, b], {}, ctx('MatMul'));
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 5; j++) {
        const ai = T([3, 4], Array.from(a.data.subarray(i * 12, i * 12 + 12)));
        const bj = T([4, 6], Array.from(b.data.subarray(j * 24, j * 24 + 24)));
        const [yij] = runReference(MatMul, [ai, bj], {}, ctx('MatMul'));
        const off = (i * 5 + j) * 18;
        expect(Array.from(y!.data.subarray(off, off + 18))).toEqual(Array.from(yij!.data));
      }
    }
  });

  it('FusedMatMul with transB is the gradient of x·W with respect to x (dX = dY·Wᵀ)', () => {
    const x = randomTensor([2, 3, 4], 3);
    const w = randomTensor([4, 5], 4);
    const dY = randomTensor([2, 3, 5], 5);
    const f = (xx: RefTensor): number => dot(runReference(MatMul, [xx, w], {}, ctx('MatMul'))[0]!, dY);
    const [dX] = runReference(FusedMatMul, [dY, w], { transB: 1 }, ctx('FusedMatMul'));
    expectClose(dX!, numericGradient(f, x), { rtol: 1e-6, atol: 1e-8 }, 'dX');
  });

  it('FusedMatMul with transA is the gradient of x·W with respect to W (dW = xᵀ·dY)', () => {
    const x = randomTensor([6, 4], 6);
    const w = randomTensor([4, 5], 7);
    const dY = randomTensor([6, 5], 8);
    const f = (ww: RefTensor): number => dot(runReference(MatMul, [x, ww], {}, ctx('MatMul'))[0]!, dY);
    const [dW] = runReference(FusedMatMul, [x, dY], { transA: 1 }, ctx('FusedMatMul'));
    expectClose(dW!, numericGradient(f, w), { rtol: 1e-6, atol: 1e-8 }, 'dW');
  });
});

describe('GPU lowering choices', () => {
  const lower = (op: 'MatMul' | 'FusedMatMul', a: number[], b: number[], attrs: Attrs = {}, extra: (number[] | undefined)[] = []) =>
    lowerMatmul(op, [t(a), t(b), ...extra.map((d) => (d ? t(d) : undefined))], attrs, context(op));

  it('runs transformer shapes as one vec4 dispatch of the tiled kernel, tiles chosen for occupancy', () => {
    for (const [M, K, N, wg, rm, cn] of [
      [512, 768, 768, 8, 4, 4],
      [512, 768, 3072, 16, 4, 4],
      [512, 3072, 768, 8, 4, 4],
      [1030, 20, 2052, 16, 8, 4],
      [4096, 768, 3072, 16, 8, 8],
    ] as const) {
      const { steps } = lower('MatMul', [M, K], [K, N]);
      expect(steps).toHaveLength(1);
      const p = steps[0]!.program;
      expect(p.kernel.name).toBe('matmul');
      expect(p.overrides).toMatchObject({ VEC_A: 1, VEC_B: 1, WG_X: wg, WG_Y: wg, RM: rm, CN: cn });
      expect(p.workgroups).toEqual([Math.ceil(N / (cn * wg)), Math.ceil(M / (rm * wg)), 1]);
    }
  });

  it('on a software adapter, picks tiles by padded work: 8×8 blocks unless the padding outweighs them', () => {
    const software = deviceTraits({ software: true });
    const lower = (op: 'MatMul', a: number[], b: number[]) => lowerMatmul(op, [t(a), t(b)], {}, context(op, op, 17, software));
    for (const [M, K, N] of [
      [128, 768, 768],
      [512, 768, 768],
      [512, 768, 3072],
      [512, 3072, 768],
    ] as const) {
      const p = lower('MatMul', [M, K], [K, N]).steps[0]!.program;
      expect(p.overrides).toMatchObject({ WG_X: 8, WG_Y: 8, KT: 16, RM: 8, CN: 8 });
      expect(p.workgroups).toEqual([N / 64, M / 64, 1]);
    }
    // 20×20 pads to 32×32 on the smallest tile but to 64×64 on the software one.
    expect(lower('MatMul', [20, 8], [8, 20]).steps[0]!.program.overrides).toMatchObject({ WG_X: 8, RM: 4, CN: 4 });
    expect(pickTile(2048, 2048, 1, software)).toBe(SOFTWARE_TILE);
    expect(pickTile(512, 768, 1, DEFAULT_TRAITS)).toMatchObject({ WG_X: 8, WG_Y: 8, RM: 4, CN: 4 });
  });

  it('keeps every tile within the kernel\'s staging constraints and 16 KiB of workgroup memory', () => {
    for (const tile of [SOFTWARE_TILE, ...MATMUL_TILES]) {
      expect(() => checkTile(tile)).not.toThrow();
      const quads = ((tile.RM * tile.WG_Y + tile.CN * tile.WG_X) * tile.KT) / 4;
      expect(16 * quads).toBeLessThanOrEqual(16384);
    }
    // A K tile that 16 invocations do not split evenly; 16 quads of A per invocation and K tile,
    // more than its 4 staging registers hold.
    expect(() => lowerMatmul('MatMul', [t([64, 64]), t([64, 64])], {}, context('MatMul'), { tile: { WG_X: 4, WG_Y: 4, KT: 20, RM: 4, CN: 4, swCost: 1 } })).toThrow(/staging constraints/);
    expect(() => checkTile({ WG_X: 8, WG_Y: 8, KT: 64, RM: 8, CN: 8, swCost: 1 })).toThrow(/staging constraints/);
  });

  it('folds the batch into rows when B is shared, and keeps it in z otherwise', () => {
    const folded = lower('MatMul', [8, 64, 768], [768, 768]).steps;
    expect(folded).toHaveLength(1);
    expect(folded[0]!.program.uniforms).toMatchObject({ M: 512, batchDims: [1, 1, 1, 1] });
    const batched = lower('MatMul', [12, 64, 32], [12, 32, 64]).steps[0]!.program;
    expect(batched.uniforms).toMatchObject({ M: 64, batchDims: [12, 1, 1, 1], aStrides: [2048, 0, 0, 0], bStrides: [2048, 0, 0, 0] });
    expect(batched.workgroups[2]).toBe(12);
    // A shared across B's batch: A's stride is 0.
    expect(lower('MatMul', [64, 32], [12, 32, 64]).steps[0]!.program.uniforms).toMatchObject({ aStrides: [0, 0, 0, 0] });
  });

  it('uses the small-M kernel for up to 8 rows, and flags the fused inputs', () => {
    const s = lower('FusedMatMul', [1, 768], [3072, 768], { transB: 1 }, [[3072], [768], [3072]]).steps;
    expect(s).toHaveLength(1);
    expect(s[0]!.program.kernel.name).toBe('matmul-gemv');
    expect(s[0]!.program.overrides).toMatchObject({ TRANS_B: 1, VEC_B: 1, ROW_GROUPS: 1 });
    expect(s[0]!.program.uniforms).toMatchObject({ flags: 2 | 4 | 8 | 16, cStrideM: 0, cStrideN: 1 });
    expect(s[0]!.bindings).toEqual([{ in: 0 }, { in: 1 }, { in: 2 }, { in: 3 }, { in: 4 }, { out: 0 }]);
    expect(lower('MatMul', [9, 768], [768, 768]).steps[0]!.program.kernel.name).toBe('matmul');
    // Absent optional inputs bind A in their slot.
    expect(lower('FusedMatMul', [16, 8], [8, 8]).steps[0]!.bindings).toEqual([{ in: 0 }, { in: 1 }, { in: 0 }, { in: 0 }, { in: 0 }, { out: 0 }]);
  });

  it('emits no dispatch for an empty output', () => {
    expect(lower('MatMul', [0, 4], [4, 5]).steps).toHaveLength(0);
  });
});
