// onnxruntime's com.microsoft contrib ops on WebGPU, through their expansions:
//   - the AttentionMask kernel against its float64 reference, bit for bit, for every mask form;
//   - every contrib op (tests/util/contrib-cases.ts) against its float64 reference;
//   - every contrib-op fixture of tests/fixtures/real/ forward against onnxruntime-web's outputs;
//   - IA3 gradients on the GPU against the float64 CPU executor on the same IR;
//   - a state dict of the plain export loaded into the optimised one: the same outputs on the GPU;
//   - IA3 training lowering the loss on a toy task (the Trainer for BERT; for the decoders, whose
//     past inputs the Trainer cannot build yet, AdamW steps over lossAndGradients).
import { describe, expect, it } from 'vitest';
import type { RefTensor, TensorData } from '../../src/ir/tensor.js';
import { loadModel, type Model } from '../../src/index.js';
import { Model as ModelClass } from '../../src/model.js';
import { expandGraph } from '../../src/onnx/expand.js';
import { attentionMaskOps } from '../../src/ops/attention-mask.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { EXPANDED_OPS } from '../../src/ops/registry.js';
import type { ExpandedOpDef } from '../../src/ops/types.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { Trainer } from '../../src/train/trainer.js';
import { caseGraph, contribCases } from '../util/contrib-cases.js';
import { CONTRIB_FILES, labelsOf, PAIRS, tokenRows, type Pair } from '../util/contrib-pairs.js';
import { fetchJson, ortDiffs, tensorData, type OrtReference, type Reference } from '../util/fixture-compare.js';
import { adamSteps } from '../util/adam.js';
import { getGpu } from '../util/gpu.js';
import { closeness, randomTensor } from '../util/tensors.js';

const TOL = { rtol: 2e-3, atol: 2e-4 }; // the model tests' tolerance (float32 on the GPU)

function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  const { worst, at, maxAbs } = closeness(got, want, tol);
  expect(worst, `${what}: element ${at} is ${got[at]} vs ${want[at]} (max |Δ| ${maxAbs.toExponential(2)})`).toBeLessThanOrEqual(1);
}

describe('AttentionMask kernel', () => {
  const int32 = (dims: number[], values: number[]): RefTensor => ({ dtype: 'int32', dims, data: Float64Array.from(values) });
  const scores = (b: number, s: number, t: number): RefTensor => randomTensor([b, 2, s, t], 1);
  const forms: [string, (RefTensor | undefined)[], Record<string, number>][] = [
    ['causal only, past 2', [scores(2, 3, 5)], { causal: 1 }],
    ['end positions', [scores(2, 3, 4), int32([2], [2, 4])], { mask_filter_value: -1000 }],
    ['end and start positions, causal', [scores(2, 3, 4), int32([4], [4, 3, 1, 0])], { causal: 1 }],
    ['raw [B, T], past 1', [scores(2, 2, 3), int32([2, 3], [1, 0, 1, 1, 1, 0])], { mask_filter_value: -3.4028234663852886e38 }],
    ['raw [B, S, T]', [scores(1, 2, 3), int32([1, 2, 3], [1, 0, 1, 0, 1, 1])], {}],
    ['Megatron [B, 1, M, M], past 1', [scores(1, 2, 3), int32([1, 1, 4, 4], [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1])], {}],
    ['seqlens, first prompt', [scores(2, 4, 4), undefined, int32([2], [3, 1]), int32([], [4])], {}],
    ['seqlens, padded past, window 2', [scores(2, 1, 6), undefined, int32([2], [5, 3]), int32([1], [6])], { window: 2 }],
    ['seqlens, continued prompt', [scores(1, 3, 6), undefined, int32([1], [5]), int32([1], [6])], { window: 1 }],
  ];
  it('writes exactly the reference bias for every form', async () => {
    const gpu = await getGpu();
    for (const [name, inputs, attrs] of forms) {
      const ctx = context('AttentionMask', name);
      const [got] = await runOnGpu(gpu, attentionMaskOps.AttentionMask, inputs, attrs, ctx);
      const [want] = runReference(attentionMaskOps.AttentionMask, inputs, attrs, ctx);
      expect(got!.dims, name).toEqual(want!.dims);
      // 0, the filter value (float32), −FLT_MAX and −∞: every element exactly.
      expect(Array.from(got!.data), name).toEqual(Array.from(want!.data, Math.fround));
    }
  });
});

describe('contrib ops on the GPU equal their float64 references', () => {
  it('every attribute form', async () => {
    const gpu = await getGpu();
    for (const c of contribCases()) {
      const { graph, feeds, outputs } = caseGraph(c);
      const model = new ModelClass(gpu, expandGraph(graph), undefined, [], undefined);
      try {
        const got = await model.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, tensorData(v)])));
        const def: ExpandedOpDef = EXPANDED_OPS[c.op];
        const want = def.reference(c.inputs.map((i) => i?.t), c.attrs ?? {}, { opType: c.op, nodeName: c.name, opset: 1 });
        for (const name of outputs) {
          const k = Number(name.slice(3));
          expect(got[name]!.dims, `${c.name} ${name}`).toEqual([...want[k]!.dims]);
          expectNear(Array.from(got[name]!.data as ArrayLike<number>, Number), want[k]!.data, `${c.name} ${name}`, { rtol: 1e-4, atol: 2e-5 });
        }
      } finally {
        await model.dispose();
      }
    }
  });
});


describe('contrib-op fixtures on the GPU reproduce onnxruntime-web', () => {
  for (const [fixture, file] of CONTRIB_FILES) {
    it(`${fixture}/${file}`, async () => {
      const root = `/tests/fixtures/real/${fixture}`;
      const ref = (await fetchJson<Reference>(`${root}/reference.json`)).files[file]!;
      const ort = (await fetchJson<OrtReference>(`${root}/ort_reference.json`)).files[file]!;
      const model = await loadModel(`${root}/${file}`, { device: await getGpu() });
      try {
        for (const c of ref.cases) {
          const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, tensorData(t)]));
          const out = await model.run(feeds);
          const got = Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as Float32Array) }]));
          // onnxruntime computes an fp16 file in fp16 (we compute it in f32): its tolerance is the file's.
          for (const d of ortDiffs(c, ort.cases.find((o) => o.name === c.name)!, got, file.includes('f16') ? ref.torch_tolerance! : TOL)) {
            console.log(`[contrib] ${fixture}/${file} ${c.name} ${d.name}: max |GPU − onnxruntime-web| ${d.maxAbs.toExponential(2)}`);
            expect(d.worst, `${c.name} ${d.name}: max |Δ| ${d.maxAbs}`).toBeLessThanOrEqual(1);
          }
        }
      } finally {
        await model.dispose();
      }
    });
  }
});

async function optimized(pair: Pair): Promise<Model> {
  return loadModel(`/tests/fixtures/${pair.optimized}/${pair.file}`, { device: await getGpu() });
}

describe('IA3 through fused ops on the GPU', () => {
  for (const pair of PAIRS) {
    it(`${pair.name}: gradients equal the CPU executor's, and the plain export's state dict gives its outputs`, async () => {
      const gpu = await getGpu();
      const opt = await optimized(pair);
      const plain = await loadModel(`/tests/fixtures/${pair.plain}/onnx/model.onnx`, { device: gpu });
      try {
        const a = getPeftModel(plain, new IA3Config({ taskType: pair.task, initIa3Weights: false }));
        const b = getPeftModel(opt, new IA3Config({ taskType: pair.task }));
        b.loadStateDict(a.stateDict());
        const ids = tokenRows(2, 6, pair.vocab, 11);
        const lengths = pair.padding ? [6, 3] : [6, 6];
        const inputs = pair.optimizedFeeds(ids, lengths);
        const gpuGrad = await b.lossAndGradients({ inputs, labels: labelsOf(pair, ids) });
        const cpuGrad = b.lossAndGradientsReference({ inputs, labels: labelsOf(pair, ids) });
        expect(Math.abs(gpuGrad.loss - cpuGrad.loss), 'loss').toBeLessThan(1e-4 * Math.abs(cpuGrad.loss));
        for (const [key, g] of Object.entries(gpuGrad.gradients)) {
          const want = cpuGrad.gradients[`default/${key}`]!;
          const scale = Math.max(...Array.from(want, Math.abs));
          expectNear(g.data as Float32Array, want, `d/${key}`, { rtol: 2e-3, atol: 2e-4 * scale });
        }
        // Cross-loaded: the same function on the GPU (rows both define).
        const [ya, yb] = [await a.run(pair.plainFeeds(ids, lengths)), await b.run(inputs)];
        const la = ya.logits!.data as Float32Array;
        const lb = yb.logits!.data as Float32Array;
        expect(yb.logits!.dims).toEqual(ya.logits!.dims);
        const width = la.length / (pair.task === 'CAUSAL_LM' ? 2 * 6 : 2);
        for (let r = 0; r < la.length / width; r++) {
          const [bi, si] = pair.task === 'CAUSAL_LM' ? [Math.floor(r / 6), r % 6] : [r, 0];
          if (si >= lengths[bi]!) continue;
          expectNear(lb.subarray(r * width, (r + 1) * width), la.subarray(r * width, (r + 1) * width), `cross-loaded logits row ${r}`, { rtol: Math.max(TOL.rtol, pair.tolerance.rtol), atol: Math.max(TOL.atol, pair.tolerance.atol) });
        }
      } finally {
        await opt.dispose();
        await plain.dispose();
      }
    });
  }

  it('qwen2-genai: gradients of q_proj/v_proj (packed with bias) and down_proj equal the CPU executor', async () => {
    const model = await loadModel('/tests/fixtures/real/qwen2-genai/onnx/model.onnx', { device: await getGpu() });
    try {
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM', initIa3Weights: false }));
      const ids = tokenRows(1, 5, 128, 5);
      const inputs = PAIRS[4]!.optimizedFeeds(ids, [5]); // the genai layout: one masked past key
      const g = await peft.lossAndGradients({ inputs, labels: labelsOf({ task: 'CAUSAL_LM' }, ids) });
      const r = peft.lossAndGradientsReference({ inputs, labels: labelsOf({ task: 'CAUSAL_LM' }, ids) });
      expect(Math.abs(g.loss - r.loss)).toBeLessThan(1e-4 * Math.abs(r.loss));
      expect(Object.keys(g.gradients).sort()).toEqual(Object.keys(r.gradients).map((k) => k.replace(/^default\//, '')).sort());
      for (const [key, t] of Object.entries(g.gradients)) {
        const want = r.gradients[`default/${key}`]!;
        expectNear(t.data as Float32Array, want, `d/${key}`, { rtol: 2e-3, atol: 2e-4 * Math.max(...Array.from(want, Math.abs)) });
      }
    } finally {
      await model.dispose();
    }
  });
});

/** Uniform over 8 tokens: learnable by IA3 alone on a random decoder (best loss ln 8). */
function toyRows(n: number, len: number, seed: number): number[][] {
  let s = seed;
  return Array.from({ length: n }, () =>
    Array.from({ length: len }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return 10 + (s % 8);
    }),
  );
}

describe('IA3 training on optimised and genai-built files lowers the loss', () => {
  it('bert-ort-optimized (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) with the Trainer', async () => {
    const model = await loadModel('/tests/fixtures/real/bert-ort-optimized/onnx/model_optimized.onnx', { device: await getGpu() });
    try {
      const peft = getPeftModel(model, new IA3Config({ taskType: 'SEQ_CLS' }));
      let s = 3;
      const rand = (k: number): number => {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        return s % k;
      };
      // Label 1 when the sequence holds token 7 (tests/gpu/seqcls.test.ts's task).
      const data = Array.from({ length: 48 }, (_, i) => {
        const ids = Array.from({ length: 4 + rand(6) }, () => 20 + rand(60));
        if (i % 2 === 0) ids[rand(ids.length)] = 7;
        return { input_ids: ids, label: ids.includes(7) ? 1 : 0 };
      });
      const trainer = new Trainer(peft, { learningRate: 0.05, batchSize: 8, maxSteps: 24, loggingSteps: 8, seed: 1 });
      const before = await trainer.evaluate(data);
      await trainer.train(data);
      const after = await trainer.evaluate(data);
      console.log(`[contrib-train] bert-ort-optimized loss ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}, accuracy ${before.accuracy} → ${after.accuracy}`);
      expect(after.loss).toBeLessThan(0.8 * before.loss);
    } finally {
      await model.dispose();
    }
  });

  // The Trainer feeds a decoder's caches empty (a past of length 0: zero-size dims) and builds the
  // optimised GPT-2's float attention mask and position ids itself.
  for (const folder of ['real/gpt2-ort-optimized/onnx/model_optimized.onnx', 'real/llama-genai/onnx/model.onnx']) {
    it(`${folder} with the Trainer (caches fed empty)`, async () => {
      const model = await loadModel(`/tests/fixtures/${folder}`, { device: await getGpu() });
      try {
        const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
        const data = toyRows(16, 6, 5).map((input_ids) => ({ input_ids }));
        const trainer = new Trainer(peft, { learningRate: 0.1, batchSize: 4, maxSteps: 8, seed: 1, warmupSteps: 1, maxLength: 8 });
        const before = await trainer.evaluate(data);
        await trainer.train(data);
        const after = await trainer.evaluate(data);
        console.log(`[contrib-train] ${folder} with the Trainer: loss ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}`);
        expect(after.loss).toBeLessThan(before.loss - 0.05);
      } finally {
        await model.dispose();
      }
    });
  }

  for (const [name, folder, feeds] of [
    ['gpt2-ort-optimized (Attention with past, EmbedLayerNormalization, FastGelu)', 'real/gpt2-ort-optimized/onnx/model_optimized.onnx', PAIRS[3]!],
    ['llama-genai (GroupQueryAttention with rotary, SkipSimplifiedLayerNormalization)', 'real/llama-genai/onnx/model.onnx', PAIRS[4]!],
    ['qwen2-genai (packed QKV with bias)', 'real/qwen2-genai/onnx/model.onnx', PAIRS[4]!],
  ] as const) {
    it(name, async () => {
      const model = await loadModel(`/tests/fixtures/${folder}`, { device: await getGpu() });
      try {
        const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
        const batches = Array.from({ length: 12 }, (_, k) => toyRows(4, 8, 100 + k));
        const [first, last] = await adamSteps(peft, batches.map((rows) => ({ inputs: feeds.optimizedFeeds(rows, rows.map(() => 8)), labels: labelsOf({ task: 'CAUSAL_LM' }, rows) })), 0.1);
        console.log(`[contrib-train] ${folder} loss ${first.toFixed(4)} → ${last.toFixed(4)}`);
        expect(last).toBeLessThan(first - 0.2);
      } finally {
        await model.dispose();
      }
    });
  }
});

describe('merging IA3 into packed projections on the GPU', () => {
  it('the optimizer\'s Attention weights and the genai qkv_proj: merged runs equal the adapted model, unmerge restores it; a bias cut out by a Split is refused', async () => {
    const gpu = await getGpu();
    const ids = tokenRows(2, 6, 100, 21);
    const cases: [string, Record<string, TensorData>, IA3Config][] = [
      ['real/bert-ort-optimized/onnx/model_optimized.onnx', PAIRS[0]!.optimizedFeeds(ids, [6, 4]), new IA3Config({ initIa3Weights: false })],
      ['real/qwen2-genai/onnx/model.onnx', PAIRS[4]!.optimizedFeeds(ids, [6, 6]), new IA3Config({ taskType: 'CAUSAL_LM', initIa3Weights: false })],
    ];
    for (const [path, feeds, config] of cases) {
      const model = await loadModel(`/tests/fixtures/${path}`, { device: gpu });
      try {
        const peft = getPeftModel(model, config);
        const adapted = (await peft.run(feeds)).logits!.data as Float32Array;
        await peft.merge({ safe: true });
        const merged = (await peft.run(feeds)).logits!.data as Float32Array;
        expectNear(merged, adapted, `${path} merged`, { rtol: 1e-4, atol: 1e-5 });
        peft.unmerge();
        expectNear((await peft.run(feeds)).logits!.data as Float32Array, adapted, `${path} unmerged`, { rtol: 1e-4, atol: 1e-5 });
      } finally {
        await model.dispose();
      }
    }
    const mha = await loadModel('/tests/fixtures/real/bert-ort-optimized/onnx/model_optimized_mha.onnx', { device: gpu });
    try {
      const peft = getPeftModel(mha, new IA3Config());
      await expect(peft.merge()).rejects.toThrow(/reads its bias from the packed 'Attention_0_qkv_bias' through Split node 'Attention_0\/Split'/);
    } finally {
      await mha.dispose();
    }
  });
});
