// Legalisation: a specialised graph rewritten so that no tensor a kernel binds exceeds the device's
// binding limit (DeviceTraits: the smaller of maxStorageBufferBindingSize and maxBufferSize).
//
// Weights over the limit become blocks along the axis their readers can take in blocks
// (ops/blocks.ts): an embedding table's row blocks are read by GatherBlocks; a matmul's B in blocks
// of its output columns gives one product per block, concatenated (and, where the blocks run
// along the contraction — the transposed product of a backward pass — one product per block of
// A's columns, summed); the fused LM head takes its vocabulary blocks as inputs. Block data is a
// view or copy of the weight's CPU data, or, for a weight streamed to the GPU only, the blocks the
// loader already stored under the same names. A graph output over the limit that a matmul produces
// (inference logits) is computed in chunks of rows, each an output part that `Plan.execute`
// concatenates on readback (`PlanGraph.outputParts`). Anything else over the limit — an
// activation no rule splits, a weight read by an op that cannot take blocks — is a SizeLimitError
// naming the tensor, its bytes and the limit, thrown here, before any GPU work.
//
// Runs after the reverse pass (so a backward product reading a split weight is split too) and
// before fusion; a graph that fits is returned unchanged.

import { SizeLimitError } from '../errors.js';
import { bindingLimit, type DeviceTraits } from '../gpu/traits.js';
import type { Attrs } from '../ir/graph.js';
import { residentBytes, type ResidentData, type SpecializedGraph, type SpecNode } from '../ir/static-graph.js';
import { sizeOf, type RefTensor, type TensorType } from '../ir/tensor.js';
import { blockAxis, blockData, blockLayout, type Block } from '../ops/blocks.js';

/** A legal graph: every tensor fits a binding; outputs too large for one are computed in parts. */
export type LegalGraph = SpecializedGraph & { readonly outputParts?: ReadonlyMap<string, readonly string[]> };

const MATMULS = new Set(['MatMul', 'Gemm', 'FusedMatMul']);
/** Opset of the ONNX nodes the legaliser adds (Slice with inputs, Concat, Reshape, Sum). */
const OPSET = 13;

/**
 * Rewrites `spec` for `device`'s binding limit (see the header). `stored(name)` says whether the
 * model's weight store holds a tensor of that name (the blocks of a weight streamed to the GPU).
 */
export function legalize(spec: SpecializedGraph, device: DeviceTraits, stored: (name: string) => boolean = () => false): LegalGraph {
  const limit = bindingLimit(device);
  const limitName = device.limits.maxStorageBufferBindingSize <= device.limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  // GPU bytes of a value: 4 per element, or a packed weight's words (ir/static-graph.ts residentBytes).
  const valueBytes = (v: string, t: TensorType, r = spec.resident.get(v)): number => (r?.storage ? residentBytes(r) : 4 * sizeOf(t.dims));
  const big = (v: string): boolean => {
    const t = spec.types.get(v);
    return t !== undefined && valueBytes(v, t) > limit;
  };
  const anyBig = spec.nodes.some((n) => n.inputs.some(big) || n.outputs.some(big)) || spec.inputs.some((i) => big(i.name));
  if (!anyBig) return spec;

  const types = new Map(spec.types);
  const constants = new Map(spec.constants);
  const resident = new Map<string, ResidentData>(spec.resident);
  const weights = [...spec.weights];
  let nodes: SpecNode[] = [...spec.nodes];
  const outputParts = new Map<string, string[]>();
  const taken = new Set([...types.keys(), ...nodes.map((n) => n.name)]);
  const fresh = (base: string): string => {
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };
  const producer = new Map<string, string>();
  for (const n of spec.nodes) n.outputs.forEach((o, k) => producer.set(o, `${n.opType} node '${n.name}' output ${k}`));
  const fail = (v: string, detail: string): never => {
    throw SizeLimitError.binding(v, valueBytes(v, types.get(v)!, resident.get(v)), limit, limitName, detail, producer.get(v));
  };
  const ints = (values: readonly number[]): string => {
    const name = fresh(`legal/ints[${values.join(',')}]`);
    const value: RefTensor = { dtype: 'int64', dims: [values.length], data: Float64Array.from(values) };
    types.set(name, { dtype: 'int64', dims: [values.length] });
    constants.set(name, value);
    resident.set(name, { type: types.get(name)!, data: Int32Array.from(values) });
    return name;
  };
  const node = (base: SpecNode, opType: string, inputs: string[], outputs: string[], attrs: Attrs = {}, domain = ''): SpecNode => ({
    name: fresh(`${base.name}/legal/${opType}`),
    opType,
    domain,
    inputs,
    outputs,
    attrs,
    opset: domain === '' ? Math.max(OPSET, base.domain === '' ? base.opset : 0) : 1,
  });
  /** `x` sliced to [start, end) along `axis` (a new value of the given type). */
  const slice = (at: SpecNode, x: string, axis: number, start: number, end: number, added: SpecNode[]): string => {
    const t = types.get(x)!;
    const y = fresh(`${x}/legal[${start}:${end}]`);
    types.set(y, { dtype: t.dtype, dims: t.dims.map((d, i) => (i === axis ? end - start : d)) });
    added.push(node(at, 'Slice', [x, ints([start]), ints([end]), ints([axis])], [y]));
    return y;
  };

  // ---- Activations over the limit: a matmul's graph output in chunks of rows; else refused.
  const outputs = new Set(spec.outputs);
  for (const i of spec.inputs) if (big(i.name)) fail(i.name, 'it is a runtime input; feed a smaller batch or sequence');
  for (const n of [...nodes]) {
    for (const o of n.outputs) {
      if (!o || valueBytes(o, types.get(o)!) <= limit) continue;
      if (!outputs.has(o) || nodes.some((m) => m.inputs.includes(o)) || !inRows(n)) {
        fail(o, `it is the output of ${n.opType} node '${n.name}', which cannot be computed in parts; use a shorter sequence or a smaller batch`);
      }
      const yt = types.get(o)!;
      const N = yt.dims[yt.dims.length - 1]!;
      const a = n.inputs[0]!;
      const at = types.get(a)!;
      const K = at.dims[at.dims.length - 1]!;
      const rows = sizeOf(at.dims) / K;
      const per = Math.floor(limit / (4 * Math.max(1, N)));
      if (per < 1) fail(o, 'a single row of it exceeds the limit');
      const added: SpecNode[] = [];
      let flat = a;
      if (at.dims.length !== 2) {
        flat = fresh(`${a}/legal/rows`);
        types.set(flat, { dtype: at.dtype, dims: [rows, K] });
        added.push(node(n, 'Reshape', [a, ints([rows, K])], [flat]));
      }
      const parts: string[] = [];
      for (let r0 = 0; r0 < rows; r0 += per) {
        const r1 = Math.min(rows, r0 + per);
        const part = fresh(`${o}/legal/rows[${r0}:${r1}]`);
        types.set(part, { dtype: yt.dtype, dims: [r1 - r0, N] });
        added.push({ ...node(n, n.opType, [slice(n, flat, 0, r0, r1, added), ...n.inputs.slice(1)], [part], n.attrs, n.domain), opset: n.opset });
        parts.push(part);
      }
      outputParts.set(o, parts);
      nodes = nodes.flatMap((m) => (m === n ? added : [m]));
    }
  }
  // ---- Weights over the limit: blocks, and their readers rewritten.
  for (const [w, r] of [...resident]) {
    if (valueBytes(w, r.type, r) <= limit) continue;
    const readers = nodes.filter((n) => n.inputs.includes(w));
    if (readers.length === 0) continue;
    // Blocks of packed words (4-bit blocks with their scales, 8-bit codes with per-channel scales)
    // are not cut: such a weight over the limit is refused.
    if (r.storage) fail(w, `it is stored packed (${r.storage}), and packed weights are not split into blocks; load the model's float32 export, whose weights are`);
    if (r.type.dims.length !== 2) fail(w, `only matrices are stored in blocks; it is read by ${readers[0]!.opType} node '${readers[0]!.name}'`);
    const axis = blockAxis(w, readers);
    if (typeof axis === 'string') fail(w, axis);
    const blocks = blockLayout(w, r.type.dims, axis as 0 | 1, limit) ?? fail(w, `a single ${axis === 0 ? 'row' : 'column'} exceeds the limit`);
    for (const b of blocks) {
      const type: TensorType = { dtype: r.type.dtype, dims: b.dims };
      types.set(b.name, type);
      if (r.data) resident.set(b.name, { type, data: blockData(r.data as Float32Array | Int32Array, r.type.dims, axis as number, b) }); // not packed: refused above
      else if (stored(b.name)) resident.set(b.name, { type });
      else fail(w, `it lives on the GPU as one buffer, and the blocks this device needs ('${b.name}', …) were not stored; load the model on this device`);
    }
    resident.delete(w);
    const wi = weights.indexOf(w);
    if (wi >= 0) weights.splice(wi, 1, ...blocks.map((b) => b.name));
    nodes = nodes.flatMap((n) => (n.inputs.includes(w) ? readInBlocks(n, w, axis as 0 | 1, blocks) : [n]));
  }

  /** The nodes that compute `n` reading `w` as `blocks` along `axis`. */
  function readInBlocks(n: SpecNode, w: string, axis: 0 | 1, blocks: readonly Block[]): SpecNode[] {
    const names = blocks.map((b) => b.name);
    if (n.opType === 'Gather') return [{ ...n, opType: 'GatherBlocks', domain: 'ia3', opset: 1, inputs: [n.inputs[1]!, ...names], attrs: {} }];
    if (n.opType === 'LMHeadCrossEntropy') {
      if (n.inputs.length !== 3) fail(w, `LMHeadCrossEntropy node '${n.name}' already reads its head in blocks`);
      return [{ ...n, inputs: [n.inputs[0]!, n.inputs[1]!, ...names] }];
    }
    if (!MATMULS.has(n.opType)) return fail(w, `${n.opType} node '${n.name}' cannot read it in blocks`);
    const transA = Number(n.attrs.transA ?? 0) === 1;
    const transB = Number(n.attrs.transB ?? 0) === 1;
    const y = n.outputs[0]!;
    const yt = types.get(y)!;
    const added: SpecNode[] = [];
    const [a, , c, inScale, outScale] = n.inputs;
    /** A vector input (bias, IA3 scale) of `len` elements, sliced to [s, e) along its long axis. */
    const vector = (v: string | undefined, len: number, s: number, e: number): string => {
      if (!v) return '';
      const t = types.get(v)!;
      const ax = t.dims.findIndex((d) => d === len);
      return sizeOf(t.dims) === len && len > 1 ? slice(n, v, ax, s, e, added) : v;
    };
    if (axis === (transB ? 0 : 1)) {
      // Blocks of B's output columns: one product per block, concatenated along Y's last axis.
      const N = yt.dims[yt.dims.length - 1]!;
      const parts = blocks.map((b) => {
        const part = fresh(`${y}/legal[${b.start}:${b.end}]`);
        types.set(part, { dtype: yt.dtype, dims: [...yt.dims.slice(0, -1), b.end - b.start] });
        const ins = [...n.inputs];
        ins[1] = b.name;
        if (n.opType === 'Gemm' && c) {
          const ct = types.get(c)!;
          if (ct.dims.length > 0 && ct.dims[ct.dims.length - 1] === N && N > 1) ins[2] = slice(n, c, ct.dims.length - 1, b.start, b.end, added);
        } else if (n.opType === 'FusedMatMul') {
          if (c) ins[2] = vector(c, N, b.start, b.end);
          if (outScale) ins[4] = vector(outScale, N, b.start, b.end);
        }
        added.push({ ...node(n, n.opType, ins, [part], n.attrs, n.domain), opset: n.opset });
        return part;
      });
      added.push(node(n, 'Concat', parts, [y], { axis: yt.dims.length - 1 }));
      return added;
    }
    // Blocks along the contraction: A's matching columns times each block, summed.
    const at = types.get(a!)!;
    const kAxis = transA ? at.dims.length - 2 : at.dims.length - 1;
    const K = at.dims[kAxis]!;
    const parts = blocks.map((b, i) => {
      const part = fresh(`${y}/legal[k${b.start}:${b.end}]`);
      types.set(part, { dtype: yt.dtype, dims: [...yt.dims] });
      const ins = [...n.inputs];
      ins[0] = slice(n, a!, kAxis, b.start, b.end, added);
      ins[1] = b.name;
      // The bias (Gemm's C) is added once, to the first block's product.
      if (i > 0 && c) ins[2] = '';
      if (n.opType === 'FusedMatMul' && inScale) ins[3] = vector(inScale, K, b.start, b.end);
      while (ins.length > 2 && ins[ins.length - 1] === '') ins.pop();
      added.push({ ...node(n, n.opType, ins, [part], n.attrs, n.domain), opset: n.opset });
      return part;
    });
    added.push(node(n, 'Sum', parts, [y]));
    return added;
  }

  // Whatever is still over the limit (a Concat of column blocks, say) has no rule.
  for (const n of nodes) {
    for (const v of [...n.inputs, ...n.outputs]) {
      if (v && valueBytes(v, types.get(v)!, resident.get(v)) > limit) {
        fail(v, `it is ${n.inputs.includes(v) ? 'read' : 'written'} by ${n.opType} node '${n.name}', which cannot take it in parts; use a shorter sequence or a smaller batch`);
      }
    }
  }
  /** A product whose rows can be computed apart: A not transposed, B a matrix, no per-row C. */
  function inRows(n: SpecNode): boolean {
    if (!MATMULS.has(n.opType) || Number(n.attrs.transA ?? 0) === 1) return false;
    if (types.get(n.inputs[1]!)?.dims.length !== 2) return false;
    const c = n.opType === 'Gemm' ? n.inputs[2] : undefined;
    const ct = c ? types.get(c)! : undefined;
    return !ct || ct.dims.length < 2 || ct.dims[0] === 1;
  }
  return { ...spec, nodes, types, constants, resident, weights, ...(outputParts.size > 0 ? { outputParts } : {}) };
}
