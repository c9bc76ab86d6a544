// Rematerialisation: what the backward recomputes instead of keeping alive from the forward.
//
// After the reverse pass, every forward value a backward node reads lives from its definition to
// that read: at GPT-2-small's 8×128 tokens that is ~54 MiB a layer. Much of it is cheap to compute
// again from values the backward keeps anyway: the post-GELU hidden state from the pre-GELU one
// (which GeluGrad reads), attention's per-head q, k, v from the c_attn product (which IA3's
// gradient reads; compile/views.ts then turns the recomputed copies into strided reads of it),
// the attention probabilities from q and k (a small product, the mask and
// a softmax, as flash attention's backward does). `rematerialize` rewrites the backward to do so:
// a saved value whose producer is a cheap op (element-wise, layout, softmax, a product of two
// activations — never a product with a weight, a normalisation, a reduction) and whose inputs,
// followed back through cheap ops, are values kept anyway (or small, or weights, constants and
// runtime inputs) is computed again right before its first backward reader, by copies of the
// forward nodes under fresh names. The forward value then dies at its last forward reader.
//
// With `layers` (the optional per-layer recomputation), every op of a layer (module scope `…/h.N/`,
// `…/layers.N/`, `…/layer.N/`) counts as cheap and the kept values are the layers' inputs: the
// backward runs a layer's forward again from its input before its gradient (ops outside the layers
// follow the cheap rule).
//
// Invariants: the rewritten graph computes the same values (the copies are the same nodes on the
// same inputs; the CPU reference runs them too), forward nodes are unchanged, a copy is placed
// before every reader it serves and after every value it reads.

import { sizeOf } from '../ir/tensor.js';
import { freshNames, type SpecNode, type SpecializedGraph } from '../ir/static-graph.js';

/** Which saved activations the backward recomputes (see the module header). */
export type Recompute = 'cheap' | 'layers' | 'none';
export const RECOMPUTE: readonly Recompute[] = ['cheap', 'layers', 'none'];

/** Ops cheap enough to run again in the backward (memory-bound, or small products of activations). */
const CHEAP = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Where', 'Neg', 'Sqrt', 'Exp', 'Tanh', 'Sigmoid', 'Relu', 'Erf', 'Gelu', 'Cast', 'Pow',
  'IA3Scale', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Transpose', 'Split', 'Slice', 'Concat', 'Expand',
  'Softmax', 'MaskedSoftmax', 'AttentionMask', 'RotaryEmbedding',
]);
/** Products: cheap only between two batched activations (attention's q·kᵀ and p·v), never with a weight. */
const PRODUCTS = new Set(['MatMul', 'FusedMatMul', 'Gemm']);
/** Never recomputed: the loss reads the vocabulary (and is the backward's first node anyway). */
const NEVER = new Set(['LMHeadCrossEntropy', 'CrossEntropyLoss']);

/** A value of at most this fraction of the one being recomputed is kept rather than recomputed. */
const SMALL = 1 / 32;

/** The layer a node belongs to, from its module scope (`/transformer/h.3/...` → `h.3`), if any. */
function layerOf(name: string): string | undefined {
  return /\/((?:h|layers?|blocks?)\.\d+)\//.exec(name)?.[1];
}

/**
 * Rewrites the backward nodes of `graph` (its nodes from `forwardCount` on) to recompute the saved
 * activations the policy allows; returns the graph unchanged for 'none' or when nothing qualifies.
 */
export function rematerialize(graph: SpecializedGraph, forwardCount: number, policy: Recompute): SpecializedGraph {
  if (policy === 'none') return graph;
  const forward = graph.nodes.slice(0, forwardCount);
  const backward = graph.nodes.slice(forwardCount);
  const producer = new Map<string, SpecNode>();
  for (const n of forward) for (const o of n.outputs) if (o) producer.set(o, n);
  const outputs = new Set([...graph.outputs, ...(graph.checks ?? []).map((c) => c.value)]);
  const bytes = (v: string): number => 4 * sizeOf(graph.types.get(v)?.dims ?? []);
  // A batched activation: computed, and of rank ≥ 3 (a weight, even one transposed by a node, is 2-D).
  const batched = (v: string | undefined): boolean => !!v && producer.has(v) && (graph.types.get(v)?.dims.length ?? 0) >= 3;
  const cheap = (n: SpecNode): boolean => {
    if (NEVER.has(n.opType)) return false;
    if (policy === 'layers' && layerOf(n.name) !== undefined) return true;
    if (PRODUCTS.has(n.opType)) return batched(n.inputs[0]) && batched(n.inputs[1]);
    return CHEAP.has(n.opType);
  };

  // The saved activations: forward values the backward reads.
  const saved = new Set<string>();
  for (const n of backward) for (const v of n.inputs) if (v && producer.has(v)) saved.add(v);
  // Under 'layers', a layer's outputs (values read by a node of another layer) are its boundary.
  const boundary = new Set<string>();
  if (policy === 'layers') {
    for (const n of forward) for (const v of n.inputs) if (v && producer.has(v) && layerOf(producer.get(v)!.name) !== layerOf(n.name)) boundary.add(v);
  }
  // Values kept alive for the backward: to start with, those no cheap op produces.
  const kept = new Set<string>();
  for (const v of saved) if (!cheap(producer.get(v)!) || outputs.has(v) || boundary.has(v)) kept.add(v);

  // A saved value is recomputed when every value its cheap producers read is kept anyway, small, or
  // not an activation (weights, constants, runtime inputs); under 'layers', a layer's input is kept.
  const recompute = new Set<string>();
  const plan = (v: string, target: string, trail: Set<string>, extra: Set<string>): boolean => {
    const p = producer.get(v);
    if (!p || kept.has(v) || extra.has(v)) return true;
    if (v !== target && (boundary.has(v) || bytes(v) <= bytes(target) * SMALL)) return extra.add(v), true;
    if (!cheap(p) || outputs.has(v)) return false;
    if (trail.has(v) || recompute.has(v)) return true;
    trail.add(v);
    return p.inputs.every((u) => !u || plan(u, target, trail, extra));
  };
  // In forward order, so that a value kept for its own sake (GeluGrad's input) is known kept when
  // a later one (GELU's output) is planned from it.
  const order = new Map(forward.map((n, i) => [n, i]));
  for (const v of [...saved].sort((x, y) => order.get(producer.get(x)!)! - order.get(producer.get(y)!)!)) {
    if (kept.has(v) || recompute.has(v)) continue;
    const trail = new Set<string>();
    const extra = new Set<string>();
    if (plan(v, v, trail, extra)) {
      for (const t of trail) recompute.add(t);
      for (const e of extra) kept.add(e);
    } else {
      kept.add(v);
    }
  }
  if (recompute.size === 0) return graph;

  // Emit: before each backward node, copies of the producers of the recomputed values it reads
  // (each copied once, at its first reader), then the node reading the copies.
  const types = new Map(graph.types);
  const named = freshNames(graph);
  const fresh = (base: string): string => named(`${base}/remat`);
  const copyOf = new Map<string, string>();
  const out: SpecNode[] = [];
  const materialise = (v: string): string => {
    if (!recompute.has(v)) return v;
    const have = copyOf.get(v);
    if (have) return have;
    const p = producer.get(v)!;
    const inputs = p.inputs.map((u) => (u ? materialise(u) : u));
    const outs = p.outputs.map((o) => {
      if (!o) return o;
      const c = fresh(o);
      types.set(c, graph.types.get(o)!);
      copyOf.set(o, c);
      return c;
    });
    out.push({ ...p, name: fresh(p.name), inputs, outputs: outs });
    return copyOf.get(v)!;
  };
  for (const n of backward) {
    const inputs = n.inputs.map((v) => (v ? materialise(v) : v));
    out.push(inputs.some((v, i) => v !== n.inputs[i]) ? { ...n, inputs } : n);
  }
  return { ...graph, nodes: [...forward, ...out], types };
}
