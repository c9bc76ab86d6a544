// The fused LM head + cross-entropy on the GPU against its float64 reference: one weight block and
// several (widths that are and are not multiples of 4), transposed blocks, ignored and
// out-of-vocabulary labels, chunks of rows down to one row (and a last chunk shorter than the
// others), with and without ∂loss/∂hidden, 'mean' and 'sum', rows longer than a workgroup, and
// the software adapter's row layout.
import { describe, expect, it } from 'vitest';
import { DEFAULT_TRAITS, deviceTraits, type DeviceTraits } from '../../src/gpu/traits.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { lmHeadOps } from '../../src/ops/lm-head.js';
import type { OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomInts, randomTensor } from '../util/tensors.js';

const op: OpDef = lmHeadOps.LMHeadCrossEntropy;
/** The op as a node that declares loss and count only (a forward-only graph). */
const forwardOnly: OpDef = { ...op, shape: (inputs, attrs, ctx) => op.shape(inputs, attrs, ctx).slice(0, 2) };

function labels(dims: number[], v: number, seed: number): RefTensor {
  const t = randomInts(dims, seed, 0, v);
  for (let i = 0; i < t.data.length; i += 5) t.data[i] = -100;
  if (t.data.length > 3) t.data[3] = v + 2; // outside the vocabulary: counts for nothing
  return t;
}

async function check(h: RefTensor, l: RefTensor, blocks: RefTensor[], attrs: Attrs, what: string, device: DeviceTraits = DEFAULT_TRAITS): Promise<void> {
  const gpu = await getGpu();
  const ctx = context('LMHeadCrossEntropy', 'gpu_lm_head', 17, device);
  const want = runReference(op, [h, l, ...blocks], attrs, ctx);
  const got = await runOnGpu(gpu, op, [h, l, ...blocks], attrs, ctx);
  expectClose(got[0]!, want[0]!, { rtol: 2e-5, atol: 1e-6 }, `loss ${what}`);
  expect(got[1]!.data[0], `count ${what}`).toBe(want[1]!.data[0]);
  expectClose(got[2]!, want[2]!, { rtol: 1e-4, atol: 1e-6 }, `dhidden ${what}`);
  const fwd = await runOnGpu(gpu, forwardOnly, [h, l, ...blocks], attrs, ctx);
  expect(fwd.length).toBe(2);
  expectClose(fwd[0]!, want[0]!, { rtol: 2e-5, atol: 1e-6 }, `forward-only loss ${what}`);
}

describe('LMHeadCrossEntropy on the GPU', () => {
  it('matches the reference with one block, in chunks of rows down to one', async () => {
    const h = randomTensor([3, 7, 12], 1, -1, 1);
    // V = 13 takes the scalar kernels, V = 16 the vec4 ones.
    const cases: [number, Attrs][] = [
      [13, { chunk_rows: 1 }],
      [13, {}],
      [16, { chunk_rows: 4 }],
      [16, { chunk_rows: 5, reduction: 'sum' }],
    ];
    for (const [v, attrs] of cases) {
      const w = randomTensor([12, v], 2 + v, -0.5, 0.5);
      await check(h, labels([3, 7], v, 3), [w], attrs, `V=${v} ${JSON.stringify(attrs)}`);
    }
  });

  it('matches the reference with several vocabulary blocks, plain and transposed', async () => {
    const h = randomTensor([2, 9, 8], 4, -1, 1);
    const l = labels([2, 9], 25, 5);
    const widths = [8, 5, 12];
    const cols = widths.map((v, i) => randomTensor([8, v], 10 + i, -0.7, 0.7));
    const rows = widths.map((v, i) => randomTensor([v, 8], 20 + i, -0.7, 0.7));
    for (const chunk of [0, 4]) {
      await check(h, l, cols, { chunk_rows: chunk }, `column blocks, chunk ${chunk}`);
      await check(h, l, rows, { chunk_rows: chunk, transB: 1 }, `row blocks, chunk ${chunk}`);
    }
  });

  it('matches in the software adapter layout (one invocation per row, eight for few rows)', async () => {
    const sw = deviceTraits({ software: true });
    const h = randomTensor([2, 65, 8], 40, -1, 1);
    for (const v of [13, 16]) {
      const w = randomTensor([8, v], 41 + v, -0.5, 0.5);
      await check(h, labels([2, 65], v, 42), [w], {}, `software, 130 rows, V=${v}`, sw);
      await check(h, labels([2, 65], v, 43), [w], { chunk_rows: 9 }, `software, chunks of 9 rows, V=${v}`, sw);
    }
  });

  it('handles rows longer than a workgroup and every label ignored', async () => {
    const h = randomTensor([6, 16], 30, -1, 1);
    const w = randomTensor([16, 4999], 31, -0.3, 0.3);
    await check(h, labels([6], 4999, 32), [w], {}, 'V = 4999');
    const none = tensor('int64', [6], [-100, -100, -100, -100, -100, -100]);
    const gpu = await getGpu();
    const [loss, count, dh] = await runOnGpu(gpu, op, [h, none, w], {}, context('LMHeadCrossEntropy'));
    expect(loss!.data[0]).toBe(0);
    expect(count!.data[0]).toBe(0);
    expect(dh!.data.every((x) => x === 0)).toBe(true);
  });
});
