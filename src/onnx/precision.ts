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
// 8-bit weights in onnxruntime's QDQ form — `DequantizeLinear(W_int8, scale, zero_point, axis)` of
// constant 2-D weights read only by such inputs — become one weight with the DequantizeLinear's
// output name, stored `i8r`/`i8c`/`u8r`/`u8c` (codes, per-channel scales and zero points in one word
// array; a per-tensor scale is repeated per channel): the kernels dequantise it as they load.
//
// Invariant: the rewritten graph computes exactly the same values (a half → float Cast is exact;
// the kernels and the CPU executor dequantise as DequantizeLinear does, in f32).

import { packInt8 } from '../ir/dtype.js';
import { initializerToRef, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { resolveOp } from '../ops/registry.js';

const FLOAT = 1; // TensorProto.FLOAT, Cast's `to`

/** Whether `node` reads `value` only at inputs its kernel reads packed. */
function readsPacked(node: Node, value: string): boolean {
  const op = resolveOp(node.domain, node.opType);
  if (op?.kind !== 'primitive') return false;
  return node.inputs.every((v, k) => v !== value || (op.def.packedInputs?.includes(k) ?? false));
}

/** The packed weight a QDQ `DequantizeLinear` of constant 8-bit weights stands for, when it is one. */
function int8Weight(graph: Graph, dq: Node): Initializer | undefined {
  const [x, scale, zp] = dq.inputs.map((v) => (v ? graph.initializers.get(v) : undefined));
  // Values streamed to the GPU at load (no CPU data) cannot be repacked: the DequantizeLinear stays.
  if (!x?.data || !scale?.data || x.dims.length !== 2 || (x.dtype !== 'int8' && x.dtype !== 'uint8') || scale.dtype !== 'float32') return undefined;
  if (dq.inputs[2] && (!zp?.data || zp.dtype !== x.dtype)) return undefined;
  const axis = Number(dq.attrs.axis ?? 1);
  if (axis !== 0 && axis !== 1) return undefined;
  const channels = x.dims[axis]!;
  const perTensor = scale.dims.reduce((a, d) => a * d, 1) === 1;
  if (!perTensor && (scale.dims.length !== 1 || scale.dims[0] !== channels)) return undefined;
  const s = initializerToRef(scale).data;
  const z = zp ? initializerToRef(zp).data : new Float64Array(s.length);
  const repeat = (v: Float64Array): Float64Array => (perTensor ? new Float64Array(channels).fill(v[0]!) : v);
  return {
    name: dq.outputs[0]!,
    dtype: 'float32',
    dims: [...x.dims],
    data: packInt8(x.data as Int8Array | Uint8Array, repeat(s), repeat(z)),
    storage: `${x.dtype === 'int8' ? 'i' : 'u'}8${axis === 0 ? 'r' : 'c'}`,
  };
}

/**
 * `graph` with its packable float16 weights marked packed (their float Casts dropped) and its QDQ
 * 8-bit weights folded into packed weights (their DequantizeLinear nodes dropped).
 */
export function packFrozenWeights(graph: Graph): Graph {
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
    // A weight the streaming load packed on the GPU already has its `storage` (its sink saw only
    // matmul readers, onnx/weights-sink.ts).
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
    // One streamed to the GPU widened to f32 (no CPU data: read through Casts) stays f32 there,
    // but loses its Casts all the same (they are exact), so module discovery sees `x·W`.
    if (init.data) packed.push({ ...init, storage: 'f16x2' });
    for (const c of casts) dropped.set(c.outputs[0]!, init.name);
  }
  const folded = new Set<Node>();
  for (const n of graph.nodes) {
    if (n.opType !== 'DequantizeLinear' || n.domain !== '' || outputs.has(n.outputs[0]!)) continue;
    const next = readers.get(n.outputs[0]!) ?? [];
    if (next.length === 0 || !next.every((r) => readsPacked(r, n.outputs[0]!))) continue;
    const w = int8Weight(graph, n);
    if (!w) continue;
    packed.push(w);
    folded.add(n);
  }
  if (packed.length === 0 && dropped.size === 0) return graph;
  const initializers = new Map(graph.initializers);
  for (const p of packed) initializers.set(p.name, p);
  const nodes = graph.nodes
    .filter((n) => !(n.opType === 'Cast' && dropped.has(n.outputs[0]!)) && !folded.has(n))
    .map((n) => (n.inputs.some((v) => dropped.has(v)) ? { ...n, inputs: n.inputs.map((v) => dropped.get(v) ?? v) } : n));
  // The codes, scales and zero points of folded DequantizeLinears are gone unless something else reads them.
  const read = new Set(nodes.flatMap((n) => n.inputs));
  for (const n of folded) for (const v of n.inputs) if (v && !read.has(v) && !outputs.has(v)) initializers.delete(v);
  return { ...graph, initializers, nodes };
}
