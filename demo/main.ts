// The demo page: load a frozen transformer (a shipped one, or the user's own ONNX folder), show
// what the toolkit found in it, run it forward on WebGPU and check the logits against
// onnxruntime-web on the same file. It imports the library only through its public entry point.
import * as ort from 'onnxruntime-web';
import { adapterName, createDevice, IA3Error, loadModel, type GpuContext, type Model, type TensorData } from 'ia3-webgpu';
import bertUrl from '../tests/fixtures/bert/onnx/model_opset17.onnx?url';
import distilbertUrl from '../tests/fixtures/distilbert/onnx/model_opset17.onnx?url';
import gpt2Url from '../tests/fixtures/gpt2/onnx/model_opset17.onnx?url';
import llamaUrl from '../tests/fixtures/llama/onnx/model_opset17.onnx?url';

const SHIPPED: Record<string, string> = {
  'GPT-2 (tiny, 2 layers)': gpt2Url,
  'Llama (tiny, GQA, rotary)': llamaUrl,
  'BERT (tiny, classifier)': bertUrl,
  'DistilBERT (tiny, classifier)': distilbertUrl,
};

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
ort.env.wasm.numThreads = 1;

let gpu: GpuContext | undefined;
let model: Model | undefined;
let modelBytes: Uint8Array | undefined;
let runs = 0;

function showError(where: HTMLElement, e: unknown): void {
  where.className = 'error';
  where.textContent = e instanceof IA3Error ? `${e.name}: ${e.message}` : String(e instanceof Error ? e.message : e);
}

async function load(source: string | File[], label: string): Promise<void> {
  const status = $('status');
  status.className = '';
  status.textContent = `loading ${label}…`;
  $<HTMLButtonElement>('run').disabled = true;
  try {
    if (!gpu) throw new Error('no WebGPU device');
    await model?.dispose();
    model = undefined;
    if (typeof source === 'string') {
      modelBytes = new Uint8Array(await (await fetch(source)).arrayBuffer());
      model = await loadModel(modelBytes, { device: gpu });
    } else {
      model = await loadModel(source, { device: gpu });
      const onnxFile = source.find((f) => f.name.endsWith('.onnx'));
      modelBytes = onnxFile ? new Uint8Array(await onnxFile.arrayBuffer()) : undefined;
    }
    status.className = 'ok';
    status.textContent = `${label}: ${model.modules.length} linear modules, model type ${model.modelType ?? 'unknown'}`;
    $('summary').textContent = model.describe();
    $<HTMLButtonElement>('run').disabled = false;
  } catch (e) {
    showError(status, e);
  }
}

function feedsFor(m: Model, batch: number, seq: number): Record<string, TensorData> {
  const feeds: Record<string, TensorData> = {};
  const vocab = Number((m.config?.vocab_size as number | undefined) ?? 100);
  for (const name of m.inputNames) {
    const data = new BigInt64Array(batch * seq);
    for (let i = 0; i < data.length; i++) {
      const t = i % seq;
      if (name === 'input_ids') data[i] = BigInt(1 + ((i * 7919) % Math.max(2, Math.min(vocab, 100) - 1)));
      else if (name === 'position_ids') data[i] = BigInt(t);
      else if (name === 'token_type_ids') data[i] = 0n;
      else data[i] = t < seq - Math.floor(i / seq) ? 1n : 0n; // right padding, longer in later rows
    }
    feeds[name] = { data, dims: [batch, seq] };
  }
  return feeds;
}

async function runForward(): Promise<void> {
  if (!model) return;
  const batch = Number($<HTMLInputElement>('batch').value);
  const seq = Number($<HTMLInputElement>('seq').value);
  const row = document.createElement('tr');
  $('results').querySelector('tbody')!.prepend(row);
  row.innerHTML = `<td>${++runs}</td><td>${batch}×${seq}</td><td colspan="3">running…</td>`;
  try {
    const feeds = feedsFor(model, batch, seq);
    const t0 = performance.now();
    const out = await model.run(feeds);
    const t1 = performance.now();
    const name = model.outputNames[0]!;
    const ours = out[name]!.data as Float32Array;
    let ortCell = 'n/a (own model without bytes)';
    let diffCell = '';
    if (modelBytes) {
      const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['wasm'] });
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor('int64', v.data as BigInt64Array, v.dims);
      const t2 = performance.now();
      const ref = (await session.run(ortFeeds))[name]!.data as Float32Array;
      const t3 = performance.now();
      await session.release();
      let maxDiff = 0;
      for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i]! - ours[i]!));
      ortCell = `${(t3 - t2).toFixed(1)} ms`;
      diffCell = maxDiff.toExponential(2);
    }
    row.innerHTML = `<td>${runs}</td><td>${batch}×${seq} → [${out[name]!.dims.join('×')}]</td><td>${(t1 - t0).toFixed(1)} ms</td><td>${ortCell}</td><td>${diffCell}</td>`;
  } catch (e) {
    const cell = row.querySelector('td:last-child') as HTMLElement;
    showError(cell, e);
  }
}

async function main(): Promise<void> {
  try {
    gpu = await createDevice();
    $('adapter').textContent = `${adapterName(gpu.adapterInfo)}${gpu.adapterInfo.isSoftware ? ' (software adapter: correct, but slow)' : ''}`;
  } catch (e) {
    showError($('adapter'), e);
    return;
  }
  const select = $<HTMLSelectElement>('fixture');
  for (const name of Object.keys(SHIPPED)) select.add(new Option(name, name));
  select.onchange = () => void load(SHIPPED[select.value]!, select.value);
  $<HTMLInputElement>('files').onchange = (ev) => {
    const files = [...((ev.target as HTMLInputElement).files ?? [])];
    if (files.length) void load(files, files[0]!.webkitRelativePath.split('/')[0] || files[0]!.name);
  };
  $<HTMLButtonElement>('run').onclick = () => void runForward();
  await load(SHIPPED[select.value]!, select.value);
}

void main();
