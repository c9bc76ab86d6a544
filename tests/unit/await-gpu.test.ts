// awaitGpu (src/runtime.ts) in Node: it settles as the promise it wraps, and while that promise is
// pending it bounds how often the event loop turns (Dawn's binding polls once per turn) to about
// one turn per POLL_SLEEP_MS, instead of a busy loop. No GPU: a timer stands for the GPU work.
import { expect, it } from 'vitest';
import { awaitGpu } from '../../src/runtime.js';

const later = <T>(ms: number, value: T): Promise<T> => new Promise((r) => setTimeout(() => r(value), ms));

it('resolves and rejects as the wrapped promise does', async () => {
  await expect(awaitGpu(Promise.resolve(7))).resolves.toBe(7);
  await expect(awaitGpu(later(5, 'done'))).resolves.toBe('done');
  const failure = new Error('mapAsync aborted');
  await expect(awaitGpu(Promise.reject(failure))).rejects.toBe(failure);
  // Waits overlapping in time share one sleeper and each settles on its own.
  await expect(Promise.all([awaitGpu(later(10, 1)), awaitGpu(later(3, 2))])).resolves.toEqual([1, 2]);
});

it('turns the event loop about once a millisecond while a wait is pending, not in a busy loop', async () => {
  // A poller like Dawn's binding: re-queues itself with setImmediate for as long as the wait lasts.
  // Turns of the loop after the first SPIN_MS of the wait (awaitGpu lets the first millisecond run free).
  const SPIN_MS = 5;
  const countTurns = async (wait: (p: Promise<void>) => Promise<void>) => {
    const t0 = performance.now();
    let turns = 0;
    let pending = true;
    const poll = (): void => {
      if (!pending) return;
      if (performance.now() - t0 > SPIN_MS) turns++;
      setImmediate(poll);
    };
    setImmediate(poll);
    await wait(later(60, undefined));
    pending = false;
    return { turns, ms: performance.now() - t0 - SPIN_MS };
  };
  const throttled = await countTurns(awaitGpu);
  // Each turn sleeps a millisecond: at most one per elapsed millisecond (a slow machine only makes
  // it fewer).
  expect(throttled.turns).toBeLessThanOrEqual(Math.ceil(throttled.ms) + 2);
  // The same poller without awaitGpu spins: the bound above is what awaitGpu adds.
  const spinning = await countTurns((p) => p);
  expect(spinning.turns).toBeGreaterThan(2 * throttled.turns);
});
