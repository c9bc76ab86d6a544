// Tick labels of the loss chart (pure, so tests can read what the canvas draws): steps are whole
// numbers, and the loss axis shows as many decimals as its tick spacing needs to write every tick
// exactly, so no two ticks read the same (0.6725, 0.6750 rather than 0.673, 0.675, or 0.674, 0.674).

/** The step axis' tick spacings: whole numbers only (no 1.5, 2.5 between steps). */
export const STEP_INCREMENTS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000];

/** Labels of step ticks (whole numbers by the increments above). */
export const stepLabels = (splits: readonly number[]): string[] => splits.map((v) => String(Math.round(v)));

/** The fewest decimals (at most 8) that write a tick spacing exactly: 0.0025 → 4, 0.05 → 2, 2 → 0. */
export function decimalsFor(step: number): number {
  const s = Math.abs(step);
  if (!(s > 0) || !Number.isFinite(s)) return 0;
  for (let d = 0; d < 8; d++) {
    const scaled = s * 10 ** d;
    // uPlot's spacings are floats (0.1 * 3 ≠ 0.3): within a millionth of a whole number is whole.
    if (Math.round(scaled) >= 1 && Math.abs(scaled - Math.round(scaled)) <= 1e-6 * scaled) return d;
  }
  return 8;
}

/** Labels of loss ticks with the decimals their spacing needs. */
export function lossLabels(splits: readonly number[]): string[] {
  const decimals = decimalsFor(splits.length > 1 ? splits[1]! - splits[0]! : 1);
  return splits.map((v) => v.toFixed(decimals));
}
