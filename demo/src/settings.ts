// Training settings: the presets, URL parameters (?preset=quick&steps=6&batch=4&seqlen=32&eval=32
// &lr=0.01&seed=1&stylesteps=8&stylelr=0.1 — the end-to-end test uses them) and the checks of the
// settings form.
//
// Two presets. "full" is the default run on a hardware adapter; "quick" is the one a software
// adapter (SwiftShader on a CPU) opens on: a spam-filter run of two or three minutes on two cores
// that still visibly learns, and a style run of about as long (40 steps move the held-out perplexity
// of the Moby-Dick preset about a quarter; the full preset's 120 steps of 64-token windows about
// 30%, in demo/tools/style-recipe.py's replay). The figures
// behind both are measured by demo/tools/measure-default.mjs and quoted in README.md ("Demo").
import type { TrainSettings } from './protocol.js';

export type NumericSettings = Omit<TrainSettings, 'targetModules' | 'feedforwardModules'> & {
  /** Training steps of the Style tab (a language-model step costs more than a classifier step). */
  styleSteps: number;
  /**
   * Learning rate of the Style tab. The style adapter is IA3 vectors alone (no fresh head to blow
   * up), and at the spam filter's 0.02 they move the perplexity slowly: in demo/tools/style-recipe.py's
   * replay of the page's run (PEFT's GPT-2 targets), 24 steps lowered it 9% at 0.02, 13% at 0.05,
   * 14% at 0.1 and at 0.2, 12% at 0.4.
   */
  styleLearningRate: number;
};

export type PresetName = 'quick' | 'full';

export const PRESETS: Record<PresetName, NumericSettings> = {
  quick: { learningRate: 2e-2, steps: 40, batchSize: 8, seqLen: 32, evalSize: 64, seed: 42, styleSteps: 40, styleLearningRate: 0.1 },
  full: { learningRate: 2e-2, steps: 200, batchSize: 8, seqLen: 64, evalSize: 200, seed: 42, styleSteps: 120, styleLearningRate: 0.1 },
};

/** The preset a page opens on: quick on a software adapter, full on a GPU. */
export const presetFor = (software: boolean): PresetName => (software ? 'quick' : 'full');

/**
 * Warm-up steps of a run: about a tenth of it, at least four (a fresh classifier head at the full
 * learning rate from step one overshoots: the loss jumped 0.5 → 3.8 → 5.5 in a short run without
 * warm-up), at most twenty, and never more than half the run.
 */
export function warmupStepsFor(steps: number): number {
  return Math.min(Math.max(4, Math.round(steps / 10)), 20, Math.floor(steps / 2));
}

/** Bounds of each numeric setting (the sequence length must also fit the model's positions). */
const BOUNDS: Record<keyof NumericSettings, [min: number, max: number, integer: boolean]> = {
  learningRate: [1e-6, 1, false],
  steps: [1, 100_000, true],
  batchSize: [1, 256, true],
  seqLen: [4, 1024, true],
  evalSize: [1, 100_000, true],
  seed: [0, 2 ** 31 - 1, true],
  styleSteps: [1, 100_000, true],
  styleLearningRate: [1e-6, 1, false],
};

/** The labels of the settings on the page, which the messages name. */
export const LABELS: Record<keyof NumericSettings, string> = {
  learningRate: 'learning rate',
  steps: 'steps',
  batchSize: 'batch size',
  seqLen: 'sequence length',
  evalSize: 'eval subset',
  seed: 'seed',
  styleSteps: 'style training steps',
  styleLearningRate: 'style learning rate',
};

/** URL parameter names (short, as typed by hand). */
export const PARAMS: Record<keyof NumericSettings, string> = { learningRate: 'lr', steps: 'steps', batchSize: 'batch', seqLen: 'seqlen', evalSize: 'eval', seed: 'seed', styleSteps: 'stylesteps', styleLearningRate: 'stylelr' };

/** A number within a setting's bounds, or a message naming the setting as the page labels it. */
export function checkSetting(key: keyof NumericSettings, raw: string): number | string {
  const v = Number(raw);
  const [min, max, integer] = BOUNDS[key];
  const label = LABELS[key];
  if (raw.trim() === '' || !Number.isFinite(v)) return `${label} must be a number${raw.trim() === '' ? '' : ` (got “${raw}”)`}`;
  if (integer && !Number.isInteger(v)) return `${label} must be a whole number (got ${raw})`;
  if (v < min || v > max) return `${label} must be between ${min} and ${max.toLocaleString('en-US')} (got ${raw})`;
  return v;
}

/** The preset named in the URL (else `fallback`) overridden by URL parameters; bad values are reported, not used. */
export function settingsFromUrl(
  search: string,
  fallback: PresetName,
): { preset: PresetName; settings: NumericSettings; changed: boolean; problems: string[]; modules: { target?: string[]; feedforward?: string[] } } {
  const params = new URLSearchParams(search);
  const problems: string[] = [];
  const named = params.get('preset');
  if (named !== null && !(named in PRESETS)) problems.push(`preset must be ${Object.keys(PRESETS).join(' or ')} (got “${named}”)`);
  const preset = named !== null && named in PRESETS ? (named as PresetName) : fallback;
  const settings = { ...PRESETS[preset] };
  let changed = false;
  for (const key of Object.keys(PARAMS) as (keyof NumericSettings)[]) {
    const raw = params.get(PARAMS[key]);
    if (raw === null) continue;
    const v = checkSetting(key, raw);
    if (typeof v === 'string') problems.push(v);
    else {
      changed ||= v !== settings[key];
      settings[key] = v;
    }
  }
  const list = (s: string | null): string[] | undefined => (s === null ? undefined : splitModules(s));
  return { preset, settings, changed, problems, modules: { target: list(params.get('target')), feedforward: list(params.get('feedforward')) } };
}

export function splitModules(s: string): string[] {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * Seconds per unit of work, to say how long a preset takes: a training step costs `train` per
 * token of its batch (batch × sequence length), an evaluation `evaluate` per token, a style step
 * `lm` per token. `software` holds rates measured on SwiftShader on 2 cores (2026-11-28: 532 s to
 * train 200 × 8 × 32 tokens, 208 s for 60 × 8 × 32 style tokens); a busy machine runs slower, so
 * the page replaces them with its own after a run.
 */
export interface Rates {
  train: number;
  evaluate: number;
  lm: number;
}

export const SOFTWARE_RATES: Rates = { train: 0.011, evaluate: 0.0022, lm: 0.016 };

/** Estimated seconds of a preset's spam run (validation before and after included) and style run. */
export function estimateSeconds(p: NumericSettings, r: Rates): { spam: number; style: number } {
  const evalTokens = p.evalSize * p.seqLen;
  return {
    spam: p.steps * p.batchSize * p.seqLen * r.train + 2 * evalTokens * r.evaluate,
    style: p.styleSteps * p.batchSize * p.seqLen * r.lm,
  };
}
