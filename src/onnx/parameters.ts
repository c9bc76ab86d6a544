// Parameter counts as PyTorch counts a model's parameters, from an imported graph: the float
// initializers (not folded Constant nodes, not module buffers), each tied weight once.
//
// Exporters do not keep a tie: torch.onnx writes GPT-2's `lm_head`, tied to `transformer.wte`, as a
// second initializer holding the embedding's transpose (the MatMul's [n_embd, vocab] operand), and
// other tools write a byte-identical copy. A weight that equals another (same dims) or its 2-D
// transpose is that weight shared, counted once — as PEFT's print_trainable_parameters counts
// `model.parameters()`, and as the model card of a tied model states. Weights whose values went to
// the GPU as the file streamed in are compared by order-independent statistics of their values.

import { DTYPES, isFloat } from '../ir/dtype.js';
import type { Graph, Initializer, ValueStats } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';

/** A stored weight that is another one shared (tied): counted once, under `of`. */
export interface SharedWeight {
  readonly name: string;
  readonly of: string;
  readonly transposed: boolean;
}

export interface ParameterCount {
  /** Parameters as PyTorch counts them (shared weights once). */
  readonly count: number;
  /** The distinct float tensors holding them, and their bytes in the file's dtypes. */
  readonly tensors: number;
  readonly bytes: number;
  /** Initializers left out of the count as copies of a weight counted already. */
  readonly shared: readonly SharedWeight[];
}

/** The graph's parameters, each shared (tied, copied or transposed) weight counted once. */
export function countParameters(graph: Graph): ParameterCount {
  const floats = [...graph.initializers.values()].filter((t) => !t.constant && !t.buffer && isFloat(t.dtype));
  let count = 0;
  let tensors = 0;
  let bytes = 0;
  const shared: SharedWeight[] = [];
  // Only tensors of one size can be copies of each other: compare within a size.
  const bySize = new Map<number, Initializer[]>();
  for (const t of floats) {
    const n = sizeOf(t.dims);
    const same = bySize.get(n) ?? [];
    let copy: SharedWeight | undefined;
    // A tensor of one repeated value (zero biases of a fresh model) equals others by chance, not by a tie.
    for (const o of same) {
      const transposed = sharedWith(o, t);
      if (transposed !== undefined && !constantValued(t)) {
        copy = { name: t.name, of: o.name, transposed };
        break;
      }
    }
    if (copy) shared.push(copy);
    else {
      count += n;
      tensors++;
      bytes += n * DTYPES[t.dtype].bytes;
      same.push(t);
      bySize.set(n, same);
    }
  }
  return { count, tensors, bytes, shared };
}

/** undefined when `b` is not `a` shared; else whether it is `a`'s transpose. */
function sharedWith(a: Initializer, b: Initializer): boolean | undefined {
  // A quantised weight's data is its packed words: never a copy of a float tensor's values (a tie
  // the quantiser broke, GPT-2's lm_head stored in 8 bits beside an f32 wte, counts twice).
  if ((a.storage && a.storage !== 'f16x2') || (b.storage && b.storage !== 'f16x2')) return undefined;
  if (a.dtype !== b.dtype) return undefined;
  const sameDims = a.dims.join() === b.dims.join();
  const transposed = a.dims.length === 2 && b.dims.length === 2 && a.dims[0] === b.dims[1] && a.dims[1] === b.dims[0];
  if (!sameDims && !transposed) return undefined;
  const x = a.data;
  const y = b.data;
  if (!x || !y) return sameStats(a, b) ? !sameDims : undefined;
  if (x.length !== y.length || x.length < 2) return undefined;
  if (sameDims && x.every((v, i) => v === y[i])) return false;
  if (!transposed) return undefined;
  const [r, c] = a.dims as [number, number];
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (x[i * c + j] !== y[j * r + i]) return undefined;
  return true;
}

function constantValued(t: Initializer): boolean {
  const s = statsOf(t);
  return s === undefined || s.min === s.max;
}

/**
 * Copies or transposes of each other by their values' statistics, for weights whose data is on the
 * GPU only: equal minimum and maximum, and sums that agree to float64 rounding (summed in a
 * different order when transposed).
 */
function sameStats(a: Initializer, b: Initializer): boolean {
  const s = statsOf(a);
  const t = statsOf(b);
  if (!s || !t || sizeOf(a.dims) < 2) return false;
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
