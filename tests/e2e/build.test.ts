// The package as a user gets it: `npm run build` produces the ES module and its .d.ts, the module
// exports the public API, and createDevice() where WebGPU is missing (Node) fails with a typed
// error that says what to do. The bundle holds nothing a browser cannot import (no Node module
// import a bundler would follow, no worker) and, in plain Node with Dawn's entry point, loads a
// model from a path and runs it.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, expect, it } from 'vitest';
import { dawnEnv } from '../util/dawn-env.js';

const root = resolve(import.meta.dirname, '../..');

beforeAll(() => {
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'pipe' });
}, 300_000);

it('builds an ES module with declarations, without bundling onnxruntime-web', () => {
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { exports: Record<string, { import: string; types: string }> };
  const entry = pkg.exports['.']!;
  expect(existsSync(resolve(root, entry.import))).toBe(true);
  expect(existsSync(resolve(root, entry.types))).toBe(true);
  const code = readFileSync(resolve(root, entry.import), 'utf8');
  expect(code).not.toMatch(/InferenceSession|from ['"]onnxruntime-web/);
  expect(code).toMatch(/@compute/); // the WGSL kernels are inlined
  // Node built-ins only through the run-time import of src/runtime.ts (a variable specifier that
  // bundlers leave alone), never a static or literal import; no workers.
  expect(code).not.toMatch(/^import\s|\bimport\s*\(\s*["'`]|\brequire\s*\(\s*["'`]node:/m);
  expect(code).not.toMatch(/new Worker\b|importScripts\s*\(/);
  const types = readFileSync(resolve(root, entry.types), 'utf8');
  for (const name of ['createDevice', 'loadModel', 'getPeftModel', 'IA3Config', 'Trainer']) expect(types).toMatch(name);
});

it('exports the public API; createDevice without WebGPU throws WebGPUUnavailableError', async () => {
  const lib = (await import(pathToFileURL(resolve(root, 'dist/ia3-webgpu.js')).href)) as Record<string, unknown>;
  for (const name of ['createDevice', 'loadModel', 'Model', 'getPeftModel', 'PeftModel', 'IA3Config', 'Trainer', 'WebGPUUnavailableError', 'UnsupportedOpError', 'FormatError']) {
    expect(lib[name], name).toBeTypeOf('function');
  }
  const createDevice = lib.createDevice as () => Promise<unknown>;
  const err = await createDevice().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(lib.WebGPUUnavailableError as new () => Error);
  expect((err as Error).message).toMatch(/navigator\.gpu is undefined/);
});

it('refuses an adapter that is missing or too small, saying why', async () => {
  const { createDevice, WebGPUUnavailableError } = (await import(pathToFileURL(resolve(root, 'dist/ia3-webgpu.js')).href)) as {
    createDevice: (o: { gpu: unknown }) => Promise<unknown>;
    WebGPUUnavailableError: new () => Error;
  };
  const noAdapter = await createDevice({ gpu: { requestAdapter: async () => null } }).catch((e: unknown) => e);
  expect(noAdapter).toBeInstanceOf(WebGPUUnavailableError);
  expect((noAdapter as Error).message).toMatch(/no GPU adapter was granted/);
  const small = { limits: { maxStorageBufferBindingSize: 1 << 20, maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxStorageBuffersPerShaderStage: 8 }, features: new Set(), info: {} };
  const tooSmall = await createDevice({ gpu: { requestAdapter: async () => small } }).catch((e: unknown) => e);
  expect(tooSmall).toBeInstanceOf(WebGPUUnavailableError);
  expect((tooSmall as Error).message).toMatch(/maxStorageBufferBindingSize = 1048576, the toolkit needs 134217728/);
});

it('runs in plain Node on Dawn: a model from a folder path, forward equal to PyTorch', () => {
  type Ref = { cases: { name: string; inputs: Record<string, { dims: number[]; data: number[] }>; outputs: { logits: { dims: number[]; data: number[] } } }[] };
  const ref = JSON.parse(readFileSync(resolve(root, 'tests/fixtures/gpt2/reference.json'), 'utf8')) as Ref;
  const c = ref.cases.find((k) => k.name === 'b1_s5')!;
  const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, [v.data]]));
  // The user's script: the built module, the webgpu package's entry point, no globals installed.
  const script = `
    import { create } from 'webgpu';
    import { createDevice, adapterName, loadModel } from ${JSON.stringify(pathToFileURL(resolve(root, 'dist/ia3-webgpu.js')).href)};
    const gpu = await createDevice({ gpu: create([]) });
    const model = await loadModel('tests/fixtures/gpt2', { device: gpu });
    const { logits } = await model.run(${JSON.stringify(feeds)});
    console.log(JSON.stringify({ adapter: adapterName(gpu.adapterInfo), dims: logits.dims, data: Array.from(logits.data) }));
    gpu.destroy();
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { ...process.env, ...dawnEnv() }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const got = JSON.parse(out.trim().split('\n').at(-1)!) as { adapter: string; dims: number[]; data: number[] };
  console.log(`[dist in node] adapter: ${got.adapter}`);
  expect(got.dims).toEqual(c.outputs.logits.dims);
  const want = c.outputs.logits.data;
  const worst = Math.max(...got.data.map((v, i) => Math.abs(v - want[i]!) / (2e-4 + 2e-3 * Math.abs(want[i]!))));
  expect(worst, 'logits vs PyTorch float64 (rtol 2e-3, atol 2e-4)').toBeLessThanOrEqual(1);
});
