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
//      constant folding often replaces by `onnx::MatMul_123`; TensorFlow exports (tf2onnx,
//      keras2onnx) name it `bert/encoder/layer_0/.../key/kernel:0`, which transformers' TF → PyTorch
//      name mapping turns into the same path;
//   4. the bias initializer of the Add that follows the MatMul (`…k_lin.bias`), or Gemm's C;
//   5. for projections a fused attention consumed (onnx/expand.ts records them), the family's
//      layout next to the attention's output projection (module-conventions.ts).
// Tool names are mapped to transformers' (the genai builder's `attn` → `self_attn`), and a packed
// projection that transformers keeps as separate modules (the builder's `qkv_proj`, the
// optimizer's Attention weights) becomes one module per part: its columns of the packed weight
// (`part`), its slice of the packed bias (`bias.offset`), and its output at the Split that
// separates the parts. Layers where nothing applies are left out (`unnamedLinears` lists them, with
// the fused op that hid them, so a caller can ask for a mapping). GPT-2's Conv1D stores W as
// [in, out] and runs as Gemm (addmm) or MatMul + Add.
// One module may be computed by several nodes: optimum's merged decoders hold it in both branches
// of an If (the importer inlines both, see onnx/decode.ts), reading one weight; such nodes are one
// module, the later ones its `sites`.

import { isFloat } from '../ir/dtype.js';
import { initializerToRef, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { packedPartPaths, siblingPaths, transformersPath } from './module-conventions.js';

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
   * Gemm whose C input is the bias, `node` is the Gemm itself. A bias that is a slice of a packed
   * bias (a fused attention's) starts at `offset` of the initializer, and `split` is the Split node
   * that cuts it out.
   */
  readonly bias?: { readonly node: string; readonly initializer: string; readonly offset?: number; readonly split?: string };
  /** The Transpose node between the weight and the MatMul, when there is one. */
  readonly transpose?: string;
  /**
   * One part of a packed projection: output columns [start, start + outFeatures) of the product's
   * `total`, separated from the other parts by output `index` of Split node `split`.
   */
  readonly part?: { readonly start: number; readonly total: number; readonly split: string; readonly index: number };
  /** Where the path came from ('attention': the layout next to a fused attention's output projection). */
  readonly pathSource: 'moduleMap' | 'scope' | 'weight' | 'bias' | 'attention';
  /**
   * Other nodes computing the same module with the same weight (the other branch of a merged
   * decoder's If): IA3 scales them all with the module's one vector.
   */
  readonly sites?: readonly ModuleSite[];
}

/** A node computing a module: the MatMul/Gemm, its bias Add, the Transpose of its weight, its Split part. */
export type ModuleSite = Pick<ModuleInfo, 'node' | 'bias' | 'transpose' | 'part'>;

/** The nodes of a module: its own, then its other sites. */
export function moduleSites(m: ModuleInfo): ModuleSite[] {
  return [m, ...(m.sites ?? [])];
}

export interface FindModulesOptions {
  /** Explicit paths by node name (MatMul/Gemm), overriding what the graph suggests. */
  readonly moduleMap?: Readonly<Record<string, string>>;
  /** The model type (config.json's), for families whose own modules are packed. */
  readonly modelType?: string;
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
  // A half bias widened by a Cast (fp16 weights, float32 compute) is still the module's bias.
  const throughCast = (name: string): string => {
    const p = producer.get(name);
    return p?.opType === 'Cast' && Number(p.attrs.to) === 1 && graph.initializers.get(p.inputs[0]!)?.dtype === 'float16' ? p.inputs[0]! : name;
  };
  const biasInit = (name: string, out: number): Initializer | undefined => {
    const b = graph.initializers.get(throughCast(name));
    if (!b || !isFloat(b.dtype)) return undefined;
    const ok = (b.dims.length === 1 && b.dims[0] === out) || (b.dims.length === 2 && b.dims[0] === 1 && b.dims[1] === out);
    return ok ? b : undefined;
  };
  // A 1-D float initializer of `out` values, or such a slice of a packed bias: an output of a
  // Split along axis 0 of a 1-D initializer, with constant sizes.
  const biasOperand = (operand: string, out: number): { initializer: string; offset?: number; split?: string } | undefined => {
    const name = throughCast(operand);
    const b = graph.initializers.get(name);
    if (b) return b.dims.length === 1 && b.dims[0] === out && isFloat(b.dtype) ? { initializer: name } : undefined;
    const p = producer.get(name);
    if (p?.opType !== 'Split' || Number(p.attrs.axis ?? 0) !== 0) return undefined;
    const packed = graph.initializers.get(p.inputs[0] ?? '');
    const sizes = splitSizes(graph, p);
    const k = p.outputs.indexOf(name);
    if (!packed || packed.dims.length !== 1 || !isFloat(packed.dtype) || !sizes || sizes[k] !== out) return undefined;
    return { initializer: packed.name, offset: sizes.slice(0, k).reduce((a, v) => a + v, 0), split: p.name };
  };
  // An Add consuming the output with a bias as its other operand (either order).
  const biasAdd = (output: string, out: number): ModuleInfo['bias'] => {
    for (const c of consumers.get(output) ?? []) {
      if (c.opType !== 'Add' || c.inputs.length !== 2) continue;
      const b = biasOperand(c.inputs[0] === output ? c.inputs[1]! : c.inputs[0]!, out);
      if (b) return { node: c.name, ...b };
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

/** The constant sizes of a Split node's outputs, when it states them (sizes input or attribute). */
function splitSizes(graph: Graph, split: Node): number[] | undefined {
  const input = split.inputs[1];
  if (input) {
    const init = graph.initializers.get(input);
    return init?.data ? Array.from(initializerToRef(init).data) : undefined;
  }
  const attr = split.attrs.split as readonly number[] | undefined;
  if (attr) return [...attr];
  return undefined;
}

/** The Split along the last axis that alone reads a linear's output (after its bias), with its sizes. */
function packedSplit(graph: Graph, l: LinearNode, consumers: ReadonlyMap<string, readonly Node[]>, nodeByName: ReadonlyMap<string, Node>): { node: Node; sizes: number[] } | undefined {
  const out = l.bias ? nodeByName.get(l.bias.node)?.outputs[0] : nodeByName.get(l.node)?.outputs[0];
  if (!out) return undefined;
  const readers = consumers.get(out) ?? [];
  const split = readers[0];
  if (readers.length !== 1 || split?.opType !== 'Split' || split.inputs[0] !== out) return undefined;
  const axis = Number(split.attrs.axis ?? 0);
  // The product is [..., outFeatures]: the split must be along its last axis.
  if (axis !== -1 && axis !== 2) return undefined;
  const sizes = splitSizes(graph, split);
  if (!sizes || sizes.length !== split.outputs.length || sizes.reduce((a, v) => a + v, 0) !== l.outFeatures) return undefined;
  return { node: split, sizes };
}

/** '/model/layers.0/self_attn/k_proj/MatMul' → 'model.layers.0.self_attn.k_proj'. */
export function scopePath(nodeName: string): string | undefined {
  if (!nodeName.startsWith('/')) return undefined;
  const parts = nodeName.slice(1).split('/');
  parts.pop(); // the op's own name (MatMul, MatMul_1, Gemm)
  const path = parts.join('.');
  return parts.length > 0 && PATH_RE.test(path) ? path : undefined;
}

/** TensorFlow's names of a layer's weight and bias variables, by PyTorch name. */
const TF_PARAMETER: Readonly<Record<'weight' | 'bias', readonly string[]>> = { weight: ['kernel'], bias: ['bias'] };

/**
 * A TensorFlow variable name as transformers maps it to PyTorch (modeling_tf_pytorch_utils and
 * load_tf_weights_in_bert): ':0' dropped, '_._' and 'layer_3' split into levels, a Keras model's
 * own first level (`tf_bert_for_sequence_classification/`) dropped, levels joined by '.'.
 * 'tf_bert_for_x/bert/encoder/layer_._0/attention/self/key/kernel:0' and
 * 'bert/encoder/layer_0/attention/self/key/kernel:0' → 'bert.encoder.layer.0.attention.self.key'.
 */
export function tfParameterPath(name: string, suffix: 'weight' | 'bias'): string | undefined {
  if (!name.includes('/')) return undefined;
  const levels = name
    .replace(/:\d+$/, '')
    .replace(/_\._/g, '/')
    .split('/')
    .filter((l) => l !== '')
    .flatMap((l) => {
      const m = /^([A-Za-z]+)_(\d+)$/.exec(l);
      return m ? [m[1]!, m[2]!] : [l];
    });
  if (levels[0]?.startsWith('tf_')) levels.shift();
  if (!TF_PARAMETER[suffix].includes(levels.pop() ?? '')) return undefined;
  const path = levels.join('.');
  return levels.length > 0 && PATH_RE.test(path) ? path : undefined;
}

/**
 * 'x.key.weight' (or 'x.key.weight_transposed') → 'x.key', and TensorFlow's '…/key/kernel:0' the
 * same way (tfParameterPath); undefined for names like 'onnx::MatMul_1'.
 */
export function parameterPath(name: string, suffix: 'weight' | 'bias'): string | undefined {
  const tf = tfParameterPath(name, suffix);
  if (tf) return tf;
  const base = name.replace(/(_transposed|_transpose|_T|\.T)$/, '');
  if (!base.endsWith(`.${suffix}`)) return undefined;
  const path = base.slice(0, -suffix.length - 1);
  return PATH_RE.test(path) ? path : undefined;
}

/** The module of every linear layer whose path can be recovered, in graph order. */
export function findModules(graph: Graph, options: FindModulesOptions = {}): ModuleInfo[] {
  const linears = linearNodes(graph);
  const consumers = new Map<string, Node[]>();
  const nodeByName = new Map<string, Node>();
  for (const n of graph.nodes) {
    nodeByName.set(n.name, n);
    for (const i of new Set(n.inputs)) {
      if (!i) continue;
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  // The MatMul of an expanded MatMulNBits sits under the fused node's name: scope from that node
  // ('/model/layers.0/mlp/down_proj/MatMul_Q4' → 'model.layers.0.mlp.down_proj').
  const quantised = new Map((graph.expanded ?? []).filter((e) => e.node.opType === 'MatMulNBits').flatMap((e) => e.nodes.map((n) => [n, e.node.name] as const)));
  const scopeOf = (l: LinearNode): string | undefined => scopePath(quantised.get(l.node) ?? l.node);
  // A scope shared by linears with different weights (a functional F.linear inside a parent
  // module) names the parent, not a layer: those fall back to parameter names.
  const weightsByScope = new Map<string, Set<string>>();
  for (const l of linears) {
    const s = scopeOf(l);
    if (s) weightsByScope.set(s, (weightsByScope.get(s) ?? new Set()).add(l.weight));
  }
  const own = (l: LinearNode): [string, ModuleInfo['pathSource']] | undefined => {
    const scope = scopeOf(l);
    const candidates: [string | undefined, ModuleInfo['pathSource']][] = [
      [options.moduleMap?.[l.node], 'moduleMap'],
      [scope && weightsByScope.get(scope)!.size === 1 ? scope : undefined, 'scope'],
      [parameterPath(l.weight, 'weight'), 'weight'],
      [l.bias && l.bias.offset === undefined ? parameterPath(l.bias.initializer, 'bias') : undefined, 'bias'],
    ];
    const hit = candidates.find((c) => c[0] !== undefined);
    return hit ? [hit[0]!, hit[1]] : undefined;
  };
  const named = new Map(linears.map((l) => [l, own(l)] as const));
  const hasSelfAttn = [...named.values()].some((p) => p?.[0].includes('.self_attn.'));
  const pathOf = (l: LinearNode): [string, ModuleInfo['pathSource']] | undefined => {
    const p = named.get(l);
    return p && p[1] !== 'moduleMap' ? [transformersPath(p[0], hasSelfAttn), p[1]] : p;
  };

  // Fused attentions: the role of each value they read, and their output projection's path.
  const byOutput = new Map<string, LinearNode>();
  for (const l of linears) {
    const n = nodeByName.get(l.node);
    if (n) byOutput.set(n.inputs[0]!, l);
  }
  const roleOf = new Map<string, { role: 0 | 1 | 2; siblings: ReturnType<typeof siblingPaths> }>();
  for (const e of graph.expanded ?? []) {
    const a = e.attention;
    const o = a && byOutput.get(a.output);
    const oPath = o && pathOf(o);
    if (!a || !oPath) continue;
    const siblings = siblingPaths(oPath[0]);
    ([a.query, a.key, a.value] as const).forEach((v, role) => {
      if (v) roleOf.set(v, { role: role as 0 | 1 | 2, siblings });
    });
  }
  const sibling = (value: string | undefined): string | undefined => {
    const r = value ? roleOf.get(value) : undefined;
    return r?.siblings?.separate?.[r.role];
  };
  const outputOf = (l: LinearNode): string | undefined => (l.bias ? nodeByName.get(l.bias.node)?.outputs[0] : nodeByName.get(l.node)?.outputs[0]);

  const out: ModuleInfo[] = [];
  for (const l of linears) {
    const path = pathOf(l);
    const packed = packedSplit(graph, l, consumers, nodeByName);
    if (packed && (!path || path[1] !== 'moduleMap')) {
      // Parts named by the tool's packing, or by a fused attention's layout.
      let parts = path ? packedPartPaths(path[0], packed.sizes.length, options.modelType) : undefined;
      let source: ModuleInfo['pathSource'] | undefined = path?.[1];
      let whole = path?.[0];
      if (!path) {
        const r = roleOf.get(packed.node.outputs[0]!);
        if (r?.siblings?.separate && packed.sizes.length === 3) parts = [...r.siblings.separate];
        else if (r?.siblings?.packed) whole = r.siblings.packed;
        source = 'attention';
      }
      if (parts) {
        let start = 0;
        packed.sizes.forEach((size, index) => {
          const bias = l.bias ? { ...l.bias, offset: (l.bias.offset ?? 0) + start } : undefined;
          out.push({ ...l, path: parts![index]!, pathSource: source!, outFeatures: size, ...(bias ? { bias } : {}), part: { start, total: l.outFeatures, split: packed.node.name, index } });
          start += size;
        });
        continue;
      }
      if (whole) out.push({ ...l, path: whole, pathSource: source! });
      continue;
    }
    if (path) {
      out.push({ ...l, path: path[0], pathSource: path[1] });
      continue;
    }
    const fromAttention = sibling(outputOf(l));
    if (fromAttention) out.push({ ...l, path: fromAttention, pathSource: 'attention' });
  }
  return mergeSites(out);
}

/** Folds modules of one path and one weight (and layout) into the first, the rest as its sites. */
function mergeSites(modules: readonly ModuleInfo[]): ModuleInfo[] {
  const first = new Map<string, number>();
  const out: ModuleInfo[] = [];
  for (const m of modules) {
    const key = `${m.path}\u0000${m.weight}\u0000${m.weightLayout}\u0000${m.kind}`;
    const at = first.get(key);
    if (at === undefined) {
      first.set(key, out.length);
      out.push(m);
      continue;
    }
    const site: ModuleSite = { node: m.node, ...(m.bias ? { bias: m.bias } : {}), ...(m.transpose ? { transpose: m.transpose } : {}), ...(m.part ? { part: m.part } : {}) };
    out[at] = { ...out[at]!, sites: [...(out[at]!.sites ?? []), site] };
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
