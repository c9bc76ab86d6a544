// Saved activations in half precision: what the backward keeps from the forward, stored as 16-bit
// floats.
//
// After the reverse pass and the rematerialisation (remat.ts), every forward value a backward node
// reads lives from its definition to that read. With `activationPrecision` 'f16' or 'bf16',
// `keepInHalf` rewrites the graph so that such a value is rounded once, right after its producer,
// to a PackHalf copy of half its bytes (ops/half.ts); the f32 value dies at its last forward reader,
// and an UnpackHalf right before its backward readers gives them an f32 tensor again, which lives
// only across those readers. This is mixed-precision training's storage of saved tensors (as
// bfloat16 autocast keeps them): the forward — and the loss — are computed in f32 as before; the
// gradients read activations with 11 (f16) or 8 (bf16) significant bits, a relative error of at
// most 2^-11 or 2^-8 per saved element.
//
// Which values: float forward values a backward node reads, that are not graph outputs (those live
// to the end anyway), whose element count is a multiple of four (the kernels move quads) and that
// are not small (at least 1/32 of the largest such value: a layer norm's per-row statistics would
// save nothing and cost two dispatches). Under 'layers' they are the layers' inputs, from which the
// backward runs the layer's forward again.
//
// A value whose backward readers are far apart is unpacked again for a later reader more than
// `REUSE` nodes after the previous one, so no unpacked copy spans the backward of several layers.

import { FLOAT_TYPES } from '../ir/dtype.js';
import { sizeOf } from '../ir/tensor.js';
import { freshNames, type SpecNode, type SpecializedGraph } from '../ir/static-graph.js';
import type { ActivationPrecision } from '../ops/half.js';

/** A value of less than this fraction of the largest saved one stays f32. */
const SMALL = 1 / 32;
/** Backward nodes after a reader within which a later reader shares its unpacked copy. */
const REUSE = 32;
/** Ops whose output is a rearrangement of their one activation input (compile/views.ts reads them in place). */
const VIEWS = new Set(['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Split']);

/**
 * Rewrites `graph` (forward nodes first, `forwardCount` of them) to keep the backward's saved
 * activations in `precision`; returns it unchanged for 'f32' or when no value qualifies.
 */
export function keepInHalf(graph: SpecializedGraph, forwardCount: number, precision: ActivationPrecision): SpecializedGraph {
  if (precision === 'f32') return graph;
  const forward = graph.nodes.slice(0, forwardCount);
  const backward = graph.nodes.slice(forwardCount);
  const producer = new Map<string, SpecNode>();
  for (const n of forward) for (const o of n.outputs) if (o) producer.set(o, n);
  const outputs = new Set([...graph.outputs, ...(graph.checks ?? []).map((c) => c.value), ...[...(graph.outputParts?.values() ?? [])].flat()]);
  const count = (v: string): number => sizeOf(graph.types.get(v)!.dims);
  // The value a view was taken of: its producer's one activation input, when it is a view op.
  const viewed = (v: string): string | undefined => {
    const p = producer.get(v);
    if (!p || !VIEWS.has(p.opType)) return undefined;
    const sources = p.inputs.filter((u) => u && producer.has(u));
    return sources.length === 1 && sources[0] === p.inputs[0] ? sources[0] : undefined;
  };
  const rootOf = (v: string): string => {
    let r = v;
    for (let u = viewed(r); u !== undefined; u = viewed(r)) r = u;
    return r;
  };

  // A saved value that is a view of another (attention's per-head q, k, v of the c_attn product)
  // is kept as that value: its root is packed, and the view is taken again of the unpacked root.
  const candidates = new Set<string>();
  for (const n of backward) {
    for (const v of n.inputs) {
      if (!v || !producer.has(v)) continue;
      const r = rootOf(v);
      const t = graph.types.get(r);
      if (t && !outputs.has(r) && FLOAT_TYPES.has(t.dtype) && count(r) % 4 === 0 && count(r) > 0) candidates.add(r);
    }
  }
  const largest = Math.max(0, ...[...candidates].map(count));
  const packed = new Set([...candidates].filter((v) => count(v) >= largest * SMALL));
  if (packed.size === 0) return graph;

  const types = new Map(graph.types);
  const fresh = freshNames(graph);
  const format = precision;
  const words = new Map<string, string>();
  const nodes: SpecNode[] = [];
  for (const n of forward) {
    nodes.push(n);
    for (const o of n.outputs) {
      if (!o || !packed.has(o)) continue;
      const w = fresh(`${o}/${format}`);
      types.set(w, { dtype: 'int32', dims: [count(o) / 2] });
      words.set(o, w);
      nodes.push({ name: fresh(`${n.name}/pack_${format}`), opType: 'PackHalf', domain: 'ia3', opset: 1, inputs: [o], outputs: [w], attrs: { format } });
    }
  }
  // Packed root → [its unpacked copy, index of the backward node that last read it, the views taken of that copy].
  const unpacked = new Map<string, { value: string; last: number; views: Map<string, string> }>();
  const unpack = (r: string, i: number): { value: string; views: Map<string, string> } => {
    const have = unpacked.get(r);
    if (have && i - have.last <= REUSE) {
      have.last = i;
      return have;
    }
    const value = fresh(`${r}/unpacked`);
    types.set(value, graph.types.get(r)!);
    nodes.push({ name: fresh(`${r}/unpack_${format}`), opType: 'UnpackHalf', domain: 'ia3', opset: 1, inputs: [words.get(r)!], outputs: [value], attrs: { format, shape: [...graph.types.get(r)!.dims] } });
    const entry = { value, last: i, views: new Map<string, string>() };
    unpacked.set(r, entry);
    return entry;
  };
  // `v` for backward node i: itself, the unpacked copy of its root, or the view taken again of that copy.
  const read = (v: string, i: number): string => {
    const r = producer.has(v) ? rootOf(v) : v;
    if (!packed.has(r)) return v;
    const copy = unpack(r, i);
    const again = (u: string): string => {
      if (u === r) return copy.value;
      const have = copy.views.get(u);
      if (have) return have;
      const p = producer.get(u)!;
      const inputs = p.inputs.map((x, k) => (k === 0 ? again(x) : x));
      const outs = p.outputs.map((o) => {
        if (!o) return o;
        const c = fresh(`${o}/${format}_view`);
        types.set(c, graph.types.get(o)!);
        copy.views.set(o, c);
        return c;
      });
      nodes.push({ ...p, name: fresh(`${p.name}/${format}_view`), inputs, outputs: outs });
      return copy.views.get(u)!;
    };
    return again(v);
  };
  backward.forEach((n, i) => {
    const inputs = n.inputs.map((v) => (v ? read(v, i) : v));
    nodes.push(inputs.some((v, k) => v !== n.inputs[k]) ? { ...n, inputs } : n);
  });
  return { ...graph, nodes, types };
}
