// Fusion: rewrites a static graph so matmul epilogues and prologues do the element-wise work.
//
//   MatMul(x, W) → Add(·, b)          ⇒ FusedMatMul(x, W, b)               (bias in the epilogue)
//   Gemm(x, W, b) (alpha = beta = 1)   ⇒ FusedMatMul(x, W, b, transB)       (so IA3 can join it)
//   FusedMatMul(…) → IA3Scale(·, l)    ⇒ FusedMatMul(…, outScale = l)        (IA3 after the bias)
//   IA3Scale(x, l) → MatMul(·, W)      ⇒ FusedMatMul(x, W, inScale = l)     (IA3 feed-forward input)
//
// A rewrite only applies when the intermediate value has exactly one reader and is not a graph
// output (it disappears), the weight is 2-D, and bias/scale vectors have exactly N (or K) elements.
// The rewritten graph computes the same function; the CPU reference runs the unfused graph, so
// every fused plan is checked against it by the model tests.

import type { Attrs } from '../ir/graph.js';
import type { PlanGraph, PlanNode } from '../ir/static-graph.js';
import { sizeOf } from '../ir/tensor.js';

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
  const replace = (old: readonly PlanNode[], fused: PlanNode): void => {
    const at = nodes.indexOf(old[old.length - 1]!);
    nodes[at] = fused;
    nodes = nodes.filter((n) => !old.includes(n) || n === fused);
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
    }
  }
  return { ...graph, nodes };
}
