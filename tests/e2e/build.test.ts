// The package as a user gets it: `npm run build` produces the ES module and its .d.ts, the module
// exports the public API, and createDevice() where WebGPU is missing (Node) fails with a typed
// error that says what to do.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, expect, it } from 'vitest';

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
