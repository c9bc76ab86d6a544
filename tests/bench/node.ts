// The benchmark in Node: the same suites as the page, on Dawn (the `webgpu` package), started by
// `npm run bench -- --runtime node` (run.mjs bundles this file and runs it with the Vulkan
// environment of tests/util/dawn-env.ts). Usage: node <bundle> <result.json> [suites] [--quick]
import { dawn } from './node-shims.js';
import { readFile, writeFile } from 'node:fs/promises';
import { createDevice } from '../../src/gpu/device.js';
import { heapAfterGc } from './harness.js';
import { runSuites, type BenchResult } from './suites.js';

const [resultPath, suites = '', ...flags] = process.argv.slice(2);
if (!resultPath) throw new Error('usage: node.js <result.json> [suites] [--quick]');
const state: BenchResult = { runtime: 'node', adapter: '', rows: [], done: false, quick: flags.includes('--quick') };
await runSuites(() => createDevice({ gpu: dawn }), suites.split(',').filter(Boolean), state, {
  log: (msg) => console.log(msg),
  readFile: async (path) => new Uint8Array(await readFile(path)),
  modelSource: (path) => path,
  // Chromium's usedJSHeapSize counts ArrayBuffers' bytes; V8 in Node reports them apart.
  heapBytes: () =>
    heapAfterGc(() => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    }),
});
await writeFile(resultPath, JSON.stringify(state, null, 2));
