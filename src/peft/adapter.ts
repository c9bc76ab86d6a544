// One IA3 adapter's data: which modules it scales, its trainable tensors, and their state-dict layout.
//
// PEFT's seam between a config and a model: `createAdapter` resolves a config for the model's
// modules (PEFT's per-model-type defaults, 'all-linear', the task's modules_to_save) and allocates
// the tensors PEFT allocates — a vector per targeted module, initialised to ones (or standard
// normal when init_ia3_weights is false), and a trainable copy of every modules_to_save parameter,
// initialised from the frozen weight. Values are kept in the ONNX layout the graph reads; the
// state dict uses PEFT's keys (`base_model.model.<module path>.ia3_l`) and PyTorch's layout, which
// for a Linear weight the exporter stored as [in, out] is the transpose.
//
// Nothing here touches the GPU or the graph: PeftModel shares the values with the rewritten graphs
// (peft/inject.ts) and writes them to the model's weight store.

import { InputError } from '../errors.js';
import { initializerToRef } from '../ir/graph.js';
import type { TensorData } from '../ir/tensor.js';
import type { Model } from '../model.js';
import type { ModuleInfo } from '../onnx/modules.js';
import type { IA3Config, ModuleSelection } from './config.js';
import { expandAllLinear, isModuleToSave, selectModules } from './match.js';

/** PEFT's state-dict prefix of a model wrapped by PeftModel. */
export const KEY_PREFIX = 'base_model.model.';

/** One targeted module of an adapter. */
export interface IA3Target {
  readonly module: ModuleInfo;
  readonly feedforward: boolean;
  /** PEFT state-dict key, `base_model.model.<path>.ia3_l`. */
  readonly key: string;
  /** PEFT's shape: [out, 1], or [1, in] for feed-forward modules. */
  readonly dims: readonly [number, number];
}

/**
 * A trainable tensor of an adapter: an IA3 vector, or a parameter of a `modules_to_save` copy.
 * Values live in the ONNX layout the graph reads; the state dict uses PyTorch's layout, which for
 * a Linear weight the exporter stored as [in, out] is the transpose.
 */
export interface AdapterParam {
  /** Initializer name in the rewritten graph. */
  readonly name: string;
  /** PEFT state-dict key. */
  readonly key: string;
  /** PEFT (PyTorch) shape. */
  readonly dims: readonly number[];
  /** True when the PEFT layout is the transpose of the 2-D ONNX layout. */
  readonly transposed: boolean;
  /** Values in the ONNX layout. */
  readonly values: Float32Array;
  /** The IA3 vector's target, or the module-to-save copy's source initializer. */
  readonly target?: IA3Target;
  readonly saved?: { readonly module: ModuleInfo; readonly initializer: string; readonly onnxDims: readonly number[] };
}

export interface Adapter {
  readonly config: IA3Config;
  readonly targets: readonly IA3Target[];
  readonly params: readonly AdapterParam[];
}

/** Internal initializer name of an adapter's vector. */
export function vectorName(adapter: string, path: string): string {
  return `ia3::${adapter}::${path}`;
}

/** Prefixes of an adapter's tensor names (vectors, modules_to_save copies): what deleting it frees. */
export function adapterPrefixes(adapter: string): string[] {
  return [`ia3::${adapter}::`, `mts::${adapter}::`];
}

/** Checks a new adapter name (PEFT allows any key; ours become tensor names, so they are plain). */
export function checkAdapterName(name: string, existing: ReadonlyMap<string, unknown>): void {
  if (existing.has(name)) throw new InputError(`adapter '${name}' already exists`);
  if (!/^[\w.-]+$/.test(name)) throw new InputError(`adapter name '${name}' must be letters, digits, '_', '.' or '-'`);
}

/** A config resolved for a model as PEFT resolves it: module lists filled in, task modules_to_save added, 'all-linear' expanded. */
export function resolveConfig(config: IA3Config, model: Model): IA3Config {
  const resolved = (config.targetModules === null || config.feedforwardModules === null ? config.resolveForModelType(model.modelType ?? '') : config).withTaskModulesToSave();
  // 'all-linear': every linear module but the output layer (lm_head), as PEFT expands it.
  const paths = model.modules.map((m) => m.path);
  return expandAllLinear(resolved, { linearModules: paths, outputLayer: paths.find((p) => p === 'lm_head' || p.endsWith('.lm_head')) ?? null });
}

/** The targets and initial tensors of adapter `name` for a config already resolved for the model. */
export function createAdapter(name: string, resolved: IA3Config, model: Model): Adapter {
  const byPath = new Map(model.modules.map((m) => [m.path, m]));
  const selected = selectModules(resolved, model.modules.map((m) => ({ path: m.path })));
  const targets: IA3Target[] = selected.map((s) => {
    const module = byPath.get(s.path)!;
    const dims: [number, number] = s.feedforward ? [1, module.inFeatures] : [module.outFeatures, 1];
    if (s.feedforward && module.part) {
      // Its input is the input of every part: scaling it would scale the other parts too.
      throw new InputError(
        `module '${s.path}' is one part of a packed projection (columns ${module.part.start}..${module.part.start + module.outFeatures} of '${module.weight}', node '${module.node}'): ` +
          'IA3 cannot scale its input alone (feed-forward); target it as a non-feed-forward module',
      );
    }
    return { module, feedforward: s.feedforward, key: `${KEY_PREFIX}${s.path}.ia3_l`, dims };
  });
  const params: AdapterParam[] = targets.map((t) => {
    const n = t.dims[0] * t.dims[1];
    const values = resolved.initIa3Weights ? new Float32Array(n).fill(1) : randn(n, hashString(`${name}:${t.module.path}`));
    return { name: vectorName(name, t.module.path), key: t.key, dims: t.dims, transposed: false, values, target: t };
  });
  // modules_to_save (PEFT's task wrapper adds the classifier head for SEQ_CLS): trainable
  // copies of the linear modules that match, initialised from the frozen weights.
  for (const module of model.modules.filter((m) => isModuleToSave(resolved, m.path))) {
    if (module.part || module.bias?.offset !== undefined) {
      throw new InputError(`modules_to_save: module '${module.path}' shares its weight or bias with other modules in a packed projection ('${module.weight}'), so it cannot be trained as a copy of its own`);
    }
    const weight = model.graph.initializers.get(module.weight)!;
    // An [in, out] weight is PyTorch's layout for GPT-2's Conv1D (named like a parameter), and
    // the exporter's transpose of a Linear's [out, in] weight otherwise.
    const conv1d = module.weightLayout === 'in_out' && module.weight.endsWith('.weight');
    const transposed = module.weightLayout === 'in_out' && !conv1d;
    const wDims = [...weight.dims];
    params.push({
      name: `mts::${name}::${module.path}.weight`,
      key: `${KEY_PREFIX}${module.path}.weight`,
      dims: transposed ? [wDims[1]!, wDims[0]!] : wDims,
      transposed,
      // The weight's values (dequantised when the file stores it in 4-bit blocks): the copy trains in f32.
      values: Float32Array.from(initializerToRef(weight, `modules_to_save (module '${module.path}')`).data),
      saved: { module, initializer: module.weight, onnxDims: wDims },
    });
    if (module.bias) {
      const bias = model.graph.initializers.get(module.bias.initializer)!;
      params.push({
        name: `mts::${name}::${module.path}.bias`,
        key: `${KEY_PREFIX}${module.path}.bias`,
        dims: [...bias.dims],
        transposed: false,
        values: Float32Array.from(initializerToRef(bias, `modules_to_save (module '${module.path}')`).data),
        saved: { module, initializer: module.bias.initializer, onnxDims: [...bias.dims] },
      });
    }
  }
  return { config: resolved, targets, params };
}

/** Values of `p` (ONNX layout) in PEFT's layout, as a copy. */
export function toPeftLayout(p: AdapterParam, values: Float32Array): Float32Array {
  return p.transposed ? transpose2d(values, p.dims[1]!, p.dims[0]!) : values.slice();
}

/** An adapter's tensors under PEFT's keys, shapes and layouts (copies). */
export function stateDictOf(a: Adapter): Record<string, TensorData> {
  const out: Record<string, TensorData> = {};
  for (const p of a.params) out[p.key] = { data: toPeftLayout(p, p.values), dims: [...p.dims] };
  return out;
}

/**
 * Checks PEFT-keyed tensors (with or without the `base_model.model.` prefix) against an adapter and
 * returns each parameter's new values in the ONNX layout. Every missing key, unexpected key and
 * shape or dtype mismatch is reported in one InputError.
 */
export function stageStateDict(a: Adapter, adapterName: string, tensors: Readonly<Record<string, TensorData>>): Map<AdapterParam, Float32Array> {
  const byKey = new Map(a.params.map((p) => [p.key, p]));
  const problems: string[] = [];
  const staged = new Map<AdapterParam, Float32Array>();
  const seen = new Set<string>();
  for (const [rawKey, tensor] of Object.entries(tensors)) {
    const key = rawKey.startsWith(KEY_PREFIX) ? rawKey : `${KEY_PREFIX}${rawKey}`;
    const p = byKey.get(key);
    if (!p) {
      problems.push(`unexpected key '${rawKey}'`);
      continue;
    }
    if (seen.has(key)) problems.push(`key '${rawKey}' given twice (with and without the prefix)`);
    seen.add(key);
    const n = p.values.length;
    if (!(tensor.data instanceof Float32Array)) problems.push(`'${rawKey}': dtype must be float32`);
    else if (tensor.dims.length !== p.dims.length || tensor.dims.some((d, i) => d !== p.dims[i])) {
      problems.push(`'${rawKey}': shape [${tensor.dims.join(', ')}], expected [${p.dims.join(', ')}]`);
    } else if (tensor.data.length !== n) problems.push(`'${rawKey}': ${tensor.data.length} values for shape [${p.dims.join(', ')}]`);
    else staged.set(p, p.transposed ? transpose2d(tensor.data, p.dims[0]!, p.dims[1]!) : tensor.data);
  }
  for (const p of a.params) if (!seen.has(p.key)) problems.push(`missing key '${p.key}'`);
  if (problems.length > 0) throw new InputError(`adapter '${adapterName}': cannot load the state dict:\n  ${problems.join('\n  ')}`);
  return staged;
}

/**
 * PEFT's `add_weighted_adapter` checks (`_check_add_weighted_adapter`, with its messages) and the
 * combined config: target and feed-forward modules unioned (lists joined, regexes or-ed), the rest
 * the first adapter's.
 */
export function weightedConfig(names: readonly string[], sources: readonly Adapter[]): IA3Config {
  const savedBy = new Map<string, Set<string>>();
  names.forEach((a, i) => {
    for (const p of sources[i]!.params) if (p.saved) savedBy.set(p.saved.module.path, (savedBy.get(p.saved.module.path) ?? new Set()).add(a));
  });
  const clashes = [...savedBy].filter(([, by]) => by.size > 1).map(([m, by]) => `'${m}' (${[...by].join(', ')})`);
  if (clashes.length > 0) throw new InputError(`Cannot add weighted adapters targeting the same module with modules_to_save: ${clashes.join(', ')}`);
  const kind = (sel: ModuleSelection): string => (typeof sel === 'string' ? 'regex' : 'list');
  const kinds = (f: (c: IA3Config) => ModuleSelection): Set<string> => new Set(sources.map((s) => kind(f(s.config))));
  if (kinds((c) => c.targetModules).size > 1 || kinds((c) => c.feedforwardModules).size > 1) {
    throw new InputError('All adapter configs should have the same type for target and feedforward modules.');
  }
  const union = (f: (c: IA3Config) => ModuleSelection): ModuleSelection =>
    typeof f(sources[0]!.config) === 'string'
      ? sources.map((s) => `(${f(s.config) as string})`).join('|')
      : new Set(sources.flatMap((s) => [...((f(s.config) as ReadonlySet<string> | null) ?? [])]));
  return sources[0]!.config.with({ targetModules: union((c) => c.targetModules), feedforwardModules: union((c) => c.feedforwardModules) });
}

/**
 * Sets the vectors of `created` to Σ weight_i · l_i over the source adapters that target each
 * module (an adapter without the module adds nothing). Refuses a module scaled on its output in one
 * adapter and on its input in another: vectors of different lengths and meanings (PEFT would fail
 * on the shapes).
 */
export function combineVectors(created: Adapter, names: readonly string[], sources: readonly Adapter[], weights: readonly number[]): void {
  const disagree: string[] = [];
  for (const t of created.targets) {
    names.forEach((a, i) => {
      const other = sources[i]!.targets.find((x) => x.module.path === t.module.path);
      if (other && other.feedforward !== t.feedforward) disagree.push(`'${t.module.path}' is ${other.feedforward ? '' : 'not '}feed-forward in '${a}'`);
    });
  }
  if (disagree.length > 0) {
    throw new InputError(`cannot combine adapters that disagree on feed-forward modules: ${disagree.join(', ')} but not in the combination`);
  }
  for (const p of created.params) {
    if (!p.target) continue;
    const sum = new Float32Array(p.values.length);
    sources.forEach((src, i) => {
      const from = src.params.find((x) => x.target?.module.path === p.target!.module.path);
      if (!from) return;
      // float32 arithmetic as PyTorch's `ia3_l += l_i * w_i`: the weight cast to float32, the
      // product rounded, then the sum rounded (the Float32Array store rounds).
      const w = Math.fround(weights[i]!);
      for (let k = 0; k < sum.length; k++) sum[k] = sum[k]! + Math.fround(from.values[k]! * w);
    });
    p.values.set(sum);
  }
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j]!;
  return out;
}

/** Deterministic standard normal samples (Box–Muller over a 32-bit LCG), for init_ia3_weights=false. */
function randn(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const u = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
