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
// transformers.js `q8` files (onnxruntime's dynamic IntegerOps quantiser) compute each linear layer
// as DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q, x_zp, W_zp) → Cast → Mul(x_scale · W_scale).
// Since Σ (xq − xzp)(wq − wzp)·xs·ws = fakequant(x) · dequant(W) exactly in real arithmetic, each
// chain becomes `DynamicQuantizeDequantize(x)` (ops/quantize.ts; one per DynamicQuantizeLinear,
// shared by the matmuls of one input) and a MatMul on W kept packed (`i8c`/`u8c`, per-tensor scale
// repeated per column) under the codes' name (`<W>_quantized`); the MatMul is named as the fp32
// export's node (the MatMulInteger without `_quant`), so module discovery and IA3 see the fp32
// model's linear layers. (The weight keeps the file's name: the quantiser stores a Gemm transB
// weight transposed under its parameter's name, so `<W>` would pass for a GPT-2 Conv1D weight.)
// Their 8-bit embedding tables (`Gather(T_q, ids)` → DequantizeLinear of the gathered codes, per
// tensor) become a Gather on T_q kept packed (`i8r`/`u8r`) that dequantises rows as it reads them.
//
// Invariant: the rewritten graph computes the same values (a half → float Cast is exact; the
// kernels and the CPU executor dequantise as DequantizeLinear does, in f32; the q8 products differ
// from MatMulInteger's integer sums by float rounding only).

import { UnsupportedOpError } from '../errors.js';
import { packInt8, packQ4, q4Layout, type WeightStorage } from '../ir/dtype.js';
import { initializerToRef, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { resolveOp } from '../ops/registry.js';

const FLOAT = 1; // TensorProto.FLOAT, Cast's `to`

/** Whether `node` reads `value` only at inputs its kernel reads packed in `storage`. */
function readsPacked(node: Node, value: string, storage: WeightStorage): boolean {
  const op = resolveOp(node.domain, node.opType);
  if (op?.kind !== 'primitive' || !(op.def.packedStorage?.(storage) ?? true)) return false;
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

function readersOf(graph: Graph): Map<string, Node[]> {
  const readers = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const v of new Set(n.inputs)) {
      if (v === '') continue;
      const list = readers.get(v);
      if (list) list.push(n);
      else readers.set(v, [n]);
    }
  }
  return readers;
}

/** A constant 8-bit tensor with its CPU data, or undefined. */
function codesOf(graph: Graph, name: string | undefined): (Initializer & { data: Int8Array | Uint8Array }) | undefined {
  const t = name ? graph.initializers.get(name) : undefined;
  return t?.data && (t.dtype === 'int8' || t.dtype === 'uint8') ? (t as Initializer & { data: Int8Array | Uint8Array }) : undefined;
}

/**
 * The per-channel scales and zero points of a weight's `channels` from constant scale (float32)
 * and zero-point (the codes' dtype, or absent: 0) tensors holding one value or one per channel.
 */
function channelParams(graph: Graph, scaleName: string, zpName: string | undefined, dtype: string, channels: number): [Float64Array, Float64Array] | undefined {
  const scale = graph.initializers.get(scaleName);
  const zp = zpName ? graph.initializers.get(zpName) : undefined;
  if (!scale?.data || scale.dtype !== 'float32' || (zpName && (!zp?.data || zp.dtype !== dtype))) return undefined;
  const fits = (t: Initializer): boolean => {
    const n = t.dims.reduce((a, d) => a * d, 1);
    return n === 1 || (t.dims.length === 1 && n === channels);
  };
  if (!fits(scale) || (zp && !fits(zp))) return undefined;
  const repeat = (v: Float64Array): Float64Array => (v.length === 1 ? new Float64Array(channels).fill(v[0]!) : v);
  return [repeat(initializerToRef(scale).data), repeat(zp ? initializerToRef(zp).data : new Float64Array(1))];
}

/** A q8 linear layer: the nodes after its DynamicQuantizeLinear, and the MatMul that replaces them. */
interface Int8Chain {
  readonly nodes: readonly Node[];
  readonly matmul: Node;
}

/**
 * The chain MatMulInteger(x_q, W_q, x_zp, W_zp) → Cast(to=FLOAT) → Mul(·, Mul(x_scale, W_scale))
 * on the outputs of DynamicQuantizeLinear `dq`, when `mm` starts one over constant 8-bit weights.
 */
function int8Chain(graph: Graph, readers: Map<string, Node[]>, outputs: Set<string>, dq: Node, mm: Node, weights: Map<string, Initializer>): Int8Chain | undefined {
  const [xq, xScale, xZp] = dq.outputs;
  if (mm.opType !== 'MatMulInteger' || mm.domain !== '' || mm.inputs[0] !== xq || mm.inputs[2] !== xZp) return undefined;
  const w = codesOf(graph, mm.inputs[1]);
  if (!w || w.dims.length !== 2) return undefined;
  const only = (v: string): Node | undefined => {
    const rs = readers.get(v) ?? [];
    return rs.length === 1 && !outputs.has(v) ? rs[0] : undefined;
  };
  const cast = only(mm.outputs[0]!);
  if (!cast || cast.opType !== 'Cast' || cast.domain !== '' || Number(cast.attrs.to) !== FLOAT) return undefined;
  const mul = only(cast.outputs[0]!);
  if (!mul || mul.opType !== 'Mul' || mul.domain !== '') return undefined;
  const scales = graph.nodes.find((n) => n.outputs[0] === mul.inputs.find((v) => v !== cast.outputs[0]));
  if (!scales || scales.opType !== 'Mul' || scales.domain !== '' || only(scales.outputs[0]!) !== mul || !scales.inputs.includes(xScale!)) return undefined;
  const wScale = scales.inputs.find((v) => v !== xScale);
  const N = w.dims[1]!;
  const key = `${w.name}\u0000${wScale}\u0000${mm.inputs[3] ?? ''}`;
  let weight = weights.get(key);
  if (!weight) {
    // The codes packed already with other scales (or as a table) would need a second name.
    if ([...weights.values()].some((x) => x.name === w.name)) return undefined;
    const params = wScale === undefined ? undefined : channelParams(graph, wScale, mm.inputs[3] || undefined, w.dtype, N);
    if (!params) return undefined;
    weight = {
      name: w.name,
      dtype: 'float32',
      dims: [...w.dims],
      data: packInt8(w.data, ...params),
      storage: w.dtype === 'int8' ? 'i8c' : 'u8c',
    };
    weights.set(key, weight);
  }
  const name = mm.name.endsWith('_quant') ? mm.name.slice(0, -'_quant'.length) : `${mm.name}/MatMul`;
  const matmul: Node = { name, opType: 'MatMul', domain: '', inputs: [xq!, weight.name], outputs: [mul.outputs[0]!], attrs: {} };
  return { nodes: [mm, cast, scales, mul], matmul };
}

/**
 * The 8-bit embedding table `Gather(T_q, ids)` → `DequantizeLinear(·, scale, zp)` (one scale and
 * zero point for the table) of node `dq`, as a Gather on the table kept packed with per-row scales.
 */
function int8Table(graph: Graph, readers: Map<string, Node[]>, dq: Node, tables: Map<string, Initializer>): Node | undefined {
  const gather = graph.nodes.find((n) => n.outputs[0] === dq.inputs[0]);
  if (!gather || gather.opType !== 'Gather' || gather.domain !== '' || Number(gather.attrs.axis ?? 0) !== 0) return undefined;
  if ((readers.get(gather.outputs[0]!) ?? []).length !== 1) return undefined;
  const t = codesOf(graph, gather.inputs[0]);
  if (!t || t.dims.length !== 2 || gather.inputs[1] === t.name) return undefined;
  const key = `${t.name}\u0000${dq.inputs[1]}\u0000${dq.inputs[2] ?? ''}`;
  let table = tables.get(key);
  if (!table) {
    if ([...tables.values()].some((x) => x.name === t.name)) return undefined;
    // One scale for the whole table (the quantiser's per-tensor form), repeated per row.
    const scale = graph.initializers.get(dq.inputs[1] ?? '');
    if (!scale || scale.dims.reduce((a, d) => a * d, 1) !== 1) return undefined;
    const params = channelParams(graph, scale.name, dq.inputs[2] || undefined, t.dtype, t.dims[0]!);
    if (!params) return undefined;
    table = {
      name: t.name,
      dtype: 'float32',
      dims: [...t.dims],
      data: packInt8(t.data, ...params),
      storage: t.dtype === 'int8' ? 'i8r' : 'u8r',
    };
    tables.set(key, table);
  }
  return { ...gather, inputs: [table.name, gather.inputs[1]!], outputs: [dq.outputs[0]!] };
}

/**
 * `graph` with transformers.js q8 chains lowered (see the header): each DynamicQuantizeLinear whose
 * every reader starts a recognised MatMulInteger chain, and each DequantizeLinear of an 8-bit
 * embedding table's rows. Anything else is left as it is (and refused as unsupported ops).
 */
function lowerDynamicInt8(graph: Graph): Graph {
  if (!graph.nodes.some((n) => n.opType === 'DynamicQuantizeLinear' || n.opType === 'DequantizeLinear')) return graph;
  const readers = readersOf(graph);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const weights = new Map<string, Initializer>();
  const replace = new Map<Node, Node | undefined>(); // old node → its replacement (undefined: dropped)
  for (const dq of graph.nodes) {
    if (dq.domain !== '') continue;
    if (dq.opType === 'DynamicQuantizeLinear') {
      if (dq.outputs.length !== 3 || dq.outputs.some((v) => outputs.has(v))) continue;
      const chains = (readers.get(dq.outputs[0]!) ?? []).map((mm) => int8Chain(graph, readers, outputs, dq, mm, weights));
      if (chains.length === 0 || chains.some((c) => !c)) continue;
      // Every reader of the scale and zero point must be one of these chains.
      const own = new Set(chains.flatMap((c) => c!.nodes));
      if (!dq.outputs.slice(1).every((v) => (readers.get(v) ?? []).every((r) => own.has(r)))) continue;
      replace.set(dq, { name: `${dq.name}_Dequantize`, opType: 'DynamicQuantizeDequantize', domain: 'ia3', inputs: [dq.inputs[0]!], outputs: [dq.outputs[0]!], attrs: {} });
      for (const c of chains) {
        const [mm, cast, scales, mul] = c!.nodes;
        for (const n of [mm!, cast!, scales!]) replace.set(n, undefined);
        replace.set(mul!, c!.matmul);
      }
    } else if (dq.opType === 'DequantizeLinear' && !outputs.has(dq.outputs[0]!)) {
      const gather = int8Table(graph, readers, dq, weights);
      if (!gather) continue;
      replace.set(graph.nodes.find((n) => n.outputs[0] === dq.inputs[0])!, gather);
      replace.set(dq, undefined);
    }
  }
  if (replace.size === 0) return graph;
  const nodes = graph.nodes.flatMap((n) => (replace.has(n) ? (replace.get(n) ? [replace.get(n)!] : []) : [n]));
  const initializers = new Map(graph.initializers);
  for (const w of weights.values()) initializers.set(w.name, w);
  // The file's codes, scales and zero points are gone unless something else reads them.
  const read = new Set(nodes.flatMap((n) => n.inputs));
  const made = new Set([...weights.values()].map((w) => w.name));
  for (const v of new Set([...replace.keys()].flatMap((n) => n.inputs))) {
    if (!read.has(v) && !outputs.has(v) && !made.has(v)) initializers.delete(v);
  }
  return { ...graph, initializers, nodes };
}

/** The constant table a GatherBlockQuantized reads: an initializer, or a Reshape of one to constant dims. */
function gatherTable(graph: Graph, value: string): { init: Initializer; dims: readonly number[] } | undefined {
  const direct = graph.initializers.get(value);
  if (direct) return { init: direct, dims: direct.dims };
  const r = graph.nodes.find((n) => n.outputs[0] === value);
  const init = r?.opType === 'Reshape' && r.domain === '' ? graph.initializers.get(r.inputs[0]!) : undefined;
  const shape = r ? graph.initializers.get(r.inputs[1] ?? '') : undefined;
  if (!init || !shape?.data) return undefined;
  const dims = Array.from(initializerToRef(shape).data);
  return dims.length === 2 && dims.every((d) => d > 0) && dims[0]! * dims[1]! === init.dims.reduce((a, d) => a * d, 1) ? { init, dims } : undefined;
}

/**
 * onnxruntime's `GatherBlockQuantized` (com.microsoft) of a 2-D 4-bit table [V, H] quantised in
 * blocks along H (gather_axis 0, quantize_axis 1, bits 4; uint8 pairs as MatMulNBits stores them,
 * or ONNX INT4 / UINT4) as a Gather along axis 1 of W = tableᵀ [H, V] kept in MatMulNBits' 4-bit
 * layout (`q4b…`: its rows of codes are the table's rows), then a Transpose to [..., H]. The layout
 * is MatMulNBits' own, so a table the file shares with a MatMulNBits LM head (onnxruntime-genai's
 * `shared_embeddings`) is the head's packed weight itself: one copy on the GPU.
 */
function lowerGatherBlockQuantized(graph: Graph): Graph {
  const nodes = graph.nodes.filter((n) => n.opType === 'GatherBlockQuantized' && n.domain === 'com.microsoft');
  if (nodes.length === 0) return graph;
  const initializers = new Map(graph.initializers);
  const replace = new Map<Node, Node[]>();
  const fail = (n: Node, reason: string): never => {
    throw new UnsupportedOpError('GatherBlockQuantized', n.name, reason, undefined, 'com.microsoft');
  };
  for (const g of nodes) {
    const attr = (name: string, fallback: number): number => Number(g.attrs[name] ?? fallback);
    const [data, indices, scalesName, zpName] = g.inputs;
    const table = gatherTable(graph, data!);
    const scales = graph.initializers.get(scalesName ?? '');
    const zp = zpName ? graph.initializers.get(zpName) : undefined;
    if (!table || !scales?.data || (zpName && !zp?.data)) fail(g, 'data (or a Reshape of it), scales and zero_points must be initializers (a frozen table)');
    const block = attr('block_size', 128);
    if (attr('gather_axis', 0) !== 0 || ![1, -1].includes(attr('quantize_axis', 1)) || attr('bits', 4) !== 4) fail(g, 'only gather_axis 0 and quantize_axis 1 of a 2-D table in 4 bits are supported');
    if (block < 16 || (block & (block - 1)) !== 0) fail(g, `block_size must be a power of two ≥ 16, got ${block}`);
    const { init, dims } = table!;
    if (init.dtype !== 'uint8' || !init.data || dims.length !== 2) fail(g, `data must be a 2-D uint8, INT4 or UINT4 table, got ${init.dtype} [${dims.join(',')}]`);
    const [V, H] = [dims[0]!, dims[1]! * 2];
    const blocks = Math.ceil(H / block);
    if (scales!.dims.reduce((a, d) => a * d, 1) !== V * blocks) fail(g, `scales must hold [${V}, ${blocks}] values, got [${scales!.dims.join(',')}]`);
    // Zero points as 4-bit pairs per row (MatMulNBits' layout); UINT4 codes without them have 0.
    let zeros: Uint8Array | undefined;
    if (zp) {
      if (zp.dtype !== 'uint8' || zp.data!.length !== V * Math.ceil(blocks / 2)) fail(g, `zero_points must be 4-bit pairs [${V}, ${Math.ceil(blocks / 2)}], got ${zp.dtype} [${zp.dims.join(',')}]`);
      zeros = zp.data as Uint8Array;
    } else if (init.int4 === 'uint4') {
      zeros = new Uint8Array(V * Math.ceil(blocks / 2));
    }
    // Each row's codes padded to whole blocks.
    const rowBytes = (blocks * block) / 2;
    const codes = new Uint8Array(V * rowBytes);
    for (let v = 0; v < V; v++) codes.set((init.data as Uint8Array).subarray(v * (H / 2), (v + 1) * (H / 2)), v * rowBytes);
    const words = packQ4(q4Layout(H, V, block), codes, initializerToRef(scales!).data, zeros);
    const storage: WeightStorage = zeros ? `q4b${block}z` : `q4b${block}`;
    const same = (w: Initializer): boolean => w.storage === storage && w.dims[0] === H && w.dims[1] === V && !!w.data && (w.data as Uint32Array).every((x, i) => x === words[i]);
    let weight = [...initializers.values()].find(same);
    if (!weight) {
      weight = { name: `${init.name}_gather`, dtype: scales!.dtype, dims: [H, V], data: words, storage };
      initializers.set(weight.name, weight);
    }
    const idx = graph.initializers.get(indices!)?.dims ?? graph.inputs.find((i) => i.name === indices)?.dims;
    if (!idx) fail(g, `the rank of indices '${indices}' must be known at load (a graph input or an initializer)`);
    const r = idx!.length;
    const cols = `${g.outputs[0]}_columns`;
    replace.set(g, [
      { name: `${g.name}/Gather`, opType: 'Gather', domain: '', inputs: [weight.name, indices!], outputs: [cols], attrs: { axis: 1 } },
      { name: `${g.name}/Transpose`, opType: 'Transpose', domain: '', inputs: [cols], outputs: [g.outputs[0]!], attrs: { perm: [...Array.from({ length: r }, (_, i) => i + 1), 0] } },
    ]);
  }
  // The file's table, scales and zero points (and the Reshape of a table) go once unread.
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const replaced = graph.nodes.flatMap((n) => replace.get(n) ?? [n]);
  const readBy = (ns: readonly Node[]): Set<string> => new Set([...ns.flatMap((n) => n.inputs), ...outputs]);
  const reshapes = new Set(nodes.map((g) => graph.nodes.find((n) => n.opType === 'Reshape' && n.outputs[0] === g.inputs[0])).filter((n): n is Node => !!n));
  const first = readBy(replaced);
  const live = replaced.filter((n) => !reshapes.has(n) || first.has(n.outputs[0]!));
  const read = readBy(live);
  for (const n of [...nodes, ...reshapes]) for (const v of n.inputs) if (v && !read.has(v)) initializers.delete(v);
  return { ...graph, nodes: live, initializers };
}

/**
 * `graph` with its packable float16 weights marked packed (their float Casts dropped), its QDQ
 * 8-bit weights folded into packed weights (their DequantizeLinear nodes dropped) and its q8
 * dynamic-quantisation chains lowered (see the header).
 */
export function packFrozenWeights(input: Graph): Graph {
  const graph = lowerDynamicInt8(lowerGatherBlockQuantized(input));
  // A 4-bit tensor is uint8 pairs in the IR (Initializer.int4): any other reader would misread it.
  for (const n of graph.nodes) {
    const t = n.inputs.map((v) => graph.initializers.get(v)).find((i) => i?.int4);
    if (t) throw new UnsupportedOpError(n.opType, n.name, `reads the 4-bit (${t.int4!.toUpperCase()}) tensor '${t.name}'; only GatherBlockQuantized's table and zero points may be 4-bit`);
  }
  const readers = readersOf(graph);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const dropped = new Map<string, string>(); // Cast output → the weight it widened
  const packed: Initializer[] = [];
  for (const init of graph.initializers.values()) {
    // A weight the streaming load packed on the GPU already has its `storage` (its sink saw only
    // matmul readers, directly or through Casts, onnx/weights-sink.ts): its Casts go all the same.
    if (init.dtype !== 'float16' || (init.storage && init.storage !== 'f16x2') || init.dims.length < 2 || outputs.has(init.name)) continue;
    const rs = readers.get(init.name) ?? [];
    const casts: Node[] = [];
    const ok =
      rs.length > 0 &&
      rs.every((r) => {
        if (readsPacked(r, init.name, 'f16x2')) return true;
        const cast = r.opType === 'Cast' && r.domain === '' && Number(r.attrs.to) === FLOAT && !outputs.has(r.outputs[0]!);
        if (!cast) return false;
        casts.push(r);
        const next = readers.get(r.outputs[0]!) ?? [];
        return next.length > 0 && next.every((x) => readsPacked(x, r.outputs[0]!, 'f16x2'));
      });
    if (!ok) continue;
    // One streamed to the GPU widened to f32 (no CPU data: a reader the sink could not see
    // through) stays f32 there, but loses its Casts all the same (they are exact), so module
    // discovery sees `x·W`.
    if (init.data && !init.storage) packed.push({ ...init, storage: 'f16x2' });
    for (const c of casts) dropped.set(c.outputs[0]!, init.name);
  }
  const folded = new Set<Node>();
  for (const n of graph.nodes) {
    if (n.opType !== 'DequantizeLinear' || n.domain !== '' || outputs.has(n.outputs[0]!)) continue;
    const next = readers.get(n.outputs[0]!) ?? [];
    const w = int8Weight(graph, n);
    if (!w || next.length === 0 || !next.every((r) => readsPacked(r, n.outputs[0]!, w.storage!))) continue;
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
