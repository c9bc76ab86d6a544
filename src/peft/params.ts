// Parameter counts (as PyTorch counts a model's parameters) and PEFT's print_trainable_parameters line.
//
// PEFT (peft_model.py, 0.20) prints
//   f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}"
// where `100 * t / a` is Python's int true division (correctly rounded to a float) and `.4f`
// rounds that float's exact binary value half-to-even. JavaScript's toFixed rounds ties up and
// `100 * t` may exceed 2^53 in floats, so both steps are done exactly here with BigInt.
// IA3 adds one vector per targeted layer: `in_features` values when feed-forward (input scale),
// `out_features` otherwise.

import { InputError } from '../errors.js';
import { isFloat } from '../ir/dtype.js';
import type { Graph, Initializer, ValueStats } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';

/**
 * PEFT's print_trainable_parameters line, e.g.
 * `trainable params: 282,624 || all params: 1,229,863,936 || trainable%: 0.0230`.
 * Counts are non-negative integers (number or bigint); `all` must be positive.
 */
export function formatTrainableParameters(trainable: number | bigint, all: number | bigint): string {
  const t = toCount(trainable, 'trainable');
  const a = toCount(all, 'all');
  if (a === 0n) throw new InputError('all params is 0: the trainable percentage is undefined (Python raises ZeroDivisionError)');
  const percent = divideToDouble(100n * t, a);
  return `trainable params: ${groupThousands(t)} || all params: ${groupThousands(a)} || trainable%: ${pythonFixed(percent, 4)}`;
}

/** Number of IA3 parameters for the selected modules: Σ (feedforward ? inFeatures : outFeatures). */
export function ia3ParamCount(
  modules: readonly { readonly inFeatures: number; readonly outFeatures: number; readonly feedforward: boolean }[],
): number {
  let n = 0;
  for (const m of modules) {
    const k = m.feedforward ? m.inFeatures : m.outFeatures;
    if (!Number.isSafeInteger(k) || k < 0) {
      throw new InputError(`${m.feedforward ? 'inFeatures' : 'outFeatures'} must be a non-negative integer, got ${k}`);
    }
    n += k;
  }
  return n;
}

function toCount(v: number | bigint, what: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n) throw new InputError(`${what} params must be non-negative, got ${v}`);
    return v;
  }
  if (!Number.isSafeInteger(v) || v < 0) throw new InputError(`${what} params must be a non-negative integer, got ${v}`);
  return BigInt(v);
}

/** Python's `f"{n:,d}"` for a non-negative integer. */
export function groupThousands(n: bigint): string {
  return n.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** p / q (p ≥ 0, q > 0) rounded to the nearest double, ties to even — Python's int / int. */
function divideToDouble(p: bigint, q: bigint): number {
  if (p === 0n) return 0;
  // Find s with 2^52 ≤ p·2^s / q < 2^53: the quotient then holds exactly a double's 53 bits.
  // (Results here are percentages, far from the subnormal and overflow ranges.)
  let s = 53 - (bitLength(p) - bitLength(q));
  const divide = (): [bigint, bigint, bigint] => {
    const num = s >= 0 ? p << BigInt(s) : p;
    const den = s >= 0 ? q : q << BigInt(-s);
    return [num / den, num % den, den];
  };
  let [quotient, rest, den] = divide();
  if (quotient >= 1n << 53n) {
    s -= 1;
    [quotient, rest, den] = divide();
  }
  const twice = rest * 2n;
  if (twice > den || (twice === den && (quotient & 1n) === 1n)) quotient += 1n;
  return Number(quotient) * 2 ** -s;
}

function bitLength(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

/**
 * Python's `f"{x:.{digits}f}"`: the exact binary value of x rounded half-to-even to `digits`
 * decimals (JavaScript's toFixed rounds exact ties away from zero instead).
 */
export function pythonFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  // |x| = mantissa · 2^exponent exactly.
  const bits = new DataView(new ArrayBuffer(8));
  bits.setFloat64(0, Math.abs(x));
  const hi = bits.getUint32(0);
  const lo = bits.getUint32(4);
  const biased = hi >>> 20;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exponent: number;
  if (biased === 0) exponent = -1074;
  else {
    mantissa |= 1n << 52n;
    exponent = biased - 1075;
  }
  const scale = 10n ** BigInt(digits);
  let q: bigint;
  if (exponent >= 0) q = (mantissa << BigInt(exponent)) * scale;
  else {
    const num = mantissa * scale;
    const den = 1n << BigInt(-exponent);
    q = num / den;
    const twice = (num % den) * 2n;
    if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  }
  const s = q.toString().padStart(digits + 1, '0');
  return digits === 0 ? `${sign}${s}` : `${sign}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/**
 * The number of parameters of a model as PyTorch counts them: float initializers (not folded
 * Constant nodes), each tied or transposed copy counted once (exporters write a tied `lm_head` as
 * a transposed copy of the embedding).
 */
export function countParameters(graph: Graph): number {
  // Module buffers (rotary caches a fused attention reads) are not parameters either.
  const floats = [...graph.initializers.values()].filter(
    (t) => !t.constant && !t.buffer && isFloat(t.dtype),
  );
  let total = 0;
  const bySize = new Map<number, Initializer[]>();
  for (const t of floats) {
    const n = sizeOf(t.dims);
    const same = bySize.get(n) ?? [];
    if (!same.some((o) => isCopyOrTranspose(o, t))) total += n;
    same.push(t);
    bySize.set(n, same);
  }
  return total;
}

function isCopyOrTranspose(a: Initializer, b: Initializer): boolean {
  // A quantised weight's data is its packed words: never a copy of a float tensor's values (a tie
  // the quantiser broke, GPT-2's lm_head stored in 8 bits beside an f32 wte, counts twice).
  if ((a.storage && a.storage !== 'f16x2') || (b.storage && b.storage !== 'f16x2')) return false;
  const x = a.data;
  const y = b.data;
  if (!x || !y) return sameStats(a, b);
  if (x.length !== y.length || x.length < 2) return false;
  if (a.dims.join() === b.dims.join() && x.every((v, i) => v === y[i])) return true;
  if (a.dims.length !== 2 || b.dims.length !== 2 || a.dims[0] !== b.dims[1] || a.dims[1] !== b.dims[0]) return false;
  const [r, c] = a.dims as [number, number];
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (x[i * c + j] !== y[j * r + i]) return false;
  return true;
}

/**
 * Copies or transposes of each other by their values' statistics, for weights whose data is on the
 * GPU only: equal minimum and maximum, and sums that agree to float64 rounding (summed in a
 * different order when transposed).
 */
function sameStats(a: Initializer, b: Initializer): boolean {
  const s = statsOf(a);
  const t = statsOf(b);
  if (!s || !t || sizeOf(a.dims) !== sizeOf(b.dims) || sizeOf(a.dims) < 2) return false;
  const near = (p: number, q: number): boolean => Math.abs(p - q) <= 1e-9 * Math.max(Math.abs(p), Math.abs(q), 1e-30);
  return s.min === t.min && s.max === t.max && near(s.sum, t.sum) && near(s.sumSquares, t.sumSquares);
}

function statsOf(t: Initializer): ValueStats | undefined {
  if (t.stats || !t.data) return t.stats;
  let sum = 0;
  let sumSquares = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of t.data) {
    const x = Number(v);
    sum += x;
    sumSquares += x * x;
    min = Math.min(min, x);
    max = Math.max(max, x);
  }
  return { sum, sumSquares, min, max };
}
