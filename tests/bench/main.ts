// The benchmark page: runs the selected suites and publishes rows on window.__bench.
import { adapterName, createDevice } from '../../src/gpu/device.js';
import type { BenchContext, BenchRow } from './harness.js';
import { kernelSuite } from './kernels.js';
import { modelSuite } from './models.js';
import { scaleSuite } from './scale.js';
import { trainSuite } from './train.js';

declare global {
  interface Window {
    __bench?: { adapter: string; rows: BenchRow[]; done: boolean; error?: string; quick: boolean };
  }
}

const SUITES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  kernels: kernelSuite,
  models: modelSuite,
  train: trainSuite,
  scale: scaleSuite,
};
/** Suites run only when named (`--suite scale`): minutes to hours on a software adapter. */
const OPT_IN = new Set(['scale']);

const params = new URLSearchParams(location.search);
const selected = (params.get('suites') || Object.keys(SUITES).filter((s) => !OPT_IN.has(s)).join(',')).split(',').filter(Boolean);
const quick = params.get('quick') === '1';
const out = document.getElementById('out')!;
const state: NonNullable<Window['__bench']> = { adapter: '', rows: [], done: false, quick };
window.__bench = state;

try {
  const gpu = await createDevice();
  state.adapter = adapterName(gpu.adapterInfo);
  const log = (msg: string): void => {
    console.log(msg);
    out.textContent += `\n${msg}`;
  };
  log(`adapter: ${state.adapter}`);
  for (const name of selected) {
    const suite = SUITES[name];
    if (!suite) throw new Error(`unknown suite '${name}' (have ${Object.keys(SUITES).join(', ')})`);
    log(`suite ${name}…`);
    await suite({ gpu, quick, rows: state.rows, log });
  }
} catch (e) {
  state.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
} finally {
  state.done = true;
}
