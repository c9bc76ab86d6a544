// IA3 as PEFT places it, on every fixture: vectors from the fixture script (random, not ones) are
// loaded under PEFT's keys, and the forward pass on WebGPU equals PyTorch's (float64) with one and
// with two active adapters, equals the CPU executor on the same rewritten graph, and the
// parameter line equals PEFT's.
import { describe, expect, it } from 'vitest';
import { loadModel, type TensorData } from '../../src/index.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { getGpu } from '../util/gpu.js';
import { closeness } from '../util/tensors.js';

interface Json {
  dtype: string;
  dims: number[];
  data: number[];
}
interface IA3Reference {
  peft_config: { target_modules: string[]; feedforward_modules: string[] };
  print_trainable_parameters: { line: string };
  adapters: Record<string, Record<string, Json>>;
  cases: { name: string; active_adapters: string[]; inputs: Record<string, Json>; outputs: { logits: Json } }[];
}

const toTensors = (t: Record<string, Json>): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }]));

describe.each(['bert', 'gpt2', 'llama', 'distilbert'])('%s with IA3', (name) => {
  it('matches PyTorch with PEFT placement, one and two adapters', async () => {
    const gpu = await getGpu();
    const ref = (await (await fetch(`/tests/fixtures/${name}/ia3_reference.json`)).json()) as IA3Reference;
    const model = await loadModel(`/tests/fixtures/${name}/onnx/model_opset17.onnx`, { device: gpu });
    // The fixture's config is PEFT's default for the model type, except distilbert (no default).
    const config =
      name === 'distilbert'
        ? new IA3Config({ targetModules: ref.peft_config.target_modules, feedforwardModules: ref.peft_config.feedforward_modules })
        : new IA3Config();
    const peft = getPeftModel(model, config);
    expect(peft.printTrainableParameters()).toBe(ref.print_trainable_parameters.line);
    expect(Object.keys(peft.stateDict()).sort()).toEqual(Object.keys(ref.adapters.default!).sort());
    peft.loadStateDict(toTensors(ref.adapters.default!));
    peft.addAdapter('second', config);
    peft.loadStateDict(toTensors(ref.adapters.second!), 'second');
    for (const c of ref.cases) {
      peft.setAdapter(c.active_adapters);
      const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));
      const got = (await peft.run(feeds)).logits!;
      expect(got.dims).toEqual(c.outputs.logits.dims);
      const vsTorch = closeness(got.data as Float32Array, c.outputs.logits.data, { rtol: 2e-3, atol: 2e-4 });
      expect(vsTorch.worst, `${name}/${c.name} vs PyTorch: element ${vsTorch.at}`).toBeLessThanOrEqual(1);
      const cpu = peft.runReference(feeds).logits!;
      const vsCpu = closeness(got.data as Float32Array, cpu.data, { rtol: 2e-3, atol: 2e-4 });
      expect(vsCpu.worst, `${name}/${c.name} vs CPU executor: element ${vsCpu.at}`).toBeLessThanOrEqual(1);
    }
    // Disabled adapters give the base model's outputs; the vectors are not ones, so they differ.
    const c = ref.cases[0]!;
    const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));
    peft.setAdapter('default');
    const adapted = (await peft.run(feeds)).logits!.data as Float32Array;
    peft.disableAdapter();
    const disabled = (await peft.run(feeds)).logits!.data as Float32Array;
    const baseOut = (await model.run(feeds)).logits!.data as Float32Array;
    expect(Array.from(disabled)).toEqual(Array.from(baseOut));
    expect(closeness(adapted, baseOut, { rtol: 1e-4, atol: 1e-5 }).worst).toBeGreaterThan(1);
    await model.dispose();
  });
});

describe('all-linear', () => {
  it('targets every linear module but the output layer, feed-forward ones by the model type', async () => {
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: await getGpu() });
    const peft = getPeftModel(model, new IA3Config({ targetModules: 'all-linear' }));
    const targets = peft.targets().map((t) => `${t.module.path}${t.feedforward ? ' (ff)' : ''}`);
    expect(targets).toEqual(
      [0, 1].flatMap((i) => [`transformer.h.${i}.attn.c_attn`, `transformer.h.${i}.attn.c_proj`, `transformer.h.${i}.mlp.c_fc`, `transformer.h.${i}.mlp.c_proj (ff)`]),
    );
    const { logits } = await peft.run({ input_ids: [[3, 4, 5]], attention_mask: [[1, 1, 1]] });
    expect(logits!.dims).toEqual([1, 3, 120]);
    await model.dispose();
  });
});

describe('state dict validation', () => {
  it('reports every missing, unexpected and misshapen key at once and changes nothing', async () => {
    const gpu = await getGpu();
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: gpu });
    const peft = getPeftModel(model, new IA3Config());
    const before = peft.stateDict();
    const bad: Record<string, TensorData> = { ...before };
    delete bad['base_model.model.transformer.h.0.attn.c_attn.ia3_l'];
    bad['transformer.h.1.attn.c_attn.ia3_l'] = { data: new Float32Array(95), dims: [95, 1] };
    delete bad['base_model.model.transformer.h.1.attn.c_attn.ia3_l'];
    bad['base_model.model.transformer.h.9.attn.c_attn.ia3_l'] = { data: new Float32Array(96), dims: [96, 1] };
    bad['base_model.model.transformer.h.0.mlp.c_proj.ia3_l'] = { data: new Float32Array(128).fill(2), dims: [1, 128] };
    let message = '';
    try {
      peft.loadStateDict(bad);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/missing key 'base_model\.model\.transformer\.h\.0\.attn\.c_attn\.ia3_l'/);
    expect(message).toMatch(/'transformer\.h\.1\.attn\.c_attn\.ia3_l': shape \[95, 1\], expected \[96, 1\]/);
    expect(message).toMatch(/unexpected key 'base_model\.model\.transformer\.h\.9\.attn\.c_attn\.ia3_l'/);
    expect(peft.stateDict()).toEqual(before);
    await model.dispose();
  });
});

describe('two PeftModels of one model', () => {
  it('a fresh PeftModel runs with its own vectors, not those a previous one left on the GPU', async () => {
    const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: await getGpu() });
    const feeds = { input_ids: [[5, 17, 33, 2]], attention_mask: [[1, 1, 1, 1]] };
    const base = (await model.run(feeds)).logits!.data as Float32Array;
    const first = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const state = first.stateDict();
    for (const t of Object.values(state)) (t.data as Float32Array).fill(1.5);
    first.loadStateDict(state);
    const scaled = (await first.run(feeds)).logits!.data as Float32Array;
    expect(Array.from(scaled)).not.toEqual(Array.from(base));
    // Same adapter name, same buffer names: the new model's ones must replace the resident 1.5s.
    const second = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const fresh = (await second.run(feeds)).logits!.data as Float32Array;
    expect(closeness(fresh, base, { rtol: 1e-5, atol: 1e-6 }).worst).toBeLessThanOrEqual(1);
    await model.dispose();
  });
});
