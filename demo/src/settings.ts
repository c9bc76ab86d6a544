// Training settings: the defaults, URL parameters (?steps=6&batch=4&seqlen=32&eval=32&lr=0.01
// &seed=1 — the end-to-end test uses them for a short run) and the settings form.
import type { TrainSettings } from './protocol.js';

/**
 * The full default spam run (validation before, training, validation after). On the SwiftShader
 * software adapter of a 2-core machine a step of 8 mails × 32 tokens takes 2.7 s (4 s when the
 * machine is busy), so 200 steps and two evaluations of 200 mails took 10 minutes there. 32 tokens
 * (the subject and the start of the body) cost half of 64, and in trial runs 64 did not classify
 * better; lr 2e-2 was steadier than 3e-2 and further along than 1e-2. See README.md ("Demo").
 */
export const DEFAULTS: Omit<TrainSettings, 'targetModules' | 'feedforwardModules'> = {
  learningRate: 2e-2,
  steps: 200,
  batchSize: 8,
  seqLen: 32,
  evalSize: 200,
  seed: 42,
};

/** Bounds of each numeric setting (the sequence length must also fit the model's positions). */
const BOUNDS: Record<keyof typeof DEFAULTS, [min: number, max: number, integer: boolean]> = {
  learningRate: [1e-6, 1, false],
  steps: [1, 100_000, true],
  batchSize: [1, 256, true],
  seqLen: [4, 1024, true],
  evalSize: [1, 100_000, true],
  seed: [0, 2 ** 31 - 1, true],
};

/** URL parameter names (short, as typed by hand). */
const PARAMS: Record<keyof typeof DEFAULTS, string> = { learningRate: 'lr', steps: 'steps', batchSize: 'batch', seqLen: 'seqlen', evalSize: 'eval', seed: 'seed' };

export type NumericSettings = typeof DEFAULTS;

/** A number within a setting's bounds, or an error message naming the setting. */
export function checkSetting(key: keyof NumericSettings, raw: string): number | string {
  const v = Number(raw);
  const [min, max, integer] = BOUNDS[key];
  if (raw.trim() === '' || !Number.isFinite(v)) return `${key}: '${raw}' is not a number`;
  if (integer && !Number.isInteger(v)) return `${key}: ${raw} must be a whole number`;
  if (v < min || v > max) return `${key}: ${raw} is outside [${min}, ${max}]`;
  return v;
}

/** The defaults overridden by URL parameters; bad values are reported, not silently used. */
export function settingsFromUrl(search: string): { settings: NumericSettings; problems: string[]; modules: { target?: string[]; feedforward?: string[] } } {
  const params = new URLSearchParams(search);
  const settings = { ...DEFAULTS };
  const problems: string[] = [];
  for (const key of Object.keys(PARAMS) as (keyof NumericSettings)[]) {
    const raw = params.get(PARAMS[key]);
    if (raw === null) continue;
    const v = checkSetting(key, raw);
    if (typeof v === 'string') problems.push(v);
    else settings[key] = v;
  }
  const list = (s: string | null): string[] | undefined => (s === null ? undefined : splitModules(s));
  return { settings, problems, modules: { target: list(params.get('target')), feedforward: list(params.get('feedforward')) } };
}

export function splitModules(s: string): string[] {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

export { PARAMS };
