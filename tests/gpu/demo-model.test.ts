// The demo's pretrained models (demo/public/models/sotu-gpt2/, written by demo/tools/pretrain.py,
// and the spam filter's mail-gpt2/, by demo/tools/pretrain-mail.py) load in the toolkit from their
// Hugging Face folders and compute, on WebGPU, the float32 logits PyTorch computed for the same 12
// tokens: the causal LM and the sequence-classification exports.
import { describe, expect, it } from 'vitest';
import { loadModel, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { closeness } from '../util/tensors.js';

const BASE = '/demo/public/models/sotu-gpt2/';

interface Reference {
  input: { input_ids: number[][]; attention_mask: number[][] };
  logits: {
    model?: { file: string; dims: number[]; encoding: string; data: string; argmax: number[] };
    model_seqcls: { file: string; dims: number[]; data: number[] };
  };
}

async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

/** reference.json stores the [1, 12, vocab] logits as little-endian float32 bytes in base64. */
function float32FromBase64(b64: string): Float32Array {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(4 * i, true));
}

function feedsOf(ref: Reference): Record<string, TensorData> {
  const [ids, mask] = [ref.input.input_ids, ref.input.attention_mask];
  const dims = [ids.length, ids[0]!.length];
  return {
    input_ids: { data: BigInt64Array.from(ids.flat().map(BigInt)), dims },
    attention_mask: { data: BigInt64Array.from(mask.flat().map(BigInt)), dims },
  };
}

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { worst, at, maxAbs } = closeness(actual, expected, { rtol: 2e-3, atol: 1e-3 });
  expect(worst, `${what}: element ${at} is ${actual[at]} vs ${expected[at]} (max abs err ${maxAbs.toExponential(2)})`).toBeLessThanOrEqual(1);
  console.log(`[demo-model] ${what}: max |WebGPU - PyTorch| = ${maxAbs.toExponential(2)} over ${expected.length} values`);
}

describe('demo model sotu-gpt2', () => {
  it('causal LM: config, modules and logits equal PyTorch', async () => {
    const ref = await fetchJson<Reference>(`${BASE}reference.json`);
    const want = ref.logits.model!;
    expect(want.encoding).toBe('float32-le-base64');
    const model = await loadModel(`${BASE}${want.file}`, { device: await getGpu() });
    try {
      expect(model.modelType).toBe('gpt2');
      expect(model.config?.['vocab_size']).toBe(want.dims[2]);
      const modules = model.moduleNames();
      for (const m of ['transformer.h.0.attn.c_attn', 'transformer.h.3.mlp.c_proj', 'lm_head']) expect(modules).toContain(m);
      const logits = (await model.run(feedsOf(ref))).logits!;
      expect(logits.dims).toEqual(want.dims);
      const got = logits.data as Float32Array;
      const expected = float32FromBase64(want.data);
      expectNear(got, expected, 'model.onnx logits');
      // The next-token predictions agree as well (the scores are well separated at the top).
      const vocab = want.dims[2]!;
      const argmax = want.argmax.map((_, t) => {
        let best = 0;
        for (let v = 1; v < vocab; v++) if (got[t * vocab + v]! > got[t * vocab + best]!) best = v;
        return best;
      });
      expect(argmax).toEqual(want.argmax);
    } finally {
      await model.dispose();
    }
  }, 300_000);

});

describe.each([['sotu-gpt2', BASE], ['mail-gpt2', '/demo/public/models/mail-gpt2/']])('demo model %s', (_, base) => {
  it('sequence classification: per-position score logits equal PyTorch', async () => {
    const ref = await fetchJson<Reference>(`${base}reference.json`);
    const want = ref.logits.model_seqcls;
    const model = await loadModel(`${base}${want.file}`, { device: await getGpu() });
    try {
      expect(model.moduleNames()).toContain('score');
      expect(model.config?.['id2label']).toEqual({ 0: 'ham', 1: 'spam' });
      const logits = (await model.run(feedsOf(ref))).logits!;
      expect(logits.dims).toEqual(want.dims);
      expectNear(logits.data as Float32Array, want.data, 'model_seqcls.onnx logits');
    } finally {
      await model.dispose();
    }
  }, 300_000);
});
