// Inserting IA3 into the graph IR, and the cache of rewritten models (one per active-adapter set).
//
// For the active adapters, a non-feed-forward module's output (after its bias) goes through
// `IA3Scale(z, l_1, …)`; a feed-forward module's input goes through `IA3Scale(x, l_1, …)` before its
// MatMul/Gemm. Several active adapters pass several vectors, which the kernel multiplies. Vectors
// are initializers of the rewritten graph named `ia3::<adapter>::<module path>`, stored with PEFT's
// shapes ((out, 1) or (1, in), float32); a modules_to_save copy replaces the weight (and bias) its
// module's own nodes read. The rewrite is pure: it returns a new graph and leaves its input alone.
//
// `Variants` keeps the rewritten models of a PeftModel by key (`a+b`, `a+b|merged`, `a+b|loss`):
// each is the base model `withGraph` the rewritten graph, over one overlay of the base model's
// weight store that holds this PeftModel's adapter tensors (`ia3::…`, `mts::…`) — the frozen weights
// are shared, so switching adapters and back compiles no pipeline and uploads no frozen weight, and
// another PeftModel over the same base never sees these vectors.

import { InputError, UnsupportedOpError } from '../errors.js';
import type { Graph, Initializer, Node } from '../ir/graph.js';
import type { WeightStore } from '../gpu/weights.js';
import type { Model } from '../model.js';
import { moduleSites, type ModuleInfo } from '../onnx/modules.js';
import type { Adapter } from './adapter.js';

/** Names of the tensors an adapter owns: IA3 vectors and modules_to_save copies (see adapter.ts). */
export function isAdapterTensor(name: string): boolean {
  return name.startsWith('ia3::') || name.startsWith('mts::');
}

/** A targeted module with the vectors of every active adapter that targets it. */
export interface ScaledModule {
  readonly module: ModuleInfo;
  readonly feedforward: boolean;
  readonly vectors: readonly Initializer[];
}

/** A modules_to_save substitution: the module's nodes read `by` instead of initializer `replace`. */
export interface SavedCopy {
  readonly module: ModuleInfo;
  readonly replace: string;
  readonly by: Initializer;
}

/**
 * Rewrites `graph` with IA3 scale nodes for the given targets (each with the vectors of every
 * active adapter that targets it, which multiply) and with modules_to_save copies.
 */
export function insertIA3(graph: Graph, targets: readonly ScaledModule[], saved: readonly SavedCopy[] = []): Graph {
  let nodes: Node[] = [...graph.nodes];
  const initializers = new Map(graph.initializers);
  // modules_to_save: the module's own nodes read the adapter's trainable copy of each parameter
  // (other readers of a tied weight keep the frozen original).
  for (const s of saved) {
    initializers.set(s.by.name, s.by);
    const own = new Set(moduleSites(s.module).flatMap((m) => [m.node, m.transpose, m.bias?.node]).filter((n): n is string => !!n));
    nodes = nodes.map((n) => (own.has(n.name) && n.inputs.includes(s.replace) ? { ...n, inputs: n.inputs.map((i) => (i === s.replace ? s.by.name : i)) } : n));
  }
  const indexOf = (name: string): number => {
    const i = nodes.findIndex((n) => n.name === name);
    if (i < 0) throw new InputError(`IA3: node '${name}' not found in the graph`);
    return i;
  };
  for (const t of targets) {
    if (t.vectors.length === 0) continue;
    for (const v of t.vectors) initializers.set(v.name, v);
    const names = t.vectors.map((v) => v.name);
    // A module computed in several places (both branches of a merged decoder) is scaled in each.
    for (const m of moduleSites(t.module)) {
      if (t.feedforward) {
        // Input scale: u = x ⊙ l feeds the MatMul/Gemm in place of x.
        const at = indexOf(m.node);
        const mm = nodes[at]!;
        if (mm.opType === 'Gemm' && mm.attrs.transA === 1) {
          throw new UnsupportedOpError('Gemm', mm.name, `IA3 feed-forward scaling of module '${t.module.path}' needs transA = 0`);
        }
        const x = mm.inputs[0]!;
        const u = `${mm.name}/ia3_input`;
        const scale: Node = { name: `${mm.name}/IA3Scale`, opType: 'IA3Scale', domain: 'ia3', inputs: [x, ...names], outputs: [u], attrs: {} };
        // A q8 layer quantises its input (onnx/precision.ts): the module is quantiser + MatMul, so
        // x ⊙ l goes through a quantiser of its own, as PEFT scales the input of a quantised Linear.
        const quant = nodes.find((n) => n.outputs[0] === x && n.opType === 'DynamicQuantizeDequantize' && n.domain === 'ia3');
        if (quant) {
          const uq = `${mm.name}/ia3_input_quantized`;
          nodes.splice(at, 1, { ...scale, inputs: [quant.inputs[0]!, ...names] }, { ...quant, name: `${mm.name}/ia3_quantize`, inputs: [u], outputs: [uq] }, { ...mm, inputs: [uq, ...mm.inputs.slice(1)] });
        } else {
          nodes.splice(at, 1, scale, { ...mm, inputs: [u, ...mm.inputs.slice(1)] });
        }
      } else {
        // Output scale after the bias: the producer of the module's output writes a new value that
        // IA3Scale turns back into the original name, so every reader (and graph outputs) see y·l.
        // A part of a packed projection is scaled where the Split hands out its columns.
        const [producer, k] = m.part ? [m.part.split, m.part.index] : [m.bias ? m.bias.node : m.node, 0];
        const at = indexOf(producer);
        const p = nodes[at]!;
        const z = p.outputs[k]!;
        const pre = `${z}/ia3_pre`;
        const outputs = p.outputs.map((o, i) => (i === k ? pre : o));
        nodes.splice(at, 1, { ...p, outputs }, { name: `${p.name}/IA3Scale${k === 0 ? '' : `_${k}`}`, opType: 'IA3Scale', domain: 'ia3', inputs: [pre, ...names], outputs: [z], attrs: {} });
      }
    }
  }
  return { ...graph, nodes, initializers };
}

/** The modules the active adapters scale, each with their vectors in activation order. */
export function scaledModules(active: readonly string[], adapter: (name: string) => Adapter): ScaledModule[] {
  const targets = new Map<string, { module: ModuleInfo; feedforward: boolean; vectors: Initializer[] }>();
  for (const name of active) {
    const a = adapter(name);
    for (const t of a.targets) {
      const entry = targets.get(t.module.path) ?? { module: t.module, feedforward: t.feedforward, vectors: [] };
      if (entry.feedforward !== t.feedforward) {
        throw new InputError(`module '${t.module.path}' is feed-forward in one active adapter and not in another`);
      }
      const p = a.params.find((x) => x.target === t)!;
      entry.vectors.push({ name: p.name, dtype: 'float32', dims: [...t.dims], data: p.values });
      targets.set(t.module.path, entry);
    }
  }
  return [...targets.values()];
}

/** modules_to_save replacements for the active adapters: the first active adapter's copy wins. */
export function savedCopies(active: readonly string[], adapter: (name: string) => Adapter): SavedCopy[] {
  const out = new Map<string, SavedCopy>();
  for (const a of active) {
    for (const p of adapter(a).params) {
      if (!p.saved || out.has(p.saved.initializer)) continue;
      out.set(p.saved.initializer, { module: p.saved.module, replace: p.saved.initializer, by: { name: p.name, dtype: 'float32', dims: [...p.saved.onnxDims], data: p.values } });
    }
  }
  return [...out.values()];
}

/** Rewritten models of one base model by key; `a+b` keys list the active adapters before any `|`. */
export class Variants {
  private readonly models = new Map<string, Model>();
  /** This PeftModel's adapter tensors on the GPU, over the base model's frozen weights. */
  readonly store: WeightStore;

  constructor(private readonly base: Model) {
    this.store = base.weights.overlay(isAdapterTensor);
  }

  /** The model for `key`, the base model running `build()`'s graph the first time it is asked for. */
  get(key: string, build: () => Graph): Model {
    let m = this.models.get(key);
    if (!m) {
      m = this.base.withGraph(build(), this.store);
      this.models.set(key, m);
    }
    return m;
  }

  /** Every cached model (each holds its own graph, which shares the base model's initializers). */
  all(): Model[] {
    return [...this.models.values()];
  }

  /** Frees the plans of the variants `drop` selects (by their active adapters) and forgets them. */
  async release(drop: (adapters: readonly string[]) => boolean = () => true): Promise<void> {
    for (const [key, m] of this.models) {
      if (!drop(key.split('|')[0]!.split('+'))) continue;
      await m.releasePlans();
      this.models.delete(key);
    }
  }
}
