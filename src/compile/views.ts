// Strided views: products read their operands, and write their results, through the layout ops
// around them instead of after copies (ops/matmul.ts: FusedMatMul's aShape/aStrides/aOffset,
// bShape/…, yShape/yStrides).
//
//   Split(x)[j] → [Reshape] → Transpose → MatMul(·, ·)  ⇒ FusedMatMul(x, ·; aShape, aStrides, aOffset)
//   MatMul(p, v) → Transpose → [Reshape]                 ⇒ FusedMatMul(p, v; yShape, yStrides)
//
// Attention as exported reads each head's q, k, v from the c_attn product [B,T,3·H·D] through a
// Split along the last axis, a Reshape to [B,T,H,D] and a Transpose to [B,H,T,D] (k to [B,H,D,T]),
// and writes its context [B,H,T,D] back through a Transpose and a Reshape to [B,T,H·D]. Each
// Transpose is a copy kernel and a buffer, in the forward, in the backward's recomputation
// (autograd/remat.ts) and in the backward (the VJPs' mirror Transposes). Every such chain of
// Split / Reshape / Squeeze / Unsqueeze / Flatten / Identity / Transpose is an affine view of its
// source — element i of the result at offset + Σ i_d·stride_d — or no view at all (a Reshape that
// merges dims a Transpose separated); the matmul kernels take a view as a row stride and per-batch
// strides, so such a product reads q, k, v from the projection and writes the context in place.
//
// An operand is read as a view when its chain holds a copy (a Transpose or a Split), every reader
// of the chain's result is a product operand (so no copy survives for another reader while the
// source lives longer), its source is an activation (weights may be packed, ops/matmul.ts B_STORAGE)
// and one of the view's last two dims is contiguous (the kernels stage quads along it). A product's
// output is written as a view when each value of the chain after it has that chain's next node as
// its only reader, the chain holds a Transpose, and the product's last dim stays contiguous. A
// chain that is not a view — rotary embeddings applied to q and k, a Slice, an Expand of grouped
// keys — stays as it is. Chain nodes left without readers are dropped.
//
// Invariants: the rewritten graph computes the same values with the same f32 operations in the
// same order (only addresses change); the CPU reference runs the unfused graph, so the model tests
// check every rewritten plan against it.

import type { Attrs } from '../ir/graph.js';
import type { PlanGraph, PlanNode } from '../ir/static-graph.js';
import { sizeOf, stridesOf } from '../ir/tensor.js';
import { readableView } from '../ops/matmul.js';

/** Layout ops whose result is a strided view of their first input (when the dims allow). */
const RESHAPES = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
const COPIES = new Set(['Transpose', 'Split']);
const PRODUCTS = new Set(['MatMul', 'FusedMatMul']);

/** Logical dims read at offset + Σ index·stride of a buffer. */
interface View {
  readonly dims: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/**
 * The strides of `view` reshaped to `dims` without moving elements, or undefined when some new dim
 * would straddle two dims of different strides (the row-major walk of the view is not affine there).
 */
function reshapeStrides(view: View, dims: readonly number[]): number[] | undefined {
  if (sizeOf(dims) !== sizeOf(view.dims)) return undefined;
  if (sizeOf(dims) === 0) return undefined;
  // Dims of size 1 have no stride that matters; the others group into runs that step contiguously.
  const old = view.dims.map((d, i) => [d, view.strides[i]!] as const).filter(([d]) => d !== 1);
  const strides = new Array<number>(dims.length).fill(0);
  let j = dims.length - 1;
  let i = old.length - 1;
  while (i >= 0) {
    // One run of old dims (innermost first) that is contiguous in the buffer: stride base·k.
    const base = old[i]![1];
    let run = old[i]![0];
    while (i > 0 && old[i - 1]![1] === base * run) run *= old[--i]![0];
    i--;
    let got = 1;
    while (j >= 0 && (got < run || dims[j] === 1)) {
      strides[j] = base * got;
      got *= dims[j]!;
      j--;
    }
    if (got !== run) return undefined;
  }
  for (; j >= 0; j--) if (dims[j] !== 1) return undefined;
  return strides;
}

/** A Transpose's permutation of a rank-`rank` input (ONNX's default reverses the dims). */
function permOf(node: PlanNode, rank: number): readonly number[] {
  return (node.attrs.perm as readonly number[] | undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
}

/** `node` (a layout op) applied to `view` for its output `out`, or undefined when that is no view. */
function step(node: PlanNode, out: number, view: View, graph: PlanGraph): View | undefined {
  const dimsOf = (v: string) => graph.types.get(v)?.dims;
  const outDims = dimsOf(node.outputs[out]!);
  if (!outDims) return undefined;
  if (RESHAPES.has(node.opType)) {
    const strides = reshapeStrides(view, outDims);
    return strides && { dims: outDims, strides, offset: view.offset };
  }
  if (node.opType === 'Transpose') {
    const rank = view.dims.length;
    const perm = permOf(node, rank);
    if (perm.length !== rank) return undefined;
    return { dims: perm.map((p) => view.dims[p]!), strides: perm.map((p) => view.strides[p]!), offset: view.offset };
  }
  if (node.opType === 'Split') {
    const rank = view.dims.length;
    const a = Number(node.attrs.axis ?? 0);
    const axis = a < 0 ? a + rank : a;
    if (axis < 0 || axis >= rank) return undefined;
    let start = 0;
    for (let k = 0; k < out; k++) {
      const d = dimsOf(node.outputs[k]!);
      if (!d) return undefined;
      start += d[axis]!;
    }
    return { dims: outDims, strides: view.strides, offset: view.offset + start * view.strides[axis]! };
  }
  return undefined;
}

/** Returns `graph` with products reading and writing strided views where the module header says. */
export function foldViews<G extends PlanGraph>(graph: G): G {
  let nodes: PlanNode[] = [...graph.nodes];
  const isOutput = new Set(graph.outputs);
  const producer = new Map<string, PlanNode>();
  for (const n of nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  const readers = (v: string): PlanNode[] => nodes.filter((n) => n.inputs.includes(v));
  const float = (v: string): boolean => graph.types.get(v)?.dtype === 'float32';
  const isLayout = (n: PlanNode | undefined): n is PlanNode => !!n && (RESHAPES.has(n.opType) || COPIES.has(n.opType));

  // The view `v` is of an activation through a chain of layout ops holding a copy, if it is one.
  const viewOf = (v: string): { source: string; view: View } | undefined => {
    const chain: { node: PlanNode; out: number }[] = [];
    let value = v;
    for (let p = producer.get(value); isLayout(p) && p.inputs[0]; p = producer.get(value)) {
      chain.unshift({ node: p, out: p.outputs.indexOf(value) });
      value = p.inputs[0];
    }
    if (!chain.some((c) => COPIES.has(c.node.opType))) return undefined;
    const source = value;
    const dims = graph.types.get(source)?.dims;
    if (!dims || !float(source) || graph.resident.has(source) || graph.constants.has(source)) return undefined;
    let view: View | undefined = { dims, strides: stridesOf(dims), offset: 0 };
    for (const c of chain) if (view) view = step(c.node, c.out, view, graph);
    return view && { source, view };
  };
  const asFused = (n: PlanNode, attrs: Attrs): PlanNode =>
    n.opType === 'FusedMatMul' ? { ...n, attrs: { ...n.attrs, ...attrs } } : { ...n, opType: 'FusedMatMul', attrs, opset: 1 };

  // Operands.
  const folded = new Map<string, { source: string; view: View } | undefined>();
  nodes = nodes.map((node) => {
    if (!PRODUCTS.has(node.opType)) return node;
    const attrs: Attrs = {};
    const inputs = [...node.inputs];
    for (const [slot, x] of [[0, 'a'], [1, 'b']] as const) {
      const v = node.inputs[slot]!;
      if (node.attrs[`${x}Shape`] !== undefined) continue;
      if (!folded.has(v)) {
        const rs = readers(v);
        const onlyOperands = !isOutput.has(v) && rs.every((r) => PRODUCTS.has(r.opType) && r.inputs.slice(2).every((i) => i !== v));
        const found = onlyOperands ? viewOf(v) : undefined;
        folded.set(v, found && readableView(found.view.dims, found.view.strides) ? found : undefined);
      }
      const f = folded.get(v);
      if (!f) continue;
      inputs[slot] = f.source;
      Object.assign(attrs, { [`${x}Shape`]: [...f.view.dims], [`${x}Strides`]: [...f.view.strides], [`${x}Offset`]: f.view.offset });
    }
    return Object.keys(attrs).length ? { ...asFused(node, attrs), inputs } : node;
  });

  // Outputs: a product followed by Transpose / Reshape writes the chain's result in place.
  for (let at = 0; at < nodes.length; at++) {
    const node = nodes[at]!;
    if (!PRODUCTS.has(node.opType) || node.attrs.yShape !== undefined) continue;
    const rankA = ((node.attrs.aShape as number[] | undefined) ?? graph.types.get(node.inputs[0]!)?.dims ?? []).length;
    const rankB = ((node.attrs.bShape as number[] | undefined) ?? graph.types.get(node.inputs[1]!)?.dims ?? []).length;
    const y = node.outputs[0]!;
    const yDims = graph.types.get(y)?.dims;
    if (rankA < 2 || rankB < 2 || !yDims || !float(y)) continue;
    const chain: PlanNode[] = [];
    let value = y;
    for (;;) {
      if (isOutput.has(value)) break;
      const rs = readers(value);
      const next = rs[0];
      if (rs.length !== 1 || !next || next.inputs[0] !== value || next.inputs.slice(1).includes(value)) break;
      if (!RESHAPES.has(next.opType) && next.opType !== 'Transpose') break;
      chain.push(next);
      value = next.outputs[0]!;
    }
    // Trailing Reshapes after the last Transpose are free aliases: stop the chain there.
    while (chain.length && chain[chain.length - 1]!.opType !== 'Transpose') chain.pop();
    if (!chain.length) continue;
    const w = chain[chain.length - 1]!.outputs[0]!;
    const wDims = graph.types.get(w)?.dims;
    if (!wDims) continue;
    // Walk back from the result's row-major layout to the product's: a Transpose's input dim perm[i]
    // has the stride of its output dim i; a Reshape's input is the view reshaped.
    let view: View | undefined = { dims: wDims, strides: stridesOf(wDims), offset: 0 };
    for (let k = chain.length - 1; k >= 0 && view; k--) {
      const c = chain[k]!;
      const inDims = graph.types.get(c.inputs[0]!)?.dims;
      if (!inDims) view = undefined;
      else if (c.opType === 'Transpose') {
        const perm = permOf(c, inDims.length);
        const strides = new Array<number>(inDims.length).fill(0);
        perm.forEach((p, i) => (strides[p] = view!.strides[i]!));
        view = perm.length === inDims.length ? { dims: inDims, strides, offset: 0 } : undefined;
      } else {
        const strides = reshapeStrides(view, inDims);
        view = strides && { dims: inDims, strides, offset: 0 };
      }
    }
    const N = yDims[yDims.length - 1]!;
    if (!view || (view.strides[view.strides.length - 1] !== 1 && N !== 1)) continue;
    nodes[at] = { ...asFused(node, { yShape: [...wDims], yStrides: [...view.strides] }), outputs: [w, ...node.outputs.slice(1)] };
    nodes = nodes.filter((n) => !chain.includes(n));
  }

  // Layout nodes left without readers.
  for (let removed = true; removed; ) {
    const before = nodes.length;
    nodes = nodes.filter((n) => !isLayout(n) || n.outputs.some((o) => o && (isOutput.has(o) || readers(o).length > 0)));
    removed = nodes.length !== before;
  }
  return { ...graph, nodes };
}
