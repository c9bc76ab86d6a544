// The CPU index checks of feeds (onnx/bounds.ts): a gather index out of its table is onnxruntime's
// IndexOutOfRangeError, found before upload and naming the input element; a label out of the
// classes is an InputError; in-range values (negative ids count from the end, ignore_index) pass.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withLoss } from '../../src/autograd/loss.js';
import { IndexOutOfRangeError, InputError } from '../../src/errors.js';
import { checkIndexFeeds, inputRange } from '../../src/onnx/bounds.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { specialize } from '../../src/onnx/specialize.js';

const graphOf = (m: string) => decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/model_opset17.onnx`)));
const feeds = (f: Record<string, number[]>) => new Map(Object.entries(f).map(([k, v]) => [k, { data: Int32Array.from(v) }]));

describe('checkIndexFeeds', () => {
  it("a token id past GPT-2's 120-row table is onnxruntime's error, naming the gather and the element", () => {
    const spec = specialize(graphOf('gpt2'), { input_ids: [1, 3], attention_mask: [1, 3] });
    const gather = [...spec.nodes].find((n) => n.opType === 'Gather' && n.inputs[1] === 'input_ids')!;
    expect(() => checkIndexFeeds(spec, feeds({ input_ids: [5, 120, 1], attention_mask: [1, 1, 1] }))).toThrow(IndexOutOfRangeError);
    expect(() => checkIndexFeeds(spec, feeds({ input_ids: [5, 1, -121], attention_mask: [1, 1, 1] }))).toThrow(
      `${gather.opType} node '${gather.name}': indices element out of data bounds, idx=-121 must be within the inclusive range [-120,119] (input 'input_ids' element 2, checked before upload)`,
    );
    expect(() => checkIndexFeeds(spec, feeds({ input_ids: [0, 119, -120], attention_mask: [1, 1, 1] }))).not.toThrow();
  });

  it('a label past the classes is an InputError; ignore_index passes', () => {
    const spec = specialize(withLoss(graphOf('bert'), 'SEQ_CLS'), { input_ids: [2, 3], attention_mask: [2, 3], token_type_ids: [2, 3], labels: [2] });
    const ids = { input_ids: [2, 7, 3, 2, 8, 3], attention_mask: [1, 1, 1, 1, 1, 1], token_type_ids: [0, 0, 0, 0, 0, 0] };
    expect(inputRange(spec, 'labels')).toMatchObject({ lo: 0, hi: 2, ignore: -100 });
    const e = (() => {
      try {
        checkIndexFeeds(spec, feeds({ ...ids, labels: [1, 7] }));
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).toMatch(/^input 'labels': element 1 is 7, outside \[0, 2\) ∪ \{-100\}: it indexes the 2 classes/);
    expect(() => checkIndexFeeds(spec, feeds({ ...ids, labels: [1, -100] }))).not.toThrow();
  });

  it("a causal-LM label past the fused LM head's vocabulary is an InputError (through the shift's Slice and Pad)", () => {
    const spec = specialize(withLoss(graphOf('gpt2'), 'CAUSAL_LM'), { input_ids: [1, 3], attention_mask: [1, 3], labels: [1, 3] });
    expect(spec.nodes.some((n) => n.opType === 'LMHeadCrossEntropy')).toBe(true);
    expect(inputRange(spec, 'labels')).toMatchObject({ lo: 0, hi: 120, ignore: -100 });
    const ids = { input_ids: [5, 6, 7], attention_mask: [1, 1, 1] };
    expect(() => checkIndexFeeds(spec, feeds({ ...ids, labels: [5, 6, 120] }))).toThrow(/^input 'labels': element 2 is 120, outside \[0, 120\) ∪ \{-100\}: it indexes the 120 classes of LMHeadCrossEntropy/);
    expect(() => checkIndexFeeds(spec, feeds({ ...ids, labels: [5, 119, -100] }))).not.toThrow();
  });
});
