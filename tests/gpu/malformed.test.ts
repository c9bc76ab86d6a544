// Malformed adapters, in the page, through the public API: every case of the corpus
// (tests/util/malformed.ts: broken safetensors files and configs built from the GPT-2 fixture's
// PEFT adapter) rejects with its typed error and a message naming the tensor, key or byte offset,
// from `peft.loadAdapter` and from `loadPeftModel`; a failed load leaves the loaded adapters as
// they were (same state, same outputs); after the whole corpus a valid load and run still work.
import { expect, it } from 'vitest';
import { FormatError, IA3Error, InputError, loadModel, loadPeftModel, type AdapterSource, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { malformedCorpus, type MalformedCase } from '../util/malformed.js';
import { closeness } from '../util/tensors.js';

interface Json {
  dims: number[];
  data: number[];
}
interface Outputs {
  cases: { name: string; inputs: Record<string, Json>; outputs: { logits: Json } }[];
}

const DIR = '/tests/fixtures/peft/gpt2';
const MODEL = '/tests/fixtures/gpt2/onnx/model_opset17.onnx';

async function fixture() {
  const weights = new Uint8Array(await (await fetch(`${DIR}/adapter_model.safetensors`)).arrayBuffer());
  const config = await (await fetch(`${DIR}/adapter_config.json`)).text();
  const ref = (await (await fetch(`${DIR}/outputs.json`)).json()) as Outputs;
  const c = ref.cases[0]!;
  const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));
  return { weights, config, feeds, expected: c.outputs.logits.data, files: { 'adapter_model.safetensors': weights, 'adapter_config.json': config } };
}

/** '' when `err` is what the case expects, else what is wrong with it. */
function mismatch(c: MalformedCase, err: unknown): string {
  if (err === undefined) return 'resolved instead of rejecting';
  if (!(err instanceof c.error) || !(err instanceof IA3Error)) return `threw ${(err as Error)?.name ?? typeof err} (${(err as Error)?.message}), expected ${c.error.name}`;
  if (!c.message.test(err.message)) return `message ${JSON.stringify(err.message)} does not match ${c.message}`;
  if (c.at !== undefined && (err as FormatError).byteOffset !== c.at) return `byte offset ${(err as FormatError).byteOffset}, expected ${c.at} (${err.message})`;
  return '';
}

const logitsOf = async (run: Promise<Record<string, TensorData>>): Promise<number[]> => Array.from((await run).logits!.data as Float32Array);

it('rejects every malformed adapter with its typed error and changes nothing', async () => {
  const gpu = await getGpu();
  const f = await fixture();
  const model = await loadModel(MODEL, { device: gpu });
  const peft = await loadPeftModel(model, f.files);
  const before = await logitsOf(peft.run(f.feeds));
  expect(closeness(before, f.expected, { rtol: 2e-3, atol: 1e-4 }).worst).toBeLessThanOrEqual(1);
  const state = peft.stateDict();

  const corpus = malformedCorpus({ weights: f.weights, config: f.config });
  expect(new Set(corpus.map((c) => c.name)).size).toBe(corpus.length);
  const problems: string[] = [];
  for (const c of corpus) {
    const files = c.files as unknown as AdapterSource;
    const viaLoad = await peft.loadAdapter(files, 'candidate').then(() => undefined, (e: unknown) => e);
    // A load that wrongly succeeds is undone, so that one failure does not cascade into the next cases.
    if (viaLoad === undefined) await peft.deleteAdapter('candidate');
    const viaModel = await loadPeftModel(model, files, 'probe').then(() => undefined, (e: unknown) => e);
    for (const [how, err] of [['loadAdapter', viaLoad], ['loadPeftModel', viaModel]] as const) {
      const wrong = mismatch(c, err);
      if (wrong) problems.push(`${c.name} (${how}): ${wrong}`);
    }
    // Nothing changed: the same adapters, active ones, values and outputs.
    expect([peft.listAdapters(), peft.activeAdapters], c.name).toEqual([['default'], ['default']]);
    expect(peft.stateDict(), c.name).toEqual(state);
    expect(await logitsOf(peft.run(f.feeds)), c.name).toEqual(before);
  }
  expect(problems).toEqual([]);

  // The page still works: a valid load, under the name every failed load used, runs and agrees.
  await peft.loadAdapter(f.files, 'candidate');
  peft.setAdapter('candidate');
  expect(await logitsOf(peft.run(f.feeds))).toEqual(before);
  const fresh = await loadPeftModel(model, f.files, 'fresh');
  expect(await logitsOf(fresh.run(f.feeds))).toEqual(before);
  console.log(`[malformed] ${corpus.length} cases, each rejected by loadAdapter and loadPeftModel with its typed error`);
  await model.dispose();
});

it('reads Files: a config over the size limit is refused before it is read; duplicate files are refused', async () => {
  const gpu = await getGpu();
  const f = await fixture();
  const model = await loadModel(MODEL, { device: gpu });
  const weightsFile = new File([f.weights.slice()], 'adapter_model.safetensors');
  const configFile = new File([f.config], 'adapter_config.json');
  const peft = await loadPeftModel(model, [weightsFile, configFile]);
  expect(closeness(await logitsOf(peft.run(f.feeds)), f.expected, { rtol: 2e-3, atol: 1e-4 }).worst).toBeLessThanOrEqual(1);

  const big = new File([f.config, ' '.repeat(1_000_001)], 'adapter_config.json');
  const err = await peft.loadAdapter([weightsFile, big], 'big').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FormatError);
  expect((err as Error).message).toMatch(/adapter_config\.json: \d+ bytes, larger than the 1000000-byte limit/);
  const twice = await peft.loadAdapter([weightsFile, configFile, configFile], 'twice').catch((e: unknown) => e);
  expect(twice).toBeInstanceOf(InputError);
  expect((twice as Error).message).toMatch(/adapter_config\.json twice/);
  const wrongType = await peft.loadAdapter({ 'adapter_model.safetensors': [1, 2, 3], 'adapter_config.json': f.config } as unknown as AdapterSource, 'wrong').catch((e: unknown) => e);
  expect(wrongType).toBeInstanceOf(InputError);
  expect((wrongType as Error).message).toMatch(/adapter_model\.safetensors must be a Uint8Array, an ArrayBuffer or a Blob, got Array/);
  expect(peft.listAdapters()).toEqual(['default']);
  await model.dispose();
});

it('accepts what PEFT accepts: keys without the base_model.model. prefix, unknown config fields', async () => {
  const gpu = await getGpu();
  const f = await fixture();
  const model = await loadModel(MODEL, { device: gpu });
  const peft = await loadPeftModel(model, f.files);
  const before = await logitsOf(peft.run(f.feeds));

  // Keys without the prefix (PEFT's loader adds it back).
  const { readSafetensors, writeSafetensors } = await import('../../src/io/safetensors.js');
  const stripped = new Map([...readSafetensors(f.weights).tensors].map(([k, t]) => [k.replace(/^base_model\.model\./, ''), { dtype: t.dtype, shape: t.shape, data: t.data.slice() }]));
  await peft.loadAdapter({ 'adapter_model.safetensors': writeSafetensors(stripped, { format: 'pt' }), 'adapter_config.json': f.config }, 'unprefixed');
  peft.setAdapter('unprefixed');
  expect(await logitsOf(peft.run(f.feeds))).toEqual(before);

  // Fields from a newer PEFT are ignored (PEFT warns and drops them); a "__proto__" key is just one
  // of them and pollutes nothing.
  const config = JSON.stringify({ ...JSON.parse(f.config), future_option: [1, 2] });
  const withProto = config.replace('"future_option"', '"__proto__":{"polluted":true},"future_option"');
  expect(withProto).toContain('"__proto__"');
  await peft.loadAdapter({ 'adapter_model.safetensors': f.weights, 'adapter_config.json': withProto }, 'newer');
  expect(peft.peftConfig.newer!.unknownFields).toEqual(['__proto__', 'future_option']);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  peft.setAdapter('newer');
  expect(await logitsOf(peft.run(f.feeds))).toEqual(before);
  await model.dispose();
});
