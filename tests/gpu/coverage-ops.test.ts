// GPU lowerings at the edges issue 12 added: zero-size tensors with ONNX semantics (empty
// operands inside products, reductions, softmax, concatenation, gathers; no empty buffer is ever
// bound), the index check against its reference, the gather kernel's NaN for an out-of-range index
// of float data, and a whole plan with an empty past.
import { describe, expect, it } from 'vitest';
import { IndexOutOfRangeError } from '../../src/errors.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { runOnGpu, runReference } from '../../src/ops/execute.js';
import { OPS } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { loadModel } from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomInts, randomTensor } from '../util/tensors.js';

const ints = (v: number[], dims = [v.length]): RefTensor => tensor('int64', dims, v);

/** Runs `op` on the GPU and on its reference; constants (indices of `consts`) are compile-time values. */
async function both(op: string, inputs: (RefTensor | undefined)[], attrs: Attrs, consts: number[] = [], opset = 17) {
  const def = (OPS as Record<string, OpDef>)[op]!;
  const ctx = { opType: op, nodeName: `${op}_test`, opset };
  const want = runReference(def, inputs, attrs, ctx);
  const got = await runOnGpu(await getGpu(), def, inputs, attrs, ctx, new Set(consts));
  return { got, want };
}

describe('zero-size tensors', () => {
  const cases: [string, (RefTensor | undefined)[], Attrs, number[]][] = [
    ['MatMul', [randomTensor([2, 3, 0], 1), randomTensor([0, 4], 2)], {}, []], // K = 0: zeros
    ['MatMul', [randomTensor([2, 0, 3], 1), randomTensor([3, 4], 2)], {}, []], // M = 0: empty
    ['Gemm', [randomTensor([3, 0], 1), randomTensor([0, 4], 2), randomTensor([4], 3)], {}, []], // bias only
    ['ReduceSum', [randomTensor([2, 0, 3], 1), ints([1])], { keepdims: 1 }, [1]], // empty sums: 0
    ['ReduceMax', [randomTensor([2, 0, 3], 1)], { axes: [1], keepdims: 0 }, []], // empty max: -inf
    ['Softmax', [randomTensor([2, 0, 3], 1)], { axis: -1 }, []],
    ['Softmax', [randomTensor([2, 3, 0], 1)], { axis: -1 }, []],
    ['Concat', [randomTensor([2, 4, 0, 8], 1), randomTensor([2, 4, 3, 8], 2)], { axis: 2 }, []], // an empty past
    ['Add', [randomTensor([2, 0, 3], 1), randomTensor([1, 1, 3], 2)], {}, []],
    ['Transpose', [randomTensor([2, 0, 3], 1)], { perm: [2, 0, 1] }, []],
    ['Where', [tensor('bool', [2, 0, 1]), randomTensor([2, 0, 3], 1), randomTensor([1], 2)], {}, []],
    ['LayerNormalization', [randomTensor([2, 0, 3], 1), randomTensor([3], 2), randomTensor([3], 3)], { axis: -1 }, []],
    ['CumSum', [randomTensor([2, 0, 3], 1), tensor('int64', [], [1])], {}, [1]],
    ['Gather', [randomTensor([5, 3], 1), tensor('int64', [2, 0])], { axis: 0 }, []],
    ['Expand', [randomTensor([1, 3], 1), ints([0, 3])], {}, [1]],
    ['Pad', [randomTensor([2, 0], 1), ints([0, 1, 0, 1])], { mode: 'constant' }, [1]],
    ['Slice', [randomTensor([2, 3], 1), ints([0]), ints([0]), ints([1])], {}, [1, 2, 3]],
    ['Reshape', [randomTensor([2, 0, 8], 1), ints([0, 4, 4])], { allowzero: 1 }, [1]],
  ];
  for (const [op, inputs, attrs, consts] of cases) {
    it(`${op} on ${inputs.map((t) => `[${t!.dims}]`).join(' ')} equals its reference`, async () => {
      const { got, want } = await both(op, inputs, attrs, consts);
      expectClose(got[0]!, want[0]!, { rtol: 1e-6, atol: 1e-6 }, op);
    });
  }
});

describe('IndexCheck', () => {
  it('counts out-of-range indices and records the extremes, as its reference (clean and flagged, several workgroups)', async () => {
    for (const [n, lo, hi] of [
      [1000, -34, 34],
      [1000, -40, 40],
      [7, 0, 3],
    ] as const) {
      const idx = randomInts([n], n + lo, lo, hi, 'int64');
      const { got, want } = await both('IndexCheck', [idx], { axis_dim: 34 });
      expect(Array.from(got[0]!.data), `${n} indices in [${lo}, ${hi})`).toEqual(Array.from(want[0]!.data));
    }
    const empty = await both('IndexCheck', [tensor('int64', [0])], { axis_dim: 3 });
    expect(Array.from(empty.got[0]!.data)).toEqual([0, 0, 0]);
  });
});

describe('Gather with an out-of-range index on the GPU', () => {
  it('writes NaN for float data and clamps integers (the step is flagged by its index check)', async () => {
    const gpu = await getGpu();
    const idx = ints([0, 5, -1]);
    const floats = await runOnGpu(gpu, OPS.Gather, [tensor('float32', [3, 2], [1, 2, 3, 4, 5, 6]), idx], {}, { opType: 'Gather', nodeName: 'g', opset: 17 });
    expect(Array.from(floats[0]!.data)).toEqual([1, 2, NaN, NaN, 5, 6]);
    const integers = await runOnGpu(gpu, OPS.Gather, [tensor('int64', [3, 2], [1, 2, 3, 4, 5, 6]), idx], {}, { opType: 'Gather', nodeName: 'g', opset: 17 });
    expect(Array.from(integers[0]!.data)).toEqual([1, 2, 5, 6, 5, 6]);
  });

  it('is refused after the step with onnxruntime\'s error, naming the gather', async () => {
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model.onnx', { device: await getGpu() });
    try {
      // Token id 120 is outside GPT-2's 120-row embedding table.
      await expect(model.run({ input_ids: [[3, 120, 4]], attention_mask: [[1, 1, 1]] })).rejects.toThrow(IndexOutOfRangeError);
      await expect(model.run({ input_ids: [[3, 120, 4]], attention_mask: [[1, 1, 1]] })).rejects.toThrow(
        "Gather node '/transformer/wte/Gather': indices element out of data bounds, idx=120 must be within the inclusive range [-120,119]",
      );
      // And a good run afterwards is unaffected (the status is cleared each step).
      const { logits } = await model.run({ input_ids: [[3, 119, 4]], attention_mask: [[1, 1, 1]] });
      expect(Array.from(logits!.data as Float32Array).every(Number.isFinite)).toBe(true);
    } finally {
      await model.dispose();
    }
  });
});
