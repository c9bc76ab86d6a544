// Precision of frozen weights at load: which float16 weights stay half precision on the GPU.
//
// Precision is a property of a weight, not of the graph. A float16 initializer whose every reader
// is an op input that dequantises in its kernel (`OpDef.packedInputs`: MatMul's and Gemm's B) is
// kept as packed halves (`Initializer.storage` 'f16x2', ir/dtype.ts): half the GPU bytes of f32, on
// every adapter (the kernels widen with WGSL's core `unpack2x16float`; no `shader-f16` needed).
// Exporters that keep the compute in float32 read such a weight through `Cast(to=FLOAT)` nodes
// (onnxconverter-common's blocked ops, `<consumer>_input_cast<i>`); those Casts are exact and
// dropped here, so the product reads the half weight itself (mixed dtypes: the matmul computes in
// f32 and keeps A's dtype) and module discovery sees `x·W` again. Any other reader (a Gather, an
// elementwise op, a graph output) keeps the weight widened to f32, as before.
//
// Invariant: the rewritten graph computes exactly the same values (a half → float Cast is exact).

import type { Graph, Initializer, Node } from '../ir/graph.js';
import { resolveOp } from '../ops/registry.js';

const FLOAT = 1; // TensorProto.FLOAT, Cast's `to`

/** Whether `node` reads `value` only at inputs its kernel reads packed. */
function readsPacked(node: Node, value: string): boolean {
  const op = resolveOp(node.domain, node.opType);
  if (op?.kind !== 'primitive') return false;
  return node.inputs.every((v, k) => v !== value || (op.def.packedInputs?.includes(k) ?? false));
}

/** `graph` with its packable float16 weights marked packed and their float Casts dropped. */
export function packHalfWeights(graph: Graph): Graph {
  const readers = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const v of new Set(n.inputs)) {
      if (v === '') continue;
      const list = readers.get(v);
      if (list) list.push(n);
      else readers.set(v, [n]);
    }
  }
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const dropped = new Map<string, string>(); // Cast output → the weight it widened
  const packed: Initializer[] = [];
  for (const init of graph.initializers.values()) {
    if (init.dtype !== 'float16' || init.storage || init.dims.length < 2 || outputs.has(init.name)) continue;
    const rs = readers.get(init.name) ?? [];
    const casts: Node[] = [];
    const ok =
      rs.length > 0 &&
      rs.every((r) => {
        if (readsPacked(r, init.name)) return true;
        const cast = r.opType === 'Cast' && r.domain === '' && Number(r.attrs.to) === FLOAT && !outputs.has(r.outputs[0]!);
        if (!cast) return false;
        casts.push(r);
        const next = readers.get(r.outputs[0]!) ?? [];
        return next.length > 0 && next.every((x) => readsPacked(x, r.outputs[0]!));
      });
    if (!ok) continue;
    packed.push({ ...init, storage: 'f16x2' });
    for (const c of casts) dropped.set(c.outputs[0]!, init.name);
  }
  if (packed.length === 0) return graph;
  const initializers = new Map(graph.initializers);
  for (const p of packed) initializers.set(p.name, p);
  const nodes = graph.nodes
    .filter((n) => !(n.opType === 'Cast' && dropped.has(n.outputs[0]!)))
    .map((n) => (n.inputs.some((v) => dropped.has(v)) ? { ...n, inputs: n.inputs.map((v) => dropped.get(v) ?? v) } : n));
  return { ...graph, initializers, nodes };
}
