// GPU kernels of the fused cross-entropy against the float64 reference: ignored and all-ignored
// positions, V = 1, large vocabularies on both load paths (V % 4 == 0 and not), rows longer than a
// workgroup, more rows than one workgroup holds, folded grids, out-of-range labels, and a node that
// omits the count output; the software adapter's row layout.
import { describe, expect, it } from 'vitest';
import { grid } from '../../src/gpu/kernel.js';
import { DEFAULT_TRAITS, deviceTraits, type DeviceTraits } from '../../src/gpu/traits.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { lossOps as ops } from '../../src/ops/loss.js';
import type { OpContext, OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomInts, randomTensor } from '../util/tensors.js';

/**
 * The op with every 1-D grid of its lowering folded into x/y at ⌈√count⌉ workgroups per dimension
 * (usually overshooting the count): the layout grid() uses beyond 65535 workgroups.
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

/** Forward and backward on the GPU against the reference for one (logits, labels) problem. */
async function checkBoth(logits: RefTensor, labels: RefTensor, attrs: Attrs = {}, fold = false, device: DeviceTraits = DEFAULT_TRAITS): Promise<RefTensor[]> {
  const gpu = await getGpu();
  const wrap = (d: OpDef) => (fold ? folded(d) : d);
  const what = `[${logits.dims}] ${JSON.stringify(attrs)}`;
  const fctx = context('CrossEntropyLoss', 'gpu_ce', 17, device);
  const got = await runOnGpu(gpu, wrap(ops.CrossEntropyLoss), [logits, labels], attrs, fctx);
  const want = runReference(ops.CrossEntropyLoss, [logits, labels], attrs, fctx);
  expectClose(got[0]!, want[0]!, { rtol: 1e-5, atol: 1e-6 }, `loss ${what}`);
  expect(got[1]!.data[0], `count ${what}`).toBe(want[1]!.data[0]);
  const dloss = tensor('float32', [], [0.75]);
  const gctx = context('CrossEntropyLossGrad', 'gpu_ce_grad', 17, device);
  const [g] = await runOnGpu(gpu, wrap(ops.CrossEntropyLossGrad), [dloss, logits, labels], attrs, gctx);
  const [w] = runReference(ops.CrossEntropyLossGrad, [dloss, logits, labels], attrs, gctx);
  expectClose(g!, w!, { rtol: 1e-4, atol: 1e-8 }, `dlogits ${what}`);
  return [...got, g!];
}

function labelsWithIgnored(dims: number[], v: number, seed: number, every: number): RefTensor {
  const labels = randomInts(dims, seed, 0, v);
  for (let i = 0; i < labels.data.length; i += every) labels.data[i] = -100;
  return labels;
}

describe('CrossEntropyLoss / CrossEntropyLossGrad on the GPU', () => {
  it('matches the reference for small vocabularies on both load paths, mean and sum', async () => {
    for (const [i, v] of [2, 3, 4, 5, 7, 8, 13, 32, 33, 64, 257].entries()) {
      const dims = [2, 3, v];
      const logits = randomTensor(dims, 10 + i, -4, 4);
      const labels = labelsWithIgnored([2, 3], v, 20 + i, 4);
      for (const reduction of ['mean', 'sum']) await checkBoth(logits, labels, { reduction });
    }
  });

  it('gives loss 0, count 0 and zero gradients when every position is ignored', async () => {
    const labels = tensor('int64', [3, 2], [-100, -100, -100, -100, -100, -100]);
    const [loss, count, g] = await checkBoth(randomTensor([3, 2, 9], 1), labels);
    expect(loss!.data[0]).toBe(0);
    expect(count!.data[0]).toBe(0);
    expect(g!.data.every((x) => x === 0)).toBe(true);
  });

  it('handles a vocabulary of one', async () => {
    const [loss, count] = await checkBoth(randomTensor([5, 1], 2, -3, 3), tensor('int64', [5], [0, 0, -100, 0, 0]));
    expect(loss!.data[0]).toBeCloseTo(0, 6);
    expect(count!.data[0]).toBe(4);
  });

  it('handles a custom ignore_index inside the vocabulary and large-magnitude logits', async () => {
    const logits = randomTensor([4, 3, 10], 3, -60, 60);
    await checkBoth(logits, randomInts([4, 3], 4, 0, 10), { ignore_index: 3 });
  });

  it('matches for rows longer than a workgroup (V = 5000, V = 4999)', async () => {
    for (const v of [5000, 4999]) {
      const logits = randomTensor([3, v], v, -6, 6);
      await checkBoth(logits, tensor('int64', [3], [0, v - 1, 1234]));
    }
  });

  it('matches for more rows than one workgroup and one reduction pass hold (300 rows)', async () => {
    for (const v of [6, 8, 100]) {
      const logits = randomTensor([300, v], 30 + v, -3, 3);
      await checkBoth(logits, labelsWithIgnored([300], v, 31 + v, 7));
    }
  });

  it('matches in the software adapter layout (one invocation per row for 130 rows, eight for 20)', async () => {
    for (const [rows, v] of [
      [130, 8],
      [130, 7],
      [20, 301],
    ]) {
      const logits = randomTensor([rows!, v!], 50 + v!, -3, 3);
      await checkBoth(logits, labelsWithIgnored([rows!], v!, 51 + v!, 6), {}, false, deviceTraits({ software: true }));
    }
  });

  it('folds its grids into x and y (as beyond 65535 workgroups)', async () => {
    for (const v of [5, 300]) {
      const logits = randomTensor([90, v], 40 + v, -3, 3);
      await checkBoth(logits, labelsWithIgnored([90], v, 41 + v, 5), {}, true);
    }
  });

  it('skips out-of-range labels on the GPU (the reference rejects them)', async () => {
    const logits = randomTensor([4, 6], 5, -2, 2);
    const bad = tensor('int64', [4], [1, 6, -3, 2]);
    const gpu = await getGpu();
    const ctx = context('CrossEntropyLoss', 'gpu_ce');
    const [loss, count] = await runOnGpu(gpu, ops.CrossEntropyLoss, [logits, bad], {}, ctx);
    const skipped = tensor('int64', [4], [1, -100, -100, 2]);
    const [want] = runReference(ops.CrossEntropyLoss, [logits, skipped], {}, ctx);
    expect(count!.data[0]).toBe(2);
    expect(loss!.data[0]).toBeCloseTo(want!.data[0]!, 5);
    const gctx = context('CrossEntropyLossGrad', 'gpu_ce_grad');
    const dloss = tensor('float32', [], [1]);
    const [g] = await runOnGpu(gpu, ops.CrossEntropyLossGrad, [dloss, logits, bad], {}, gctx);
    const [w] = runReference(ops.CrossEntropyLossGrad, [dloss, logits, skipped], {}, gctx);
    expectClose(g!, w!, { rtol: 1e-4, atol: 1e-8 }, 'dlogits');
  });

  it('writes the loss when the node omits the count output', async () => {
    const logits = randomTensor([3, 7], 6, -2, 2);
    const labels = randomInts([3], 7, 0, 7);
    const ctx: OpContext = { ...context('CrossEntropyLoss', 'gpu_ce'), numOutputs: 1 };
    const [loss] = await runOnGpu(await getGpu(), ops.CrossEntropyLoss, [logits, labels], {}, ctx);
    expectClose(loss!, runReference(ops.CrossEntropyLoss, [logits, labels], {}, ctx)[0]!, { rtol: 1e-5 }, 'loss');
  });
});
