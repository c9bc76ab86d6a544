// The benchmark suites and the run of a selection of them, shared by the browser page (main.ts)
// and Node (node.ts): the same code measures both runtimes, so their ratios compare.
import { adapterName, type AdapterDescription, type GpuContext } from '../../src/gpu/device.js';
import type { BenchContext, BenchRow } from './harness.js';
import { kernelSuite } from './kernels.js';
import { modelSuite } from './models.js';
import { precisionSuite } from './precision.js';
import { profileSuite } from './profile.js';
import { recomputeCost, scaleSuite, stepForwardRatios } from './scale.js';
import { trainSuite } from './train.js';

export const SUITES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  kernels: kernelSuite,
  models: modelSuite,
  train: trainSuite,
  precision: precisionSuite,
  scale: scaleSuite,
  'scale-ratios': stepForwardRatios,
  'scale-recompute': recomputeCost,
  profile: profileSuite,
};
/**
 * Suites run only when named (`--suite scale`): minutes to hours on a software adapter. The scale
 * suite loads its models from URLs (streaming) and reads the page's heap: it runs in the browser.
 */
const OPT_IN = new Set(['scale', 'scale-ratios', 'scale-recompute', 'profile']);

/** What a run publishes: the page on window.__bench, Node in the JSON file run.mjs reads. */
export interface BenchResult {
  runtime: 'browser' | 'node';
  adapter: string;
  adapterInfo?: AdapterDescription;
  rows: BenchRow[];
  done: boolean;
  error?: string;
  quick: boolean;
}

/** Runs the named suites (all when empty) on `gpu`, filling `state`; errors end up in `state.error`. */
export async function runSuites(
  gpu: () => Promise<GpuContext>,
  names: readonly string[],
  state: BenchResult,
  io: Pick<BenchContext, 'log' | 'readFile' | 'modelSource' | 'heapBytes'>,
): Promise<void> {
  const selected = names.length > 0 ? names : Object.keys(SUITES).filter((s) => !OPT_IN.has(s));
  try {
    const g = await gpu();
    state.adapter = adapterName(g.adapterInfo);
    state.adapterInfo = g.adapterInfo;
    io.log(`adapter: ${state.adapter} (vendor ${g.adapterInfo.vendor || '?'}, architecture ${g.adapterInfo.architecture || '?'}${g.adapterInfo.isSoftware ? ', software' : ''})`);
    for (const name of selected) {
      const suite = SUITES[name];
      if (!suite) throw new Error(`unknown suite '${name}' (have ${Object.keys(SUITES).join(', ')})`);
      io.log(`suite ${name}…`);
      await suite({ gpu: g, quick: state.quick, rows: state.rows, ...io });
    }
  } catch (e) {
    state.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } finally {
    state.done = true;
  }
}
