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
