// loadOnnx from every source a user has: a folder URL (HF layout), an .onnx URL, bytes, a File,
// and a picked folder's files; external data found by location; typed errors when files are missing.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { FormatError, InputError } from '../../src/errors.js';
import { loadOnnx } from '../../src/onnx/load.js';

const modelBytes = (m: string, f = 'model.onnx') => new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`));
const configBytes = (m: string) => new Uint8Array(readFileSync(`tests/fixtures/${m}/config.json`));

/** A decoded ModelProto, typed as protobufjs fills it: every repeated field an array, scalars defaulted. */
interface PNode extends onnx.INodeProto {
  name: string;
  opType: string;
  domain: string;
  input: string[];
  output: string[];
}
interface PTensor extends onnx.ITensorProto {
  name: string;
  dataType: number;
  rawData: Uint8Array;
}
interface PModel extends onnx.ModelProto {
  graph: Omit<onnx.GraphProto, 'node' | 'initializer'> & { node: PNode[]; initializer: PTensor[] };
}

/** The gpt2 fixture with its large initializers moved to an external file named `location`. */
function externalGpt2(location: string): { model: Uint8Array<ArrayBuffer>; data: Uint8Array<ArrayBuffer>; first: string } {
  const p = onnx.ModelProto.decode(modelBytes('gpt2')) as PModel;
  const parts: Uint8Array[] = [];
  let offset = 0;
  let first = '';
  for (const t of p.graph!.initializer) {
    if (t.rawData.length < 1024) continue;
    first ||= t.name;
    parts.push(t.rawData.slice());
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(t.rawData.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    offset += t.rawData.length;
    delete (t as { rawData?: Uint8Array }).rawData;
  }
  const data = new Uint8Array(offset);
  parts.reduce((at, c) => (data.set(c, at), at + c.length), 0);
  return { model: new Uint8Array(onnx.ModelProto.encode(p).finish()), data, first };
}

/** A fetch over an in-memory site; records the URLs asked for. */
function site(files: Record<string, Uint8Array<ArrayBuffer>>) {
  const asked: string[] = [];
  const fetch = async (url: string): Promise<Response> => {
    asked.push(url);
    const b = files[url];
    return b ? new Response(b) : new Response(null, { status: 404 });
  };
  return { fetch, asked };
}

function fileAt(path: string, bytes: Uint8Array<ArrayBuffer>): File {
  const f = new File([bytes], path.split('/').pop()!);
  Object.defineProperty(f, 'webkitRelativePath', { value: path });
  return f;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  expect.fail('expected a rejection');
}

describe('URLs', () => {
  const ext = externalGpt2('model.onnx_data');
  const base = 'https://models.test/org/gpt2';

  it('loads a Hugging Face folder: config.json, onnx/model.onnx and its external data', async () => {
    const { fetch, asked } = site({
      [`${base}/config.json`]: configBytes('gpt2'),
      [`${base}/onnx/model.onnx`]: ext.model,
      [`${base}/onnx/model.onnx_data`]: ext.data,
    });
    const r = await loadOnnx(`${base}/`, { fetch });
    expect(r.config?.model_type).toBe('gpt2');
    expect(r.modelPath).toBe('onnx/model.onnx');
    expect([...r.paths].sort()).toEqual(['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data']);
    expect(asked).toEqual([`${base}/config.json`, `${base}/onnx/model.onnx`, `${base}/onnx/model.onnx_data`]);
    const w = r.graph.initializers.get(ext.first)!;
    expect(w.external?.location).toBe('model.onnx_data');
    expect(w.data!.length).toBe(w.dims.reduce((a, b) => a * b, 1));
    // The files are not kept: reading them again fetches them again.
    const again = await r.reread();
    expect(again.bytes).toEqual(ext.model);
    expect(again.externalData['model.onnx_data']).toEqual(ext.data);
    expect(asked.slice(3)).toEqual([`${base}/onnx/model.onnx`, `${base}/onnx/model.onnx_data`]);
  });

  it('falls back to model.onnx at the root and works without config.json', async () => {
    const { fetch } = site({ [`${base}/model.onnx`]: modelBytes('bert') });
    const r = await loadOnnx(base, { fetch });
    expect(r.config).toBeUndefined();
    expect(r.modelPath).toBe('model.onnx');
    expect(r.graph.inputs.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
  });

  it('loads an .onnx URL (keeping its query string) with the config one level up', async () => {
    const { fetch, asked } = site({
      [`${base}/onnx/model.onnx?download=1`]: ext.model,
      [`${base}/onnx/model.onnx_data?download=1`]: ext.data,
      [`${base}/config.json?download=1`]: configBytes('gpt2'),
    });
    const r = await loadOnnx(`${base}/onnx/model.onnx?download=1`, { fetch });
    expect(asked).toContain(`${base}/onnx/model.onnx_data?download=1`);
    expect(r.config?.model_type).toBe('gpt2');
    expect(r.modelPath).toBe('onnx/model.onnx');
  });

  it('resolves relative URLs against the model file', async () => {
    const { fetch, asked } = site({ 'onnx/model.onnx': ext.model, 'onnx/model.onnx_data': ext.data, 'config.json': configBytes('gpt2') });
    const r = await loadOnnx('onnx/model.onnx', { fetch });
    expect(asked).toEqual(['onnx/model.onnx', 'config.json', 'onnx/model.onnx_data']);
    expect(r.config?.model_type).toBe('gpt2');
    const bare = site({ 'model.onnx': ext.model, 'model.onnx_data': ext.data });
    await loadOnnx('model.onnx', { fetch: bare.fetch });
    expect(bare.asked).toEqual(['model.onnx', 'model.onnx_data']);
  });

  it('prefers options.externalData over fetching', async () => {
    const { fetch, asked } = site({ [`${base}/onnx/model.onnx`]: ext.model });
    const r = await loadOnnx(`${base}/onnx/model.onnx`, { fetch, externalData: { 'model.onnx_data': ext.data.buffer as ArrayBuffer } });
    expect(asked).not.toContain(`${base}/onnx/model.onnx_data`);
    expect(r.graph.initializers.get(ext.first)!.data!.length).toBeGreaterThan(0);
  });

  it('names the missing external file and a tensor stored in it', async () => {
    const { fetch } = site({ [`${base}/onnx/model.onnx`]: ext.model });
    const e = await rejection(loadOnnx(base, { fetch }));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain(`tensor '${ext.first}'`);
    expect(e.message).toContain("external file 'model.onnx_data'");
  });

  it('reports a folder without a model, HTTP errors and a broken config.json', async () => {
    const empty = await rejection(loadOnnx(base, { fetch: site({}).fetch }));
    expect(empty).toBeInstanceOf(InputError);
    expect(empty.message).toContain(`${base}/onnx/model.onnx`);
    const denied = await rejection(loadOnnx(`${base}/onnx/model.onnx`, { fetch: async () => new Response(null, { status: 403 }) }));
    expect(denied.message).toContain('HTTP 403');
    const { fetch } = site({ [`${base}/config.json`]: new TextEncoder().encode('{ nope'), [`${base}/onnx/model.onnx`]: modelBytes('bert') });
    const bad = await rejection(loadOnnx(base, { fetch }));
    expect(bad).toBeInstanceOf(FormatError);
    expect(bad.message).toMatch(/^config\.json: not valid JSON/);
  });
});

describe('bytes and files', () => {
  it('loads an ArrayBuffer, a Uint8Array and a single File', async () => {
    const b = modelBytes('distilbert');
    for (const source of [b, b.buffer as ArrayBuffer, new File([b], 'distil.onnx')]) {
      const r = await loadOnnx(source);
      expect(r.graph.outputs.map((o) => o.name)).toEqual(['logits']);
      expect(r.config).toBeUndefined();
    }
    const named = await loadOnnx(new File([b], 'distil.onnx'));
    expect(named.modelPath).toBe('distil.onnx');
    const e = await rejection(loadOnnx(modelBytes('bert').slice(0, 5000)));
    expect(e).toBeInstanceOf(FormatError);
  });

  it('loads a picked folder by relative path, with config and external data', async () => {
    const ext = externalGpt2('model.onnx_data');
    const files = [
      fileAt('gpt2/config.json', configBytes('gpt2')),
      fileAt('gpt2/tokenizer.json', new TextEncoder().encode('{}')),
      fileAt('gpt2/onnx/model.onnx', ext.model),
      fileAt('gpt2/onnx/model_opset17.onnx', modelBytes('gpt2', 'model_opset17.onnx')),
      fileAt('gpt2/onnx/model.onnx_data', ext.data),
    ];
    const r = await loadOnnx(files);
    expect(r.modelPath).toBe('onnx/model.onnx');
    expect(r.config?.model_type).toBe('gpt2');
    expect([...r.paths].sort()).toEqual(['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data']);
    expect(r.graph.opsets.get('')).toBe(14);
    // options.modelFile picks another model of the folder.
    const r17 = await loadOnnx(files, { modelFile: 'onnx/model_opset17.onnx' });
    expect(r17.graph.opsets.get('')).toBe(17);
    // A FileList-like object works too (what <input webkitdirectory> gives).
    const list = Object.assign(Object.create(null), { length: files.length, item: (i: number) => files[i] }, files);
    expect((await loadOnnx(list as unknown as FileList)).modelPath).toBe('onnx/model.onnx');
  });

  it('matches files by name when there are no relative paths, and names what is missing', async () => {
    const ext = externalGpt2('weights/model.onnx_data');
    const r = await loadOnnx([new File([ext.model], 'model.onnx'), new File([ext.data], 'model.onnx_data')]);
    expect(r.graph.initializers.get(ext.first)!.external?.location).toBe('weights/model.onnx_data');
    const given = await loadOnnx(ext.model, { externalData: { 'model.onnx_data': new Blob([ext.data]) } });
    expect(given.paths).toContain('weights/model.onnx_data');
    expect((await given.reread()).externalData['weights/model.onnx_data']!.length).toBe(ext.data.length);
    const e = await rejection(loadOnnx([new File([ext.model], 'model.onnx')]));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain("'weights/model.onnx_data'");
    const none = await rejection(loadOnnx([new File([configBytes('gpt2')], 'config.json')]));
    expect(none.message).toContain('no ONNX model among the 1 files');
    const two = await rejection(loadOnnx([new File([ext.model], 'a.onnx'), new File([ext.model], 'b.onnx')]));
    expect(two.message).toContain('options.modelFile');
  });
});
