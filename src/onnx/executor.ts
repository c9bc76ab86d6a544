// The float64 CPU executor: runs a specialised graph with every op's reference implementation.
//
// It is the oracle of the GPU tests (same graph, same ops, naive float64 loops) and is never on a
// hot path. Weights are widened to float64 on demand and every value is dropped after its last
// reader, so peak memory is the live activations plus one converted weight at a time.

import { ShapeError } from '../errors.js';
import { initializerToRef, type Graph } from '../ir/graph.js';
import type { SpecializedGraph } from '../ir/static-graph.js';
import type { RefTensor } from '../ir/tensor.js';
import { OPS, isOpType } from '../ops/registry.js';
import type { OpDef } from '../ops/types.js';
import { shapesOf, specialize, validateFeeds } from './specialize.js';

/**
 * Runs `spec` on `feeds` (validated: names, dtypes, dims) and returns every graph output by its
 * ONNX name. Throws InputError for bad feeds; a reference output whose shape disagrees with the
 * shape rule is a ShapeError (a bug in the op's definition, caught here rather than on the GPU).
 */
export function runReferenceGraph(spec: SpecializedGraph, feeds: Readonly<Record<string, RefTensor>>): Record<string, RefTensor> {
  validateFeeds(spec, feeds);
  const env = new Map<string, RefTensor>();
  for (const inp of spec.inputs) env.set(inp.name, feeds[inp.name]!);

  const lastUse = new Map<string, number>();
  spec.nodes.forEach((n, i) => n.inputs.forEach((v) => v && lastUse.set(v, i)));
  const keep = new Set(spec.outputs);

  const get = (name: string, reader: string): RefTensor => {
    const v = env.get(name) ?? spec.constants.get(name);
    if (v) return v;
    const init = spec.source.initializers.get(name);
    if (init) return initializerToRef(init);
    throw new Error(`reference executor: value '${name}' read by '${reader}' was never computed`);
  };

  spec.nodes.forEach((node, i) => {
    if (!isOpType(node.opType)) throw new ShapeError(node.opType, node.name, 'no such op in the registry');
    const def: OpDef = OPS[node.opType];
    const ctx = { opType: node.opType, nodeName: node.name, opset: node.opset, numOutputs: node.outputs.length };
    const inputs = node.inputs.map((v) => (v === '' ? undefined : get(v, node.name)));
    const outs = def.reference(inputs, node.attrs, ctx);
    node.outputs.forEach((o, k) => {
      if (!o) return;
      const t = outs[k];
      const want = spec.types.get(o)!;
      if (!t || t.dtype !== want.dtype || t.dims.length !== want.dims.length || t.dims.some((d, j) => d !== want.dims[j])) {
        throw new ShapeError(
          node.opType,
          node.name,
          `reference output ${k} is ${t ? `${t.dtype} [${t.dims.join(', ')}]` : 'missing'}, ` +
            `the shape rule says ${want.dtype} [${want.dims.join(', ')}]`,
        );
      }
      env.set(o, t);
    });
    // Free what no later node reads.
    for (const v of node.inputs) if (v && lastUse.get(v) === i && !keep.has(v)) env.delete(v);
  });

  const result: Record<string, RefTensor> = {};
  spec.outputNames.forEach((name, i) => {
    result[name] = get(spec.outputs[i]!, `graph output '${name}'`);
  });
  return result;
}

/** Specialises `graph` to the feeds' shapes (cached; their values decide If branches) and runs the reference executor. */
export function runReferenceModel(graph: Graph, feeds: Readonly<Record<string, RefTensor>>): Record<string, RefTensor> {
  const values = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.data]));
  return runReferenceGraph(specialize(graph, shapesOf(feeds), { values }), feeds);
}
