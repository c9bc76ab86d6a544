// A readable summary of an imported graph: what it takes, what it returns, which ops it runs, how
// many parameters it holds (each tied weight once) and which linear layers (IA3 targets) were
// found under which paths.

import { int8Storage } from '../ir/dtype.js';
import { opsetOf, type Graph } from '../ir/graph.js';
import { unnamedLinears, type ModuleInfo } from './modules.js';
import { countParameters } from './parameters.js';

function group(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => r[c]!.length))) ?? [];
  return rows.map((r) => indent + r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

/**
 * A multi-line summary: inputs, outputs, op histogram, parameter count and bytes, and the modules
 * (path, op, in → out, bias), plus linear layers for which no module path was found.
 */
export function describeGraph(graph: Graph, modules: readonly ModuleInfo[]): string {
  const lines: string[] = [];
  const opsets = [...graph.opsets].map(([d, v]) => `${d || 'ai.onnx'} ${v}`).join(', ');
  lines.push(`ONNX graph '${graph.name}'${graph.producer ? ` from ${graph.producer}` : ''} (IR ${graph.irVersion}; opsets: ${opsets})`);

  const dims = (d: readonly (number | string)[] | undefined): string => (d ? `[${d.join(', ')}]` : '[?]');
  lines.push(`Inputs (${graph.inputs.length}):`);
  lines.push(...table(graph.inputs.map((v) => [v.name, v.dtype, dims(v.dims)])));
  lines.push(`Outputs (${graph.outputs.length}):`);
  lines.push(...table(graph.outputs.map((v) => [v.name, v.dtype ?? '?', dims(v.dims)])));

  // Parameters as PyTorch counts them: a tied weight the exporter stored twice (GPT-2's lm_head
  // as the embedding's transpose) once, as the PEFT line and a model card count it.
  const { count: params, tensors: weights, bytes: paramBytes, shared } = countParameters(graph);
  const external = new Set([...graph.initializers.values()].flatMap((i) => (i.external ? [i.external.location] : [])));
  lines.push(
    `Parameters: ${group(params)} in ${weights} float tensors (${bytes(paramBytes)})` +
      (external.size ? `, external data: ${[...external].join(', ')}` : ''),
  );
  for (const w of shared) {
    lines.push(`  '${w.name}' is ${w.transposed ? 'the transpose of' : 'a copy of'} '${w.of}' (a tied weight, stored twice by the exporter): counted once`);
  }
  // Precision on the GPU: packed halves (onnx/precision.ts) and 4-bit blocks (ops/contrib-quant.ts)
  // read by the matmul kernels, or f32.
  const halves = [...graph.initializers.values()].filter((i) => i.dtype === 'float16' && !i.constant && !i.storage?.startsWith('q4b'));
  if (halves.length > 0) {
    const packed = halves.filter((i) => i.storage === 'f16x2');
    lines.push(
      `Precision on the GPU: ${packed.length} float16 weights kept half (packed two per u32 word, widened inside the matmul kernels; ` +
        `no shader-f16 needed), ${halves.length - packed.length} other float16 tensors widened to f32`,
    );
  }
  const q4 = [...graph.initializers.values()].filter((i) => i.storage?.startsWith('q4b'));
  if (q4.length > 0) lines.push(`Precision on the GPU: ${q4.length} weights in 4-bit blocks (MatMulNBits), dequantised inside the matmul kernels`);
  const i8 = [...graph.initializers.values()].filter((i) => int8Storage(i.storage));
  if (i8.length > 0) {
    const gathered = new Set(graph.nodes.filter((n) => n.opType === 'Gather').map((n) => n.inputs[0]));
    const tables = i8.filter((i) => gathered.has(i.name)).length;
    const quantisers = graph.nodes.filter((n) => n.opType === 'DynamicQuantizeDequantize').length;
    lines.push(
      `Precision on the GPU: ${i8.length - tables} weights in 8 bits dequantised inside the matmul kernels` +
        (tables ? `, ${tables} embedding tables in 8 bits dequantised by Gather` : '') +
        (quantisers ? `; ${quantisers} dynamic uint8 activation quantisers (q8 DynamicQuantizeLinear, straight-through gradient)` : ''),
    );
  }

  const hist = new Map<string, number>();
  for (const n of graph.nodes) {
    const key = n.domain ? `${n.domain}.${n.opType}` : n.opType;
    hist.set(key, (hist.get(key) ?? 0) + 1);
  }
  const added = new Set((graph.expanded ?? []).flatMap((e) => e.constants));
  const constants = [...graph.initializers.values()].filter((i) => i.constant && !added.has(i.name)).length;
  const ops = [...hist].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  lines.push(
    `Ops: ${graph.nodes.length} nodes of ${ops.length} types (ai.onnx opset ${opsetOf(graph, '')})` +
      (constants ? `, plus ${constants} Constant nodes folded on load` : ''),
  );
  for (let i = 0; i < ops.length; i += 6) {
    lines.push(`  ${ops.slice(i, i + 6).map(([op, n]) => `${op} ×${n}`).join(', ')}`);
  }

  const expanded = graph.expanded ?? [];
  if (expanded.length > 0) {
    const kinds = new Map<string, number>();
    for (const e of expanded) kinds.set(`${e.node.domain}.${e.node.opType}`, (kinds.get(`${e.node.domain}.${e.node.opType}`) ?? 0) + 1);
    lines.push(`Fused ops expanded into the ops above (${expanded.length}): ${[...kinds].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  }

  lines.push(`Modules (${modules.length} linear layers):`);
  lines.push(
    ...table(
      modules.map((m) => [
        m.path,
        m.kind,
        `${m.inFeatures} → ${m.outFeatures}`,
        m.bias ? 'bias' : 'no bias',
        `weight ${m.weight} (${m.weightLayout})` + (m.part ? `, columns ${m.part.start}..${m.part.start + m.outFeatures} of ${m.part.total}` : ''),
      ]),
    ),
  );
  const unnamed = unnamedLinears(graph, modules);
  if (unnamed.length > 0) {
    lines.push(`Linear layers without a module path (${unnamed.length}; name them with moduleMap):`);
    const fusedBy = (node: string): string => {
      const e = expanded.find((x) => x.nodes.includes(node));
      if (!e) return '';
      // A projection a fused op performs itself is named from the family layout of the attention's
      // output projection; without one that names it, the path is unknown.
      return `inside ${e.node.domain}.${e.node.opType} '${e.node.name}': no output projection with a known module layout reads its result`;
    };
    lines.push(...table(unnamed.map((l) => [l.node, l.kind, `${l.inFeatures} → ${l.outFeatures}`, `weight ${l.weight}`, fusedBy(l.node)])));
  }
  return lines.join('\n');
}
