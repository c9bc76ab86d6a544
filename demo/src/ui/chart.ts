// The live loss curve: uPlot, fed in batches and redrawn at most once per animation frame, so a
// burst of training steps costs the main thread one cheap redraw. Each step's loss is one batch's
// (noisy); a second series is the mean over the last `window` steps, as a trainer's logged loss.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export class LossChart {
  private readonly xs: number[] = [];
  private readonly ys: number[] = [];
  private readonly means: (number | null)[] = [];
  private readonly plot: uPlot;
  private frame = 0;
  private window = 1;

  constructor(target: HTMLElement) {
    const width = Math.max(300, target.clientWidth || 600);
    this.plot = new uPlot(
      {
        width,
        height: 220,
        scales: { x: { time: false } },
        axes: [{ label: 'step' }, { label: 'loss' }],
        series: [
          { label: 'step' },
          { label: 'batch loss', stroke: '#9db8ea', width: 1, points: { show: false } },
          { label: 'running mean', stroke: '#2f6fdb', width: 2, points: { show: false } },
        ],
        legend: { live: false },
      },
      [[], [], []],
      target,
    );
  }

  push(points: readonly (readonly [number, number])[]): void {
    for (const [x, y] of points) {
      this.xs.push(x);
      this.ys.push(y);
      this.means.push(this.xs.length >= this.window ? mean(this.ys.slice(-this.window)) : null);
    }
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.plot.setData([this.xs, this.ys, this.means]);
      });
    }
  }

  /** Starts a new curve; `window` steps per mean. */
  clear(window: number): void {
    this.xs.length = 0;
    this.ys.length = 0;
    this.means.length = 0;
    this.window = Math.max(1, window);
    this.plot.setData([[], [], []]);
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
