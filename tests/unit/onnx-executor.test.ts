// The float64 reference executor reproduces PyTorch's float64 outputs (reference.json) for every
// fixture model, at both opsets, for every (batch, sequence) case — padded batches included.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InputError, ShapeError } from '../../src/errors.js';
import type { RefTensor } from '../../src/ir/tensor.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceGraph, runReferenceModel } from '../../src/onnx/executor.js';
import { specialize } from '../../src/onnx/specialize.js';
import { OPS } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { expectClose } from '../util/tensors.js';

interface Case {
  name: string;
  inputs: Record<string, { dtype: 'int64'; dims: number[]; data: number[] }>;
  outputs: { logits: { dtype: 'float32'; dims: number[]; data: number[] } };
}
const cases = (m: string): Case[] => JSON.parse(readFileSync(`tests/fixtures/${m}/reference.json`, 'utf8')).cases;
const feedsOf = (c: Case): Record<string, RefTensor> =>
  Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { dtype: v.dtype, dims: v.dims, data: Float64Array.from(v.data) }]));

describe('reference executor on the fixtures', () => {
  for (const m of ['bert', 'gpt2', 'llama', 'distilbert']) {
    for (const f of ['model.onnx', 'model_opset17.onnx']) {
      it(`${m}/${f} matches PyTorch float64 on every case`, () => {
        const g = decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`)));
        for (const c of cases(m)) {
          const out = runReferenceModel(g, feedsOf(c));
          expect(Object.keys(out)).toEqual(['logits']);
          const want = c.outputs.logits;
          // The weights are float32 on both sides and the math float64: only the 10-digit JSON differs.
          expectClose(out.logits!, { dtype: 'float32', dims: want.dims, data: Float64Array.from(want.data) }, { rtol: 1e-4, atol: 1e-7 }, `${m} ${c.name}`);
          expect(out.logits!.dtype).toBe('float32');
        }
      });
    }
  }
});

describe('reference executor contract', () => {
  const g = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/distilbert/onnx/model.onnx')));
  const c = cases('distilbert')[2]!;

  it('validates feeds: dtype, dims, missing and unknown inputs', () => {
    const spec = specialize(g, { input_ids: [3, 5], attention_mask: [3, 5] });
    const feeds = feedsOf(c);
    const wrongType = { ...feeds, input_ids: { ...feeds.input_ids!, dtype: 'int32' as const } };
    expect(() => runReferenceGraph(spec, wrongType)).toThrow(InputError);
    expect(() => runReferenceGraph(spec, wrongType)).toThrow("input 'input_ids': expected dtype int64, got int32");
    const wrongDims = { ...feeds, attention_mask: { dtype: 'int64' as const, dims: [3, 4], data: new Float64Array(12) } };
    expect(() => runReferenceGraph(spec, wrongDims)).toThrow('specialised to [3, 5], got [3, 4]');
    expect(() => runReferenceGraph(spec, { input_ids: feeds.input_ids! })).toThrow("missing input 'attention_mask'");
    expect(() => runReferenceGraph(spec, { ...feeds, extra: feeds.input_ids! })).toThrow("unknown input 'extra'");
  });

  it('reports a reference whose output disagrees with its shape rule', () => {
    const spec = specialize(g, { input_ids: [3, 5], attention_mask: [3, 5] });
    const relu = spec.nodes.find((n) => n.opType === 'Relu')!;
    // A corrupted copy of the spec whose type table claims another shape for the Relu output.
    const types = new Map(spec.types);
    types.set(relu.outputs[0]!, { dtype: 'float32', dims: [3, 33] });
    expect(() => runReferenceGraph({ ...spec, types }, feedsOf(c))).toThrow(ShapeError);
    expect(() => runReferenceGraph({ ...spec, types }, feedsOf(c))).toThrow(/Relu node '\/Relu': reference output 0 is float32 \[3, 32\]/);
    // The registry entry used is the one the node names.
    expect((OPS.Relu as OpDef).domain).toBe('');
  });
});
