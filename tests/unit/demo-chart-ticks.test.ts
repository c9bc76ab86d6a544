// The loss chart's tick labels (demo/src/ui/ticks.ts): step ticks are whole numbers; loss ticks are
// written exactly and never repeat, whatever spacing uPlot picks (its default increments are 1, 2,
// 2.5 and 5 times a power of ten) and wherever the axis starts (issue 15: "1.5, 2.5" step ticks and
// "0.674, 0.673, 0.673" loss ticks).
import { describe, expect, it } from 'vitest';
import { decimalsFor, lossLabels, STEP_INCREMENTS, stepLabels } from '../../demo/src/ui/ticks.js';

/** Ticks as uPlot makes them: float multiples of the spacing from the first multiple above `min`. */
const splits = (min: number, step: number, n: number): number[] => Array.from({ length: n }, (_, i) => (Math.ceil(min / step) + i) * step);

describe('loss chart ticks', () => {
  it('spaces step ticks by whole numbers and writes them as such', () => {
    expect(STEP_INCREMENTS.every((s) => Number.isInteger(s) && s >= 1)).toBe(true);
    expect(stepLabels(splits(0, 1, 5))).toEqual(['0', '1', '2', '3', '4']);
  });

  it('writes each loss tick exactly, with the decimals its spacing needs', () => {
    expect(decimalsFor(0.0025)).toBe(4);
    expect(decimalsFor(0.05)).toBe(2);
    expect(decimalsFor(2)).toBe(0);
    expect(decimalsFor(0)).toBe(0);
    expect(lossLabels(splits(0.6721, 0.0025, 3))).toEqual(['0.6725', '0.6750', '0.6775']);
    expect(lossLabels(splits(0.67301, 0.0005, 3))).toEqual(['0.6735', '0.6740', '0.6745']);
  });

  it('never repeats a label and reads back each tick, for every spacing and offset', () => {
    for (let k = -6; k <= 2; k++) {
      for (const m of [1, 2, 2.5, 5]) {
        const step = m * 10 ** k;
        for (const start of [0, 0.0173, 0.6731, 3.2, 5.55]) {
          const ticks = splits(start, step, 6);
          const labels = lossLabels(ticks);
          expect(new Set(labels).size, `spacing ${step} from ${start}: ${labels.join(', ')}`).toBe(labels.length);
          for (const [i, l] of labels.entries()) expect(Math.abs(Number(l) - ticks[i]!)).toBeLessThan(step * 1e-6);
        }
      }
    }
  });
});
