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

import { InputError, UnsupportedOpError } from '../errors.js';
import { sizeOf } from '../gpu/kernel.js';
import type { Graph, Initializer, Node } from '../onnx/graph.js';
import type { ModuleInfo } from '../onnx/modules.js';
import { Model, type Feed, type TensorData } from '../model.js';
import { LABELS, LOSS, withLoss, type LossTask } from '../train/loss.js';
import { IA3Config } from './config.js';
import { selectModules } from './match.js';
import { formatTrainableParameters, ia3ParamCount } from './params.js';

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

interface Adapter {
  readonly config: IA3Config;
  readonly targets: readonly IA3Target[];
  /** Vector values by module path (float32, PEFT layout). */
  readonly vectors: Map<string, Float32Array>;
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
 * Rewrites `graph` with IA3 scale nodes for the given targets. `vectors(path)` gives the vector
 * initializer names to multiply at that module (one per active adapter that targets it).
 */
export function insertIA3(graph: Graph, targets: readonly { module: ModuleInfo; feedforward: boolean; vectors: readonly Initializer[] }[]): Graph {
  const nodes: Node[] = [...graph.nodes];
  const initializers = new Map(graph.initializers);
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

  /** The targeted modules of an adapter. */
  targets(adapter = this.active[0]!): readonly IA3Target[] {
    return this.adapter(adapter).targets;
  }

  /** Adds an adapter initialised as PEFT does (ones, or standard normal when initIa3Weights is false). */
  addAdapter(name: string, config: IA3Config): void {
    if (this.adapters.has(name)) throw new InputError(`adapter '${name}' already exists`);
    if (!/^[\w.-]+$/.test(name)) throw new InputError(`adapter name '${name}' must be letters, digits, '_', '.' or '-'`);
    const resolved = config.targetModules === null || config.feedforwardModules === null ? config.resolveForModelType(this.base.modelType ?? '') : config;
    if (resolved.modulesToSave !== null && resolved.modulesToSave.length > 0) {
      throw new InputError(`adapter '${name}': modules_to_save (${resolved.modulesToSave.join(', ')}) is not supported by this version`);
    }
    const byPath = new Map(this.base.modules.map((m) => [m.path, m]));
    const selected = selectModules(resolved, this.base.modules.map((m) => ({ path: m.path })));
    const targets: IA3Target[] = selected.map((s) => {
      const module = byPath.get(s.path)!;
      const dims: [number, number] = s.feedforward ? [1, module.inFeatures] : [module.outFeatures, 1];
      return { module, feedforward: s.feedforward, key: `${KEY_PREFIX}${s.path}.ia3_l`, dims };
    });
    const vectors = new Map<string, Float32Array>();
    for (const t of targets) {
      const n = t.dims[0] * t.dims[1];
      vectors.set(t.module.path, resolved.initIa3Weights ? new Float32Array(n).fill(1) : randn(n, hashString(`${name}:${t.module.path}`)));
    }
    this.adapters.set(name, { config: resolved, targets, vectors });
  }

  /** Activates one adapter, or several whose vectors multiply. */
  setAdapter(names: string | readonly string[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    if (list.length === 0) throw new InputError('setAdapter needs at least one adapter name');
    for (const n of list) this.adapter(n);
    this.active = list;
  }

  /** Runs the base model (adapters bypassed) until `enableAdapter`. */
  disableAdapter(): void {
    this.disabled = true;
  }

  enableAdapter(): void {
    this.disabled = false;
  }

  async deleteAdapter(name: string): Promise<void> {
    this.adapter(name);
    if (this.active.includes(name) && this.active.length === 1 && this.adapters.size > 1) {
      this.active = [[...this.adapters.keys()].find((k) => k !== name)!];
    } else if (this.adapters.size === 1) {
      throw new InputError(`cannot delete '${name}', the only adapter`);
    } else {
      this.active = this.active.filter((a) => a !== name);
    }
    this.adapters.delete(name);
    for (const cache of [this.variants, this.lossModels]) {
      for (const [key, m] of cache) {
        if (key.split('+').includes(name)) {
          await m.releasePlans();
          cache.delete(key);
        }
      }
    }
    for (const [k, b] of this.base.weightBuffers) {
      if (k.startsWith(`ia3::${name}::`)) {
        this.base.gpu.buffers.release(b);
        this.base.weightBuffers.delete(k);
      }
    }
  }

  /** [trainable, all] parameter counts as PEFT's `get_nb_trainable_parameters`. */
  getNbTrainableParameters(): [number, number] {
    const count = (a: Adapter): number => ia3ParamCount(a.targets.map((t) => ({ inFeatures: t.module.inFeatures, outFeatures: t.module.outFeatures, feedforward: t.feedforward })));
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

  /** The adapter's vectors under PEFT's keys and shapes (copies). */
  stateDict(adapter = this.active[0]!): Record<string, TensorData> {
    const a = this.adapter(adapter);
    const out: Record<string, TensorData> = {};
    for (const t of a.targets) out[t.key] = { data: a.vectors.get(t.module.path)!.slice(), dims: [...t.dims] };
    return out;
  }

  /**
   * Sets an adapter's vectors from PEFT-keyed tensors (with or without the `base_model.model.`
   * prefix). Every missing key, unexpected key and shape or dtype mismatch is reported in one
   * InputError, and nothing changes unless everything fits.
   */
  loadStateDict(tensors: Readonly<Record<string, TensorData>>, adapter = this.active[0]!): void {
    const a = this.adapter(adapter);
    const byKey = new Map(a.targets.map((t) => [t.key, t]));
    const problems: string[] = [];
    const staged = new Map<string, Float32Array>();
    const seen = new Set<string>();
    for (const [rawKey, tensor] of Object.entries(tensors)) {
      const key = rawKey.startsWith(KEY_PREFIX) ? rawKey : `${KEY_PREFIX}${rawKey}`;
      const t = byKey.get(key);
      if (!t) {
        problems.push(`unexpected key '${rawKey}'`);
        continue;
      }
      if (seen.has(key)) problems.push(`key '${rawKey}' given twice (with and without the prefix)`);
      seen.add(key);
      if (!(tensor.data instanceof Float32Array)) problems.push(`'${rawKey}': dtype must be float32`);
      else if (tensor.dims.length !== 2 || tensor.dims[0] !== t.dims[0] || tensor.dims[1] !== t.dims[1]) {
        problems.push(`'${rawKey}': shape [${tensor.dims.join(', ')}], expected [${t.dims.join(', ')}]`);
      } else if (tensor.data.length !== t.dims[0] * t.dims[1]) problems.push(`'${rawKey}': ${tensor.data.length} values for shape [${t.dims.join(', ')}]`);
      else staged.set(t.module.path, tensor.data);
    }
    for (const t of a.targets) if (!seen.has(t.key)) problems.push(`missing key '${t.key}'`);
    if (problems.length > 0) throw new InputError(`adapter '${adapter}': cannot load the state dict:\n  ${problems.join('\n  ')}`);
    for (const [path, data] of staged) {
      const v = a.vectors.get(path)!;
      v.set(data);
      const buffer = this.base.weightBuffers.get(vectorName(adapter, path));
      if (buffer) this.base.gpu.write(buffer, v);
    }
  }

  /** Forward pass with the active adapters (the base model's when disabled). */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, TensorData>> {
    return this.current().run(feeds, outputs);
  }

  /** The same forward on the float64 CPU reference executor (the test oracle). */
  runReference(feeds: Record<string, Feed>) {
    return this.current().runReference(feeds);
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
    for (const a of this.active) {
      const g: Record<string, TensorData> = {};
      for (const t of this.adapter(a).targets) g[t.key] = { data: gradients.get(vectorName(a, t.module.path))!, dims: [...t.dims] };
      adapterGradients[a] = g;
    }
    return { loss, gradients: adapterGradients[this.active[0]!]!, adapterGradients };
  }

  /**
   * The model with the task loss appended for the active adapters (output `loss`, input `labels`),
   * and the trainable vectors: their value names in its graph, adapters and targets.
   */
  trainingModel(): { model: Model; trainables: { name: string; adapter: string; target: IA3Target }[] } {
    if (this.disabled) throw new InputError('adapters are disabled: there is nothing to train');
    const key = this.active.join('+');
    let model = this.lossModels.get(key);
    if (!model) {
      const variant = this.current();
      model = new Model(variant.gpu, withLoss(variant.graph, this.lossTask()), variant.config, variant.modules, variant.modelType, this.base.weightBuffers);
      this.lossModels.set(key, model);
    }
    const trainables = this.active.flatMap((a) => this.adapter(a).targets.map((target) => ({ name: vectorName(a, target.module.path), adapter: a, target })));
    return { model, trainables };
  }

  /** One vector's current values on the CPU side (a view: do not modify). */
  vectorValues(adapter: string, path: string): Float32Array {
    const v = this.adapter(adapter).vectors.get(path);
    if (!v) throw new InputError(`adapter '${adapter}' has no vector at '${path}'`);
    return v;
  }

  /** Sets one vector's values on the CPU side (the GPU copy is the caller's: the Trainer writes it). */
  setVectorValues(adapter: string, path: string, values: Float32Array): void {
    const v = this.adapter(adapter).vectors.get(path);
    if (!v || v.length !== values.length) throw new InputError(`adapter '${adapter}' has no vector of ${values.length} values at '${path}'`);
    v.set(values);
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
    if (this.disabled) return this.base;
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
          entry.vectors.push({ name: vectorName(name, t.module.path), dtype: 'float32', dims: [...t.dims], data: a.vectors.get(t.module.path)! });
          targets.set(t.module.path, entry);
        }
      }
      const graph = insertIA3(this.base.graph, [...targets.values()]);
      m = new Model(this.base.gpu, graph, this.base.config, this.base.modules, this.base.modelType, this.base.weightBuffers);
      this.variants.set(key, m);
    }
    return m;
  }

  private adapter(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) throw new InputError(`no adapter named '${name}' (adapters: ${[...this.adapters.keys()].join(', ')})`);
    return a;
  }
}

/** Wraps a model with an IA3 adapter, like PEFT's `get_peft_model`. */
export function getPeftModel(model: Model, config: IA3Config, adapterName = 'default'): PeftModel {
  return new PeftModel(model, config, adapterName);
}
