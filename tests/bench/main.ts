// The benchmark page: runs the selected suites in the browser and publishes the result on
// window.__bench for run.mjs.
import { createDevice } from '../../src/gpu/device.js';
import { heapAfterGc } from './harness.js';
import { runSuites, type BenchResult } from './suites.js';

declare global {
  interface Window {
    __bench?: BenchResult;
  }
}

const params = new URLSearchParams(location.search);
const out = document.getElementById('out')!;
const state: BenchResult = { runtime: 'browser', adapter: '', rows: [], done: false, quick: params.get('quick') === '1' };
window.__bench = state;

await runSuites(() => createDevice(), (params.get('suites') ?? '').split(',').filter(Boolean), state, {
  log: (msg) => {
    console.log(msg);
    out.textContent += `\n${msg}`;
  },
  readFile: async (path) => {
    const r = await fetch(`/${path}`);
    if (!r.ok) throw new Error(`GET /${path}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  },
  modelSource: (path) => `/${path}`,
  // Exact only with --enable-precise-memory-info (run.mjs passes it); counts ArrayBuffers' bytes.
  heapBytes: () => heapAfterGc(() => (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? NaN),
});
