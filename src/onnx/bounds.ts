// Index operands of the feeds: what the float64 executor and onnxruntime reject, found on the CPU
// before anything runs on the GPU.
//
// A Gather reads row `i` of a table only for i in [−n, n); a cross-entropy label must be a class in
// [0, V) or ignore_index. The references throw on anything else; the GPU kernels cannot raise, so
// they clamp or skip. `indexBounds` finds, per runtime input of a specialised graph, the index
// operands it reaches unchanged (through Reshape, Unsqueeze, Squeeze, Flatten, Expand, Slice and
// integer Casts) and the range each allows; `checkIndexFeeds` checks feeds against them before
// upload: a gather index out of range is onnxruntime's IndexOutOfRangeError (the same words, plus
// the input element), a label out of range an InputError.
//
// Division of work with onnx/index-checks.ts, which owns which operand of which gather indexes
// which table (`gatherAxis`, read here), the constant indices (checked at specialisation) and the
// indices computed at run time (interval proofs, GPU IndexCheck nodes read after the step). This
// module adds only what a feed brings: its values, known on the CPU before upload, and the loss's
// labels, which no GPU check covers.

import { IndexOutOfRangeError, InputError } from '../errors.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import type { SpecializedGraph, SpecNode } from '../ir/static-graph.js';
import { gatherAxis } from './index-checks.js';

/** The range an index operand allows: [lo, hi), plus `ignore` when set. */
export interface IndexBound {
  readonly lo: number;
  readonly hi: number;
  readonly ignore?: number;
  /** The gather whose indices these are (an out-of-range one is onnxruntime's error), if any. */
  readonly gather?: { readonly opType: string; readonly node: string };
  /** What the operand indexes, for messages: "the 50257 rows of 'wte.weight' (Gather node '…')". */
  readonly what: string;
}

/** Index operands by op type: which input, and its range given the node and the graph. */
const INDEX_OPERANDS: Readonly<Record<string, (n: SpecNode, spec: SpecializedGraph) => { input: number; bound: IndexBound } | undefined>> = {
  Gather: axisBound,
  GatherElements: axisBound,
  CrossEntropyLoss: (n, spec) => ceBound(n, spec, 1),
  CrossEntropyLossGrad: (n, spec) => ceBound(n, spec, 2),
  LMHeadCrossEntropy: lmHeadBound,
};

/** A gather's indices: [−n, n) for the axis of size n they address (see `gatherAxis`). */
function axisBound(n: SpecNode, spec: SpecializedGraph): { input: number; bound: IndexBound } | undefined {
  const dims = spec.types.get(n.inputs[0]!)?.dims;
  const g = dims && gatherAxis(n, dims);
  if (!g) return undefined;
  const { axis, axisDim: size } = g;
  return { input: 1, bound: { lo: -size, hi: size, gather: { opType: n.opType, node: n.name }, what: `the ${size} entries of axis ${axis} of '${n.inputs[0]}' (${n.opType} node '${n.name}')` } };
}

function ceBound(n: SpecNode, spec: SpecializedGraph, labels: number): { input: number; bound: IndexBound } | undefined {
  const logits = spec.types.get(n.inputs[labels - 1]!)?.dims;
  if (!logits) return undefined;
  const v = logits[logits.length - 1]!;
  const ignore = Number(n.attrs.ignore_index ?? -100);
  return { input: labels, bound: { lo: 0, hi: v, ignore, what: `the ${v} classes of ${n.opType} node '${n.name}' (or ignore_index ${ignore})` } };
}

/** The fused LM head's labels (ops/lm-head.ts): a class of the head's vocabulary, the blocks' widths summed. */
function lmHeadBound(n: SpecNode, spec: SpecializedGraph): { input: number; bound: IndexBound } | undefined {
  let v = 0;
  for (const w of n.inputs.slice(2)) {
    const dims = spec.types.get(w)?.dims;
    if (dims?.length !== 2) return undefined;
    v += n.attrs.transB === 1 ? dims[0]! : dims[1]!;
  }
  const ignore = Number(n.attrs.ignore_index ?? -100);
  return { input: 1, bound: { lo: 0, hi: v, ignore, what: `the ${v} classes of ${n.opType} node '${n.name}' (or ignore_index ${ignore})` } };
}

/**
 * Ops whose first input reaches their output with its values unchanged (a subset, for Slice; with
 * a constant fill around them, for Pad: the causal-LM loss shifts its labels with Slice and Pad).
 */
const PASS_THROUGH = new Set(['Reshape', 'Unsqueeze', 'Squeeze', 'Flatten', 'Expand', 'Slice', 'Identity', 'Pad']);

const memo = new WeakMap<SpecializedGraph, ReadonlyMap<string, readonly IndexBound[]>>();

/**
 * The index operands each runtime input of `spec` reaches, with their ranges (constant operands
 * were checked when `spec` was specialised, see index-checks.ts).
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
 * Throws when a feed holds an index its operands do not allow (what the float64 executor and
 * onnxruntime reject): IndexOutOfRangeError for a gather's index, in onnxruntime's words plus the
 * input element; InputError for a label, naming the input, the element and the classes.
 */
export function checkIndexFeeds(spec: SpecializedGraph, feeds: ReadonlyMap<string, { readonly data: ArrayLike<number> }>): void {
  for (const [name, bounds] of indexBounds(spec)) {
    const data = feeds.get(name)?.data;
    if (!data) continue;
    for (const b of bounds) {
      for (let i = 0; i < data.length; i++) {
        const x = data[i]!;
        if (inBound(x, b)) continue;
        if (b.gather) throw new IndexOutOfRangeError(b.gather.opType, b.gather.node, x, b.hi, `input '${name}' element ${i}, checked before upload`);
        throw new InputError(`input '${name}': element ${i} is ${x}, outside ${range(b)}: it indexes ${b.what}`);
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
