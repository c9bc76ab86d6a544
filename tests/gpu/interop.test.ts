// PEFT interoperability, both ways.
//
// From PEFT: tests/fixtures/peft/<adapter>/ holds adapters written by tests/fixtures/peft_adapters.py
// exactly as PEFT's save_pretrained writes them (random non-one vectors; with and without
// modules_to_save; list and regex selections; an exclusion), with PyTorch's float64 outputs.
// `loadPeftModel` on the fetched files must reproduce those outputs, and `saveAdapter()` must give
// back the same tensors (keys, shapes, bytes) and a config with the same fields.
//
// To PEFT: tests/fixtures/peft/written/<model>/ holds adapters this toolkit wrote (known vectors
// set through the public API, then `saveAdapter()`) and the outputs it computed with them;
// `peft_adapters.py --check` reads them with its own safetensors reader, applies them to the
// PyTorch model and verifies those outputs. This test fails when what the toolkit writes or
// computes no longer matches the committed files; regenerate them with
//   VITE_UPDATE_PEFT_FIXTURES=1 npx vitest run --project gpu tests/gpu/interop.test.ts
// and re-run `/usr/bin/python3 tests/fixtures/peft_adapters.py --check`.
import { describe, expect, it } from 'vitest';
import { commands } from 'vitest/browser';
import { loadModel, type TensorData } from '../../src/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { IA3Config, type IA3ConfigOptions } from '../../src/peft/config.js';
import { getPeftModel, loadPeftModel } from '../../src/peft/model.js';
import { describeAdapter, getGpu } from '../util/gpu.js';
import { closeness } from '../util/tensors.js';

interface Json {
  dtype: string;
  dims: number[];
  data: number[];
}
interface Case {
  name: string;
  inputs: Record<string, Json>;
  outputs: { logits: Json };
}
interface Outputs {
  model: string;
  base_model: string;
  adapted_modules: { path: string; key: string; is_feedforward: boolean }[];
  modules_to_save: string[];
  cases: Case[];
}

const PEFT_ADAPTERS = ['bert', 'bert-seq-cls', 'gpt2', 'gpt2-modules-to-save', 'llama', 'llama-modules-to-save'];
const TOLERANCE = { rtol: 2e-3, atol: 1e-4 };

const feedsOf = (c: Case): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));

async function fetchOk(url: string): Promise<Response | undefined> {
  const r = await fetch(url, { cache: 'no-store' });
  return r.ok ? r : undefined;
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetchOk(url);
  if (!r) throw new Error(`cannot fetch ${url}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetchOk(url);
  if (!r) throw new Error(`cannot fetch ${url}`);
  return (await r.json()) as T;
}

// PEFT saves module sets as `list(set)`, in an order that depends on Python's string hashing, so
// lists compare as sets. modules_to_save too: on loading a SEQ_CLS adapter PEFT's wrapper appends
// classifier/score to the loaded list again, and the toolkit, like PEFT, re-saves the longer list.
function normalisedConfig(text: string): Record<string, unknown> {
  const c = JSON.parse(text) as Record<string, unknown>;
  for (const k of ['target_modules', 'exclude_modules', 'feedforward_modules', 'modules_to_save']) {
    if (Array.isArray(c[k])) c[k] = [...new Set(c[k] as string[])].sort();
  }
  return c;
}

describe.each(PEFT_ADAPTERS)('PEFT adapter %s', (name) => {
  it('loads with PyTorch outputs, and saves back the same tensors and config', async () => {
    const gpu = await getGpu();
    const dir = `/tests/fixtures/peft/${name}`;
    const ref = await fetchJson<Outputs>(`${dir}/outputs.json`);
    const weights = await fetchBytes(`${dir}/adapter_model.safetensors`);
    const configText = await (await fetch(`${dir}/adapter_config.json`)).text();
    const model = await loadModel(`/${ref.base_model}`, { device: gpu });
    const peft = await loadPeftModel(model, { 'adapter_model.safetensors': weights, 'adapter_config.json': configText });

    // PEFT's placement, from the file's config.
    expect(peft.targets().map((t) => [t.key, t.feedforward])).toEqual(ref.adapted_modules.map((m) => [m.key, m.is_feedforward]));

    for (const c of ref.cases) {
      const feeds = feedsOf(c);
      const got = (await peft.run(feeds)).logits!;
      expect(got.dims).toEqual(c.outputs.logits.dims);
      const vsTorch = closeness(got.data as Float32Array, c.outputs.logits.data, TOLERANCE);
      expect(vsTorch.worst, `${name}/${c.name} vs PyTorch: element ${vsTorch.at}`).toBeLessThanOrEqual(1);
      // The adapter matters: the base model's outputs are far from PyTorch's adapted ones.
      const base = (await model.run(feeds)).logits!.data as Float32Array;
      expect(closeness(base, c.outputs.logits.data, TOLERANCE).worst, `${name}/${c.name}: base equals adapted`).toBeGreaterThan(10);
    }

    const files = peft.saveAdapter();
    const original = readSafetensors(weights);
    const saved = readSafetensors(files['adapter_model.safetensors']);
    expect(saved.metadata).toEqual({ format: 'pt' });
    expect([...saved.tensors.keys()]).toEqual([...original.tensors.keys()]);
    for (const [key, t] of original.tensors) {
      const s = saved.tensors.get(key)!;
      expect([s.dtype, s.shape], key).toEqual([t.dtype, t.shape]);
      expect(Array.from(s.data), key).toEqual(Array.from(t.data));
    }
    // Both writers follow safetensors' own: the files are identical, header included.
    expect(Array.from(files['adapter_model.safetensors'])).toEqual(Array.from(weights));
    expect(normalisedConfig(files['adapter_config.json'])).toEqual(normalisedConfig(configText));
    await model.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Toolkit-written adapters for `peft_adapters.py --check`

const WRITTEN: { model: string; options: IA3ConfigOptions }[] = [
  // Conv1D module saved in full (PyTorch layout (in, out) = the ONNX layout).
  { model: 'gpt2', options: { taskType: 'CAUSAL_LM', modulesToSave: ['transformer.h.1.attn.c_proj'] } },
  // SEQ_CLS adds the classifier head (a Gemm with transB) to modules_to_save.
  { model: 'bert', options: { taskType: 'SEQ_CLS' } },
  // Linear saved in full, exported as a MatMul with a folded transposed weight; non-default targets.
  {
    model: 'llama',
    options: {
      taskType: 'CAUSAL_LM',
      targetModules: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'],
      feedforwardModules: ['down_proj'],
      modulesToSave: ['model.layers.0.self_attn.o_proj'],
    },
  },
];
const UPDATE = import.meta.env.VITE_UPDATE_PEFT_FIXTURES === '1';
const REGENERATE =
  'regenerate with `VITE_UPDATE_PEFT_FIXTURES=1 npx vitest run --project gpu tests/gpu/interop.test.ts`, ' +
  'then run `/usr/bin/python3 tests/fixtures/peft_adapters.py --check` and commit tests/fixtures/peft/written/';

// Known values from exact rational formulas (no transcendental functions, so every engine agrees):
// vectors in [0.75, 1.25), saved module parameters scaled by [0.9, 1.1).
function knownValues(state: Record<string, TensorData>): void {
  Object.keys(state)
    .sort()
    .forEach((key, k) => {
      const t = state[key]!.data as Float32Array;
      if (key.endsWith('.ia3_l')) t.forEach((_, i) => (t[i] = 0.75 + ((i * 37 + k * 101) % 97) / 194));
      else t.forEach((v, i) => (t[i] = v * (0.9 + ((i * 13 + k * 7) % 29) / 145)));
    });
}

// JSON with number arrays on one line (a few KB instead of one number per line).
function dumpJson(v: unknown, indent = ''): string {
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)) return JSON.stringify(v);
  const inner = indent + '  ';
  if (Array.isArray(v)) return `[\n${v.map((x) => inner + dumpJson(x, inner)).join(',\n')}\n${indent}]`;
  if (v !== null && typeof v === 'object') {
    const items = Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${dumpJson(x, inner)}`);
    return `{\n${items.join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(v);
}

const base64 = (bytes: Uint8Array): string => {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
};

describe.each(WRITTEN)('adapter written for PEFT: $model', ({ model: modelName, options }) => {
  it('saveAdapter() and its outputs equal the committed files that peft_adapters.py --check verified', async () => {
    const gpu = await getGpu();
    const model = await loadModel(`/tests/fixtures/${modelName}/onnx/model_opset17.onnx`, { device: gpu });
    const peft = getPeftModel(model, new IA3Config(options));
    const state = peft.stateDict();
    knownValues(state);
    peft.loadStateDict(state);
    const files = peft.saveAdapter();
    // Inputs: those of the PEFT fixture of the same model.
    const inputs = await fetchJson<Outputs>(`/tests/fixtures/peft/${modelName}/outputs.json`);
    const cases: Case[] = [];
    for (const c of inputs.cases) {
      const logits = (await peft.run(feedsOf(c))).logits!;
      // 9 significant digits identify a float32 exactly, in fewer characters than its float64 expansion.
      const data = Array.from(logits.data as Float32Array, (v) => Number(v.toPrecision(9)));
      cases.push({ name: c.name, inputs: c.inputs, outputs: { logits: { dtype: 'float32', dims: logits.dims, data } } });
    }
    await model.dispose();

    const dir = `tests/fixtures/peft/written/${modelName}`;
    if (UPDATE) {
      const outputs = {
        _generated: `Written by tests/gpu/interop.test.ts (VITE_UPDATE_PEFT_FIXTURES=1) on ${await describeAdapter()}; checked by tests/fixtures/peft_adapters.py --check`,
        model: modelName,
        config: options,
        cases,
      };
      await commands.writeFile(`${dir}/adapter_model.safetensors`, base64(files['adapter_model.safetensors']), 'base64');
      await commands.writeFile(`${dir}/adapter_config.json`, files['adapter_config.json'], 'utf-8');
      await commands.writeFile(`${dir}/outputs.json`, dumpJson(outputs) + '\n', 'utf-8');
    }
    const committedWeights = await fetchOk(`/${dir}/adapter_model.safetensors`);
    const committedConfig = await fetchOk(`/${dir}/adapter_config.json`);
    const committedOutputs = await fetchOk(`/${dir}/outputs.json`);
    expect(committedWeights && committedConfig && committedOutputs, `${dir} is missing: ${REGENERATE}`).toBeTruthy();
    const weights = new Uint8Array(await committedWeights!.arrayBuffer());
    expect(Array.from(files['adapter_model.safetensors']), `${dir}/adapter_model.safetensors differs from saveAdapter(): ${REGENERATE}`).toEqual(Array.from(weights));
    expect(files['adapter_config.json'], `${dir}/adapter_config.json differs from saveAdapter(): ${REGENERATE}`).toBe(await committedConfig!.text());
    const committed = (await committedOutputs!.json()) as { model: string; cases: Case[] };
    expect(committed.model).toBe(modelName);
    expect(committed.cases.map((c) => c.name)).toEqual(cases.map((c) => c.name));
    committed.cases.forEach((c, i) => {
      expect(c.inputs).toEqual(cases[i]!.inputs);
      const r = closeness(cases[i]!.outputs.logits.data, c.outputs.logits.data, { rtol: 1e-3, atol: 5e-5 });
      expect(r.worst, `${dir}/outputs.json case ${c.name}, element ${r.at}, differs from this run: ${REGENERATE}`).toBeLessThanOrEqual(1);
    });
  });
});
