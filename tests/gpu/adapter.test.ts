// Adapter files: saveAdapter → loadPeftModel into a fresh model gives identical tensors and
// identical outputs (IA3 vectors and a modules_to_save head); the files are PEFT's; a load that
// does not fit changes nothing.
import { expect, it } from 'vitest';
import { loadModel } from '../../src/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel, loadPeftModel } from '../../src/peft/model.js';
import { getGpu } from '../util/gpu.js';

const url = '/tests/fixtures/bert/onnx/model_opset17.onnx';
const feeds = { input_ids: [[5, 17, 33, 2]], attention_mask: [[1, 1, 1, 0]], token_type_ids: [[0, 0, 0, 0]] };

it('round-trips through PEFT files: same tensors, same outputs', async () => {
  const gpu = await getGpu();
  const model = await loadModel(url, { device: gpu });
  const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
  // Non-trivial values everywhere.
  const state = peft.stateDict();
  let k = 0;
  for (const t of Object.values(state)) (t.data as Float32Array).forEach((v, i, a) => (a[i] = v + 0.05 * Math.sin(++k)));
  peft.loadStateDict(state);
  const files = peft.saveAdapter();
  const config = JSON.parse(files['adapter_config.json']) as Record<string, unknown>;
  expect(config.peft_type).toBe('IA3');
  expect(config.inference_mode).toBe(true);
  expect(config.task_type).toBe('SEQ_CLS');
  expect(config.target_modules).toEqual(['key', 'output.dense', 'value']);
  expect(config.feedforward_modules).toEqual(['output.dense']);
  expect(files['adapter_config.json']).toMatch(/^\{\n {2}"auto_mapping": null,\n/);
  const st = readSafetensors(files['adapter_model.safetensors']);
  expect(st.metadata).toEqual({ format: 'pt' });
  expect(st.tensors.get('base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l')!.shape).toEqual([32, 1]);
  expect(st.tensors.get('base_model.model.bert.encoder.layer.0.output.dense.ia3_l')!.shape).toEqual([1, 48]);
  expect(st.tensors.get('base_model.model.classifier.weight')!.shape).toEqual([2, 32]);
  const before = (await peft.run(feeds)).logits!.data as Float32Array;

  const fresh = await loadModel(url, { device: gpu });
  const loaded = await loadPeftModel(fresh, files);
  expect(loaded.stateDict()).toEqual(peft.stateDict());
  const after = (await loaded.run(feeds)).logits!.data as Float32Array;
  expect(Array.from(after)).toEqual(Array.from(before));
  // A renamed adapter loads alongside and gives the same outputs: the name changes nothing.
  await loaded.loadAdapter(files, 'other');
  loaded.setAdapter('other');
  expect(Array.from((await loaded.run(feeds)).logits!.data as Float32Array)).toEqual(Array.from(before));
  await model.dispose();
  await fresh.dispose();
});

it('a load that does not fit the model changes nothing', async () => {
  const gpu = await getGpu();
  const model = await loadModel(url, { device: gpu });
  const peft = getPeftModel(model, new IA3Config());
  const files = peft.saveAdapter();
  // Drop one tensor from the file: the load must fail and leave the adapters as they were.
  const st = readSafetensors(files['adapter_model.safetensors']);
  const { writeSafetensors } = await import('../../src/io/safetensors.js');
  const kept: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [key, t] of st.tensors) {
    if (key.includes('layer.1.attention.self.key')) continue;
    kept[key] = { dtype: 'F32', shape: [...t.shape], data: new Float32Array(t.data.slice().buffer) };
  }
  const broken = { ...files, 'adapter_model.safetensors': writeSafetensors(kept, { format: 'pt' }) };
  const err = await peft.loadAdapter(broken, 'broken').catch((e: unknown) => e as Error);
  expect((err as Error).message).toMatch(/missing key 'base_model\.model\.bert\.encoder\.layer\.1\.attention\.self\.key\.ia3_l'/);
  expect(peft.listAdapters()).toEqual(['default']);
  await model.dispose();
});

it('without a task type, records the base model class in auto_mapping as PEFT does', async () => {
  const model = await loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: await getGpu() });
  const config = JSON.parse(getPeftModel(model, new IA3Config({})).saveAdapter()['adapter_config.json']) as Record<string, unknown>;
  expect(config.task_type).toBeNull();
  expect(config.auto_mapping).toEqual({ base_model_class: 'GPT2LMHeadModel', parent_library: 'transformers.models.gpt2.modeling_gpt2' });
  await model.dispose();
});
