// GPU kernel of the rotary embedding (forward and backward) against the float64 reference: both
// pairings, head dims on the vec4 paths (d % 8 == 0 rotate_half, d % 4 == 0 interleaved) and the
// scalar path, cos/sin broadcast as [T, D], [B, 1, T, D], [T, 1] and full, and folded grids.
import { describe, it } from 'vitest';
import { grid } from '../../src/gpu/kernel.js';
import type { RefTensor } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { rotaryOps as ops } from '../../src/ops/rotary.js';
import type { OpDef } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomTensor } from '../util/tensors.js';

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

async function check(x: RefTensor, cos: RefTensor, sin: RefTensor, interleaved: number, fold = false): Promise<void> {
  const gpu = await getGpu();
  for (const op of ['RotaryEmbedding', 'RotaryEmbeddingGrad'] as const) {
    const ctx = context(op, `gpu_${op}`);
    const def = fold ? folded(ops[op]) : ops[op];
    const [got] = await runOnGpu(gpu, def, [x, cos, sin], { interleaved }, ctx);
    const [want] = runReference(ops[op], [x, cos, sin], { interleaved }, ctx);
    expectClose(got!, want!, { rtol: 1e-5, atol: 1e-6 }, `${op} x [${x.dims}] cos [${cos.dims}] interleaved ${interleaved}`);
  }
}

describe('RotaryEmbedding / RotaryEmbeddingGrad on the GPU', () => {
  for (const interleaved of [0, 1]) {
    it(`matches the reference for head dims 2..64 (interleaved ${interleaved})`, async () => {
      for (const d of [2, 4, 6, 8, 12, 16, 64]) {
        const [b, h, t] = [2, 3, 5];
        const x = randomTensor([b, h, t, d], 10 + d);
        // Independent random cos and sin so that a wrong pairing of indices cannot cancel out.
        await check(x, randomTensor([t, d], 11 + d), randomTensor([t, d], 12 + d), interleaved);
      }
    });

    it(`broadcasts cos/sin of every common shape (interleaved ${interleaved})`, async () => {
      for (const d of [6, 8, 16]) {
        const dims = [2, 3, 7, d];
        const x = randomTensor(dims, 20 + d);
        for (const cdims of [[2, 1, 7, d], [7, 1], [1, 1, 7, d], dims, [3, 7, d]]) {
          await check(x, randomTensor(cdims, 21 + cdims.length), randomTensor(cdims, 22 + cdims.length), interleaved);
        }
      }
    });
  }

  it('reads cos and sin through their own broadcast strides', async () => {
    const dims = [2, 3, 5, 8];
    for (const interleaved of [0, 1]) {
      for (const [cd, sd] of [
        [[5, 8], [2, 1, 5, 8]],
        [[2, 3, 5, 8], [5, 1]],
        [[3, 1, 8], [2, 1, 1, 8]],
      ]) {
        await check(randomTensor(dims, 40), randomTensor(cd!, 41), randomTensor(sd!, 42), interleaved);
        await check(randomTensor([2, 3, 5, 6], 43), randomTensor(cd!.map((v) => (v === 8 ? 6 : v)), 44), randomTensor(sd!.map((v) => (v === 8 ? 6 : v)), 45), interleaved);
      }
    }
  });

  it('matches a larger attention-sized problem and folded grids', async () => {
    const [b, h, t, d] = [2, 4, 64, 64];
    const x = randomTensor([b, h, t, d], 30);
    const cos = randomTensor([b, 1, t, d], 31);
    const sin = randomTensor([b, 1, t, d], 32);
    for (const interleaved of [0, 1]) {
      await check(x, cos, sin, interleaved);
      await check(x, cos, sin, interleaved, true);
    }
    await check(randomTensor([3, 5, 6], 33), randomTensor([5, 6], 34), randomTensor([5, 6], 35), 0, true);
  });
});
