// Shape specialisation: a Graph plus concrete input shapes → a static graph.
//
// Training pads to a few (batch, sequence) buckets, so each bucket gets its own fully static graph:
// every value's dtype and dims are known (from the registry's shape rules), the shape arithmetic
// an exporter leaves in the graph (Shape → Gather → Unsqueeze → Concat → Reshape) is evaluated on
// the CPU with the float64 references, Identity and Dropout disappear (their consumers read the
// source), and nodes that no output depends on are removed. What is left is the work of the GPU,
// in topological order, with the constants and weights it reads.
//
// Folding rule: a node is evaluated on the CPU when all its inputs are known there and no input or
// output exceeds FOLD_LIMIT elements; a Transpose of a big embedding stays for the GPU. Ops whose
// lowering is 'fold' (Shape, Range, ConstantOfShape) must fold, or specialisation fails; their
// outputs are budgeted (`foldBudget`: what the model and its inputs can justify) before the
// reference allocates them, so a 200-byte file cannot ask for ConstantOfShape [1e8]. Composite
// ops (OpDef.expand: Einsum, OneHot) are replaced by their expansion, whose nodes are then inferred,
// folded and kept like the file's own.
//
// Control flow: every If (flattened on load, see ops/control.ts) is decided first, from constants,
// shapes and the values of the inputs its condition reads (`options.values`, which only decide
// branches and never become constants of the plan); the decisions join the cache key, the chosen
// branch's outputs become the If's, and the other branch is never looked at.
//
// Zero-size dims are ONNX's: an input may have dims of 0 (an empty past), and every op's rule says
// what an empty tensor gives; lowerings drop dispatches over nothing, so no empty buffer is bound.
//
// A computed graph output that disagrees with its declared shape is a warning naming the output,
// once per graph (onnxruntime only warns: exporters often declare traced dims), not an error.
//
// The result satisfies the compiler's PlanGraph contract, and is cached per graph and shape key: a
// memo of a pure function, since graphs are never mutated (a model given new initializer values
// gets a new graph object, see Model.replaceInitializers), so an entry cannot go stale.

import { IA3Error, InputError, ShapeError, SizeLimitError, UnsupportedOpError, warnOnce } from '../errors.js';
import { initializerGpuData, initializerToRef, nodeOpset, opsetOf, type Graph, type Node } from '../ir/graph.js';
import { clampedRange } from '../ir/shape.js';
import type { ResidentData, SpecializedGraph, SpecNode } from '../ir/static-graph.js';
import { sizeOf, toGpuArray, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { expandAtSpecialisation, takenNames } from '../ops/expansion.js';
import { isOpType, resolveOp } from '../ops/registry.js';
import { conditionHolds, ifArity } from '../ops/control.js';
import { fuseDecomposedOps } from './fuse-patterns.js';
import { insertIndexChecks } from './index-checks.js';
import type { Inputs, OpContext, OpDef } from '../ops/types.js';

/** Largest tensor (elements) a CPU fold reads or writes. */
export const FOLD_LIMIT = 1 << 20;
/**
 * Elements a forced fold ('fold' ops) may produce: FOLD_LIMIT, or more when the model or the
 * inputs justify it — its largest initializer (a real model's embedding table), or the square of
 * the runtime input elements (an attention mask is batch × seq × seq).
 */
export function foldBudget(graph: Graph, inputShapes: Readonly<Record<string, readonly number[]>>, foldLimit = FOLD_LIMIT): number {
  let largest = 0;
  for (const init of graph.initializers.values()) largest = Math.max(largest, sizeOf(init.dims));
  let inputs = 0;
  for (const dims of Object.values(inputShapes)) inputs += sizeOf(dims);
  return Math.max(foldLimit, largest, inputs * inputs);
}

/** Largest initializer whose values shape rules and lowerings see (`ValueInfo.value`). */
export const VALUE_LIMIT = 1 << 16;

export interface SpecializeOptions {
  /** Override FOLD_LIMIT (elements). */
  readonly foldLimit?: number;
  /**
   * Values of runtime inputs (the feeds), read only to decide If conditions that depend on them;
   * the plan still reads every input at run time.
   */
  readonly values?: Readonly<Record<string, ArrayLike<number | bigint>>>;
}

/** What a build decides up front: the branch of every live If node, by node name. */
type Branches = ReadonlyMap<string, boolean>;

const cache = new WeakMap<Graph, Map<string, SpecializedGraph>>();

/** The cache key of a set of input shapes. */
export function shapeKey(inputShapes: Readonly<Record<string, readonly number[]>>, options: SpecializeOptions = {}): string {
  const parts = Object.keys(inputShapes)
    .sort()
    .map((k) => `${k}:[${inputShapes[k]!.join(',')}]`);
  if (options.foldLimit !== undefined) parts.push(`fold:${options.foldLimit}`);
  return parts.join(';');
}

const fmt = (dims: readonly (number | string)[]): string => `[${dims.join(', ')}]`;

/**
 * Specialises `graph` to concrete input shapes. Inputs no remaining node reads may be omitted.
 * Throws InputError for unknown inputs, missing inputs, wrong rank, a static dim mismatch or a
 * symbolic dim bound to two sizes; ShapeError/UnsupportedOpError from the op rules.
 */
export function specialize(
  graph: Graph,
  inputShapes: Readonly<Record<string, readonly number[]>>,
  options: SpecializeOptions = {},
): SpecializedGraph {
  const foldLimit = options.foldLimit ?? FOLD_LIMIT;
  const branches = graph.nodes.some(isIf) ? chooseBranches(graph, inputShapes, foldLimit, options.values ?? {}) : new Map<string, boolean>();
  const key = shapeKey(inputShapes, options) + [...branches].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([n, v]) => `;if:${n}=${v ? 1 : 0}`).join('');
  let perGraph = cache.get(graph);
  const hit = perGraph?.get(key);
  if (hit) return hit;
  // Decomposed LayerNorm / GELU chains become the ops they compute (onnx/fuse-patterns.ts).
  const spec = build(fuseDecomposedOps(graph), inputShapes, key, foldLimit, branches);
  if (!perGraph) cache.set(graph, (perGraph = new Map()));
  perGraph.set(key, spec);
  return spec;
}

/** Binds declared dims to concrete ones, recording symbols; returns an error text on mismatch. */
class SymbolTable {
  readonly sizes = new Map<string, { size: number; from: string }>();

  bind(decl: readonly (number | string)[], dims: readonly number[], what: string): string | undefined {
    if (decl.length !== dims.length) return `expected rank ${decl.length} (${fmt(decl)}), got ${fmt(dims)}`;
    for (let i = 0; i < decl.length; i++) {
      const d = decl[i]!;
      const got = dims[i]!;
      if (typeof d === 'number') {
        if (d !== got) return `expected ${fmt(decl)}, got ${fmt(dims)} (dim ${i} must be ${d})`;
        continue;
      }
      const prev = this.sizes.get(d);
      if (prev && prev.size !== got) {
        return `dim ${i} is '${d}', which ${prev.from} sets to ${prev.size}, but got ${got} (shape ${fmt(dims)})`;
      }
      if (!prev) this.sizes.set(d, { size: got, from: what });
    }
    return undefined;
  }
}

/** Calls a shape rule or reference, turning stray errors (bad attributes) into ShapeErrors. */
function guarded<T>(node: Node, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof IA3Error) throw e;
    throw new ShapeError(node.opType, node.name, e instanceof Error ? e.message : String(e));
  }
}

/** Shape and Size read only dims: their values are known at specialisation even for runtime inputs. */
function dimsOnlyValue(node: Node, dims: readonly number[], opset: number): RefTensor | undefined {
  if (node.domain !== '') return undefined;
  if (node.opType === 'Size') return { dtype: 'int64', dims: [], data: Float64Array.of(sizeOf(dims)) };
  if (node.opType !== 'Shape') return undefined;
  const r = dims.length;
  // Shape-15 added start/end; earlier opsets return every dim.
  const [start, end] = opset >= 15 ? clampedRange(Number(node.attrs.start ?? 0), node.attrs.end !== undefined ? Number(node.attrs.end) : r, r) : [0, r];
  const out = dims.slice(start, end);
  return { dtype: 'int64', dims: [out.length], data: Float64Array.from(out) };
}

const isIf = (n: Node): boolean => n.opType === 'If' && n.domain === '';

/**
 * The nodes the graph outputs depend on, given a decision for each If reached (`choose`, called
 * once per If, in no particular order): an If depends on its chosen branch's outputs only.
 */
function liveNodes(graph: Graph, choose: (node: Node) => boolean): Set<Node> {
  const producer = new Map<string, Node>();
  for (const n of graph.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  const live = new Set<Node>();
  const stack = graph.outputs.map((o) => o.name);
  const seen = new Set<string>();
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const p = producer.get(v);
    if (!p || live.has(p)) continue;
    live.add(p);
    if (isIf(p)) {
      const n = ifArity(p.inputs.length, { opType: 'If', nodeName: p.name });
      const start = choose(p) ? 1 : 1 + n;
      stack.push(...p.inputs.slice(start, start + n).filter((i) => i !== ''));
    } else {
      for (const i of p.inputs) if (i) stack.push(i);
    }
  }
  return live;
}

/**
 * Decides every If the outputs depend on: its condition is specialised on its own (the graph with
 * the condition as its only output, input values as constants) and must fold to a value.
 */
function chooseBranches(
  graph: Graph,
  inputShapes: Readonly<Record<string, readonly number[]>>,
  foldLimit: number,
  values: Readonly<Record<string, ArrayLike<number | bigint>>>,
): Map<string, boolean> {
  const decided = new Map<string, boolean>();
  liveNodes(graph, (node) => {
    const cond = node.inputs[0]!;
    // The cone of the condition alone, with the given input values as constants.
    const coneGraph: Graph = { ...graph, outputs: [{ name: cond }] };
    const cone = build(coneGraph, inputShapes, '', foldLimit, chooseBranches(coneGraph, inputShapes, foldLimit, values), values);
    const v = cone.constants.get(cone.outputs[0]!);
    if (!v) {
      const reads = cone.inputs.map((i) => `'${i.name}'`).join(', ');
      throw new UnsupportedOpError(
        'If',
        node.name,
        `its condition '${cond}' is only known at run time (it reads ${reads || 'values computed on the GPU'}): ` +
          'the toolkit compiles one branch, chosen from constants, shapes and the values of the inputs given to run',
        opsetOf(graph, ''),
      );
    }
    const holds = conditionHolds(v, { opType: 'If', nodeName: node.name });
    decided.set(node.name, holds);
    return holds;
  });
  return decided;
}

function sameType(a: TensorType, b: TensorType): boolean {
  return a.dtype === b.dtype && a.dims.length === b.dims.length && a.dims.every((d, i) => d === b.dims[i]);
}

function build(
  graph: Graph,
  inputShapes: Readonly<Record<string, readonly number[]>>,
  key: string,
  foldLimit: number,
  branches: Branches,
  /** Input values to treat as constants (only when specialising an If condition's cone). */
  constantInputs: Readonly<Record<string, ArrayLike<number | bigint>>> = {},
): SpecializedGraph {
  // 1. Inputs: names, ranks, static dims, symbols.
  const declared = new Map(graph.inputs.map((d) => [d.name, d]));
  for (const name of Object.keys(inputShapes)) {
    if (!declared.has(name)) {
      throw new InputError(`unknown input '${name}'; the model's inputs are ${graph.inputs.map((d) => `'${d.name}'`).join(', ')}`);
    }
  }
  const symbols = new SymbolTable();
  const info = new Map<string, ValueInfo>();
  for (const d of graph.inputs) {
    const dims = inputShapes[d.name];
    if (dims === undefined) continue;
    if (!Array.isArray(dims) || !dims.every((x) => Number.isInteger(x) && x >= 0)) {
      throw new InputError(`input '${d.name}': dims must be non-negative integers, got ${JSON.stringify(dims)}`);
    }
    const err = d.dims ? symbols.bind(d.dims, dims, `input '${d.name}'`) : undefined;
    if (err) throw new InputError(`input '${d.name}': ${err}`);
    const given = constantInputs[d.name];
    if (given !== undefined && given.length !== sizeOf(dims)) {
      throw new InputError(`input '${d.name}': ${given.length} values for dims ${fmt(dims)}`);
    }
    info.set(d.name, given === undefined ? { dtype: d.dtype, dims: [...dims] } : { dtype: d.dtype, dims: [...dims], value: { dtype: d.dtype, dims: [...dims], data: Float64Array.from(given, Number) } });
  }

  // 2. Nodes the outputs depend on (before folding; folding can only remove more).
  const live = liveNodes(graph, (n) => {
    const choice = branches.get(n.name);
    if (choice === undefined) throw new Error(`specialize: If node '${n.name}' was not decided`);
    return choice;
  });

  // 3. Walk in topological order: infer types, fold on the CPU, drop Identity/Dropout.
  const alias = new Map<string, string>();
  const resolve = (v: string): string => alias.get(v) ?? v;
  const inputNames = new Set(graph.inputs.map((d) => d.name));
  const valueOf = (name: string, reader: string): ValueInfo => {
    const known = info.get(name);
    if (known) return known;
    const init = graph.initializers.get(name);
    if (init) {
      const v: ValueInfo = sizeOf(init.dims) <= VALUE_LIMIT && init.data
        ? { dtype: init.dtype, dims: init.dims, value: initializerToRef(init) }
        : { dtype: init.dtype, dims: init.dims };
      info.set(name, v);
      return v;
    }
    if (inputNames.has(name)) {
      const d = declared.get(name)!;
      throw new InputError(`missing input '${name}' (${d.dtype} ${d.dims ? fmt(d.dims) : ''}), which '${reader}' reads`);
    }
    throw new Error(`specialize: value '${name}' has no type (read by '${reader}')`);
  };
  // CPU values for folding: known values, or mid-sized initializers converted on demand.
  const cpuValue = (name: string): RefTensor | undefined => {
    const v = info.get(name)?.value;
    if (v) return v;
    const init = graph.initializers.get(name);
    return init?.data && sizeOf(init.dims) <= foldLimit ? initializerToRef(init) : undefined;
  };
  // A weight whose data streamed to the GPU is not known on the CPU: nodes reading it run there.
  const cpuKnown = (name: string): boolean => {
    if (info.get(name)?.value) return true;
    const init = graph.initializers.get(name);
    return init?.data !== undefined && sizeOf(init.dims) <= foldLimit;
  };
  // A Cast widening a frozen half weight (fp16 weights read through `Cast(to=FLOAT)`, as a bias is)
  // is not folded: it is an alias on the GPU, and a folded copy in the plan would keep the
  // weight's old values when merging (peft/merge.ts) writes new ones into its buffer.
  const widensWeight = (node: Node): boolean => {
    const init = node.opType === 'Cast' && node.domain === '' ? graph.initializers.get(node.inputs[0]!) : undefined;
    return !!init && !init.constant && init.dtype === 'float16' && Number(node.attrs.to) === 1;
  };
  const consumed = new Set<string>();
  for (const n of live) for (const i of n.inputs) if (i) consumed.add(i);
  for (const o of graph.outputs) consumed.add(o.name);

  const budget = foldBudget(graph, inputShapes, foldLimit);
  const kept: SpecNode[] = [];
  let taken: Set<string> | undefined; // the graph's names, for expansions (made on the first one)
  const visit = (node: Node): void => {
    // The nodes of an expansion carry the opset whose semantics they are written in.
    const opset = nodeOpset(graph, node);
    const ctx: OpContext = { opType: node.opType, nodeName: node.name, opset, numOutputs: node.outputs.length };
    if (isIf(node)) {
      // The chosen branch's outputs are the If's (branch nodes before it were kept or folded).
      const n = ifArity(node.inputs.length, ctx);
      const start = branches.get(node.name)! ? 1 : 1 + n;
      node.outputs.forEach((o, k) => {
        const src = resolve(node.inputs[start + k] ?? '');
        if (!src) throw new ShapeError(node.opType, node.name, `branch output ${k} is missing`);
        valueOf(src, node.name);
        if (o) alias.set(o, src);
      });
      return;
    }
    // Inference: Dropout is the identity. Only a Dropout whose mask is read stays a node.
    const maskRead = node.opType === 'Dropout' && !!node.outputs[1] && consumed.has(node.outputs[1]);
    if (node.domain === '' && (node.opType === 'Identity' || node.opType === 'Dropout') && !maskRead) {
      const src = resolve(node.inputs[0] ?? '');
      if (!src) throw new ShapeError(node.opType, node.name, 'required input 0 is missing');
      valueOf(src, node.name);
      alias.set(node.outputs[0]!, src);
      return;
    }
    // Re-checked here for graphs built in code (IA3 insertion, autograd) or decoded with
    // allowUnsupported: the registry entry must be of the node's domain and opset.
    const resolved = resolveOp(node.domain, node.opType);
    if (!resolved) {
      const reason = isOpType(node.opType) ? `not implemented in domain '${node.domain || 'ai.onnx'}'` : 'not implemented';
      throw new UnsupportedOpError(node.opType, node.name, reason, opset, node.domain);
    }
    if (resolved.kind === 'expanded') {
      throw new UnsupportedOpError(node.opType, node.name, 'is a fused op that loading expands (onnx/expand.ts); this graph skipped it', opset, node.domain);
    }
    const def: OpDef = resolved.def;
    if (opset < (def.sinceVersion ?? 1) || opset > (def.untilVersion ?? Infinity)) {
      throw new UnsupportedOpError(node.opType, node.name, `implemented for opsets ${def.sinceVersion ?? 1} to ${def.untilVersion ?? 'the latest'}`, opset);
    }
    const inNames = node.inputs.map((v) => (v === '' ? '' : resolve(v)));
    const inInfos: Inputs<ValueInfo> = inNames.map((v) => (v === '' ? undefined : valueOf(v, node.name)));
    if (def.expand) {
      taken ??= takenNames(graph);
      const names = taken;
      const site: Node = { ...node, inputs: inNames };
      const context = { taken: names, initializer: (v: string) => graph.initializers.get(v), dims: (v: string) => info.get(v)?.dims, opset };
      const expansion = guarded(node, () => expandAtSpecialisation(def, site, inInfos, context));
      for (const c of expansion.initializers) info.set(c.name, { dtype: c.dtype, dims: c.dims, value: initializerToRef(c) });
      for (const n of expansion.nodes) visit(n);
      return;
    }
    const outTypes = guarded(node, () => def.shape(inInfos, node.attrs, ctx)) as ValueInfo[];
    node.outputs.forEach((o, i) => {
      if (o && !outTypes[i]) {
        throw new ShapeError(node.opType, node.name, `declares output ${i} ('${o}') but the op produces ${outTypes.length}`);
      }
    });

    let values: (RefTensor | undefined)[] | undefined;
    const dimsOnly = dimsOnlyValue(node, inInfos[0]?.dims ?? [], opset);
    if (dimsOnly) {
      values = [dimsOnly];
    } else if (outTypes.every((t, i) => !node.outputs[i] || t.value !== undefined)) {
      values = outTypes.map((t) => t.value); // the shape rule computed the values itself
    } else {
      const allKnown = inNames.every((v) => v === '' || cpuKnown(v));
      const small =
        inInfos.every((t) => !t || sizeOf(t.dims) <= foldLimit) && outTypes.every((t) => sizeOf(t.dims) <= foldLimit);
      if (def.gpu === 'fold' && !allKnown) {
        const runtime = inNames.find((v) => v !== '' && !cpuKnown(v));
        throw new UnsupportedOpError(
          node.opType,
          node.name,
          `is evaluated on the CPU, but its input '${runtime}' is only known at run time`,
          opset,
        );
      }
      if (allKnown && (small || def.gpu === 'fold') && !widensWeight(node)) {
        outTypes.forEach((t, i) => {
          const n = sizeOf(t.dims);
          if (node.outputs[i] && !(n <= budget)) {
            throw new SizeLimitError(`${node.opType} node '${node.name}' output ${i}`, n, budget, 'elements', 'a tensor folded on the CPU: the largest initializer or the square of the input elements');
          }
        });
        const refs = inNames.map((v) => (v === '' ? undefined : cpuValue(v)));
        values = guarded(node, () => def.reference(refs, node.attrs, ctx));
      }
    }
    if (values) {
      node.outputs.forEach((o, i) => {
        if (!o) return;
        const v = values![i]!;
        if (!sameType(v, outTypes[i]!)) {
          throw new ShapeError(
            node.opType,
            node.name,
            `reference output ${i} is ${v.dtype} ${fmt(v.dims)} but the shape rule says ${outTypes[i]!.dtype} ${fmt(outTypes[i]!.dims)}`,
          );
        }
        info.set(o, { dtype: v.dtype, dims: v.dims, value: v });
      });
      return;
    }
    node.outputs.forEach((o, i) => {
      if (o) info.set(o, { dtype: outTypes[i]!.dtype, dims: [...outTypes[i]!.dims] });
    });
    kept.push({ name: node.name, opType: node.opType, domain: node.domain, inputs: inNames, outputs: [...node.outputs], attrs: node.attrs, opset });
  };
  for (const node of graph.nodes) if (live.has(node)) visit(node);

  // 4. Outputs: check against the declared types, binding output-only symbols.
  const outputNames = graph.outputs.map((o) => o.name);
  let outputs = outputNames.map(resolve);
  graph.outputs.forEach((o, i) => {
    const t = valueOf(outputs[i]!, `graph output '${o.name}'`);
    if (o.dtype && o.dtype !== t.dtype) throw new ShapeError('Output', o.name, `declared ${o.dtype}, computed ${t.dtype}`);
    const err = o.dims ? symbols.bind(o.dims, t.dims, `graph output '${o.name}'`) : undefined;
    if (err) warnOnce(graph, `output:${o.name}`, `graph output '${o.name}' is declared ${fmt(o.dims!)} but computes ${fmt(t.dims)} (${err}); running it anyway, as onnxruntime does`);
  });

  // 5. Dead nodes after folding.
  const needed = new Set(outputs);
  const final: SpecNode[] = [];
  for (let i = kept.length - 1; i >= 0; i--) {
    const n = kept[i]!;
    if (!n.outputs.some((o) => needed.has(o))) continue;
    final.push(n);
    for (const v of n.inputs) if (v) needed.add(v);
  }
  final.reverse();

  // 6. Keep the graph's output names where an Identity renamed them: the producer writes the output name.
  const producedBy = new Map<string, SpecNode>();
  for (const n of final) for (const o of n.outputs) if (o) producedBy.set(o, n);
  const rename = new Map<string, string>();
  outputNames.forEach((o, i) => {
    const v = outputs[i]!;
    if (v !== o && producedBy.has(v) && !rename.has(v) && !outputNames.includes(v)) rename.set(v, o);
  });
  const rn = (v: string): string => rename.get(v) ?? v;
  const renamed: SpecNode[] = rename.size === 0 ? final : final.map((n) => ({ ...n, inputs: n.inputs.map(rn), outputs: n.outputs.map(rn) }));
  outputs = outputs.map(rn);
  const infoOf = (v: string): ValueInfo => {
    for (const [from, to] of rename) if (to === v) return info.get(from)!;
    return info.get(v)!;
  };
  // Gathers over indices computed at run time get their out-of-range checks.
  const checked = insertIndexChecks(renamed, infoOf, (v, t) => info.set(v, t));
  const nodes = checked.nodes;

  // 7. Collect types, constants, weights, resident data and runtime inputs.
  const types = new Map<string, TensorType>();
  const constants = new Map<string, RefTensor>();
  const weights: string[] = [];
  const resident = new Map<string, ResidentData>();
  const runtime: { name: string; type: TensorType }[] = [];
  const addValue = (v: string, readByNode: boolean): void => {
    if (!v || types.has(v)) return;
    const t = infoOf(v);
    const type: TensorType = { dtype: t.dtype, dims: t.dims };
    types.set(v, type);
    if (inputNames.has(v)) {
      runtime.push({ name: v, type });
      if (t.value) constants.set(v, t.value); // an input given as a constant (an If condition's cone)
      return;
    }
    if (t.value) constants.set(v, t.value);
    const init = graph.initializers.get(v);
    if (!readByNode || producedBy.has(v) || rename.has(v)) return;
    if (init) {
      weights.push(v);
      const data = initializerGpuData(init);
      if (data || !init.data) resident.set(v, { type, ...(data ? { data } : {}), ...(init.storage ? { storage: init.storage } : {}) });
    } else if (t.value) {
      const data = gpuData(t.value);
      if (data) resident.set(v, { type, data });
    }
  };
  for (const n of nodes) {
    for (const v of n.inputs) addValue(v, true);
    for (const v of n.outputs) addValue(v, false);
  }
  for (const v of outputs) addValue(v, false);
  runtime.sort((a, b) => graph.inputs.findIndex((d) => d.name === a.name) - graph.inputs.findIndex((d) => d.name === b.name));

  const bound: Record<string, number> = {};
  for (const [s, { size }] of symbols.sizes) bound[s] = size;
  return {
    source: graph,
    key,
    inputs: runtime,
    outputs,
    outputNames,
    nodes,
    types,
    constants,
    weights,
    resident,
    symbols: bound,
    checks: checked.checks,
  };
}

/** GPU storage of a folded constant, or undefined when an integer does not fit 32 bits. */
function gpuData(t: RefTensor): Float32Array | Int32Array | undefined {
  try {
    return toGpuArray(t);
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/** Validates feeds against a specialised graph: every runtime input present, dtype and dims equal. */
export function validateFeeds(spec: SpecializedGraph, feeds: Readonly<Record<string, { readonly dtype: string; readonly dims: readonly number[] }>>): void {
  const declared = new Map(spec.source.inputs.map((d) => [d.name, d]));
  for (const [name, t] of Object.entries(feeds)) {
    const d = declared.get(name);
    if (!d) throw new InputError(`unknown input '${name}'; the model's inputs are ${[...declared.keys()].map((k) => `'${k}'`).join(', ')}`);
    if (t.dtype !== d.dtype) throw new InputError(`input '${name}': expected dtype ${d.dtype}, got ${t.dtype}`);
  }
  for (const inp of spec.inputs) {
    const t = feeds[inp.name];
    if (!t) throw new InputError(`missing input '${inp.name}' (${inp.type.dtype} ${fmt(inp.type.dims)})`);
    if (t.dims.length !== inp.type.dims.length || t.dims.some((x, i) => x !== inp.type.dims[i])) {
      throw new InputError(`input '${inp.name}': this graph is specialised to ${fmt(inp.type.dims)}, got ${fmt(t.dims)}`);
    }
  }
}

/** The input shapes of a set of feeds (for `specialize`). */
export function shapesOf(feeds: Readonly<Record<string, { readonly dims: readonly number[] }>>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(feeds)) out[k] = [...v.dims];
  return out;
}

