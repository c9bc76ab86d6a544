// Fusion: rewrites a static graph so matmul epilogues and prologues do the element-wise work.
//
//   MatMul(x, W) → Add(·, b)          ⇒ FusedMatMul(x, W, b)               (bias in the epilogue)
//   Gemm(x, W, b) (alpha = beta = 1)   ⇒ FusedMatMul(x, W, b, transB)       (so IA3 can join it)
//   FusedMatMul(…) → IA3Scale(·, l)    ⇒ FusedMatMul(…, outScale = l)        (IA3 after the bias)
//   IA3Scale(x, l) → MatMul(·, W)      ⇒ FusedMatMul(x, W, inScale = l)     (IA3 feed-forward input)
//   Div(x, d) → [Where(keep, ·, f)] → Add(·, m) → Softmax
//                                      ⇒ MaskedSoftmax(x, m, [keep])        (attention probabilities)
//   SoftmaxGrad(dy, y) → [Where(keep, ·, 0)] → [Div(·, d)]
//                                      ⇒ SoftmaxGrad(dy, y, [keep])         (their backward)
//
//   Gelu(p) → [Reshape] → IA3ScaleGrad(dy, ·, l) → [Reshape] → GeluGrad(·, p)
//                                      ⇒ IA3ScaleGrad(dy, p, l, activation) (IA3 on GELU's output)
//
// The GELU rewrite reads the pre-GELU state p, which the backward keeps for GeluGrad anyway, and
// evaluates gelu(p) inline, so GELU's output (recomputed by autograd/remat.ts) is neither
// computed again nor stored; with input_grad = 0 there is no GeluGrad to absorb. Nodes left
// without readers by it (the recomputed Gelu and its Reshape) are dropped.
// The attention rewrites take d, f from scalar constants and need the softmax over the last axis;
// their kernel computes the same f32 operations in the same order as the chain it replaces, so a
// step keeps the scores only as the product's output, and the backward's recomputation of the
// probabilities (autograd/remat.ts) is one product and one row pass.
//
// A rewrite only applies when the intermediate value has exactly one reader and is not a graph
// output (it disappears), the weight is 2-D, and bias/scale vectors have exactly N (or K) elements.
// The rewritten graph computes the same function; the CPU reference runs the unfused graph, so
// every fused plan is checked against it by the model tests. Last, products read and write
// strided views through the layout ops around them (compile/views.ts).

import type { Attrs } from '../ir/graph.js';
import type { PlanGraph, PlanNode } from '../ir/static-graph.js';
import { sizeOf } from '../ir/tensor.js';
import { foldViews } from './views.js';

/** Returns `graph` with matmul epilogue/prologue fusions applied (a new graph; input unchanged). */
export function fuseGraph<G extends PlanGraph>(graph: G): G {
  let nodes: PlanNode[] = [...graph.nodes];
  const isOutput = new Set(graph.outputs);
  const readers = (value: string): PlanNode[] => nodes.filter((n) => n.inputs.includes(value));
  const soleReader = (value: string): PlanNode | undefined => {
    if (isOutput.has(value)) return undefined;
    const r = readers(value);
    return r.length === 1 && r[0]!.inputs.filter((i) => i === value).length === 1 ? r[0] : undefined;
  };
  const typeOf = (v: string) => graph.types.get(v);
  const producerOf = (value: string): PlanNode | undefined => nodes.find((n) => n.outputs.includes(value));
  const replace = (old: readonly PlanNode[], fused: PlanNode): void => {
    const at = nodes.indexOf(old[old.length - 1]!);
    nodes[at] = fused;
    nodes = nodes.filter((n) => !old.includes(n) || n === fused);
  };
  // The value of a one-element float constant, if `v` is one.
  const scalar = (v: string | undefined): number | undefined => {
    const c = v ? graph.constants.get(v) : undefined;
    return c && c.data.length === 1 && (c.dtype === 'float32' || c.dtype === 'float16') ? Number(c.data[0]) : undefined;
  };
  const dimsOf = (v: string | undefined): readonly number[] | undefined => (v ? typeOf(v)?.dims : undefined);
  const same = (a: readonly number[] | undefined, b: readonly number[] | undefined): boolean => !!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]);
  // Whether `v` broadcasts to `dims` without enlarging them (and has the wanted dtype family).
  const broadcastsTo = (v: string, dims: readonly number[], bool: boolean): boolean => {
    const t = typeOf(v);
    if (!t || (t.dtype === 'bool') !== bool || (!bool && t.dtype !== 'float32') || t.dims.length > dims.length) return false;
    return t.dims.every((d, i) => d === 1 || d === dims[dims.length - t.dims.length + i]);
  };
  const lastAxis = (n: PlanNode, rank: number, defaultAxis: number): boolean => {
    const a = Number(n.attrs.axis ?? defaultAxis);
    return (a < 0 ? a + rank : a) === rank - 1;
  };
  const fusedNode = (base: PlanNode, inputs: string[], outputs: readonly string[], attrs: Attrs): PlanNode => {
    while (inputs.length > 2 && inputs[inputs.length - 1] === '') inputs.pop();
    return { name: base.name, opType: 'FusedMatMul', inputs, outputs, attrs, opset: base.opset };
  };

  let changed = true;
  while (changed) {
    changed = false;
    for (const node of nodes) {
      // Gemm with a plain bias becomes FusedMatMul (same math), so IA3 scales can join it.
      if (node.opType === 'Gemm' && (node.attrs.transA ?? 0) === 0 && (node.attrs.alpha ?? 1) === 1 && (node.attrs.beta ?? 1) === 1) {
        const c = node.inputs[2] ?? '';
        const n = typeOf(node.outputs[0]!)?.dims[1];
        if (c === '' || (typeOf(c) && sizeOf(typeOf(c)!.dims) === n && typeOf(c)!.dims.length <= 1)) {
          replace([node], fusedNode(node, [node.inputs[0]!, node.inputs[1]!, c], node.outputs, { transB: node.attrs.transB ?? 0 }));
          changed = true;
          break;
        }
      }
      if (node.opType === 'MatMul' || node.opType === 'FusedMatMul') {
        const w = typeOf(node.inputs[1]!);
        const y = node.outputs[0]!;
        const yt = typeOf(y);
        if (!w || !yt || w.dims.length !== 2 || !graph.resident.has(node.inputs[1]!)) continue;
        const N = yt.dims[yt.dims.length - 1]!;
        const next = soleReader(y);
        const ins = [...node.inputs];
        while (ins.length < 5) ins.push('');
        const attrs = node.opType === 'MatMul' ? {} : node.attrs;
        // Bias add (either operand order), only before any output scale.
        if (next?.opType === 'Add' && ins[2] === '' && ins[4] === '') {
          const b = next.inputs[0] === y ? next.inputs[1]! : next.inputs[0]!;
          const bt = typeOf(b);
          const outT = typeOf(next.outputs[0]!);
          if (bt && bt.dims.length === 1 && bt.dims[0] === N && outT && sizeOf(outT.dims) === sizeOf(yt.dims)) {
            ins[2] = b;
            replace([node, next], fusedNode(node, ins, next.outputs, attrs));
            changed = true;
            break;
          }
        }
        // IA3 output scale (one vector), after the bias.
        if (next?.opType === 'IA3Scale' && next.inputs.length === 2 && next.inputs[0] === y && ins[4] === '') {
          const lt = typeOf(next.inputs[1]!);
          if (lt && sizeOf(lt.dims) === N) {
            ins[4] = next.inputs[1]!;
            replace([node, next], fusedNode(node, ins, next.outputs, attrs));
            changed = true;
            break;
          }
        }
      }
      // IA3 input scale (one vector) feeding a matmul's A operand.
      if (node.opType === 'IA3Scale' && node.inputs.length === 2) {
        const next = soleReader(node.outputs[0]!);
        if (!next || (next.opType !== 'MatMul' && next.opType !== 'FusedMatMul') || next.inputs[0] !== node.outputs[0]) continue;
        if ((next.attrs.transA ?? 0) !== 0) continue;
        const w = typeOf(next.inputs[1]!);
        if (!w || w.dims.length !== 2 || !graph.resident.has(next.inputs[1]!)) continue;
        const ins = [...next.inputs];
        while (ins.length < 5) ins.push('');
        if (ins[3] !== '') continue;
        ins[0] = node.inputs[0]!;
        ins[3] = node.inputs[1]!;
        replace([node, next], fusedNode(next, ins, next.outputs, next.opType === 'MatMul' ? {} : next.attrs));
        changed = true;
        break;
      }
      // IA3 on GELU's output: gelu(p) inline in the IA3 gradient, GeluGrad fused in.
      if (node.opType === 'IA3ScaleGrad' && node.attrs.activation === undefined) {
        const x = node.inputs[1]!;
        const views: PlanNode[] = [];
        let p = producerOf(x);
        while (p?.opType === 'Reshape') {
          views.push(p);
          p = producerOf(p.inputs[0]!);
        }
        if (p?.opType !== 'Gelu') continue;
        const gelu = p;
        const pre = gelu.inputs[0]!;
        const approximate = gelu.attrs.approximate === 'tanh' ? 'tanh' : 'none';
        const xt = typeOf(x);
        const pt = typeOf(pre);
        if (!xt || !pt || pt.dtype !== 'float32' || sizeOf(pt.dims) !== sizeOf(xt.dims) || pt.dims.at(-1) !== xt.dims.at(-1)) continue;
        const activation = approximate === 'tanh' ? 'gelu_tanh' : 'gelu';
        const removed: PlanNode[] = [];
        let outputs = node.outputs;
        if ((node.attrs.input_grad ?? 1) !== 0) {
          // dx → [Reshape] → GeluGrad(·, p): the fused node writes GeluGrad's output instead.
          let next = soleReader(node.outputs[0]!);
          let prev = node.outputs[0]!;
          const dxViews: PlanNode[] = [];
          while (next?.opType === 'Reshape' && next.inputs[0] === prev) {
            dxViews.push(next);
            prev = next.outputs[0]!;
            next = soleReader(prev);
          }
          if (next?.opType !== 'GeluGrad' || next.inputs[0] !== prev || next.inputs[1] !== pre || (next.attrs.approximate === 'tanh' ? 'tanh' : 'none') !== approximate) continue;
          removed.push(...dxViews, next);
          outputs = [next.outputs[0]!, ...node.outputs.slice(1)];
        }
        const fused: PlanNode = { ...node, inputs: [node.inputs[0]!, pre, ...node.inputs.slice(2)], outputs, attrs: { ...node.attrs, activation } };
        nodes[nodes.indexOf(node)] = fused;
        nodes = nodes.filter((n) => !removed.includes(n));
        // The Gelu and its views, once nothing reads them.
        for (const n of [...views, gelu]) if (!n.outputs.some((o) => isOutput.has(o) || readers(o).length > 0)) nodes = nodes.filter((m) => m !== n);
        changed = true;
        break;
      }
      // Attention probabilities: scale, causal keep, additive mask and softmax in one row pass.
      if (node.opType === 'Div') {
        const x = node.inputs[0]!;
        const dims = dimsOf(x);
        const divisor = scalar(node.inputs[1]);
        if (!dims || dims.length === 0 || divisor === undefined || typeOf(x)?.dtype !== 'float32') continue;
        const chain = [node];
        let next = soleReader(node.outputs[0]!);
        let keep: string | undefined;
        let fill: number | undefined;
        if (next?.opType === 'Where' && next.inputs[1] === node.outputs[0] && next.inputs[0] !== node.outputs[0]) {
          fill = scalar(next.inputs[2]);
          keep = next.inputs[0]!;
          if (fill === undefined || !broadcastsTo(keep, dims, true) || !same(dimsOf(next.outputs[0]), dims)) continue;
          chain.push(next);
          next = soleReader(next.outputs[0]!);
        }
        const prev = chain[chain.length - 1]!.outputs[0]!;
        if (next?.opType !== 'Add') continue;
        const mask = next.inputs[0] === prev ? next.inputs[1]! : next.inputs[0]!;
        if (mask === prev || !broadcastsTo(mask, dims, false) || !same(dimsOf(next.outputs[0]), dims)) continue;
        chain.push(next);
        const softmax = soleReader(next.outputs[0]!);
        if (softmax?.opType !== 'Softmax' || !lastAxis(softmax, dims.length, softmax.opset >= 13 ? -1 : 1)) continue;
        chain.push(softmax);
        const attrs: Attrs = keep ? { divisor, fill: fill! } : { divisor };
        replace(chain, { name: softmax.name, opType: 'MaskedSoftmax', inputs: keep ? [x, mask, keep] : [x, mask], outputs: softmax.outputs, attrs, opset: 1 });
        changed = true;
        break;
      }
      // Its backward: the gradient of the scores' keep and scale in the softmax gradient's pass.
      if (node.opType === 'SoftmaxGrad' && node.inputs.length === 2) {
        const dims = dimsOf(node.outputs[0]);
        if (!dims || dims.length === 0 || !lastAxis(node, dims.length, -1) || node.attrs.divisor !== undefined) continue;
        const chain = [node];
        let next = soleReader(node.outputs[0]!);
        let keep: string | undefined;
        if (next?.opType === 'Where' && next.inputs[1] === node.outputs[0] && next.inputs[0] !== node.outputs[0] && scalar(next.inputs[2]) === 0) {
          keep = next.inputs[0]!;
          if (!broadcastsTo(keep, dims, true) || !same(dimsOf(next.outputs[0]), dims)) continue;
          chain.push(next);
          next = soleReader(next.outputs[0]!);
        }
        const prev = chain[chain.length - 1]!.outputs[0]!;
        let divisor = next?.opType === 'Div' && next.inputs[0] === prev && next.inputs[1] !== prev ? scalar(next.inputs[1]) : undefined;
        if (divisor !== undefined && same(dimsOf(next!.outputs[0]), dims)) chain.push(next!);
        else divisor = undefined;
        if (chain.length === 1) continue;
        const attrs: Attrs = divisor === undefined ? node.attrs : { ...node.attrs, divisor };
        const last = chain[chain.length - 1]!;
        replace(chain, { ...node, inputs: keep ? [...node.inputs, keep] : [...node.inputs], outputs: last.outputs, attrs });
        changed = true;
        break;
      }
    }
  }
  return foldViews({ ...graph, nodes });
}
