// loadOnnx from every source a user has: a folder URL (HF layout), an .onnx URL, bytes, a File,
// a picked folder's files, and in Node a file path; external data found by location; typed errors
// when files are missing.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FormatError, InputError } from '../../src/errors.js';
import { loadOnnx } from '../../src/onnx/load.js';
import { withExternalData } from '../util/onnx-build.js';

const modelBytes = (m: string, f = 'model.onnx') => new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`));
const configBytes = (m: string) => new Uint8Array(readFileSync(`tests/fixtures/${m}/config.json`));

/** The gpt2 fixture with its large initializers moved to an external file named `location`. */
const externalGpt2 = (location: string) => withExternalData(modelBytes('gpt2'), location);

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

  it('loads an .onnx URL with the config one level up, never forwarding its query string', async () => {
    const { fetch, asked } = site({
      [`${base}/onnx/model.onnx?token=secret`]: ext.model,
      [`${base}/onnx/model.onnx_data`]: ext.data,
      [`${base}/config.json`]: configBytes('gpt2'),
    });
    const r = await loadOnnx(`${base}/onnx/model.onnx?token=secret`, { fetch });
    expect(asked).toEqual([`${base}/onnx/model.onnx?token=secret`, `${base}/config.json`, `${base}/onnx/model.onnx_data`]);
    expect(r.config?.model_type).toBe('gpt2');
    expect(r.modelPath).toBe('onnx/model.onnx');
    // A folder URL's query string reaches none of the files the loader derives from it.
    const folder = site({ [`${base}/onnx/model.onnx`]: ext.model, [`${base}/onnx/model.onnx_data`]: ext.data });
    await loadOnnx(`${base}/?token=secret`, { fetch: folder.fetch });
    expect(folder.asked.filter((u) => u.includes('secret'))).toEqual([]);
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

describe('file paths (Node)', () => {
  // A Hugging Face folder on disk: config.json, onnx/model.onnx and its external data beside it.
  const ext = externalGpt2('model.onnx_data');
  const dir = mkdtempSync(join(tmpdir(), 'ia3-load-'));
  mkdirSync(join(dir, 'onnx'));
  writeFileSync(join(dir, 'config.json'), configBytes('gpt2'));
  writeFileSync(join(dir, 'onnx', 'model.onnx'), ext.model);
  writeFileSync(join(dir, 'onnx', 'model.onnx_data'), ext.data);
  writeFileSync(join(dir, 'onnx', 'weights.bin'), modelBytes('bert')); // a model file not named .onnx

  it('loads a folder path (with or without the trailing slash), its config and external data', async () => {
    for (const source of [dir, `${dir}/`]) {
      const r = await loadOnnx(source);
      expect(r.modelPath).toBe('onnx/model.onnx');
      expect(r.config?.model_type).toBe('gpt2');
      expect([...r.paths].sort()).toEqual(['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data']);
      expect(r.graph.initializers.get(ext.first)!.data!.length).toBeGreaterThan(0);
      // The file is not kept; reread() reads it from disk again.
      expect((await r.reread()).externalData['model.onnx_data']!.length).toBe(ext.data.length);
    }
  });

  it('loads an .onnx path, a file: URL, a relative path and a model file of any name', async () => {
    const byPath = await loadOnnx(join(dir, 'onnx', 'model.onnx'));
    expect(byPath.config?.model_type).toBe('gpt2'); // one level above onnx/
    expect((await byPath.reread()).externalData['model.onnx_data']!.length).toBe(ext.data.length);
    const byUrl = await loadOnnx(pathToFileURL(join(dir, 'onnx', 'model.onnx')));
    expect(byUrl.modelPath).toBe('onnx/model.onnx');
    const relative = await loadOnnx('tests/fixtures/bert/onnx/model_opset17.onnx');
    expect(relative.config?.model_type).toBe('bert');
    const named = await loadOnnx(join(dir, 'onnx', 'weights.bin'));
    expect(named.modelPath).toBe('onnx/weights.bin');
    expect(named.graph.inputs.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
  });

  it('names what is missing: the path, the model in a folder, the external file', async () => {
    const nowhere = await rejection(loadOnnx(join(dir, 'absent')));
    expect(nowhere).toBeInstanceOf(InputError);
    expect(nowhere.message).toBe(`no such file or folder: ${join(dir, 'absent')}`);
    const empty = mkdtempSync(join(tmpdir(), 'ia3-empty-'));
    const none = await rejection(loadOnnx(empty));
    expect(none.message).toBe(`no ONNX model found: tried ${empty}/onnx/model.onnx, ${empty}/model.onnx (no such file)`);
    const alone = mkdtempSync(join(tmpdir(), 'ia3-alone-'));
    writeFileSync(join(alone, 'model.onnx'), ext.model);
    const noData = await rejection(loadOnnx(alone));
    expect(noData).toBeInstanceOf(InputError);
    expect(noData.message).toContain(`tensor '${ext.first}' of model.onnx stores its data in the external file 'model.onnx_data', which was not found`);
  });

  it("refuses external data outside the model's folder before reading it", async () => {
    for (const location of ['../secret.bin', '/etc/hostname']) {
      const bad = externalGpt2(location);
      const d = mkdtempSync(join(tmpdir(), 'ia3-escape-'));
      writeFileSync(join(d, 'model.onnx'), bad.model);
      const e = await rejection(loadOnnx(d));
      expect(e).toBeInstanceOf(FormatError);
      expect(e.message).toContain(`tensor '${bad.first}': external data location '${location}'`);
    }
  });

  it('keeps URL semantics for http(s) URLs and whenever a fetch is injected', async () => {
    const { fetch, asked } = site({ [`${dir}/onnx/model.onnx`]: ext.model, [`${dir}/onnx/model.onnx_data`]: ext.data });
    await loadOnnx(`${dir}/onnx/model.onnx`, { fetch });
    expect(asked).toContain(`${dir}/onnx/model.onnx_data`);
    // Without an injected fetch, an http URL is fetched (Node's own fetch, from a local server).
    const server = createServer((req, res) => {
      if (req.url === '/m/model.onnx') res.end(modelBytes('bert'));
      else res.writeHead(404).end();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const { port } = server.address() as AddressInfo;
      expect((await loadOnnx(`http://127.0.0.1:${port}/m/`)).modelPath).toBe('model.onnx');
    } finally {
      server.close();
    }
  });
});

// Issue 11, finding 1: an untrusted file's external-data locations could name anything (`../`,
// absolute paths, other hosts, data: URLs). ONNX makes a location relative to the model's folder;
// every loader now refuses the rest with a FormatError naming the tensor and the location, before
// anything is fetched.
describe('external data stays inside the model folder', () => {
  const base = 'https://models.test/org/gpt2';
  const hostile = [
    '../../../../../secret.bin',
    '..\\..\\secret.bin',
    '%2e%2e/secret.bin',
    '%252e%252e%252fsecret.bin',
    'weights/../../secret.bin',
    'a/./../../secret.bin',
    '/etc/passwd',
    '\\\\server\\share\\w.bin',
    'C:\\weights\\w.bin',
    'c:w.bin',
    'http://other.example/w.bin',
    '//other.example/w.bin',
    'data:application/octet-stream;base64,AAAA',
    'blob:https://models.test/1234',
    'file:///etc/passwd',
    'w.bin:stream',
    '...',
    'weights/.. /x.bin',
    'w\u0000.bin',
    '',
  ];

  it.each(hostile)('refuses %j from a URL, a picked folder and bytes, fetching nothing', async (location) => {
    const ext = externalGpt2(location);
    const { fetch, asked } = site({ [`${base}/onnx/model.onnx?token=secret`]: ext.model });
    const sources: [string, () => Promise<unknown>][] = [
      ['url', () => loadOnnx(`${base}/onnx/model.onnx?token=secret`, { fetch })],
      ['bare url', () => loadOnnx('model.onnx', { fetch: site({ 'model.onnx': ext.model }).fetch })],
      ['files', () => loadOnnx([fileAt('m/onnx/model.onnx', ext.model), fileAt('m/onnx/secret.bin', ext.data), fileAt('secret.bin', ext.data)])],
      ['bytes', () => loadOnnx(ext.model, { externalData: { [location]: ext.data, 'secret.bin': ext.data } })],
    ];
    for (const [how, load] of sources) {
      const e = await rejection(load());
      expect(e, how).toBeInstanceOf(FormatError);
      if (location === '') expect(e.message, how).toContain('without a location');
      else expect(e.message, how).toContain(`tensor '${ext.first}': external data location '${location}'`);
    }
    // The model and its folder's config.json, nothing else.
    expect(asked).toEqual([`${base}/onnx/model.onnx?token=secret`, `${base}/config.json`]);
  });

  it('accepts locations inside the folder, percent-encoding each segment of the URL', async () => {
    for (const [location, url] of [
      ['./weights/model data.bin', `${base}/onnx/weights/model%20data.bin`],
      ['weights\\w#1?.bin', `${base}/onnx/weights/w%231%3F.bin`],
      ['a..b/w.bin', `${base}/onnx/a..b/w.bin`],
    ] as const) {
      const ext = externalGpt2(location);
      const { fetch, asked } = site({ [`${base}/onnx/model.onnx?token=secret`]: ext.model, [url]: ext.data });
      const r = await loadOnnx(`${base}/onnx/model.onnx?token=secret`, { fetch });
      expect(asked.at(-1)).toBe(url);
      expect(r.graph.initializers.get(ext.first)!.data!.length).toBeGreaterThan(0);
    }
  });
});
