// PyTorch module paths of the linear layers of an imported graph.
//
// IA3 targets modules by their PyTorch names (`k_proj`, `c_attn`, `output.dense`), but an ONNX file
// only has nodes and tensors. A linear layer is a MatMul or Gemm one of whose operands is a frozen
// 2-D weight (directly, or through a Transpose of the weight). Its path is recovered, in order of
// trust, from:
//   1. an explicit user mapping (`moduleMap`: node name → path), which always wins;
//   2. the node's scope name, which torch.onnx.export writes as `/model/layers.0/self_attn/k_proj/MatMul`
//      (modules joined by '/', ModuleList indices by '.'), unless several weights share one scope;
//   3. the weight initializer's name (`bert.encoder.layer.0.attention.self.key.weight`), which
//      constant folding often replaces by `onnx::MatMul_123`;
//   4. the bias initializer of the Add that follows the MatMul (`…k_lin.bias`), or Gemm's C.
// Layers where none applies are left out (`unnamedLinears` lists them, so a caller can ask for a
// mapping). GPT-2's Conv1D stores W as [in, out] and runs as Gemm (addmm) or MatMul + Add.

import { isFloat } from '../ir/dtype.js';
import type { Graph, Initializer, Node } from '../ir/graph.js';

/** Whether the stored weight is [in, out] (ONNX MatMul, Conv1D) or [out, in] (nn.Linear, Gemm transB). */
export type WeightLayout = 'in_out' | 'out_in';

export interface ModuleInfo {
  /** PyTorch module path, e.g. 'model.layers.0.self_attn.k_proj'. */
  readonly path: string;
  readonly kind: 'MatMul' | 'Gemm';
  /** Name of the MatMul or Gemm node. */
  readonly node: string;
  /** Name of the weight initializer (the Transpose's input when the MatMul reads one). */
  readonly weight: string;
  readonly weightLayout: WeightLayout;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /**
   * The bias: the Add node after a MatMul and its 1-D initializer of size `outFeatures`; for a
   * Gemm whose C input is the bias, `node` is the Gemm itself.
   */
  readonly bias?: { readonly node: string; readonly initializer: string };
  /** The Transpose node between the weight and the MatMul, when there is one. */
  readonly transpose?: string;
  /** Where the path came from. */
  readonly pathSource: 'moduleMap' | 'scope' | 'weight' | 'bias';
}

export interface FindModulesOptions {
  /** Explicit paths by node name (MatMul/Gemm), overriding what the graph suggests. */
  readonly moduleMap?: Readonly<Record<string, string>>;
}

/** A linear layer before its path is known. */
export type LinearNode = Omit<ModuleInfo, 'path' | 'pathSource'>;

const PATH_RE = /^[A-Za-z_][\w-]*(\.[\w-]+)*$/;

/** Every MatMul/Gemm with a frozen 2-D float weight operand, in graph order. */
export function linearNodes(graph: Graph): LinearNode[] {
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) {
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  const weightInit = (name: string): Initializer | undefined => {
    const w = graph.initializers.get(name);
    return w && w.dims.length === 2 && isFloat(w.dtype) ? w : undefined;
  };
  // The operand as a weight: the initializer itself, or a 2-D Transpose of one.
  const weightOf = (name: string): { init: Initializer; transpose?: Node } | undefined => {
    const direct = weightInit(name);
    if (direct) return { init: direct };
    const p = producer.get(name);
    if (p?.opType !== 'Transpose') return undefined;
    const perm = p.attrs.perm as readonly number[] | undefined;
    if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return undefined;
    const init = weightInit(p.inputs[0]!);
    return init ? { init, transpose: p } : undefined;
  };
  const biasInit = (name: string, out: number): Initializer | undefined => {
    const b = graph.initializers.get(name);
    if (!b || !isFloat(b.dtype)) return undefined;
    const ok = (b.dims.length === 1 && b.dims[0] === out) || (b.dims.length === 2 && b.dims[0] === 1 && b.dims[1] === out);
    return ok ? b : undefined;
  };
  // An Add consuming the output with a bias initializer as its other operand (either order).
  const biasAdd = (output: string, out: number): ModuleInfo['bias'] => {
    for (const c of consumers.get(output) ?? []) {
      if (c.opType !== 'Add' || c.inputs.length !== 2) continue;
      const other = c.inputs[0] === output ? c.inputs[1]! : c.inputs[0]!;
      const b = graph.initializers.get(other);
      if (b && b.dims.length === 1 && b.dims[0] === out && isFloat(b.dtype)) return { node: c.name, initializer: other };
    }
    return undefined;
  };

  const found: LinearNode[] = [];
  for (const n of graph.nodes) {
    if (n.domain !== '' || (n.opType !== 'MatMul' && n.opType !== 'Gemm')) continue;
    const w = weightOf(n.inputs[1] ?? '');
    if (!w) continue;
    let transposed = w.transpose !== undefined;
    if (n.opType === 'Gemm') {
      if ((n.attrs.transA ?? 0) !== 0) continue; // the activation operand must not be transposed
      if ((n.attrs.transB ?? 0) !== 0) transposed = !transposed;
    }
    // `transposed`: the stored tensor is Wᵀ of what the op multiplies by, i.e. [out, in].
    const [d0, d1] = w.init.dims as [number, number];
    const inFeatures = transposed ? d1 : d0;
    const outFeatures = transposed ? d0 : d1;
    let bias: ModuleInfo['bias'];
    if (n.opType === 'Gemm' && n.inputs[2]) {
      const c = biasInit(n.inputs[2], outFeatures);
      if (c) bias = { node: n.name, initializer: c.name };
    } else {
      bias = biasAdd(n.outputs[0]!, outFeatures);
    }
    found.push({
      kind: n.opType,
      node: n.name,
      weight: w.init.name,
      weightLayout: transposed ? 'out_in' : 'in_out',
      inFeatures,
      outFeatures,
      ...(bias ? { bias } : {}),
      ...(w.transpose ? { transpose: w.transpose.name } : {}),
    });
  }
  return found;
}

/** '/model/layers.0/self_attn/k_proj/MatMul' → 'model.layers.0.self_attn.k_proj'. */
export function scopePath(nodeName: string): string | undefined {
  if (!nodeName.startsWith('/')) return undefined;
  const parts = nodeName.slice(1).split('/');
  parts.pop(); // the op's own name (MatMul, MatMul_1, Gemm)
  const path = parts.join('.');
  return parts.length > 0 && PATH_RE.test(path) ? path : undefined;
}

/** 'x.key.weight' (or 'x.key.weight_transposed') → 'x.key'; undefined for names like 'onnx::MatMul_1'. */
export function parameterPath(name: string, suffix: 'weight' | 'bias'): string | undefined {
  const base = name.replace(/(_transposed|_transpose|_T|\.T)$/, '');
  if (!base.endsWith(`.${suffix}`)) return undefined;
  const path = base.slice(0, -suffix.length - 1);
  return PATH_RE.test(path) ? path : undefined;
}

/** The module of every linear layer whose path can be recovered, in graph order. */
export function findModules(graph: Graph, options: FindModulesOptions = {}): ModuleInfo[] {
  const linears = linearNodes(graph);
  // A scope shared by linears with different weights (a functional F.linear inside a parent
  // module) names the parent, not a layer: those fall back to parameter names.
  const weightsByScope = new Map<string, Set<string>>();
  for (const l of linears) {
    const s = scopePath(l.node);
    if (s) weightsByScope.set(s, (weightsByScope.get(s) ?? new Set()).add(l.weight));
  }
  const out: ModuleInfo[] = [];
  for (const l of linears) {
    const mapped = options.moduleMap?.[l.node];
    const scope = scopePath(l.node);
    const candidates: [string | undefined, ModuleInfo['pathSource']][] = [
      [mapped, 'moduleMap'],
      [scope && weightsByScope.get(scope)!.size === 1 ? scope : undefined, 'scope'],
      [parameterPath(l.weight, 'weight'), 'weight'],
      [l.bias ? parameterPath(l.bias.initializer, 'bias') : undefined, 'bias'],
    ];
    const hit = candidates.find((c) => c[0] !== undefined);
    if (hit) out.push({ path: hit[0]!, pathSource: hit[1], ...l });
  }
  return out;
}

/** Linear layers for which no path could be recovered (candidates for `moduleMap`). */
export function unnamedLinears(graph: Graph, modules: readonly ModuleInfo[]): LinearNode[] {
  const named = new Set(modules.map((m) => m.node));
  return linearNodes(graph).filter((l) => !named.has(l.node));
}

/** Module-path signatures of model families, most specific first. */
const MODEL_PATTERNS: readonly (readonly [RegExp, string])[] = [
  [/(^|\.)distilbert\.|(^|\.)transformer\.layer\.\d+\.attention\.q_lin$/, 'distilbert'],
  [/(^|\.)roberta\./, 'roberta'],
  [/(^|\.)deberta\./, 'deberta'],
  [/(^|\.)electra\./, 'electra'],
  [/(^|\.)albert\./, 'albert'],
  [/(^|\.)vit\.encoder\.layer\.\d+\.attention\.attention\.query$/, 'vit'],
  [/(^|\.)bert\.|(^|\.)encoder\.layer\.\d+\.attention\.self\.query$/, 'bert'],
  [/(^|\.)h\.\d+\.attn\.c_attn$/, 'gpt2'],
  [/(^|\.)h\.\d+\.attn\.attention\.q_proj$/, 'gpt_neo'],
  [/(^|\.)gpt_neox\.layers\.\d+\.attention\.query_key_value$/, 'gpt_neox'],
  [/(^|\.)h\.\d+\.self_attention\.query_key_value$/, 'bloom'],
  [/(^|\.)encoder\.block\.\d+\.layer\.0\.SelfAttention\.q$/, 't5'],
  [/^model\.encoder\.layers\.\d+\.self_attn\.q_proj$/, 'bart'],
  [/(^|\.)decoder\.layers\.\d+\.self_attn\.q_proj$/, 'opt'],
  [/(^|\.)layers\.\d+\.self_attn\.qkv_proj$/, 'phi3'],
  [/(^|\.)layers\.\d+\.self_attn\.dense$/, 'phi'],
  [/(^|\.)layers\.\d+\.self_attn\.q_proj$/, 'llama'],
];

/**
 * The Hugging Face `model_type`: config.json's when present, else guessed from module paths
 * (llama also stands for its look-alikes: mistral, qwen2). Undefined when nothing matches.
 */
export function detectModelType(modules: readonly { readonly path: string }[], config?: unknown): string | undefined {
  if (config && typeof config === 'object') {
    const t = (config as Record<string, unknown>).model_type;
    if (typeof t === 'string' && t !== '') return t;
  }
  for (const [re, type] of MODEL_PATTERNS) {
    if (modules.some((m) => re.test(m.path))) return type;
  }
  return undefined;
}
