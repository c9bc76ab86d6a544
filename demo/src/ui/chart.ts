// The live loss curve: uPlot, fed in batches and redrawn at most once per animation frame, so a
// burst of training steps costs the main thread one cheap redraw. Each step's loss is one batch's
// (noisy); a second series is the mean over the last `window` steps, as a trainer's logged loss.
//
// Invariants: the chart stays hidden until a run has a point to draw; it always spans its
// container (a ResizeObserver follows the layout, so a chart made in a hidden tab is sized when
// the tab is shown); steps are whole numbers on the x axis, and the y axis shows as many decimals
// as its tick spacing needs, so no two ticks read the same (./ticks.ts).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { lossLabels, STEP_INCREMENTS, stepLabels } from './ticks.js';

const HEIGHT = 220;
/** Colours of the x series (unused), the batch losses and their running mean. */
const COLOURS = ['', '#9db8ea', '#1d4fa8'];

export class LossChart {
  private readonly xs: number[] = [];
  private readonly ys: number[] = [];
  private readonly means: (number | null)[] = [];
  private readonly plot: uPlot;
  private frame = 0;
  private window = 1;

  constructor(private readonly target: HTMLElement) {
    target.hidden = true;
    this.plot = new uPlot(
      {
        width: 600,
        height: HEIGHT,
        scales: { x: { time: false } },
        axes: [
          { label: 'step', incrs: STEP_INCREMENTS, values: (_u, splits) => stepLabels(splits) },
          { label: 'loss', values: (_u, splits) => lossLabels(splits), size: 60 },
        ],
        series: [
          { label: 'step' },
          { label: 'batch loss', stroke: COLOURS[1], width: 1, points: { show: false } },
          { label: 'running mean', stroke: COLOURS[2], width: 2.5, points: { show: false } },
        ],
        // Filled markers: an outline alone in a light colour reads as "no series".
        legend: { live: false, markers: { fill: (_u, i) => COLOURS[i] ?? 'transparent' } },
      },
      [[], [], []],
      target,
    );
    new ResizeObserver(() => this.fit()).observe(target);
  }

  /** Spans the container's width (0 while hidden: then nothing to do until it is shown). */
  private fit(): void {
    const width = this.target.clientWidth;
    if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  push(points: readonly (readonly [number, number])[]): void {
    if (points.length === 0) return;
    for (const [x, y] of points) {
      this.xs.push(x);
      this.ys.push(y);
      this.means.push(this.xs.length >= this.window ? mean(this.ys.slice(-this.window)) : null);
    }
    this.target.hidden = false;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.fit();
        this.plot.setData([this.xs, this.ys, this.means]);
      });
    }
  }

  /**
   * Starts a new curve with `window` steps per mean. At least two: a one-step mean is the batch
   * loss itself and would hide it.
   */
  clear(window: number): void {
    this.xs.length = 0;
    this.ys.length = 0;
    this.means.length = 0;
    this.window = Math.max(2, window);
    this.plot.setData([[], [], []]);
    this.target.hidden = true;
  }

  /** Drops the points after `step` (a run resumed from a checkpoint draws them again). */
  dropAfter(step: number): void {
    let n = this.xs.length;
    while (n > 0 && this.xs[n - 1]! > step) n--;
    this.xs.length = this.ys.length = this.means.length = n;
    this.plot.setData([this.xs, this.ys, this.means]);
  }

  /** The step of the first point (undefined: none). */
  get firstStep(): number | undefined {
    return this.xs[0];
  }

  get points(): number {
    return this.xs.length;
  }

  /** Mean loss of the first `window` steps, and of the last: what "the loss fell" compares. */
  get first(): number | undefined {
    return this.ys.length ? mean(this.ys.slice(0, this.window)) : undefined;
  }

  get last(): number | undefined {
    return this.ys.length ? mean(this.ys.slice(-this.window)) : undefined;
  }
}

const mean = (v: readonly number[]): number => v.reduce((s, x) => s + x, 0) / v.length;
