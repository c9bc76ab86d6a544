// MatMul, Gemm and FusedMatMul on the GPU against the float64 reference: awkward shapes (dims of
// 1, primes, non-multiples of the tiles, K = 1, large K), both kernels (tiled and small-M), every
// tile configuration, batch broadcasting of either operand, every transpose, and every fused input;
// strided views of operands and output (attention's per-head q, k, v) bit for bit as the copies.
import { describe, expect, it } from 'vitest';
import type { Attrs } from '../../src/ir/graph.js';
import { fromGpuBytes, stridesOf, tensor, toGpuArray, type RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { lowerMatmul, MATMUL_TILES, matmulOps, SOFTWARE_TILE, type MatmulTile } from '../../src/ops/matmul.js';
import type { BufferRef, LoweringSteps, OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomTensor } from '../util/tensors.js';

let seed = 1;

/** Runs `op` on both backends and compares; f32 accumulation error grows with K. */
async function check(op: OpDef, name: string, inputs: (RefTensor | undefined)[], attrs: Attrs, K: number, what: string): Promise<RefTensor> {
  const ctx = context(name, what);
  const expected = runReference(op, inputs, attrs, ctx)[0]!;
  const [actual] = await runOnGpu(await getGpu(), op, inputs, attrs, ctx);
  expectClose(actual!, expected, { rtol: 1e-4, atol: 1e-5 + 2e-6 * K }, what);
  return expected;
}

function rand(dims: number[]): RefTensor {
  return randomTensor(dims, seed++);
}

/** The kernel the lowering picks (with `tile` forced, if given), to make sure each test exercises the path it names. */
function kernelOf(op: OpDef, inputs: (RefTensor | undefined)[], attrs: Attrs, name: string, tile?: MatmulTile): string {
  const infos = inputs.map((t) => (t ? { dtype: t.dtype, dims: t.dims } : undefined));
  const ctx = context(name);
  const low = tile
    ? lowerMatmul(name as 'FusedMatMul', infos, attrs, ctx, { tile })
    : ((op.gpu as Exclude<OpDef['gpu'], 'fold'>)(infos, op.shape(infos, attrs, ctx), attrs, ctx) as LoweringSteps);
  return low.steps
    .map((s) => {
      const o = s.program.overrides ?? {};
      return o.RM === undefined ? s.program.kernel.name : `${s.program.kernel.name}/${o.RM * o.WG_Y!}x${o.CN! * o.WG_X!}`;
    })
    .join(',');
}

/** Runs a lowering's dispatches on fresh buffers (what runOnGpu does, for a custom lowering). */
async function runSteps(low: LoweringSteps, inputs: (RefTensor | undefined)[], dims: readonly number[]): Promise<RefTensor> {
  const gpu = await getGpu();
  const bufs = inputs.map((t) => (t ? gpu.upload(toGpuArray(t)) : undefined));
  const n = dims.reduce((a, b) => a * b, 1);
  const out = gpu.buffers.acquire(4 * n);
  const resolve = (r: BufferRef): GPUBuffer => ('in' in r ? bufs[r.in]! : out);
  await gpu.run(low.steps.map((s) => ({ program: s.program, buffers: s.bindings.map(resolve) })));
  const y = fromGpuBytes({ dtype: 'float32', dims }, await gpu.read(out, 4 * n));
  for (const b of [...bufs, out]) if (b) gpu.buffers.release(b);
  return y;
}

describe('MatMul on the GPU', () => {
  const MatMul = matmulOps.MatMul;

  it('2-D products of awkward sizes on every kernel path', async () => {
    const cases: [number, number, number, string][] = [
      [1, 1, 1, 'matmul-gemv'],
      [7, 13, 17, 'matmul-gemv'],
      [8, 5, 4, 'matmul-gemv'],
      [3, 3072, 20, 'matmul-gemv'],
      [9, 13, 17, 'matmul-scalar-store/32x32'],
      [33, 1, 65, 'matmul-scalar-store/32x32'],
      [65, 31, 67, 'matmul-scalar-store/32x32'],
      [64, 64, 64, 'matmul/32x32'],
      [37, 12, 36, 'matmul/32x32'],
      [9, 3072, 12, 'matmul/32x32'],
      [128, 256, 256, 'matmul/32x32'],
      [1030, 20, 2052, 'matmul/128x64'],
      [1, 40, 1, 'matmul-gemv'],
      [300, 17, 1, 'matmul-scalar-store/32x32'],
    ];
    for (const [M, K, N, path] of cases) {
      const ins = [rand([M, K]), rand([K, N])];
      expect(kernelOf(MatMul, ins, {}, 'MatMul'), `${M}x${K}x${N}`).toBe(path);
      await check(MatMul, 'MatMul', ins, {}, K, `MatMul ${M}x${K}x${N}`);
    }
  });

  it('promotes 1-D operands and removes the added dim', async () => {
    const cases: [number[], number[], number[]][] = [
      [[13], [13, 17], [17]],
      [[5, 13], [13], [5]],
      [[13], [13], []],
      [[2, 3, 13], [13], [2, 3]],
      [[13], [2, 13, 5], [2, 5]],
      [[20, 13], [13], [20]],
    ];
    for (const [a, b, out] of cases) {
      const k = a[a.length - 1]!;
      const y = await check(MatMul, 'MatMul', [rand(a), rand(b)], {}, k, `MatMul [${a}]·[${b}]`);
      expect(y.dims).toEqual(out);
    }
  });

  it('broadcasts batch dims of either operand, at any rank', async () => {
    const cases: [number[], number[]][] = [
      [[2, 1, 9, 13], [3, 13, 10]], // both broadcast
      [[9, 13], [4, 13, 10]], // A shared across B's batch
      [[2, 3, 20, 12], [12, 16]], // B shared: folded into rows
      [[1, 20, 12], [3, 12, 16]],
      [[3, 1, 4], [3, 4, 2]], // small-M batched
      [[5, 17, 24], [5, 24, 19]],
      [[2, 1, 2, 1, 2, 1, 9, 5], [1, 2, 1, 2, 1, 2, 5, 6]], // six unmergeable batch dims
      [[2, 3, 4, 5, 2, 11, 7], [7, 3]],
    ];
    for (const [a, b] of cases) {
      await check(MatMul, 'MatMul', [rand(a), rand(b)], {}, a[a.length - 1]!, `MatMul [${a}]·[${b}]`);
    }
  });

  it('splits grids over the per-dimension workgroup limit into several dispatches', async () => {
    // A limit of 2 workgroups per dimension stands in for WebGPU's 65535 (a grid that large takes
    // minutes on a software adapter); every chunk offset (z, M and N tiles, outer batch) is used.
    const cases: [string, (RefTensor | undefined)[], Attrs][] = [
      ['MatMul', [rand([5, 40, 9]), rand([5, 9, 70])], {}],
      ['MatMul', [rand([2, 1, 2, 1, 2, 1, 9, 5]), rand([1, 2, 1, 2, 1, 2, 5, 6])], {}],
      ['MatMul', [rand([3, 2, 5]), rand([3, 5, 70])], {}],
      ['FusedMatMul', [rand([3, 40, 9]), rand([70, 9]), rand([70]), undefined, rand([70])], { transB: 1 }],
    ];
    for (const [name, ins, attrs] of cases) {
      const op = matmulOps[name as 'MatMul'];
      const ctx = context(name);
      const infos = ins.map((t) => (t ? { dtype: t.dtype, dims: t.dims } : undefined));
      const low = lowerMatmul(name as 'MatMul', infos, attrs, ctx, { maxWorkgroupsPerDim: 2 });
      expect(low.steps.length).toBeGreaterThan(1);
      for (const s of low.steps) expect(Math.max(...s.program.workgroups)).toBeLessThanOrEqual(2);
      const expected = runReference(op, ins, attrs, ctx)[0]!;
      const actual = await runSteps(low, ins, expected.dims);
      expectClose(actual, expected, { rtol: 1e-4, atol: 1e-4 }, `${name} chunked [${ins[0]!.dims}]·[${ins[1]!.dims}]`);
    }
  });
});

describe('Gemm on the GPU', () => {
  const Gemm = matmulOps.Gemm;
  it('transposes, alpha, beta and every broadcast form of C', async () => {
    for (const [M, K, N] of [
      [21, 19, 23],
      [4, 9, 6],
      [16, 32, 24],
    ] as const) {
      for (const transA of [0, 1]) {
        for (const transB of [0, 1]) {
          const a = rand(transA ? [K, M] : [M, K]);
          const b = rand(transB ? [N, K] : [K, N]);
          const cs: (number[] | undefined)[] = [undefined, [N], [1, N], [M, 1], [M, N], [], [1]];
          for (const c of cs) {
            const attrs = { transA, transB, alpha: 0.75, beta: -1.5 };
            await check(Gemm, 'Gemm', [a, b, c && rand(c)], attrs, K, `Gemm ${M}x${K}x${N} tA${transA} tB${transB} C[${c ?? '-'}]`);
          }
        }
      }
    }
  });
});

describe('FusedMatMul on the GPU', () => {
  const Fused = matmulOps.FusedMatMul;
  it('every combination of bias, inScale, outScale and transposes, on both kernels', async () => {
    for (const [batch, M, K, N] of [
      [[2], 11, 13, 9],
      [[], 3, 10, 7],
      [[3], 40, 36, 20],
    ] as [number[], number, number, number][]) {
      for (let mask = 0; mask < 8; mask++) {
        for (const transA of [0, 1]) {
          for (const transB of [0, 1]) {
            const a = rand([...batch, ...(transA ? [K, M] : [M, K])]);
            const b = rand(transB ? [N, K] : [K, N]);
            // PEFT's vector shapes: (1, in) for the input scale, (out, 1) for the output scale.
            const bias = mask & 1 ? rand([N]) : undefined;
            const inScale = mask & 2 ? randomTensor([1, K], seed++, 0.5, 1.5) : undefined;
            const outScale = mask & 4 ? randomTensor([N, 1], seed++, 0.5, 1.5) : undefined;
            const attrs = { transA, transB, alpha: mask === 5 ? 0.5 : 1 };
            await check(Fused, 'FusedMatMul', [a, b, bias, inScale, outScale], attrs, K, `FusedMatMul [${batch}] ${M}x${K}x${N} mask${mask} tA${transA} tB${transB}`);
          }
        }
      }
    }
  });

  it('runs every tile configuration (4×4 and 8×8 blocks) with transposes, fused inputs and partial tiles', async () => {
    const gpu = await getGpu();
    // [M, K, N, transA, transB, fused-input mask] relative to the tile: a second, partial tile
    // along M and N, K not a multiple of the K tile. The first two use vec4 loads and stores, the
    // others scalar ones; 4×4-block tiles run only the latter (their vec4 path runs above).
    const shapes = (TM: number, TN: number): [number, number, number, number, number, number][] => [
      [TM + 1, 23, TN + 9, 1, 1, 7],
      [TM / 2 + 3, 37, TN - 3, 0, 0, 3],
      [TM + 5, 36, TN + 4, 0, 0, 0],
      [TM + 4, 36, TN + 8, 1, 1, 7],
    ];
    const runs: { tile: MatmulTile; ins: (RefTensor | undefined)[]; attrs: Attrs; K: number; what: string; path: string }[] = [];
    for (const tile of [SOFTWARE_TILE, ...MATMUL_TILES]) {
      const TM = tile.RM * tile.WG_Y;
      const TN = tile.CN * tile.WG_X;
      const blocks8 = tile.RM === 8 && tile.CN === 8;
      for (const [M, K, N, transA, transB, mask] of shapes(TM, TN).slice(0, blocks8 ? 4 : 2)) {
        const ins = [
          rand(transA ? [K, M] : [M, K]),
          rand(transB ? [N, K] : [K, N]),
          mask & 1 ? rand([N]) : undefined,
          mask & 2 ? randomTensor([K], seed++, 0.5, 1.5) : undefined,
          mask & 4 ? randomTensor([N], seed++, 0.5, 1.5) : undefined,
        ];
        const what = `FusedMatMul ${M}x${K}x${N} tA${transA} tB${transB} mask${mask} on ${TM}x${TN}`;
        runs.push({ tile, ins, attrs: { transA, transB, alpha: 1.25 }, K, what, path: `${N % 4 === 0 ? 'matmul' : 'matmul-scalar-store'}/${TM}x${TN}` });
      }
    }
    // Compile every pipeline at once: compiles dominate this test on a software adapter.
    const lowerings = runs.map((r) => {
      expect(kernelOf(Fused, r.ins, r.attrs, 'FusedMatMul', r.tile), r.what).toBe(r.path);
      const infos = r.ins.map((t) => (t ? { dtype: t.dtype, dims: t.dims } : undefined));
      return lowerMatmul('FusedMatMul', infos, r.attrs, context('FusedMatMul'), { tile: r.tile });
    });
    await Promise.all(lowerings.flatMap((l) => l.steps.map((s) => gpu.pipelines.get(s.program))));
    for (const [i, r] of runs.entries()) {
      const expected = runReference(Fused, r.ins, r.attrs, context('FusedMatMul'))[0]!;
      const actual = await runSteps(lowerings[i]!, r.ins, expected.dims);
      expectClose(actual, expected, { rtol: 1e-4, atol: 1e-5 + 2e-6 * r.K }, r.what);
    }
  });

  it('computes dX = dY·Wᵀ with transB and a batched dY, at large K', async () => {
    const dY = rand([2, 24, 3072]);
    const W = rand([40, 3072]); // [in, out] as ONNX stores it; dX = dY·Wᵀ
    const s = randomTensor([40], seed++, 0.5, 1.5);
    expect(kernelOf(Fused, [dY, W, undefined, undefined, s], { transB: 1 }, 'FusedMatMul')).toBe('matmul/32x32');
    await check(Fused, 'FusedMatMul', [dY, W, undefined, undefined, s], { transB: 1 }, 3072, 'dX = dY·Wᵀ');
  });
});

describe('FusedMatMul on strided views (compile/views.ts)', () => {
  const Fused = matmulOps.FusedMatMul;
  /** The elements of a strided view of `x`, gathered into a contiguous tensor (what the copies compute). */
  function gather(x: RefTensor, dims: number[], strides: number[], offset: number): RefTensor {
    const out = tensor('float32', dims);
    const inner = stridesOf(dims);
    for (let i = 0; i < out.data.length; i++) {
      let at = offset;
      for (let d = 0; d < dims.length; d++) at += (Math.floor(i / inner[d]!) % dims[d]!) * strides[d]!;
      out.data[i] = x.data[at]!;
    }
    return out;
  }

  it('read per-head q, k, v from the packed projection and write the context in place, bit for bit as the copies', async () => {
    const gpu = await getGpu();
    const [B, H] = [2, 3];
    const runs: { what: string; copy: LoweringSteps; view: LoweringSteps; copyIns: RefTensor[]; viewIns: RefTensor[]; attrs: Attrs; out: number[]; unview?: (y: RefTensor) => RefTensor }[] = [];
    // D = 16: every view aligned (vec4 loads and stores); D = 6: offsets and strides are not (scalar).
    // T = 36 runs the tiled kernel (a software and a GPU tile), T = 5 the small-M kernel.
    for (const D of [16, 6]) {
      for (const T of [36, 5]) {
        const HD = H * D;
        const x = rand([B, T, 3 * HD]); // c_attn's product
        const dy = rand([B, T, HD]); // the context's gradient
        const probs = rand([B, H, T, T]);
        const head = { dims: [B, H, T, D], strides: [T * 3 * HD, D, 3 * HD, 1] };
        const part = (p: number) => ({ aShape: head.dims, aStrides: head.strides, aOffset: p * HD });
        const asB = (v: { aShape: number[]; aStrides: number[]; aOffset: number }) => ({ bShape: v.aShape, bStrides: v.aStrides, bOffset: v.aOffset });
        const [q, k, v] = [0, 1, 2].map((p) => gather(x, head.dims, head.strides, p * HD));
        const kT = { bShape: [B, H, D, T], bStrides: [T * 3 * HD, D, 1, 3 * HD], bOffset: HD }; // k transposed: read with the flip
        const dyHeads = { dims: [B, H, T, D], strides: [T * HD, D, HD, 1] };
        const dctx = gather(dy, dyHeads.dims, dyHeads.strides, 0);
        const inPlace = { yShape: [B, T, H, D], yStrides: [T * HD, D, HD, 1] };
        // The copy path's [B,H,T,D] result moved to [B,T,H,D], as the Transpose after it does.
        const toTokens = (y: RefTensor) => gather(y, [B, T, H, D], [H * T * D, D, T * D, 1], 0);
        const cases: { what: string; copyIns: RefTensor[]; viewIns: RefTensor[]; attrs: Attrs; viewAttrs: Attrs; out: number[]; unview?: (y: RefTensor) => RefTensor }[] = [
          { what: 'q·kᵀ', copyIns: [q!, k!], viewIns: [x, x], attrs: { transB: 1 }, viewAttrs: { ...part(0), ...asB(part(1)) }, out: [B, H, T, T] },
          { what: 'q·(kᵀ as a view)', copyIns: [q!, k!], viewIns: [x, x], attrs: { transB: 1 }, viewAttrs: { ...part(0), ...kT, transB: 0 }, out: [B, H, T, T] },
          { what: 'p·v → [B,T,H,D]', copyIns: [probs, v!], viewIns: [probs, x], attrs: {}, viewAttrs: { ...asB(part(2)), ...inPlace }, out: [B, T, H, D], unview: toTokens },
          { what: 'pᵀ·dctx (dV) → [B,T,H,D]', copyIns: [probs, dctx], viewIns: [probs, dy], attrs: { transA: 1 }, viewAttrs: { bShape: dyHeads.dims, bStrides: dyHeads.strides, bOffset: 0, ...inPlace }, out: [B, T, H, D], unview: toTokens },
          { what: 'dctx·vᵀ (dP)', copyIns: [dctx, v!], viewIns: [dy, x], attrs: { transB: 1 }, viewAttrs: { aShape: dyHeads.dims, aStrides: dyHeads.strides, aOffset: 0, ...asB(part(2)) }, out: [B, H, T, T] },
        ];
        for (const tile of T > 8 ? [SOFTWARE_TILE, MATMUL_TILES[2]!] : [undefined]) {
          for (const c of cases) {
            const infos = (ins: RefTensor[]) => ins.map((t) => ({ dtype: t.dtype, dims: t.dims }));
            const viewAttrs = { ...c.attrs, ...c.viewAttrs };
            const options = tile ? { tile } : {};
            runs.push({
              what: `${c.what}, D ${D}, T ${T}, ${tile ? `tile ${tile.RM * tile.WG_Y}x${tile.CN * tile.WG_X}` : 'small-M'}`,
              copy: lowerMatmul('FusedMatMul', infos(c.copyIns), c.attrs, context('FusedMatMul'), options),
              view: lowerMatmul('FusedMatMul', infos(c.viewIns), viewAttrs, context('FusedMatMul'), options),
              copyIns: c.copyIns,
              viewIns: c.viewIns,
              attrs: viewAttrs,
              out: c.out,
              ...(c.unview ? { unview: c.unview } : {}),
            });
          }
        }
      }
    }
    // The aligned views take the vec4 paths, the others the scalar ones.
    const tiled = (r: (typeof runs)[0]) => r.view.steps[0]!.program;
    const first = runs.find((r) => r.what.startsWith('q·kᵀ, D 16, T 36'))!;
    expect([tiled(first).kernel.name, tiled(first).overrides?.VEC_A, tiled(first).overrides?.VEC_B]).toEqual(['matmul', 1, 1]);
    const odd = runs.find((r) => r.what.startsWith('p·v → [B,T,H,D], D 6, T 36'))!;
    expect([tiled(odd).kernel.name, tiled(odd).overrides?.VEC_B]).toEqual(['matmul-scalar-store', 0]);
    expect(runs.find((r) => r.what.includes('small-M'))!.view.steps[0]!.program.kernel.name).toBe('matmul-gemv');
    await Promise.all(runs.flatMap((r) => [...r.copy.steps, ...r.view.steps].map((s) => gpu.pipelines.get(s.program))));
    for (const r of runs) {
      const copied = await runSteps(r.copy, r.copyIns, r.unview ? [r.out[0]!, r.out[2]!, r.out[1]!, r.out[3]!] : r.out);
      const viewed = await runSteps(r.view, r.viewIns, r.out);
      expect(viewed.data, r.what).toEqual((r.unview ? r.unview(copied) : copied).data);
      // And the float64 reference reads the same views.
      expectClose(viewed, runReference(Fused, r.viewIns, r.attrs, context('FusedMatMul'))[0]!, { rtol: 1e-4, atol: 1e-5 + 2e-6 * 40 }, r.what);
    }
  });

  it('rejects a view outside its tensor and an output layout that does not cover the result', () => {
    const ctx = context('FusedMatMul');
    const x = { dtype: 'float32' as const, dims: [4, 8] };
    expect(() => Fused.shape([x, x], { aShape: [4, 8], aStrides: [8, 1], aOffset: 1 }, ctx)).toThrow(/reads element 32 of a tensor of 32 elements/);
    expect(() => Fused.shape([x, x], { transB: 1, yShape: [4, 4], yStrides: [1, 1] }, ctx)).toThrow(/does not hold the product/);
    expect(() => Fused.shape([x, x], { aShape: [4, 8], aStrides: [16, 2], aOffset: 0 }, ctx)).toThrow(/reads element/);
    expect(() => Fused.shape([x, x], { aShape: [2, 4], aStrides: [2, 8], aOffset: 0, transB: 1 }, ctx)).toThrow(/neither of the last two dims is contiguous/);
    expect(() => Fused.shape([x, x], { transB: 1, yShape: [4, 4], yStrides: [1, 4] }, ctx)).toThrow(/last dim contiguous/);
  });
});
