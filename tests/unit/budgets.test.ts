// Issue 11, finding 3: a 200-byte file asked for unbounded memory — ConstantOfShape [1e8] folded for
// 42 s into 1.17 GB of heap, Expand/Tile to [1e12] threw an untyped Error. Every CPU fold is now
// budgeted from what the model and its inputs justify (specialize's foldBudget), and every value of
// the float64 executor is bounded, each checked before allocating: a SizeLimitError naming the node,
// the size and the limit. (The GPU side — plan buffers, the pool — is tests/gpu/reliability.test.ts.)
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { SizeLimitError } from '../../src/errors.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { FOLD_LIMIT, foldBudget, specialize } from '../../src/onnx/specialize.js';
import { singleOpModel } from '../util/onnx-build.js';

const INT64 = onnx.TensorProto.DataType.INT64;
const ints = (name: string, values: number[]): onnx.ITensorProto => ({ name, dataType: INT64, dims: [values.length], int64Data: values });

function caught(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('CPU folds and reference values are budgeted before they allocate', () => {
  it('ConstantOfShape [1e8] from a 200-byte file', () => {
    const bytes = singleOpModel('ConstantOfShape', [{ name: 'shape', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e8] }, [], [ints('shape', [1e8])]);
    expect(bytes.length).toBeLessThan(200);
    const e = caught(() => specialize(decodeOnnx(bytes), {}));
    expect(e).toBeInstanceOf(SizeLimitError);
    expect((e as SizeLimitError).message).toMatch(/^ConstantOfShape node 'ConstantOfShape_0' output 0: 100,000,000 elements exceed the limit of 1,048,576 elements/);
    expect((e as SizeLimitError).limit).toBe(FOLD_LIMIT);
  });

  it('Range to 1e9 elements', () => {
    const scalar = (name: string, v: number): onnx.ITensorProto => ({ name, dataType: INT64, dims: [], int64Data: [v] });
    const bytes = singleOpModel('Range', [{ name: 's', dims: [], elemType: INT64 }, { name: 'l', dims: [], elemType: INT64 }, { name: 'd', dims: [], elemType: INT64 }], { name: 'y', dims: [1e9], elemType: INT64 }, [], [scalar('s', 0), scalar('l', 1e9), scalar('d', 1)]);
    expect(caught(() => specialize(decodeOnnx(bytes), {}))).toBeInstanceOf(SizeLimitError);
  });

  it('Expand and Tile to [1e12] stay for the GPU; the reference executor refuses them', () => {
    const expand = singleOpModel('Expand', [{ name: 'x', dims: [1] }, { name: 'shape', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e12] }, [], [ints('shape', [1e12])]);
    const tile = singleOpModel('Tile', [{ name: 'x', dims: [1] }, { name: 'reps', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e12] }, [], [ints('reps', [1e12])]);
    for (const bytes of [expand, tile]) {
      const graph = decodeOnnx(bytes);
      expect(specialize(graph, { x: [1] }).nodes).toHaveLength(1); // kept: the plan checks it against the device
      const e = caught(() => runReferenceModel(graph, { x: { dtype: 'float32', dims: [1], data: Float64Array.of(1) } }));
      expect(e).toBeInstanceOf(SizeLimitError);
      expect((e as Error).message).toMatch(/node '(Expand|Tile)_0' output 0: 1,000,000,000,000 elements exceed/);
    }
  });

  it('the budget grows with what the model and its inputs justify', () => {
    const graph = decodeOnnx(singleOpModel('ConstantOfShape', [{ name: 'shape', dims: [1], elemType: INT64 }], { name: 'y', dims: [3000] }, [], [ints('shape', [3000])]));
    expect(foldBudget(graph, {})).toBe(FOLD_LIMIT);
    expect(foldBudget(graph, { ids: [4, 512] })).toBe(2048 ** 2); // (4·512)²
    // A legitimate fold under the limit is unchanged.
    expect(specialize(graph, {}).constants.get('y')!.dims).toEqual([3000]);
  });
});
