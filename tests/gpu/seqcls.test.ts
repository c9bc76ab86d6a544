// Sequence classification: an encoder with its classifier in modules_to_save (PEFT's SEQ_CLS
// wrapper), and a decoder whose loss pools the last real token, as Hugging Face does, or (at the
// caller's choice) the mean of the scores over the real tokens.
import { describe, expect, it } from 'vitest';
import { InputError, loadModel, type TensorData } from '../../src/index.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import type { Example } from '../../src/train/data.js';
import { Trainer } from '../../src/train/trainer.js';
import { getGpu } from '../util/gpu.js';

/** Label 1 when the sequence holds token 7, else 0: learnable from attention to one token. */
function toyClassification(n: number, seed: number): Example[] {
  let s = seed;
  const rand = (k: number): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % k;
  };
  return Array.from({ length: n }, (_, i) => {
    const len = 4 + rand(6);
    const ids = Array.from({ length: len }, () => 20 + rand(60));
    if (i % 2 === 0) ids[rand(len)] = 7;
    return { input_ids: ids, label: ids.includes(7) ? 1 : 0 };
  });
}

/** Three right-padded rows of lengths 5, 3 and 1 for the GPT-2 fixture, and their labels. */
function paddedRows(): { inputs: Record<string, TensorData>; lengths: number[]; T: number; labels: number[] } {
  const lengths = [5, 3, 1];
  const T = 5;
  const ids = new BigInt64Array(3 * T);
  const mask = new BigInt64Array(3 * T);
  lengths.forEach((len, b) => {
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = t < len ? BigInt(11 + 13 * b + t) : 0n;
      mask[b * T + t] = t < len ? 1n : 0n;
    }
  });
  return { inputs: { input_ids: { data: ids, dims: [3, T] }, attention_mask: { data: mask, dims: [3, T] } }, lengths, T, labels: [4, 0, 119] };
}

/** Mean cross-entropy of `rows` of scores against `labels`, in float64. */
function crossEntropy(rows: readonly ArrayLike<number>[], labels: readonly number[]): number {
  let sum = 0;
  rows.forEach((row, b) => {
    const values = Array.from(row);
    const max = Math.max(...values);
    sum += max + Math.log(values.reduce((s, v) => s + Math.exp(v - max), 0)) - values[labels[b]!]!;
  });
  return sum / rows.length;
}

describe('sequence classification', () => {
  it('BERT: the classifier is a trainable copy (modules_to_save), IA3 + head learn the task', async () => {
    const gpu = await getGpu();
    const model = await loadModel('/tests/fixtures/bert/onnx/model_opset17.onnx', { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
    const state = peft.stateDict();
    expect(state['base_model.model.classifier.weight']!.dims).toEqual([2, 32]);
    expect(state['base_model.model.classifier.bias']!.dims).toEqual([2]);
    // PEFT counts the copy as trainable and both copies in "all": 288 IA3 + 66 head parameters.
    expect(peft.getNbTrainableParameters()).toEqual([288 + 66, 20482 + 288 + 66]);
    const frozenHead = Float32Array.from(model.graph.initializers.get('classifier.weight')!.data as Float32Array);
    const data = toyClassification(48, 3);
    // Run the base model once so its frozen classifier is resident on the GPU during training.
    await model.run({ input_ids: [[20, 21, 22]], attention_mask: [[1, 1, 1]], token_type_ids: [[0, 0, 0]] });
    const trainer = new Trainer(peft, { learningRate: 0.05, batchSize: 8, maxSteps: 24, loggingSteps: 8, seed: 1 });
    const before = await trainer.evaluate(data);
    await trainer.train(data);
    const after = await trainer.evaluate(data);
    console.log(`[seqcls] bert loss ${before.loss.toFixed(3)} → ${after.loss.toFixed(3)}, accuracy ${before.accuracy} → ${after.accuracy}`);
    expect(after.loss).toBeLessThan(0.8 * before.loss);
    expect(after.accuracy!).toBeGreaterThan(before.accuracy!);
    const trained = peft.stateDict()['base_model.model.classifier.weight']!.data as Float32Array;
    expect(Array.from(trained)).not.toEqual(Array.from(frozenHead));
    // The frozen original is untouched, on the CPU and on the GPU.
    expect(Array.from(model.graph.initializers.get('classifier.weight')!.data as Float32Array)).toEqual(Array.from(frozenHead));
    const gpuHead = new Float32Array(await gpu.read(model.weightBuffers.get('classifier.weight')!, 4 * frozenHead.length));
    expect(Array.from(gpuHead)).toEqual(Array.from(frozenHead));
    await model.dispose();
  }, 300_000);

  it('GPT-2: the loss pools the last real token (right padding), as Hugging Face does', async () => {
    const gpu = await getGpu();
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
    const { inputs, lengths, T, labels } = paddedRows();
    const { loss } = await peft.lossAndGradients({ inputs, labels: { data: BigInt64Array.from(labels.map(BigInt)), dims: [3] } });
    // The same loss from the logits of the last real token of each row.
    const logits = (await peft.run(inputs)).logits!;
    const V = logits.dims[2]!;
    const expected = crossEntropy(lengths.map((len, b) => (logits.data as Float32Array).subarray((b * T + len - 1) * V, (b * T + len) * V)), labels);
    expect(Math.abs(loss - expected)).toBeLessThan(1e-4 * Math.abs(expected));
    await model.dispose();
  });

  it("GPT-2 with pooling 'mean': the loss is that of the scores averaged over the real tokens; gradients match float64", async () => {
    const gpu = await getGpu();
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
    const { inputs, lengths, T, labels } = paddedRows();
    const labelFeed = { data: BigInt64Array.from(labels.map(BigInt)), dims: [3] };
    // Vectors away from their identity init, so the gradients of every vector are non-trivial.
    for (const { name, param } of peft.trainingModel().trainables) if (param.target) peft.setParamValues(name, Float32Array.from(peft.paramValues(name), (_, i) => 1 + 0.1 * Math.sin(i)));
    const { loss, gradients } = await peft.lossAndGradients({ inputs, labels: labelFeed, pooling: 'mean' });
    // The same loss from the logits, averaged over each row's real tokens (padding left out).
    const logits = (await peft.run(inputs)).logits!;
    const V = logits.dims[2]!;
    const data = logits.data as Float32Array;
    const means = lengths.map((len, b) => Array.from({ length: V }, (_, v) => Array.from({ length: len }, (_, t) => data[(b * T + t) * V + v]!).reduce((s, x) => s + x, 0) / len));
    const expected = crossEntropy(means, labels);
    expect(Math.abs(loss - expected)).toBeLessThan(1e-4 * Math.abs(expected));
    // It differs from the last-token loss (rows longer than one token pool differently).
    const last = await peft.lossAndGradients({ inputs, labels: labelFeed });
    expect(Math.abs(last.loss - loss)).toBeGreaterThan(1e-3);
    // Backward through the mean: the GPU gradients against the float64 executor on the same IR.
    const reference = peft.lossAndGradientsReference({ inputs, labels: labelFeed, pooling: 'mean' });
    expect(Math.abs(reference.loss - loss)).toBeLessThan(1e-4 * Math.abs(loss));
    for (const [key, g] of Object.entries(gradients)) {
      const ref = reference.gradients[`default/${key}`]!;
      const scale = Math.max(...Array.from(ref, Math.abs));
      expect(scale).toBeGreaterThan(0);
      const worst = Math.max(...Array.from(g.data as Float32Array, (x, i) => Math.abs(x - ref[i]!)));
      expect(worst, key).toBeLessThan(1e-3 * scale);
    }
    // A Trainer with pooling 'mean' trains the toy task through the same loss.
    const data2 = toyClassification(48, 5);
    const trainer = new Trainer(peft, { learningRate: 0.05, batchSize: 8, maxSteps: 24, loggingSteps: 8, seed: 1, pooling: 'mean' });
    const before = await trainer.evaluate(data2);
    await trainer.train(data2);
    const after = await trainer.evaluate(data2);
    console.log(`[seqcls] gpt2 mean pooling: loss ${before.loss.toFixed(3)} → ${after.loss.toFixed(3)}, accuracy ${before.accuracy} → ${after.accuracy}`);
    expect(after.loss).toBeLessThan(before.loss);
    trainer.dispose();
    await model.dispose();
  }, 300_000);

  it("pooling 'mean' is refused where the scores are already pooled (an encoder's head) and when misspelt", async () => {
    const gpu = await getGpu();
    const model = await loadModel('/tests/fixtures/bert/onnx/model_opset17.onnx', { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
    const inputs = { input_ids: [[20, 21, 22]], attention_mask: [[1, 1, 1]], token_type_ids: [[0, 0, 0]] };
    const labels = { data: BigInt64Array.of(1n), dims: [1] };
    await expect(peft.lossAndGradients({ inputs, labels, pooling: 'mean' })).rejects.toThrow(/pooling 'mean' applies to a decoder's per-position class scores .* is already pooled/);
    expect(() => new Trainer(peft, { pooling: 'max' as 'mean' })).toThrow(InputError);
    expect(() => new Trainer(peft, { pooling: 'max' as 'mean' })).toThrow(/TrainingArguments.pooling must be one of last, mean, got "max"/);
    await model.dispose();
  });
});
