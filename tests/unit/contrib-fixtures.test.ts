// The contrib-op fixtures of tests/fixtures/real/ on the float64 CPU executor (their expansions):
//   - every case against onnxruntime-web's recorded outputs (ort_reference.json), under the case's
//     compare rules and the file's tolerance;
//   - IA3 with PEFT's defaults on the optimised file against the plain export of the same model:
//     the same modules, state-dict keys and shapes, adapter files and printTrainableParameters line;
//     a state dict trained on one loaded into the other gives the same outputs and gradients;
//   - Qwen2 (no plain export here): the keys and shapes PEFT gives Qwen2ForCausalLM.
import { readFileSync } from 'node:fs';
import { onnx as onnxProto } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/device.js';
import type { RefTensor, TensorData } from '../../src/ir/tensor.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { Model, onnxFileOf } from '../../src/model.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { detectModelType, findModules } from '../../src/onnx/modules.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel, type PeftModel } from '../../src/peft/model.js';
import { CONTRIB_FILES, labelsOf, PAIRS, tokenRows, type Pair } from '../util/contrib-pairs.js';
import { ortDiffs, readJson, type JsonTensor, type OrtReference, type Reference } from '../util/real-fixtures.js';
import { closeness } from '../util/tensors.js';

const noGpu = {} as GpuContext;
const ROOT = 'tests/fixtures';

function cpuModel(folder: string, file: string): Model {
  const bytes = new Uint8Array(readFileSync(`${ROOT}/${folder}/${file}`));
  const config = JSON.parse(readFileSync(`${ROOT}/${folder}/config.json`, 'utf8')) as Record<string, unknown>;
  const graph = decodeOnnx(bytes);
  const modules = findModules(graph, { modelType: config.model_type as string });
  return new Model(noGpu, graph, config, modules, detectModelType(modules, config), new Map(), onnxFileOf({ bytes, fileName: file.split('/').pop()!, externalData: {} }));
}

const refTensor = (t: JsonTensor): RefTensor => ({ dtype: t.dtype, dims: t.dims, data: Float64Array.from(t.data as number[], Number) });


describe('contrib-op fixtures on the CPU executor reproduce onnxruntime-web', () => {
  for (const [fixture, file] of CONTRIB_FILES) {
    it(`${fixture}/${file}`, () => {
      const root = `${ROOT}/real/${fixture}`;
      const ref = readJson<Reference>(`${root}/reference.json`).files[file]!;
      const ort = readJson<OrtReference>(`${root}/ort_reference.json`).files[file]!;
      const graph = decodeOnnx(new Uint8Array(readFileSync(`${root}/${file}`)));
      expect(graph.nodes.filter((n) => n.domain === 'com.microsoft')).toEqual([]);
      for (const c of ref.cases) {
        const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, refTensor(t)]));
        const out = runReferenceModel(graph, feeds);
        for (const d of ortDiffs(c, ort.cases.find((o) => o.name === c.name)!, out, ref.torch_tolerance!)) {
          expect(d.worst, `${c.name} ${d.name}: max |Δ| ${d.maxAbs} vs onnxruntime-web`).toBeLessThanOrEqual(1);
        }
      }
    });
  }
});

const keysAndDims = (sd: Record<string, TensorData>): [string, number[]][] => Object.entries(sd).map(([k, t]) => [k, t.dims] as [string, number[]]).sort((a, b) => a[0].localeCompare(b[0]));

/** Compares outputs of the two models on the rows both define. */
function expectSameOutputs(pair: Pair, plain: Record<string, RefTensor>, opt: Record<string, RefTensor>, lengths: readonly number[], what: string): void {
  const a = plain.logits!;
  const b = opt.logits!;
  expect(b.dims, `${what}: logits dims`).toEqual(a.dims);
  const rows = pair.task === 'CAUSAL_LM' ? a.dims[1]! : 1;
  const width = a.data.length / (a.dims[0]! * rows);
  for (let i = 0; i < a.dims[0]!; i++) {
    for (let r = 0; r < rows; r++) {
      if (pair.task === 'CAUSAL_LM' && r >= lengths[i]!) continue; // padded query rows differ by definition
      const at = (i * rows + r) * width;
      const { worst, maxAbs } = closeness(b.data.subarray(at, at + width), a.data.subarray(at, at + width), pair.tolerance);
      expect(worst, `${what}: row (${i}, ${r}) max |Δ| ${maxAbs}`).toBeLessThanOrEqual(1);
    }
  }
}

function peftOf(model: Model, pair: Pair, init = true): PeftModel {
  return getPeftModel(model, new IA3Config({ taskType: pair.task, initIa3Weights: init }));
}

describe('IA3 through fused ops: the optimised export adapts like the plain one', () => {
  for (const pair of PAIRS) {
    it(pair.name, () => {
      const plain = cpuModel(pair.plain, 'onnx/model.onnx');
      const opt = cpuModel(pair.optimized, pair.file);
      // Random vectors drawn from the module path (init_ia3_weights = false): plain's are the ones trained.
      const a = peftOf(plain, pair, false);
      const b = peftOf(opt, pair);
      expect(b.targets().map((t) => [t.module.path, t.feedforward, t.dims])).toEqual(a.targets().map((t) => [t.module.path, t.feedforward, t.dims]));
      expect(b.printTrainableParameters()).toBe(a.printTrainableParameters());
      const fa = a.saveAdapter();
      const fb = b.saveAdapter();
      // The same config but for how the vectors were initialised.
      const configOf = (text: string): Record<string, unknown> => ({ ...(JSON.parse(text) as Record<string, unknown>), init_ia3_weights: null });
      expect(configOf(fb['adapter_config.json'])).toEqual(configOf(fa['adapter_config.json']));
      const tensorsOf = (bytes: Uint8Array) => Object.entries(readSafetensors(bytes).tensors).map(([k, t]) => [k, t.dims]).sort();
      expect(tensorsOf(fb['adapter_model.safetensors'])).toEqual(tensorsOf(fa['adapter_model.safetensors']));
      expect(keysAndDims(b.stateDict())).toEqual(keysAndDims(a.stateDict()));

      // The plain model's state dict, loaded into the optimised one: the same function.
      b.loadStateDict(a.stateDict());
      const ids = tokenRows(2, 6, pair.vocab, 7);
      const lengths = pair.padding ? [6, 4] : [6, 6];
      expectSameOutputs(pair, a.runReference(pair.plainFeeds(ids, lengths)), b.runReference(pair.optimizedFeeds(ids, lengths)), lengths, 'adapted forward');
      // ... and the same gradients of every vector.
      const ga = a.lossAndGradientsReference({ inputs: pair.plainFeeds(ids, lengths), labels: labelsOf(pair, ids) });
      const gb = b.lossAndGradientsReference({ inputs: pair.optimizedFeeds(ids, lengths), labels: labelsOf(pair, ids) });
      expect(Math.abs(gb.loss - ga.loss)).toBeLessThan(pair.tolerance.atol + pair.tolerance.rtol * Math.abs(ga.loss));
      expect(Object.keys(gb.gradients).sort()).toEqual(Object.keys(ga.gradients).sort());
      for (const [k, g] of Object.entries(ga.gradients)) {
        const { worst, maxAbs } = closeness(gb.gradients[k]!, g, { rtol: 10 * pair.tolerance.rtol, atol: pair.tolerance.atol });
        expect(worst, `gradient ${k}: max |Δ| ${maxAbs}`).toBeLessThanOrEqual(1);
      }
    });
  }

  it('qwen2-genai: the keys and shapes PEFT gives Qwen2 (q_proj, v_proj, down_proj) out of the packed qkv_proj', () => {
    const model = cpuModel('real/qwen2-genai', 'onnx/model.onnx');
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    expect(keysAndDims(peft.stateDict())).toEqual(
      [0, 1]
        .flatMap((l) => [
          [`base_model.model.model.layers.${l}.mlp.down_proj.ia3_l`, [1, 96]],
          [`base_model.model.model.layers.${l}.self_attn.q_proj.ia3_l`, [64, 1]],
          [`base_model.model.model.layers.${l}.self_attn.v_proj.ia3_l`, [32, 1]],
        ])
        .sort((x, y) => (x[0] as string).localeCompare(y[0] as string)),
    );
    // 70,208 frozen parameters (the 512 values of the rotary caches are buffers) + 2·(64 + 32 + 96).
    expect(peft.printTrainableParameters()).toBe('trainable params: 384 || all params: 70,592 || trainable%: 0.5440');
  });
});

describe('merging IA3 into fused-op weights, and what describe() says', () => {
  const EXPORTED: readonly [string, string, Pair['task'], (ids: number[][]) => Record<string, TensorData>][] = [
    ['real/bert-ort-optimized', 'onnx/model_optimized.onnx', 'SEQ_CLS', (ids) => PAIRS[0]!.optimizedFeeds(ids, [6, 4])],
    ['real/bert-ort-optimized', 'onnx/model_optimized_mha.onnx', 'SEQ_CLS', (ids) => PAIRS[2]!.optimizedFeeds(ids, [6, 4])],
  ];
  // (The genai files are ONNX IR 10, which exportMergedOnnx does not re-encode; their packed
  // qkv_proj merges on the GPU in tests/gpu/contrib.test.ts.)
  for (const [folder, file, task, feeds] of EXPORTED) {
    it(`${folder}/${file}: the merged export (packed column ranges, sliced biases) computes the adapted model`, async () => {
      const model = cpuModel(folder, file);
      // SEQ_CLS's classifier copy is left out: only the IA3 vectors are merged here.
      const peft = getPeftModel(model, new IA3Config({ initIa3Weights: false, ...(task === 'SEQ_CLS' ? {} : { taskType: task }) }));
      const ids = tokenRows(2, 6, 100, 3);
      const adapted = peft.runReference(feeds(ids));
      const { onnx } = await peft.exportMergedOnnx();
      const merged = runReferenceModel(decodeOnnx(onnx), Object.fromEntries(Object.entries(feeds(ids)).map(([k, t]) => [k, { dtype: t.data instanceof BigInt64Array ? 'int64' : 'float32', dims: t.dims, data: Float64Array.from(t.data as ArrayLike<number | bigint>, Number) } as RefTensor])));
      const { worst, maxAbs } = closeness(merged.logits!.data, adapted.logits!.data, { rtol: 1e-5, atol: 1e-6 });
      expect(worst, `merged vs adapted, max |Δ| ${maxAbs}`).toBeLessThanOrEqual(1);
      // The base model (ones) differs from the adapted one: the vectors were folded in.
      expect(closeness(runReferenceModel(decodeOnnx((await model.onnxFile!.read()).bytes), Object.fromEntries(Object.entries(feeds(ids)).map(([k, t]) => [k, { dtype: t.data instanceof BigInt64Array ? 'int64' : 'float32', dims: t.dims, data: Float64Array.from(t.data as ArrayLike<number | bigint>, Number) } as RefTensor]))).logits!.data, adapted.logits!.data, { rtol: 1e-5, atol: 1e-6 }).worst).toBeGreaterThan(1);
    });
  }

  it('describe() lists the expanded fused ops and the parts of packed projections', () => {
    const text = cpuModel('real/bert-ort-optimized', 'onnx/model_optimized.onnx').describe();
    expect(text).toContain('Fused ops expanded into the ops above (9): com.microsoft.EmbedLayerNormalization ×1, com.microsoft.Attention ×2, com.microsoft.SkipLayerNormalization ×4, com.microsoft.BiasGelu ×2');
    expect(text).toMatch(/bert\.encoder\.layer\.0\.attention\.self\.key +MatMul +32 → 32 +bias +weight Attention_0_qkv_weight \(in_out\), columns 32\.\.64 of 96/);
    expect(text).not.toContain('Linear layers without a module path');
  });

  it('says which fused op hides a projection it cannot name, and why', () => {
    // The same graph with the attention output projections' names gone (node scopes and bias
    // names): no layout to name q/k/v from.
    const bytes = new Uint8Array(readFileSync(`${ROOT}/real/bert-ort-optimized/onnx/model_optimized.onnx`));
    const m = onnxProto.ModelProto.decode(bytes);
    const hide = (name: string): string => (/attention[/.]output[/.]dense/.test(name) ? `hidden_${name.length}_${name.replace(/\D/g, '')}` : name);
    for (const n of m.graph!.node!) {
      n.name = hide(n.name ?? '');
      n.input = n.input!.map(hide);
      n.output = n.output!.map(hide);
    }
    for (const t of m.graph!.initializer!) t.name = hide(t.name ?? '');
    const graph = decodeOnnx(onnxProto.ModelProto.encode(m).finish());
    const modules = findModules(graph);
    expect(modules.some((x) => x.path.includes('attention.self'))).toBe(false);
    const model = new Model(noGpu, graph, undefined, modules, 'bert', new Map());
    expect(model.describe()).toMatch(/Attention_0\/MatMul +MatMul +32 → 96 +weight Attention_0_qkv_weight +inside com\.microsoft\.Attention 'Attention_0': no output projection with a known module layout reads its result/);
  });
});
