// Streaming loads on the GPU, on the demo's GPT-2 (its embedding and tied head, 3 MiB each, stream
// to the GPU): the model computes the logits of the same model loaded with every weight kept on
// the CPU; its large initializers have no CPU data; parameter counting still recognises the head
// as the embedding's transposed copy; progress events reach every byte of the file; the CPU
// reference refuses with an InputError naming the weight; the merged export, which reads the file
// again, equals the export of the model loaded whole.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { getPeftModel, IA3Config, loadModel, type TensorData } from '../../src/index.js';
import type { LoadProgress } from '../../src/onnx/stream.js';
import { getGpu } from '../util/gpu.js';

const BASE = '/demo/public/models/sotu-gpt2/';

describe('streaming load', () => {
  it('puts large weights on the GPU only and computes what a model loaded whole computes', async () => {
    const gpu = await getGpu();
    const events: LoadProgress[] = [];
    const streamed = await loadModel(BASE, { device: gpu, onProgress: (p) => events.push(p) });
    const whole = await loadModel(BASE, { device: gpu, keepWeightsOnCpu: true });
    const size = Number((await fetch(`${BASE}onnx/model.onnx`, { method: 'HEAD' })).headers.get('content-length'));
    expect(events.at(-1)!.loadedBytes).toBe(size);
    expect(events.at(-1)!.tensors).toBe(events.at(-1)!.totalTensors);

    const wte = streamed.graph.initializers.get('transformer.wte.weight')!;
    expect(wte.data).toBeUndefined();
    expect(wte.stats).toBeDefined();
    expect(streamed.weightBuffers.get('transformer.wte.weight')!.size).toBe(4 * 4096 * 192);
    expect(whole.graph.initializers.get('transformer.wte.weight')!.data).toBeDefined();

    const ids = BigInt64Array.from({ length: 12 }, (_, i) => BigInt((i * 331) % 4095));
    const feeds: Record<string, TensorData> = { input_ids: { data: ids, dims: [1, 12] }, attention_mask: { data: new BigInt64Array(12).fill(1n), dims: [1, 12] } };
    const a = await streamed.run(feeds);
    const b = await whole.run(feeds);
    expect(Array.from(a.logits!.data as Float32Array)).toEqual(Array.from(b.logits!.data as Float32Array));
    expect(() => streamed.runReference(feeds)).toThrow(InputError);
    expect(() => streamed.runReference(feeds)).toThrow(/weight '.+' lives on the GPU only/);

    const config = new IA3Config({ taskType: 'CAUSAL_LM' });
    const pa = getPeftModel(streamed, config);
    const pb = getPeftModel(whole, config);
    // The head is torch's transposed copy of the embedding: counted once either way.
    expect(pa.getNbTrainableParameters()).toEqual(pb.getNbTrainableParameters());
    for (const p of [pa, pb]) {
      for (const t of p.trainingModel().trainables) p.setParamValues(t.name, Float32Array.from({ length: t.param.values.length }, (_, i) => 0.9 + ((i * 37) % 23) / 100));
    }
    const ea = await pa.exportMergedOnnx();
    const eb = await pb.exportMergedOnnx();
    expect(ea.onnx.length).toBe(eb.onnx.length);
    expect(ea.onnx).toEqual(eb.onnx);
    await streamed.dispose();
    await whole.dispose();
    // Two loads, two forwards and two merged exports: about two minutes on a busy 2-core SwiftShader.
  }, 600_000);
});
