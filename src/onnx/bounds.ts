// Index operands: what the float64 executor rejects, found before anything runs on the GPU.
//
// A Gather reads row `i` of a table only for i in [−n, n); a cross-entropy label must be a class in
// [0, V) or ignore_index. The references throw on anything else; the GPU kernels cannot raise, so
// they clamp (Gather) or skip (the loss), and a token id past the vocabulary silently read the last
// row. `indexBounds` finds, per runtime input of a specialised graph, the index operands it reaches
// unchanged (through Reshape, Unsqueeze, Squeeze, Flatten, Expand, Slice and integer Casts) and the
// range each allows; `checkIndexFeeds` checks feeds against them on the CPU before upload. Index
// operands that are constants of the specialised graph (positions folded from a Range) are checked
// once, here. Indices computed at run time by arithmetic are out of reach: the kernels clamp them.

import { InputError, ShapeError } from '../errors.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import type { SpecializedGraph, SpecNode } from '../ir/static-graph.js';

/** The range an index operand allows: [lo, hi), plus `ignore` when set. */
export interface IndexBound {
  readonly lo: number;
  readonly hi: number;
  readonly ignore?: number;
  /** What the operand indexes, for messages: "the 50257 rows of 'wte.weight' (Gather node '…')". */
  readonly what: string;
}

/** Index operands by op type: which input, and its range given the node and the graph. */
const INDEX_OPERANDS: Readonly<Record<string, (n: SpecNode, spec: SpecializedGraph) => { input: number; bound: IndexBound } | undefined>> = {
  Gather: axisBound,
  GatherElements: axisBound,
  CrossEntropyLoss: (n, spec) => ceBound(n, spec, 1),
  CrossEntropyLossGrad: (n, spec) => ceBound(n, spec, 2),
};

/** Gather's and GatherElements' indices (input 1): [−n, n) for the data's axis of size n. */
function axisBound(n: SpecNode, spec: SpecializedGraph): { input: number; bound: IndexBound } | undefined {
  const dims = spec.types.get(n.inputs[0]!)?.dims;
  if (!dims) return undefined;
  const axis = Number(n.attrs.axis ?? 0);
  const size = dims[axis < 0 ? axis + dims.length : axis]!;
  return { input: 1, bound: { lo: -size, hi: size, what: `the ${size} entries of axis ${axis} of '${n.inputs[0]}' (${n.opType} node '${n.name}')` } };
}

function ceBound(n: SpecNode, spec: SpecializedGraph, labels: number): { input: number; bound: IndexBound } | undefined {
  const logits = spec.types.get(n.inputs[labels - 1]!)?.dims;
  if (!logits) return undefined;
  const v = logits[logits.length - 1]!;
  const ignore = Number(n.attrs.ignore_index ?? -100);
  return { input: labels, bound: { lo: 0, hi: v, ignore, what: `the ${v} classes of ${n.opType} node '${n.name}' (or ignore_index ${ignore})` } };
}

/** Ops whose first input reaches their output with its values unchanged (a subset, for Slice). */
const PASS_THROUGH = new Set(['Reshape', 'Unsqueeze', 'Squeeze', 'Flatten', 'Expand', 'Slice', 'Identity']);

const memo = new WeakMap<SpecializedGraph, ReadonlyMap<string, readonly IndexBound[]>>();

/**
 * The index operands each runtime input of `spec` reaches, with their ranges; throws ShapeError for
 * a constant index operand out of its range (the reference would, at run time).
 */
export function indexBounds(spec: SpecializedGraph): ReadonlyMap<string, readonly IndexBound[]> {
  const hit = memo.get(spec);
  if (hit) return hit;
  const origin = new Map<string, string>(spec.inputs.map((i) => [i.name, i.name]));
  const out = new Map<string, IndexBound[]>();
  for (const n of spec.nodes) {
    const rule = INDEX_OPERANDS[n.opType]?.(n, spec);
    if (rule) {
      const operand = n.inputs[rule.input]!;
      const from = origin.get(operand);
      if (from) {
        let list = out.get(from);
        if (!list) out.set(from, (list = []));
        list.push(rule.bound);
      }
      const constant = spec.constants.get(operand);
      if (constant) {
        const bad = constant.data.findIndex((x) => !inBound(x, rule.bound));
        if (bad >= 0) throw new ShapeError(n.opType, n.name, `index ${constant.data[bad]} at position ${bad} of '${operand}' is outside ${range(rule.bound)}: ${rule.bound.what}`);
      }
    }
    const src = origin.get(n.inputs[0] ?? '');
    const intCast = n.opType === 'Cast' && !FLOAT_TYPES.has(spec.types.get(n.outputs[0]!)?.dtype ?? 'float32');
    if (src && (PASS_THROUGH.has(n.opType) || intCast)) origin.set(n.outputs[0]!, src);
  }
  memo.set(spec, out);
  return out;
}

function inBound(x: number, b: IndexBound): boolean {
  return (x >= b.lo && x < b.hi) || x === b.ignore;
}

function range(b: IndexBound): string {
  return `[${b.lo}, ${b.hi})${b.ignore === undefined ? '' : ` ∪ {${b.ignore}}`}`;
}

/**
 * Throws InputError naming the input, the element and the table when a feed holds an index its
 * operands do not allow (what the float64 executor would reject).
 */
export function checkIndexFeeds(spec: SpecializedGraph, feeds: ReadonlyMap<string, { readonly data: ArrayLike<number> }>): void {
  for (const [name, bounds] of indexBounds(spec)) {
    const data = feeds.get(name)?.data;
    if (!data) continue;
    for (const b of bounds) {
      for (let i = 0; i < data.length; i++) {
        const x = data[i]!;
        if (!inBound(x, b)) throw new InputError(`input '${name}': element ${i} is ${x}, outside ${range(b)}: it indexes ${b.what}`);
      }
    }
  }
}

/** The range a runtime input's values must lie in (the intersection of its operands'), if it reaches any. */
export function inputRange(spec: SpecializedGraph, input: string): { lo: number; hi: number; ignore?: number; what: string } | undefined {
  const bounds = indexBounds(spec).get(input);
  if (!bounds || bounds.length === 0) return undefined;
  let best = bounds[0]!;
  for (const b of bounds) if (b.hi - b.lo < best.hi - best.lo) best = b;
  return { lo: Math.max(...bounds.map((b) => b.lo)), hi: Math.min(...bounds.map((b) => b.hi)), ignore: best.ignore, what: best.what };
}
