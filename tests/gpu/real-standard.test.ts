// The standard-ONNX real-world files of tests/fixtures/real/ on WebGPU (tests/fixtures/README.md):
// the Einsum Llama, optimum's decoders with past and merged (an If on use_cache_branch, run with an
// empty and a non-empty past), TensorFlow's opset-10 BERTs, the legacy GPT-2 quirks, RoBERTa's
// computed positions. For every file:
//   - forward: every case of reference.json on the GPU equals onnxruntime-web's outputs
//     (ort_reference.json, re-checked live by tests/unit/fixtures-real.test.ts) within the suite's
//     tolerance, and the float64 CPU executor on the same IR equals them more tightly; a case
//     onnxruntime-web refuses is refused here with the same kind of error;
//   - IA3 (PEFT's defaults for the model type, vectors not ones): gradients on the GPU equal the
//     CPU executor's on the same backward IR, whose loss agrees with central finite differences;
//   - the adapter files have the keys and shapes of the plain export of the same model
//     (tests/fixtures/<model>/), so a trained adapter moves between the files.
// And per fixture family, a few Trainer steps on a toy task lower the loss.
import { describe, expect, it, vi } from 'vitest';
import { IndexOutOfRangeError } from '../../src/errors.js';
import { loadModel, type Model, type TensorData } from '../../src/index.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel, type PeftModel } from '../../src/peft/model.js';
import type { Example } from '../../src/train/data.js';
import { Trainer } from '../../src/train/trainer.js';
import { getGpu } from '../util/gpu.js';
import { closeness, relativeError } from '../util/tensors.js';

interface JsonTensor {
  dtype: 'float32' | 'int64' | 'int32' | 'bool';
  dims: number[];
  data: (number | boolean)[];
}
interface RefCase {
  name: string;
  inputs: Record<string, JsonTensor>;
  torch_error?: string;
}
interface OrtCase {
  name: string;
  outputs?: Record<string, JsonTensor>;
  error?: string;
}

/** Per fixture: its files, the plain export of the same model, the task, and a file to train. */
const FIXTURES = {
  'llama-einsum': { files: ['model.onnx'], plain: 'llama', task: 'CAUSAL_LM', train: 'model.onnx' },
  'gpt2-past': { files: ['decoder_model.onnx', 'decoder_with_past_model.onnx', 'decoder_model_merged.onnx'], plain: 'gpt2', task: 'CAUSAL_LM', train: 'decoder_model_merged.onnx' },
  'llama-past': { files: ['decoder_model.onnx', 'decoder_with_past_model.onnx', 'decoder_model_merged.onnx'], plain: 'llama', task: 'CAUSAL_LM', train: 'decoder_with_past_model.onnx' },
  'bert-tf-opset10': { files: ['model.onnx', 'model_keras.onnx'], plain: 'bert', task: 'SEQ_CLS', train: 'model.onnx' },
  'gpt2-quirks': { files: ['decoder_with_past_legacy.onnx', 'model_output_shape_mismatch.onnx'], plain: 'gpt2', task: 'CAUSAL_LM', train: 'decoder_with_past_legacy.onnx' },
  'roberta-positions': { files: ['model.onnx'], plain: undefined, task: 'SEQ_CLS', train: 'model.onnx' },
} as const;

const json = async <T,>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;

function feedOf(t: JsonTensor): TensorData {
  switch (t.dtype) {
    case 'float32':
      return { data: Float32Array.from(t.data as number[]), dims: t.dims };
    case 'int64':
      return { data: BigInt64Array.from(t.data as number[], (v) => BigInt(v)), dims: t.dims };
    case 'int32':
      return { data: Int32Array.from(t.data as number[]), dims: t.dims };
    case 'bool':
      return { data: Uint8Array.from(t.data as boolean[], (v) => (v ? 1 : 0)), dims: t.dims };
  }
}
const feedsOf = (c: RefCase): Record<string, TensorData> => Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, feedOf(v)]));

/** IA3 vectors that are not ones (seeded), so gradients and outputs depend on them. */
function perturb(peft: PeftModel, seed: number): void {
  let s = seed;
  const state = peft.stateDict();
  for (const t of Object.values(state)) {
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      d[i] = 0.7 + 0.6 * (s / 2 ** 32);
    }
  }
  peft.loadStateDict(state);
}

/** Labels of a case: the ids for a causal LM, a class per row for classification. */
function labelsOf(task: 'CAUSAL_LM' | 'SEQ_CLS', feeds: Record<string, TensorData>): TensorData {
  const ids = Object.entries(feeds).find(([k]) => k.startsWith('input_ids'))![1];
  if (task === 'CAUSAL_LM') return { data: BigInt64Array.from(ids.data as ArrayLike<number | bigint>, (v) => BigInt(v)), dims: ids.dims };
  return { data: BigInt64Array.from({ length: ids.dims[0]! }, (_, i) => BigInt(i % 2)), dims: [ids.dims[0]!] };
}

const adapterShapes = (peft: PeftModel): Record<string, number[]> =>
  Object.fromEntries(Object.entries(peft.stateDict()).map(([k, v]) => [k, v.dims]));

for (const [fixture, spec] of Object.entries(FIXTURES)) {
  const base = `/tests/fixtures/real/${fixture}`;
  describe(fixture, () => {
    for (const file of spec.files) {
      it(`${file}: forward equals onnxruntime-web; IA3 gradients equal the CPU executor and finite differences; PEFT keys of the plain export`, async () => {
        const gpu = await getGpu();
        const ref = await json<{ files: Record<string, { cases: RefCase[] }> }>(`${base}/reference.json`);
        const ortRef = await json<{ files: Record<string, { cases: OrtCase[] }> }>(`${base}/ort_reference.json`);
        const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
        const model = await loadModel(`${base}/onnx/${file}`, { device: gpu });
        try {
          const cases = ref.files[`onnx/${file}`]!.cases;
          const ort = ortRef.files[`onnx/${file}`]!.cases;
          let maxDiff = 0;
          for (const [i, c] of cases.entries()) {
            const feeds = feedsOf(c);
            const want = ort[i]!;
            if (want.error !== undefined) {
              // onnxruntime-web refuses this case ("indices element out of data bounds"): so do we.
              expect(want.error).toMatch(/out of data bounds/);
              await expect(model.run(feeds), `${file} ${c.name} on the GPU`).rejects.toThrow(IndexOutOfRangeError);
              await expect(model.run(feeds)).rejects.toThrow(/indices element out of data bounds, idx=34 must be within the inclusive range \[-34,33\]/);
              expect(() => model.runReference(feeds), `${file} ${c.name} on the CPU`).toThrow(IndexOutOfRangeError);
              continue;
            }
            const got = await model.run(feeds);
            const cpu = model.runReference(feeds);
            for (const [name, w] of Object.entries(want.outputs!)) {
              expect(got[name]!.dims, `${file} ${c.name} ${name} dims`).toEqual(w.dims);
              const gpuVsOrt = closeness(got[name]!.data as Float32Array, w.data as number[], { rtol: 2e-3, atol: 2e-4 });
              expect(gpuVsOrt.worst, `${file} ${c.name} ${name}: GPU vs onnxruntime-web, max |Δ| ${gpuVsOrt.maxAbs}`).toBeLessThanOrEqual(1);
              const cpuVsOrt = closeness(cpu[name]!.data, w.data as number[], { rtol: 1e-4, atol: 2e-5 });
              expect(cpuVsOrt.worst, `${file} ${c.name} ${name}: CPU executor vs onnxruntime-web, max |Δ| ${cpuVsOrt.maxAbs}`).toBeLessThanOrEqual(1);
              maxDiff = Math.max(maxDiff, gpuVsOrt.maxAbs);
            }
          }

          console.log(`[real] ${fixture}/${file}: ${cases.length} cases, max |GPU − ORT-web| ${maxDiff.toExponential(2)}`);

          // IA3 with PEFT's defaults: gradients on the GPU = the CPU executor = finite differences.
          const peft = getPeftModel(model, new IA3Config({ taskType: spec.task }));
          perturb(peft, 17);
          // The smallest case of at least two tokens a row (a causal LM's one-token rows predict nothing).
          const ids = (x: RefCase): number[] => Object.entries(x.inputs).find(([k]) => k.startsWith('input_ids'))![1].dims;
          const c = cases.filter((x) => !x.torch_error && ids(x)[1]! >= 2).reduce((a, b) => (ids(b)[0]! * ids(b)[1]! < ids(a)[0]! * ids(a)[1]! ? b : a));
          const inputs = feedsOf(c);
          const labels = labelsOf(spec.task, inputs);
          const { loss, adapterGradients } = await peft.lossAndGradients({ inputs, labels });
          const cpu = peft.lossAndGradientsReference({ inputs, labels });
          expect(Math.abs(loss - cpu.loss) / Math.abs(cpu.loss), `${file}: loss vs CPU`).toBeLessThan(1e-5);
          const keys = Object.keys(adapterGradients.default!);
          expect(keys.length).toBeGreaterThan(0);
          let worst = 0;
          for (const key of keys) {
            const err = relativeError(adapterGradients.default![key]!.data as Float32Array, cpu.gradients[`default/${key}`]!);
            worst = Math.max(worst, err);
            expect(err, `${file}: gradient of ${key} vs CPU`).toBeLessThan(1e-4);
          }
          // Central differences of the float64 CPU loss along one element of two vectors.
          for (const key of [keys[0]!, keys[keys.length - 1]!]) {
            const state = peft.stateDict();
            const v = state[key]!.data as Float32Array;
            const at = v.length >> 1;
            const h = 1e-3;
            const lossAt = (x: number): number => {
              const s = peft.stateDict();
              (s[key]!.data as Float32Array)[at] = x;
              peft.loadStateDict(s);
              return peft.lossAndGradientsReference({ inputs, labels }).loss;
            };
            const x0 = v[at]!;
            const fd = (lossAt(x0 + h) - lossAt(x0 - h)) / (2 * h);
            peft.loadStateDict(state);
            const g = cpu.gradients[`default/${key}`]![at]!;
            expect(Math.abs(fd - g), `${file}: d loss / d ${key}[${at}] = ${g}, finite differences ${fd}`).toBeLessThan(1e-3 * Math.max(1, Math.abs(g)) + 1e-5);
          }
          console.log(`[real] ${fixture}/${file}: ${keys.length} IA3 vectors, worst relative gradient error GPU vs CPU ${worst.toExponential(2)}`);

          // The adapter files have the plain export's keys and shapes. (google-research/bert's
          // classifier, `output_weights`, has no PyTorch module: transformers' TF1 loader skips it
          // too, so SEQ_CLS's modules_to_save `classifier` finds nothing in that one file.)
          if (spec.plain) {
            const plain = await loadModel(`/tests/fixtures/${spec.plain}/onnx/model.onnx`, { device: gpu });
            const want = adapterShapes(getPeftModel(plain, new IA3Config({ taskType: spec.task })));
            const tf1 = fixture === 'bert-tf-opset10' && file === 'model.onnx';
            const got = adapterShapes(peft);
            expect(got).toEqual(tf1 ? Object.fromEntries(Object.entries(want).filter(([k]) => !k.includes('.classifier.'))) : want);
            await plain.dispose();
          }
          const files = peft.saveAdapter();
          expect(Object.keys(files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
        } finally {
          warn.mockRestore();
          await model.dispose();
        }
      });
    }

    it(`${spec.train}: a few Trainer steps on a toy task lower the loss`, async () => {
      const model: Model = await loadModel(`${base}/onnx/${spec.train}`, { device: await getGpu() });
      const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
      try {
        const peft = getPeftModel(model, new IA3Config({ taskType: spec.task }));
        const data = toyTask(spec.task, 16, 7);
        // RoBERTa's classifier head trains in full (SEQ_CLS's modules_to_save): a gentler rate.
        const lr = fixture === 'roberta-positions' ? 0.02 : 0.1;
        const trainer = new Trainer(peft, { learningRate: lr, batchSize: 4, maxSteps: 8, seed: 1, warmupSteps: 1, maxLength: 8 });
        const before = await trainer.evaluate(data);
        await trainer.train(data);
        const after = await trainer.evaluate(data);
        console.log(`[real] ${fixture}/${spec.train}: training loss ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}`);
        expect(after.loss).toBeLessThan(before.loss - 0.05);
      } finally {
        warn.mockRestore();
        await model.dispose();
      }
    }, 400_000);
  });
}

/**
 * A task IA3 alone can learn on a random model. CAUSAL_LM: uniform over 8 of the tokens, so the
 * loss can fall from about ln(vocab) toward ln 8. SEQ_CLS: the label says whether token 5 occurs.
 */
function toyTask(task: 'CAUSAL_LM' | 'SEQ_CLS', n: number, seed: number): Example[] {
  let s = seed;
  const rand = (k: number): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % k;
  };
  return Array.from({ length: n }, (_, i) => {
    const ids = Array.from({ length: 6 + rand(3) }, () => 10 + rand(8));
    if (task === 'CAUSAL_LM') return { input_ids: ids };
    if (i % 2 === 0) ids[rand(ids.length)] = 5;
    return { input_ids: ids, label: ids.includes(5) ? 1 : 0 };
  });
}

describe('leniency, as onnxruntime', () => {
  it('warns once naming an output whose declared shape the run contradicts, and runs it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const model = await loadModel('/tests/fixtures/real/gpt2-quirks/onnx/model_output_shape_mismatch.onnx', { device: await getGpu() });
    try {
      const { logits } = await model.run({ input_ids: [[3, 4, 5]], attention_mask: [[1, 1, 1]] });
      await model.run({ input_ids: [[3, 4, 5, 6]], attention_mask: [[1, 1, 1, 1]] });
      expect(logits!.dims).toEqual([1, 3, 120]);
      const lines = warn.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("graph output 'logits'"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/declared \[2, 7, 120\] but computes \[1, 3, 120\]/);
    } finally {
      warn.mockRestore();
      await model.dispose();
    }
  });

  it("keeps the latest of a value defined by an initializer and a Constant node (onnxruntime's rule), with a warning", async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const model = await loadModel('/tests/fixtures/real/gpt2-quirks/onnx/decoder_with_past_legacy.onnx', { device: await getGpu() });
      expect(warn.mock.calls.some((c) => /'1' is defined more than once \(Constant node 'Constant_0' repeats it\)/.test(String(c[0])))).toBe(true);
      expect(model.graph.initializers.get('1')!.constant).toBe(true);
      await model.dispose();
    } finally {
      warn.mockRestore();
    }
  });
});
