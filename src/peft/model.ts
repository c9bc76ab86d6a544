// PeftModel: IA3 adapters on a frozen imported model, with PEFT's placement, names and shapes.
//
// `getPeftModel` selects the linear modules of the base model with PEFT's rules (src/peft/match.ts)
// and, for the active adapters, rewrites the graph IR: a non-feed-forward module's output (after
// its bias) goes through `IA3Scale(z, l_1, …)`; a feed-forward module's input goes through
// `IA3Scale(x, l_1, …)` before its MatMul/Gemm. Several active adapters pass several vectors,
// which the kernel multiplies. Vectors are initializers of the rewritten graph named
// `ia3::<adapter>::<module path>`, stored with PEFT's shapes ((out, 1) or (1, in), float32) and
// shared with the GPU through the model's weight map: loading new values writes the existing
// buffers, so no plan is recompiled and no frozen weight is uploaded again.
//
// State-dict keys are PEFT's: `base_model.model.<module path>.ia3_l` (adapter name removed).

import { LABELS, LOSS, withLoss, type LossTask } from '../autograd/loss.js';
import { InputError, UnsupportedOpError } from '../errors.js';
import { readAdapterFiles, writeAdapterFiles, type AdapterFiles, type AdapterSource } from '../io/adapter.js';
import { initializerGpuData, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { sizeOf, type TensorData } from '../ir/tensor.js';
import { Model, type Feed } from '../model.js';
import { rewriteOnnxTensors, type OnnxWithExternalData } from '../onnx/export.js';
import type { ModuleInfo } from '../onnx/modules.js';
import { forgetSpecializations } from '../onnx/specialize.js';
import { IA3Config, serializeConfig, type ModuleSelection } from './config.js';
import { expandAllLinear, isModuleToSave, selectModules } from './match.js';
import { checkMergeable, firstNonFinite, MergeError, mergeSteps, scaleCpu, scaleGpu, unmergeDivisor, type ScaleStep } from './merge.js';
import { formatTrainableParameters } from './params.js';

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

interface Adapter {
  readonly config: IA3Config;
  readonly targets: readonly IA3Target[];
  readonly params: readonly AdapterParam[];
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

/** PEFT's warnings (Python `warnings.warn`) go to the console. */
function warn(message: string): void {
  console.warn(message);
}

/** Options of `PeftModel.merge` (PEFT's `merge_adapter(adapter_names, safe_merge)`). */
export interface MergeOptions {
  /** Compute into copies and refuse non-finite results (MergeError), changing nothing. */
  readonly safe?: boolean;
  /** Adapters to merge, in order (default: the active adapters). */
  readonly adapterNames?: readonly string[];
}

/** Internal initializer name of an adapter's vector. */
export function vectorName(adapter: string, path: string): string {
  return `ia3::${adapter}::${path}`;
}

/**
 * The number of parameters of a model as PyTorch counts them: float initializers (not folded
 * Constant nodes), each tied or transposed copy counted once (exporters write a tied `lm_head` as
 * a transposed copy of the embedding).
 */
export function countParameters(graph: Graph): number {
  const floats = [...graph.initializers.values()].filter(
    (t) => !t.constant && (t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'float64'),
  );
  let total = 0;
  const bySize = new Map<number, Initializer[]>();
  for (const t of floats) {
    const n = sizeOf(t.dims);
    const same = bySize.get(n) ?? [];
    if (!same.some((o) => isCopyOrTranspose(o, t))) total += n;
    same.push(t);
    bySize.set(n, same);
  }
  return total;
}

function isCopyOrTranspose(a: Initializer, b: Initializer): boolean {
  const x = a.data;
  const y = b.data;
  if (x.length !== y.length || x.length < 2) return false;
  if (a.dims.join() === b.dims.join() && x.every((v, i) => v === y[i])) return true;
  if (a.dims.length !== 2 || b.dims.length !== 2 || a.dims[0] !== b.dims[1] || a.dims[1] !== b.dims[0]) return false;
  const [r, c] = a.dims as [number, number];
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (x[i * c + j] !== y[j * r + i]) return false;
  return true;
}

/**
 * Rewrites `graph` with IA3 scale nodes for the given targets (each with the vectors of every
 * active adapter that targets it, which multiply) and with modules_to_save copies.
 */
export function insertIA3(
  graph: Graph,
  targets: readonly { module: ModuleInfo; feedforward: boolean; vectors: readonly Initializer[] }[],
  saved: readonly { module: ModuleInfo; replace: string; by: Initializer }[] = [],
): Graph {
  let nodes: Node[] = [...graph.nodes];
  const initializers = new Map(graph.initializers);
  // modules_to_save: the module's own nodes read the adapter's trainable copy of each parameter
  // (other readers of a tied weight keep the frozen original).
  for (const s of saved) {
    initializers.set(s.by.name, s.by);
    const own = new Set([s.module.node, s.module.transpose, s.module.bias?.node].filter((n): n is string => !!n));
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
    const m = t.module;
    if (t.feedforward) {
      // Input scale: u = x ⊙ l feeds the MatMul/Gemm in place of x.
      const at = indexOf(m.node);
      const mm = nodes[at]!;
      if (mm.opType === 'Gemm' && mm.attrs.transA === 1) {
        throw new UnsupportedOpError('Gemm', mm.name, `IA3 feed-forward scaling of module '${m.path}' needs transA = 0`);
      }
      const x = mm.inputs[0]!;
      const u = `${mm.name}/ia3_input`;
      nodes.splice(at, 1, { name: `${mm.name}/IA3Scale`, opType: 'IA3Scale', domain: 'ia3', inputs: [x, ...names], outputs: [u], attrs: {} }, { ...mm, inputs: [u, ...mm.inputs.slice(1)] });
    } else {
      // Output scale after the bias: the producer of the module's output writes a new value that
      // IA3Scale turns back into the original name, so every reader (and graph outputs) see y·l.
      const producer = m.bias ? m.bias.node : m.node;
      const at = indexOf(producer);
      const p = nodes[at]!;
      const z = p.outputs[0]!;
      const pre = `${z}/ia3_pre`;
      nodes.splice(at, 1, { ...p, outputs: [pre, ...p.outputs.slice(1)] }, { name: `${p.name}/IA3Scale`, opType: 'IA3Scale', domain: 'ia3', inputs: [pre, ...names], outputs: [z], attrs: {} });
    }
  }
  return { ...graph, nodes, initializers };
}

/** A frozen model with IA3 adapters (Hugging Face PEFT's PeftModel for IA3). */
export class PeftModel {
  private readonly adapters = new Map<string, Adapter>();
  private active: string[] = [];
  private disabled = false;
  /** Rewritten models by active-adapter set; they share the base model's weight buffers. */
  private readonly variants = new Map<string, Model>();
  /** The same with the task loss appended, for `lossAndGradients`. */
  private readonly lossModels = new Map<string, Model>();
  /** Adapters folded into the frozen weights, in merge order (PEFT's `merged_adapters`). */
  private mergedList: string[] = [];
  /** Initializers whose values merge / unmerge replaced (written by `exportMergedOnnx` as they are). */
  private readonly touched = new Set<string>();
  /** Set by `mergeAndUnload`: the base model now holds the merged weights on its own. */
  private unloaded = false;

  constructor(
    readonly base: Model,
    config: IA3Config,
    adapterName = 'default',
  ) {
    this.addAdapter(adapterName, config);
    this.active = [adapterName];
  }

  /** PEFT's `peft_config`: the config of every adapter, resolved for the model type. */
  get peftConfig(): Record<string, IA3Config> {
    return Object.fromEntries([...this.adapters].map(([k, a]) => [k, a.config]));
  }

  get activeAdapters(): readonly string[] {
    return this.disabled ? [] : [...this.active];
  }

  listAdapters(): string[] {
    return [...this.adapters.keys()];
  }

  /** True while adapters are folded into the frozen weights (PEFT's `merged`). */
  get merged(): boolean {
    return this.mergedList.length > 0;
  }

  /** The adapters folded into the frozen weights, in merge order. */
  get mergedAdapters(): readonly string[] {
    return [...this.mergedList];
  }

  /** The targeted modules of an adapter. */
  targets(adapter = this.active[0]!): readonly IA3Target[] {
    return this.adapter(adapter).targets;
  }

  /** Adds an adapter initialised as PEFT does (ones, or standard normal when initIa3Weights is false). */
  addAdapter(name: string, config: IA3Config): void {
    this.checkNewName(name);
    let resolved = (config.targetModules === null || config.feedforwardModules === null ? config.resolveForModelType(this.base.modelType ?? '') : config).withTaskModulesToSave();
    // 'all-linear': every linear module but the output layer (lm_head), as PEFT expands it.
    const paths = this.base.modules.map((m) => m.path);
    resolved = expandAllLinear(resolved, { linearModules: paths, outputLayer: paths.find((p) => p === 'lm_head' || p.endsWith('.lm_head')) ?? null });
    this.register(name, resolved);
  }

  private checkNewName(name: string): void {
    this.assertLive();
    if (this.adapters.has(name)) throw new InputError(`adapter '${name}' already exists`);
    if (!/^[\w.-]+$/.test(name)) throw new InputError(`adapter name '${name}' must be letters, digits, '_', '.' or '-'`);
  }

  /** Adds an adapter for a config already resolved for the model (module lists filled in). */
  private register(name: string, resolved: IA3Config): void {
    const byPath = new Map(this.base.modules.map((m) => [m.path, m]));
    const selected = selectModules(resolved, this.base.modules.map((m) => ({ path: m.path })));
    const targets: IA3Target[] = selected.map((s) => {
      const module = byPath.get(s.path)!;
      const dims: [number, number] = s.feedforward ? [1, module.inFeatures] : [module.outFeatures, 1];
      return { module, feedforward: s.feedforward, key: `${KEY_PREFIX}${s.path}.ia3_l`, dims };
    });
    const params: AdapterParam[] = targets.map((t) => {
      const n = t.dims[0] * t.dims[1];
      const values = resolved.initIa3Weights ? new Float32Array(n).fill(1) : randn(n, hashString(`${name}:${t.module.path}`));
      return { name: vectorName(name, t.module.path), key: t.key, dims: t.dims, transposed: false, values, target: t };
    });
    // modules_to_save (PEFT's task wrapper adds the classifier head for SEQ_CLS): trainable
    // copies of the linear modules that match, initialised from the frozen weights.
    for (const module of this.base.modules.filter((m) => isModuleToSave(resolved, m.path))) {
      const weight = this.base.graph.initializers.get(module.weight)!;
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
        values: Float32Array.from(weight.data as ArrayLike<number>),
        saved: { module, initializer: module.weight, onnxDims: wDims },
      });
      if (module.bias) {
        const bias = this.base.graph.initializers.get(module.bias.initializer)!;
        params.push({
          name: `mts::${name}::${module.path}.bias`,
          key: `${KEY_PREFIX}${module.path}.bias`,
          dims: [...bias.dims],
          transposed: false,
          values: Float32Array.from(bias.data as ArrayLike<number>),
          saved: { module, initializer: module.bias.initializer, onnxDims: [...bias.dims] },
        });
      }
    }
    this.adapters.set(name, { config: resolved, targets, params });
    this.writeResident(params);
  }

  /**
   * GPU buffers are shared by name through the base model, so a second PeftModel of the same model
   * (or one made after another was trained) finds `ia3::<adapter>::…` buffers already resident:
   * they must hold this adapter's values, not the previous owner's.
   */
  private writeResident(params: readonly AdapterParam[]): void {
    for (const p of params) {
      const buffer = this.base.weightBuffers.get(p.name);
      if (buffer) this.base.gpu.write(buffer, p.values);
    }
  }

  /** Activates one adapter, or several whose vectors multiply. */
  setAdapter(names: string | readonly string[]): void {
    this.assertLive();
    const list = typeof names === 'string' ? [names] : [...names];
    if (list.length === 0) throw new InputError('setAdapter needs at least one adapter name');
    if (new Set(list).size !== list.length) throw new InputError(`setAdapter: adapter names repeat (${list.join(', ')})`);
    for (const n of list) this.adapter(n);
    if (this.merged) {
      warn('Adapter cannot be set when the model is merged. Unmerging the model first.'); // PEFT's warning
      this.unmerge();
    }
    this.active = list;
  }

  /** Runs the base model (adapters bypassed) until `enableAdapter`; merged adapters are unmerged first, as PEFT does. */
  disableAdapter(): void {
    this.assertLive();
    if (this.merged) this.unmerge();
    this.disabled = true;
  }

  enableAdapter(): void {
    this.disabled = false;
  }

  async deleteAdapter(name: string): Promise<void> {
    this.assertLive();
    this.adapter(name);
    if (this.mergedList.includes(name)) {
      throw new InputError(`Cannot delete adapter(s) ['${name}'] while they are merged. Please unmerge them first.`); // PEFT's message
    }
    if (this.active.includes(name) && this.active.length === 1 && this.adapters.size > 1) {
      // PEFT picks the first of the remaining adapter names, sorted.
      this.active = [[...this.adapters.keys()].filter((k) => k !== name).sort()[0]!];
      warn(`Adapter ${name} was active which is now deleted. Setting active adapter to ${this.active[0]}.`); // PEFT's warning
    } else if (this.adapters.size === 1) {
      throw new InputError(`cannot delete '${name}', the only adapter`);
    } else {
      this.active = this.active.filter((a) => a !== name);
    }
    this.adapters.delete(name);
    for (const cache of [this.variants, this.lossModels]) {
      for (const [key, m] of cache) {
        if (key.split('|')[0]!.split('+').includes(name)) {
          await m.releasePlans();
          cache.delete(key);
        }
      }
    }
    for (const [k, b] of this.base.weightBuffers) {
      if (k.startsWith(`ia3::${name}::`) || k.startsWith(`mts::${name}::`)) {
        this.base.gpu.buffers.release(b);
        this.base.weightBuffers.delete(k);
      }
    }
  }

  /** [trainable, all] parameter counts as PEFT's `get_nb_trainable_parameters`. */
  getNbTrainableParameters(): [number, number] {
    const count = (a: Adapter): number => a.params.reduce((s, p) => s + p.values.length, 0);
    const trainable = this.disabled ? 0 : this.active.reduce((s, n) => s + count(this.adapter(n)), 0);
    let adaptersTotal = 0;
    for (const a of this.adapters.values()) adaptersTotal += count(a);
    return [trainable, countParameters(this.base.graph) + adaptersTotal];
  }

  /** Prints and returns PEFT's line, e.g. `trainable params: 288 || all params: 20,770 || trainable%: 1.3866`. */
  printTrainableParameters(): string {
    const [t, a] = this.getNbTrainableParameters();
    const line = formatTrainableParameters(t, a);
    console.log(line);
    return line;
  }

  /** The adapter's trainable tensors under PEFT's keys, shapes and layouts (copies). */
  stateDict(adapter = this.active[0]!): Record<string, TensorData> {
    const out: Record<string, TensorData> = {};
    for (const p of this.adapter(adapter).params) out[p.key] = { data: this.toPeftLayout(p, p.values), dims: [...p.dims] };
    return out;
  }

  private toPeftLayout(p: AdapterParam, values: Float32Array): Float32Array {
    return p.transposed ? transpose2d(values, p.dims[1]!, p.dims[0]!) : values.slice();
  }

  /**
   * Sets an adapter's trainable tensors from PEFT-keyed tensors (with or without the
   * `base_model.model.` prefix). Every missing key, unexpected key and shape or dtype mismatch is
   * reported in one InputError, and nothing changes unless everything fits.
   */
  loadStateDict(tensors: Readonly<Record<string, TensorData>>, adapter = this.active[0]!): void {
    const a = this.adapter(adapter);
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
    if (problems.length > 0) throw new InputError(`adapter '${adapter}': cannot load the state dict:\n  ${problems.join('\n  ')}`);
    for (const [p, data] of staged) this.setParamValues(p.name, data);
  }

  /** PEFT's two files for an adapter (`save_pretrained`): safetensors weights and the config. */
  saveAdapter(adapter = this.active[0]!): AdapterFiles {
    const a = this.adapter(adapter);
    let config = a.config.baseModelNameOrPath === null && typeof this.base.config?._name_or_path === 'string' ? a.config.with({ baseModelNameOrPath: this.base.config._name_or_path }) : a.config;
    // PEFT records the base model's class when there is no task type (save_pretrained's auto_mapping).
    const architecture = (this.base.config?.architectures as unknown[] | undefined)?.[0];
    if (config.taskType === null && config.autoMapping === null && typeof architecture === 'string' && this.base.modelType) {
      const type = this.base.modelType.replace(/-/g, '_');
      config = config.with({ autoMapping: { base_model_class: architecture, parent_library: `transformers.models.${type}.modeling_${type}` } });
    }
    return writeAdapterFiles(serializeConfig(config.with({ inferenceMode: true })), this.stateDict(adapter));
  }

  /**
   * Loads an adapter saved by PEFT or by `saveAdapter` under `name` (like PEFT's `load_adapter`).
   * A config that does not fit the model, or tensors that do not fit the config, change nothing.
   */
  async loadAdapter(files: AdapterSource, name: string): Promise<void> {
    const { config, tensors } = await readAdapterFiles(files, (text, fileName) => IA3Config.fromJSON(text, fileName));
    this.addAdapter(name, config.with({ inferenceMode: false }));
    try {
      this.loadStateDict(tensors, name);
    } catch (e) {
      this.adapters.delete(name);
      throw e;
    }
  }

  /** Forward pass with the active adapters (the base model's when disabled). */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, TensorData>> {
    return this.current().run(feeds, outputs);
  }

  /** The same forward on the float64 CPU reference executor (the test oracle). */
  runReference(feeds: Record<string, Feed>) {
    // A fresh graph object: specialisations are cached per graph with copies of small weights and
    // vectors, which loading, merging or unmerging since would have made stale.
    const m = this.current();
    return new Model(m.gpu, { ...m.graph }, m.config, m.modules, m.modelType, m.weightBuffers).runReference(feeds);
  }

  /**
   * The task loss on `inputs` and `labels` and its gradient with respect to every active adapter's
   * vectors, computed on the GPU in one command buffer (forward, loss, backward). `gradients` is
   * keyed by PEFT state-dict keys for the first active adapter; `adapterGradients` has them all.
   * The loss is the task type's (CAUSAL_LM: next-token cross-entropy with labels −100 ignored;
   * SEQ_CLS: cross-entropy of the class logits); without a task type it follows the logits' rank.
   */
  async lossAndGradients({ inputs, labels }: { inputs: Record<string, Feed>; labels: Feed }): Promise<{
    loss: number;
    gradients: Record<string, TensorData>;
    adapterGradients: Record<string, Record<string, TensorData>>;
  }> {
    const { model: lossModel, trainables } = this.trainingModel();
    const wrt = trainables.map((t) => t.name);
    const { loss, gradients } = await lossModel.lossAndGradients({ ...inputs, [LABELS]: labels }, LOSS, wrt);
    const adapterGradients: Record<string, Record<string, TensorData>> = {};
    for (const t of trainables) {
      const g = (adapterGradients[t.adapter] ??= {});
      g[t.param.key] = { data: this.toPeftLayout(t.param, gradients.get(t.name)!), dims: [...t.param.dims] };
    }
    return { loss, gradients: adapterGradients[this.active[0]!]!, adapterGradients };
  }

  /** `lossAndGradients` on the float64 CPU executor (same IR; the oracle of the GPU result). */
  lossAndGradientsReference({ inputs, labels }: { inputs: Record<string, Feed>; labels: Feed }): { loss: number; gradients: Record<string, Float64Array> } {
    const { model, trainables } = this.trainingModel();
    const { loss, gradients } = model.lossAndGradientsReference({ ...inputs, [LABELS]: labels }, LOSS, trainables.map((t) => t.name));
    const out: Record<string, Float64Array> = {};
    for (const t of trainables) {
      const g = Float32Array.from(gradients.get(t.name)!);
      out[`${t.adapter}/${t.param.key}`] = Float64Array.from(this.toPeftLayout(t.param, g));
    }
    return { loss, gradients: out };
  }

  /**
   * The model with the task loss appended for the active adapters (output `loss`, input `labels`),
   * and the trainable tensors it reads: every active adapter's IA3 vectors and the
   * modules_to_save copies in use (those of the first active adapter that has each module).
   */
  trainingModel(): { model: Model; trainables: { name: string; adapter: string; param: AdapterParam }[] } {
    this.assertLive();
    if (this.disabled) throw new InputError('adapters are disabled: there is nothing to train');
    if (this.merged) throw new InputError(`cannot train while adapters are merged (${this.mergedList.join(', ')}): call unmerge() first`);
    const key = this.active.join('+');
    let model = this.lossModels.get(key);
    if (!model) {
      const variant = this.current();
      model = new Model(variant.gpu, withLoss(variant.graph, this.lossTask()), variant.config, variant.modules, variant.modelType, this.base.weightBuffers);
      this.lossModels.set(key, model);
    }
    const used = new Set(this.savedInUse().map((s) => s.by.name));
    const trainables = this.active.flatMap((a) =>
      this.adapter(a)
        .params.filter((p) => p.target || used.has(p.name))
        .map((param) => ({ name: param.name, adapter: a, param })),
    );
    return { model, trainables };
  }

  /** A trainable tensor's current values (ONNX layout, a view: do not modify). */
  paramValues(name: string): Float32Array {
    return this.param(name).values;
  }

  /** Sets a trainable tensor (ONNX layout) on the CPU side and in its GPU buffer when uploaded. */
  setParamValues(name: string, values: Float32Array): void {
    const p = this.param(name);
    if (values.length !== p.values.length) throw new InputError(`'${p.key}' has ${p.values.length} values, got ${values.length}`);
    const owner = [...this.adapters].find(([, a]) => a.params.includes(p))![0];
    if (p.target && this.mergedList.includes(owner)) {
      throw new InputError(`adapter '${owner}' is merged into the weights: unmerge() before changing its vector '${p.key}'`);
    }
    p.values.set(values);
    const buffer = this.base.weightBuffers.get(name);
    if (buffer) this.base.gpu.write(buffer, p.values);
  }

  private param(name: string): AdapterParam {
    for (const a of this.adapters.values()) {
      const p = a.params.find((x) => x.name === name);
      if (p) return p;
    }
    throw new InputError(`no trainable tensor named '${name}'`);
  }

  /** modules_to_save replacements for the active adapters: the first active adapter's copy wins. */
  private savedInUse(): { module: ModuleInfo; replace: string; by: Initializer }[] {
    const out = new Map<string, { module: ModuleInfo; replace: string; by: Initializer }>();
    for (const a of this.active) {
      for (const p of this.adapter(a).params) {
        if (!p.saved || out.has(p.saved.initializer)) continue;
        out.set(p.saved.initializer, { module: p.saved.module, replace: p.saved.initializer, by: { name: p.name, dtype: 'float32', dims: [...p.saved.onnxDims], data: p.values } });
      }
    }
    return [...out.values()];
  }

  /** The loss `lossAndGradients` computes: from the first active adapter's task type, else the logits' rank. */
  lossTask(): LossTask {
    const task = this.adapter(this.active[0]!).config.taskType;
    if (task === 'CAUSAL_LM' || task === 'SEQ_CLS') return task;
    if (task !== null) throw new InputError(`training for task type ${task} is not supported (CAUSAL_LM and SEQ_CLS are)`);
    const logits = this.base.graph.outputs.find((o) => o.name === 'logits');
    if (!logits?.dims) throw new InputError('set taskType: the model has no logits output of known rank to infer the loss from');
    return logits.dims.length === 3 ? 'CAUSAL_LM' : 'SEQ_CLS';
  }

  /** The model (graph rewritten for the active adapters) that `run` executes. */
  current(): Model {
    this.assertLive();
    if (this.disabled) return this.base;
    if (this.merged) {
      // Merged: the base graph on the merged weights, with the active modules_to_save copies.
      const saved = this.savedInUse();
      if (saved.length === 0) return this.base;
      const key = `${this.active.join('+')}|merged`;
      let m = this.variants.get(key);
      if (!m) {
        m = new Model(this.base.gpu, insertIA3(this.base.graph, [], saved), this.base.config, this.base.modules, this.base.modelType, this.base.weightBuffers);
        this.variants.set(key, m);
      }
      return m;
    }
    const key = this.active.join('+');
    let m = this.variants.get(key);
    if (!m) {
      const targets = new Map<string, { module: ModuleInfo; feedforward: boolean; vectors: Initializer[] }>();
      for (const name of this.active) {
        const a = this.adapter(name);
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
      const graph = insertIA3(this.base.graph, [...targets.values()], this.savedInUse());
      m = new Model(this.base.gpu, graph, this.base.config, this.base.modules, this.base.modelType, this.base.weightBuffers);
      this.variants.set(key, m);
    }
    return m;
  }

  /**
   * PEFT's `add_weighted_adapter` for IA3: a new adapter whose vector on each module is
   * Σ weight_i · l_i over the given adapters that target it (an adapter without the module adds
   * nothing; weights are not normalised and may be negative). Its target and feed-forward modules
   * are the unions (lists joined, regexes or-ed as PEFT does); its other settings, modules_to_save
   * included, are the first adapter's, with copies initialised from the frozen weights as PEFT's
   * fresh ModulesToSaveWrapper copies are. The new adapter is not activated.
   * Unlike PEFT, which silently returns when `adapterName` exists, that is an InputError.
   */
  addWeightedAdapter(adapters: readonly string[], weights: readonly number[], adapterName: string): void {
    this.checkNewName(adapterName);
    if (adapters.length === 0) throw new InputError('addWeightedAdapter needs at least one adapter');
    if (adapters.length !== weights.length) throw new InputError(`addWeightedAdapter: ${adapters.length} adapters but ${weights.length} weights`);
    const bad = weights.findIndex((w) => typeof w !== 'number' || !Number.isFinite(w));
    if (bad >= 0) throw new InputError(`addWeightedAdapter: weight ${bad} (${String(weights[bad])}) is not a finite number`);
    const missing = adapters.filter((a) => !this.adapters.has(a));
    if (missing.length > 0) throw new InputError(`Adapter ${missing.join(', ')} does not exist (adapters: ${this.listAdapters().join(', ')})`);
    const sources = adapters.map((a) => this.adapter(a));
    // PEFT's checks (_check_add_weighted_adapter), with its messages.
    const savedBy = new Map<string, Set<string>>();
    adapters.forEach((a, i) => {
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
    const config = sources[0]!.config.with({ targetModules: union((c) => c.targetModules), feedforwardModules: union((c) => c.feedforwardModules) });
    this.register(adapterName, config);
    const created = this.adapter(adapterName);
    // A module scaled on its output in one adapter and on its input in another has vectors of
    // different lengths and meanings: their sum means nothing (PEFT would fail on the shapes).
    const disagree: string[] = [];
    for (const t of created.targets) {
      adapters.forEach((a, i) => {
        const other = sources[i]!.targets.find((x) => x.module.path === t.module.path);
        if (other && other.feedforward !== t.feedforward) disagree.push(`'${t.module.path}' is ${other.feedforward ? '' : 'not '}feed-forward in '${a}'`);
      });
    }
    if (disagree.length > 0) {
      this.adapters.delete(adapterName);
      throw new InputError(`cannot combine adapters that disagree on feed-forward modules: ${disagree.join(', ')} but not in the combination`);
    }
    for (const p of created.params) {
      if (!p.target) continue;
      const sum = new Float32Array(p.values.length);
      adapters.forEach((_, i) => {
        const src = sources[i]!.params.find((x) => x.target?.module.path === p.target!.module.path);
        if (!src) return;
        // float32 arithmetic as PyTorch's `ia3_l += l_i * w_i`: the weight cast to float32, the
        // product rounded, then the sum rounded (the Float32Array store rounds).
        const w = Math.fround(weights[i]!);
        for (let k = 0; k < sum.length; k++) sum[k] = sum[k]! + Math.fround(src.values[k]! * w);
      });
      p.values.set(sum);
    }
    this.writeResident(created.params);
  }

  /**
   * Folds adapters' vectors into the frozen weights on the GPU (PEFT's `merge_adapter`): each
   * targeted weight scaled along its output axis (and its bias) or, for feed-forward modules,
   * along its input axis, adapter after adapter; the CPU copies get the same float32 products.
   * While merged, `run` executes the base graph on the merged weights (only modules_to_save copies
   * are still substituted), so the adapters add no latency. Adapters already merged are skipped
   * with PEFT's warning. `safe` refuses non-finite results with a MergeError and changes nothing
   * (every merge is all-or-nothing: the results are computed and checked before anything is written).
   * Tied weights (an initializer also read by another node) are refused with an InputError.
   */
  async merge({ safe = false, adapterNames }: MergeOptions = {}): Promise<void> {
    this.assertLive();
    if (this.disabled) throw new InputError('adapters are disabled: enableAdapter() before merging');
    let names = [...new Set(adapterNames ?? this.active)];
    for (const n of names) this.adapter(n);
    if (this.merged) {
      names = names.filter((n) => !this.mergedList.includes(n));
      if (names.length === 0) {
        warn('All adapters are already merged, nothing to do.'); // PEFT's warning
        return;
      }
      warn(`Already following adapters were merged ${this.mergedList.join(',')}. You are now additionally merging ${names.join(',')}.`);
    }
    if (names.length === 0) return;
    const graph = this.base.graph;
    const rounds = names.map((n) => ({ adapter: n, steps: this.vectorSteps(n, (v) => v) }));
    const modules = [...new Map(names.flatMap((n) => this.adapter(n).targets.map((t) => [t.module.path, t.module] as const))).values()];
    checkMergeable(graph, modules, { gpu: true });
    const replaced = new Set(this.savedInUse().map((s) => s.replace));
    const clash = modules.filter((m) => replaced.has(m.weight) || (m.bias && replaced.has(m.bias.initializer)));
    if (clash.length > 0) throw new InputError(`cannot merge into modules whose weights a modules_to_save copy replaces: ${clash.map((m) => `'${m.path}'`).join(', ')}`);
    // CPU first: every result computed (and checked when safe) before anything changes.
    const values = new Map<string, Float32Array>();
    for (const r of rounds) {
      for (const s of r.steps) {
        const next = scaleCpu(values.get(s.initializer) ?? (graph.initializers.get(s.initializer)!.data as Float32Array), s.dims, s.axis, s.vector);
        const at = safe ? firstNonFinite(next) : -1;
        if (at >= 0) throw new MergeError(r.adapter, `'${s.initializer}' element ${at} would be ${next[at]}`);
        values.set(s.initializer, next);
      }
    }
    for (const r of rounds) await scaleGpu(this.base.gpu, r.steps.map((s) => ({ ...s, buffer: this.weightBuffer(s.initializer) })));
    for (const [name, data] of values) this.replaceInitializer(name, data);
    this.mergedList.push(...names);
  }

  /**
   * Divides the merged vectors out again (PEFT's `unmerge_adapter`: by l + 1e-8, last merged
   * first), warning like PEFT that the result can be inaccurate: a vector element near 0 loses the
   * weights it scaled. Computed on the CPU with correctly rounded float32 division (WGSL's division
   * is only accurate to 2.5 ULP) and written to the GPU copies, so both stay identical.
   */
  unmerge(): void {
    this.assertLive();
    if (!this.merged) {
      warn('Already unmerged. Nothing to do.'); // PEFT's warning
      return;
    }
    warn('Unmerge result can be inaccurate for (IA)^3.'); // PEFT's warning
    const graph = this.base.graph;
    const values = new Map<string, Float32Array>();
    for (const adapter of [...this.mergedList].reverse()) {
      for (const s of this.vectorSteps(adapter, unmergeDivisor)) {
        values.set(s.initializer, scaleCpu(values.get(s.initializer) ?? (graph.initializers.get(s.initializer)!.data as Float32Array), s.dims, s.axis, s.vector, 'div'));
      }
    }
    for (const [name, data] of values) {
      this.replaceInitializer(name, data);
      const buffer = this.base.weightBuffers.get(name);
      if (buffer) this.base.gpu.write(buffer, data);
    }
    this.mergedList = [];
  }

  /**
   * PEFT's `merge_and_unload`: merges the active adapters (or `adapterNames`) and returns the base
   * model, whose weights are now the merged ones and whose modules_to_save modules hold the active
   * adapter's trained copies. This PeftModel cannot be used afterwards.
   */
  async mergeAndUnload(options: MergeOptions = {}): Promise<Model> {
    await this.merge(options);
    const saved = this.savedInUse();
    checkMergeable(this.base.graph, [...new Set(saved.map((s) => s.module))], { gpu: false });
    for (const s of saved) {
      const data = Float32Array.from(s.by.data as Float32Array);
      this.replaceInitializer(s.replace, data);
      const buffer = this.base.weightBuffers.get(s.replace);
      if (buffer) this.base.gpu.write(buffer, data);
    }
    for (const cache of [this.variants, this.lossModels]) {
      for (const m of cache.values()) await m.releasePlans();
      cache.clear();
    }
    for (const [k, b] of this.base.weightBuffers) {
      if (k.startsWith('ia3::') || k.startsWith('mts::')) {
        this.base.gpu.buffers.release(b);
        this.base.weightBuffers.delete(k);
      }
    }
    this.unloaded = true;
    return this.base;
  }

  /**
   * The original ONNX file with the weights `run` uses written in place: the active adapters'
   * vectors folded in (whether or not `merge` was called; while merged, the merged weights) and
   * the active modules_to_save copies in their modules. Same graph, node list, input and output
   * names; raw_data, float_data and external data each written where they were (external files
   * returned under their locations, with the same offsets). onnxruntime-web runs the result with
   * no IA3 op. Needs a model from `loadModel` (which keeps the file's bytes).
   */
  async exportMergedOnnx(): Promise<OnnxWithExternalData> {
    this.assertLive();
    const file = this.base.onnxFile;
    if (!file) throw new InputError('exportMergedOnnx needs a model loaded from an ONNX file by loadModel (this graph was built in code)');
    const graph = this.base.graph;
    const values = new Map<string, Float32Array>();
    for (const name of this.touched) values.set(name, graph.initializers.get(name)!.data as Float32Array);
    if (!this.disabled) {
      if (!this.merged) {
        checkMergeable(graph, [...new Map(this.active.flatMap((n) => this.adapter(n).targets.map((t) => [t.module.path, t.module] as const))).values()], { gpu: false });
        for (const a of this.active) {
          for (const s of this.vectorSteps(a, (v) => v)) {
            values.set(s.initializer, scaleCpu(values.get(s.initializer) ?? (graph.initializers.get(s.initializer)!.data as Float32Array), s.dims, s.axis, s.vector));
          }
        }
      }
      const saved = this.savedInUse();
      checkMergeable(graph, [...new Set(saved.map((s) => s.module))], { gpu: false });
      for (const s of saved) values.set(s.replace, s.by.data as Float32Array);
    }
    return rewriteOnnxTensors(file, values);
  }

  /** The weight and bias scalings of an adapter's vectors (each vector mapped by `f`). */
  private vectorSteps(adapter: string, f: (v: Float32Array) => Float32Array): ScaleStep[] {
    const a = this.adapter(adapter);
    return a.targets.flatMap((t) => mergeSteps(this.base.graph, t.module, t.feedforward, f(a.params.find((p) => p.target === t)!.values)));
  }

  /** The GPU copy of a frozen weight, uploaded now if no plan has needed it yet. */
  private weightBuffer(name: string): GPUBuffer {
    let b = this.base.weightBuffers.get(name);
    if (!b) {
      const data = initializerGpuData(this.base.graph.initializers.get(name)!);
      if (!data) throw new InputError(`weight '${name}' has no GPU form`);
      b = this.base.gpu.upload(data, name, true);
      this.base.weightBuffers.set(name, b);
    }
    return b;
  }

  /**
   * Gives a frozen initializer new values: a new Initializer object (the old data may be a view
   * into the file's bytes, which must stay the original for export) in every graph that holds it.
   */
  private replaceInitializer(name: string, data: Float32Array): void {
    const old = this.base.graph.initializers.get(name)!;
    const next: Initializer = old.constant ? { name, dtype: old.dtype, dims: old.dims, data, constant: true } : { name, dtype: old.dtype, dims: old.dims, data };
    for (const g of [this.base.graph, ...[...this.variants.values(), ...this.lossModels.values()].map((m) => m.graph)]) {
      if (g.initializers.get(name) === old) (g.initializers as Map<string, Initializer>).set(name, next);
      forgetSpecializations(g);
    }
    this.touched.add(name);
  }

  private assertLive(): void {
    if (this.unloaded) throw new InputError('this PeftModel was unloaded by mergeAndUnload(); use the model it returned');
  }

  private adapter(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) throw new InputError(`no adapter named '${name}' (adapters: ${[...this.adapters.keys()].join(', ')})`);
    return a;
  }
}

/** A PeftModel with a saved adapter loaded and active, like PEFT's `PeftModel.from_pretrained`. */
export async function loadPeftModel(model: Model, files: AdapterSource, adapterName = 'default'): Promise<PeftModel> {
  const { config, tensors } = await readAdapterFiles(files, (text, fileName) => IA3Config.fromJSON(text, fileName));
  const peft = new PeftModel(model, config.with({ inferenceMode: false }), adapterName);
  peft.loadStateDict(tensors, adapterName);
  return peft;
}

/** Wraps a model with an IA3 adapter, like PEFT's `get_peft_model`. */
export function getPeftModel(model: Model, config: IA3Config, adapterName = 'default'): PeftModel {
  return new PeftModel(model, config, adapterName);
}
