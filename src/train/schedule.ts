// Learning-rate schedules, as Hugging Face transformers' `get_scheduler` builds them.
//
// Each schedule is a multiplier λ(step) of the base learning rate, applied the way torch's LambdaLR
// applies it: the optimizer step with 0-based index `step` runs with `baseLr · λ(step)`, so the very
// first update uses λ(0) (0 for every warmup schedule with warmupSteps > 0, as in HF). Invariants:
//   - the formulas, the float operations included, are transformers' (optimization.py), so a run
//     here and a run of the HF Trainer with the same settings see bit-comparable learning rates;
//   - λ is never negative; past `totalSteps` linear stays at 0 while cosine (num_cycles 0.5) rises
//     again, exactly as HF's does, because HF does not clamp the progress either;
//   - invalid arguments throw InputError naming the field, never produce NaN.

import { InputError } from '../errors.js';

/** The `lr_scheduler_type` values supported, spelled as in transformers' `SchedulerType`. */
export type ScheduleName = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup';

/** Options of {@link learningRateAt}. */
export interface ScheduleOptions {
  /** Which schedule. */
  name: ScheduleName;
  /** Learning rate at the end of warmup (the optimizer's `lr`). */
  baseLr: number;
  /** Steps of the linear ramp from 0; ignored by `constant`. */
  warmupSteps: number;
  /** Total optimizer steps (`num_training_steps`); used by the decaying schedules. */
  totalSteps: number;
}

const NAMES: readonly ScheduleName[] = ['linear', 'cosine', 'constant', 'constant_with_warmup'];

function nonNegativeInteger(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InputError(`${field} must be a non-negative integer, got ${String(value)}`);
  }
}

/** The multiplier λ(step) of the base learning rate. */
function multiplier(step: number, name: ScheduleName, warmup: number, total: number): number {
  if (name === 'constant') return 1;
  // Every warmup in transformers divides by max(1, warmup), so warmup 0 never divides by zero and
  // the `step < warmup` branch is then simply never taken.
  if (step < warmup) return step / Math.max(1, warmup);
  switch (name) {
    case 'constant_with_warmup':
      return 1;
    case 'linear':
      return Math.max(0, (total - step) / Math.max(1, total - warmup));
    case 'cosine': {
      const progress = (step - warmup) / Math.max(1, total - warmup);
      // num_cycles = 0.5: half a cosine period, from 1 at the end of warmup to 0 at totalSteps.
      // Written as HF writes it (pi · num_cycles · 2 · progress) so the rounding is the same.
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
    }
  }
}

/**
 * The learning rate of optimizer step `step` (0-based): `baseLr · λ(step)`, where λ is the
 * multiplier of transformers' schedule `name` (num_cycles 0.5 for cosine).
 *
 * @throws InputError naming the field when `step`, `warmupSteps` or `totalSteps` is not a
 *   non-negative integer, `baseLr` is not finite and ≥ 0, or `name` is unknown.
 */
export function learningRateAt(step: number, opts: ScheduleOptions): number {
  nonNegativeInteger('step', step);
  nonNegativeInteger('warmupSteps', opts.warmupSteps);
  nonNegativeInteger('totalSteps', opts.totalSteps);
  if (!Number.isFinite(opts.baseLr) || opts.baseLr < 0) {
    throw new InputError(`baseLr must be a finite number ≥ 0, got ${String(opts.baseLr)}`);
  }
  // The type already says this, but options often come from JSON or a form field.
  if (!NAMES.includes(opts.name)) {
    throw new InputError(`name must be one of ${NAMES.join(', ')}, got '${String(opts.name)}'`);
  }
  return opts.baseLr * multiplier(step, opts.name, opts.warmupSteps, opts.totalSteps);
}

/**
 * Warmup steps from a warmup ratio, as transformers' `TrainingArguments.get_warmup_steps`:
 * `ceil(ratio · totalSteps)`. The product is taken in floating point as HF takes it, so e.g.
 * ratio 0.07 of 100 steps gives 8 (0.07 · 100 = 7.000000000000001), the same as the HF Trainer.
 *
 * @throws InputError naming `ratio` (must be in [0, 1]) or `totalSteps` (non-negative integer).
 */
export function warmupStepsFrom(ratio: number, totalSteps: number): number {
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new InputError(`ratio must be a number in [0, 1], got ${String(ratio)}`);
  }
  nonNegativeInteger('totalSteps', totalSteps);
  return Math.ceil(ratio * totalSteps);
}
