// PeftModel: IA3 adapters on a frozen imported model, with PEFT's placement, names and shapes.
//
// The class is the registry of adapters and which are active; the work lives along PEFT's own
// seams: adapter data and state-dict layout (adapter.ts), the IR rewrite and its cache of rewritten
// models (inject.ts), merging and the merged export (merge.ts), the loss graph (autograd/loss.ts),
// file formats (io/adapter.ts). Vectors are initializers of the rewritten graphs named
// `ia3::<adapter>::<module path>`, shared with the GPU through the base model's weight store:
// loading new values writes the existing buffers, so no plan is recompiled and no frozen weight is
// uploaded again. State-dict keys are PEFT's: `base_model.model.<module path>.ia3_l` (adapter name
// removed).
//
// Size: PEFT's PeftModel API is about thirty public members; each is its doc comment and a few lines
// of delegation to the modules above.

import { LABELS, LOSS, logitsOutput, withLoss, type LossTask, type Pooling } from '../autograd/loss.js';
import type { BackwardOptions } from '../autograd/grad.js';
import { BusyError, DisposedError, InputError } from '../errors.js';
import { readAdapterFiles, writeAdapterFiles, type AdapterFiles, type AdapterSource } from '../io/adapter.js';
import type { TensorData } from '../ir/tensor.js';
import type { Feed, MemoryPlan, Model, RunOptions } from '../model.js';
import type { OnnxWithExternalData } from '../onnx/export.js';
import { countParameters } from '../onnx/parameters.js';
import {
  adapterPrefixes,
  checkAdapterName,
  combineVectors,
  createAdapter,
  resolveConfig,
  stageStateDict,
  stateDictOf,
  toPeftLayout,
  weightedConfig,
  type Adapter,
  type AdapterParam,
  type IA3Target,
} from './adapter.js';
import { IA3Config, serializeConfig } from './config.js';
import { insertIA3, savedCopies, scaledModules, Variants, type SavedCopy } from './inject.js';
import { MergeState, warn } from './merge.js';
import { formatTrainableParameters } from './params.js';

/** Options of `PeftModel.merge` (PEFT's `merge_adapter(adapter_names, safe_merge)`). */
export interface MergeOptions {
  /** Compute into copies and refuse non-finite results (MergeError), changing nothing. */
  readonly safe?: boolean;
  /** Adapters to merge, in order (default: the active adapters). */
  readonly adapterNames?: readonly string[];
}

/** A trainable tensor of the active adapters, as `trainingModel` lists them. */
export interface Trainable {
  readonly name: string;
  readonly adapter: string;
  readonly param: AdapterParam;
}

/** A frozen model with IA3 adapters (Hugging Face PEFT's PeftModel for IA3). */
export class PeftModel {
  private readonly adapters = new Map<string, Adapter>();
  private active: string[] = [];
  private disabled = false;
  /** Rewritten models by active-adapter set (`a+b`, `a+b|merged`, `a+b|loss`). */
  private readonly variants: Variants;
  private readonly merging: MergeState;
  /** Set by `mergeAndUnload`: the base model now holds the merged weights on its own. */
  private unloaded = false;
  private disposed = false;
  /** What is training this model now (a Trainer's run), or undefined. */
  private training: string | undefined;
  /** Unregisters `dispose` from the base model's. */
  private readonly detach: () => void;

  constructor(
    readonly base: Model,
    config: IA3Config,
    adapterName = 'default',
  ) {
    base.assertUsable();
    this.variants = new Variants(base);
    this.merging = new MergeState({
      base,
      adapter: (name) => this.adapter(name),
      savedInUse: () => this.savedInUse(),
      variants: () => this.variants.all(),
    });
    this.addAdapter(adapterName, config);
    this.active = [adapterName];
    // Disposing the base model disposes this first; merge() checks for other live PeftModels.
    livePeftModels(base).add(this);
    this.detach = base.onDispose(() => this.dispose());
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
    return this.merging.merged.length > 0;
  }

  /** The adapters folded into the frozen weights, in merge order. */
  get mergedAdapters(): readonly string[] {
    return [...this.merging.merged];
  }

  /** The targeted modules of an adapter. */
  targets(adapter = this.active[0]!): readonly IA3Target[] {
    return this.adapter(adapter).targets;
  }

  /** Adds an adapter initialised as PEFT does (ones, or standard normal when initIa3Weights is false). */
  addAdapter(name: string, config: IA3Config): void {
    this.assertIdle('add an adapter');
    checkAdapterName(name, this.adapters);
    this.register(name, createAdapter(name, resolveConfig(config, this.base), this.base));
  }

  /**
   * Registers an adapter and writes its values into buffers already resident under its tensors'
   * names: a second PeftModel of the same model (or one made after another was trained) shares the
   * base model's weight store, whose `ia3::<adapter>::…` buffers must hold this adapter's values.
   */
  private register(name: string, adapter: Adapter): void {
    this.adapters.set(name, adapter);
    for (const p of adapter.params) this.variants.store.write(p.name, p.values);
  }

  /** Activates one adapter, or several whose vectors multiply. */
  setAdapter(names: string | readonly string[]): void {
    this.assertIdle('change the active adapters');
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
    this.assertIdle('disable the adapters');
    if (this.merged) this.unmerge();
    this.disabled = true;
  }

  enableAdapter(): void {
    this.assertIdle('enable the adapters');
    this.disabled = false;
  }

  async deleteAdapter(name: string): Promise<void> {
    this.assertIdle('delete an adapter');
    this.adapter(name);
    if (this.merging.merged.includes(name)) {
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
    await this.variants.release((adapters) => adapters.includes(name));
    for (const prefix of adapterPrefixes(name)) this.variants.store.releasePrefix(prefix);
  }

  /** [trainable, all] parameter counts as PEFT's `get_nb_trainable_parameters`. */
  getNbTrainableParameters(): [number, number] {
    const count = (a: Adapter): number => a.params.reduce((s, p) => s + p.values.length, 0);
    const trainable = this.disabled ? 0 : this.active.reduce((s, n) => s + count(this.adapter(n)), 0);
    let adaptersTotal = 0;
    for (const a of this.adapters.values()) adaptersTotal += count(a);
    return [trainable, countParameters(this.base.graph).count + adaptersTotal];
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
    return stateDictOf(this.adapter(adapter));
  }

  /**
   * Sets an adapter's trainable tensors from PEFT-keyed tensors (with or without the
   * `base_model.model.` prefix). Every missing key, unexpected key and shape or dtype mismatch is
   * reported in one InputError, and nothing changes unless everything fits.
   */
  loadStateDict(tensors: Readonly<Record<string, TensorData>>, adapter = this.active[0]!): void {
    this.assertIdle('load a state dict');
    const staged = stageStateDict(this.adapter(adapter), adapter, tensors);
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
    // PEFT saves with inference_mode true.
    return writeAdapterFiles(serializeConfig(config.with({ inferenceMode: true })), this.stateDict(adapter));
  }

  /**
   * Loads an adapter saved by PEFT or by `saveAdapter` under `name` (like PEFT's `load_adapter`).
   * A config that does not fit the model, or tensors that do not fit the config, change nothing.
   */
  async loadAdapter(files: AdapterSource, name: string): Promise<void> {
    this.assertIdle('load an adapter');
    const { config, tensors } = await readAdapterFiles(files, parseAdapterConfig);
    this.addAdapter(name, config.with({ inferenceMode: false }));
    try {
      this.loadStateDict(tensors, name);
    } catch (e) {
      this.adapters.delete(name);
      for (const prefix of adapterPrefixes(name)) this.variants.store.releasePrefix(prefix);
      throw e;
    }
  }

  /** Forward pass with the active adapters (the base model's when disabled); options as `Model.run`'s. */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[], options?: RunOptions): Promise<Record<string, TensorData>> {
    return this.current().run(feeds, outputs, options);
  }

  /**
   * The GPU memory of one forward + loss + backward pass of the active adapters on a batch of
   * `batch` sequences of `sequence` tokens (every model input [batch, sequence]), computed without
   * running anything: weights, activations (peak), inputs, constants, uniforms. A SizeLimitError when a tensor
   * of that step cannot fit the device's buffers. The Trainer adds its optimizer state. `recompute`
   * says which activations the backward computes again instead of keeping (see Recompute), and
   * `activationPrecision` whether it keeps the others as computed ('f32') or in half the bytes
   * ('f16', 'bf16'; see BackwardOptions).
   */
  memoryPlan({ batch, sequence, ...options }: { batch: number; sequence: number } & BackwardOptions): MemoryPlan {
    const { model, trainables } = this.trainingModel();
    return model.gradientMemoryPlan(trainingShapes(model, this.lossTask(), batch, sequence), LOSS, trainables.map((t) => t.name), undefined, options);
  }

  /** The same forward on the float64 CPU reference executor (the test oracle). */
  runReference(feeds: Record<string, Feed>) {
    // A fresh graph object: specialisations are cached per graph with copies of small weights and
    // vectors, which loading values since would have made stale.
    const m = this.current();
    return m.withGraph({ ...m.graph }).runReference(feeds);
  }

  /**
   * The task loss on `inputs` and `labels` and its gradient with respect to every active adapter's
   * vectors, computed on the GPU in one command buffer (forward, loss, backward). `gradients` is
   * keyed by PEFT state-dict keys for the first active adapter; `adapterGradients` has them all.
   * The loss is the task type's (CAUSAL_LM: next-token cross-entropy with labels −100 ignored;
   * SEQ_CLS: cross-entropy of the class logits, a decoder's pooled as `pooling` says, default the
   * last real token as Hugging Face); without a task type it follows the logits' rank. `recompute`
   * as in memoryPlan (the gradients are the same; only memory and time differ);
   * `activationPrecision` 'f16' / 'bf16' gives gradients from activations rounded to that precision.
   */
  async lossAndGradients({ inputs, labels, pooling, ...options }: { inputs: Record<string, Feed>; labels: Feed; pooling?: Pooling } & BackwardOptions): Promise<{
    loss: number;
    gradients: Record<string, TensorData>;
    adapterGradients: Record<string, Record<string, TensorData>>;
  }> {
    // The Trainer replays the same gradient plans: their buffers are not to be shared mid-run.
    this.assertIdle('compute gradients');
    const { model: lossModel, trainables } = this.trainingModel({ pooling });
    const wrt = trainables.map((t) => t.name);
    const { loss, gradients } = await lossModel.lossAndGradients({ ...inputs, [LABELS]: labels }, LOSS, wrt, options);
    const adapterGradients: Record<string, Record<string, TensorData>> = {};
    for (const t of trainables) {
      const g = (adapterGradients[t.adapter] ??= {});
      g[t.param.key] = { data: toPeftLayout(t.param, gradients.get(t.name)!), dims: [...t.param.dims] };
    }
    return { loss, gradients: adapterGradients[this.active[0]!]!, adapterGradients };
  }

  /** `lossAndGradients` on the float64 CPU executor (same IR; the oracle of the GPU result). */
  lossAndGradientsReference({ inputs, labels, pooling, ...options }: { inputs: Record<string, Feed>; labels: Feed; pooling?: Pooling } & BackwardOptions): { loss: number; gradients: Record<string, Float64Array> } {
    const { model, trainables } = this.trainingModel({ pooling });
    // A fresh graph object, as in runReference: the memo of specialisations would hold the values
    // the vectors had when it was filled.
    const fresh = model.withGraph({ ...model.graph });
    const { loss, gradients } = fresh.lossAndGradientsReference({ ...inputs, [LABELS]: labels }, LOSS, trainables.map((t) => t.name), options);
    const out: Record<string, Float64Array> = {};
    for (const t of trainables) {
      const g = Float32Array.from(gradients.get(t.name)!);
      out[`${t.adapter}/${t.param.key}`] = Float64Array.from(toPeftLayout(t.param, g));
    }
    return { loss, gradients: out };
  }

  /**
   * The model with the task loss appended for the active adapters (output `loss`, input `labels`),
   * and the trainable tensors it reads: every active adapter's IA3 vectors and the
   * modules_to_save copies in use (those of the first active adapter that has each module).
   * `pooling`: how a decoder's per-position class scores are pooled (SEQ_CLS; default 'last').
   */
  trainingModel({ pooling = 'last' }: { pooling?: Pooling } = {}): { model: Model; trainables: Trainable[] } {
    this.assertLive();
    if (this.disabled) throw new InputError('adapters are disabled: there is nothing to train');
    if (this.merged) throw new InputError(`cannot train while adapters are merged (${this.merging.merged.join(', ')}): call unmerge() first`);
    const used = new Set(this.savedInUse().map((s) => s.by.name));
    const trainables = this.active.flatMap((a) =>
      this.adapter(a)
        .params.filter((p) => p.target || used.has(p.name))
        .map((param) => ({ name: param.name, adapter: a, param })),
    );
    const trainable = new Set(trainables.map((t) => t.name));
    const model = this.variants.get(`${this.active.join('+')}|loss|${pooling}`, () => withLoss(this.current().graph, this.lossTask(), { trainable, pooling }));
    return { model, trainables };
  }

  /** A trainable tensor's current values (ONNX layout, a view: do not modify). */
  paramValues(name: string): Float32Array {
    return this.param(name).values;
  }

  /** Sets a trainable tensor (ONNX layout) on the CPU side and in its GPU buffer when uploaded. */
  setParamValues(name: string, values: Float32Array): void {
    this.assertIdle('change a trainable tensor');
    this.writeParam(name, values);
  }

  private writeParam(name: string, values: Float32Array): void {
    const p = this.param(name);
    if (values.length !== p.values.length) throw new InputError(`'${p.key}' has ${p.values.length} values, got ${values.length}`);
    const owner = [...this.adapters].find(([, a]) => a.params.includes(p))![0];
    if (p.target && this.merging.merged.includes(owner)) {
      throw new InputError(`adapter '${owner}' is merged into the weights: unmerge() before changing its vector '${p.key}'`);
    }
    p.values.set(values);
    this.variants.store.write(name, p.values);
  }

  /** The loss `lossAndGradients` computes: from the first active adapter's task type, else the logits' rank. */
  lossTask(): LossTask {
    const task = this.adapter(this.active[0]!).config.taskType;
    if (task === 'CAUSAL_LM' || task === 'SEQ_CLS') return task;
    if (task !== null) throw new InputError(`training for task type ${task} is not supported (CAUSAL_LM and SEQ_CLS are)`);
    const logits = this.base.graph.outputs.find((o) => o.name === logitsOutput(this.base.graph));
    if (!logits?.dims) throw new InputError('set taskType: the model has no logits output of known rank to infer the loss from');
    return logits.dims.length === 3 ? 'CAUSAL_LM' : 'SEQ_CLS';
  }

  /** The model (graph rewritten for the active adapters) that `run` executes. */
  current(): Model {
    this.assertLive();
    if (this.disabled) return this.base;
    const key = this.active.join('+');
    if (this.merged) {
      // Merged: the base graph on the merged weights, with the active modules_to_save copies.
      const saved = this.savedInUse();
      if (saved.length === 0) return this.base;
      return this.variants.get(`${key}|merged`, () => insertIA3(this.base.graph, [], saved));
    }
    return this.variants.get(key, () => insertIA3(this.base.graph, scaledModules(this.active, (n) => this.adapter(n)), this.savedInUse()));
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
    this.assertIdle('add an adapter');
    checkAdapterName(adapterName, this.adapters);
    if (adapters.length === 0) throw new InputError('addWeightedAdapter needs at least one adapter');
    if (adapters.length !== weights.length) throw new InputError(`addWeightedAdapter: ${adapters.length} adapters but ${weights.length} weights`);
    const bad = weights.findIndex((w) => typeof w !== 'number' || !Number.isFinite(w));
    if (bad >= 0) throw new InputError(`addWeightedAdapter: weight ${bad} (${String(weights[bad])}) is not a finite number`);
    const missing = adapters.filter((a) => !this.adapters.has(a));
    if (missing.length > 0) throw new InputError(`Adapter ${missing.join(', ')} does not exist (adapters: ${this.listAdapters().join(', ')})`);
    const sources = adapters.map((a) => this.adapter(a));
    const created = createAdapter(adapterName, weightedConfig(adapters, sources), this.base);
    combineVectors(created, adapters, sources, weights);
    this.register(adapterName, created);
  }

  /**
   * Folds adapters' vectors into the frozen weights on the GPU (PEFT's `merge_adapter`): each
   * targeted weight scaled along its output axis (and its bias) or, for feed-forward modules,
   * along its input axis, adapter after adapter; the CPU copies get the same float32 products.
   * float16 weights merge in float16 as PEFT does (the float32 product rounded to the nearest half,
   * ties to even) and stay half on the GPU; 8-bit and 4-bit weights are refused (InputError: merge
   * into the fp32 export instead). While merged, `run` executes the base graph on the merged
   * weights (only modules_to_save copies are still substituted), so the adapters add no latency.
   * Adapters already merged are skipped with PEFT's warning. `safe` refuses non-finite results
   * (a float16 overflow included) with a MergeError and changes nothing (every merge is
   * all-or-nothing: the results are computed and checked before anything is written).
   * Tied weights (an initializer also read by another node) are refused with an InputError.
   */
  async merge({ safe = false, adapterNames }: MergeOptions = {}): Promise<void> {
    this.assertIdle('merge');
    // Merging writes the base model's weights: PeftModels are isolated only while it does not.
    const others = [...livePeftModels(this.base)].filter((p) => p !== this).length;
    if (others > 0) {
      throw new BusyError(`merging writes the base model's weights, which ${others} other PeftModel${others > 1 ? 's' : ''} also run${others > 1 ? '' : 's'} on: dispose() ${others > 1 ? 'them' : 'it'} first`);
    }
    if (this.disabled) throw new InputError('adapters are disabled: enableAdapter() before merging');
    const names = [...new Set(adapterNames ?? this.active)];
    for (const n of names) this.adapter(n);
    await this.merging.merge(names, safe);
  }

  /**
   * Divides the merged vectors out again (PEFT's `unmerge_adapter`: by l + 1e-8, last merged
   * first), warning like PEFT that the result can be inaccurate: a vector element near 0 loses the
   * weights it scaled. Computed on the CPU with correctly rounded float32 division (WGSL's division
   * is only accurate to 2.5 ULP) and written to the GPU copies, so both stay identical. float16
   * weights are divided in float32 and rounded back to halves, as PEFT does: lossy (the original
   * halves need not come back exactly).
   */
  unmerge(): void {
    this.assertIdle('unmerge');
    this.merging.unmerge();
  }

  /**
   * PEFT's `merge_and_unload`: merges the active adapters (or `adapterNames`) and returns the base
   * model, whose weights are now the merged ones and whose modules_to_save modules hold the active
   * adapter's trained copies. This PeftModel cannot be used afterwards.
   */
  async mergeAndUnload(options: MergeOptions = {}): Promise<Model> {
    await this.merge(options);
    this.merging.foldSavedCopies();
    await this.variants.release();
    this.variants.store.releaseAll();
    this.unloaded = true;
    livePeftModels(this.base).delete(this);
    this.detach();
    return this.base;
  }

  /**
   * Frees every GPU buffer this PeftModel holds (its compiled plans and its adapters' vectors and
   * modules_to_save copies); the base model stays loaded and usable. A merged PeftModel is unmerged
   * first, so the base model runs its own weights again. Afterwards every use is a DisposedError;
   * calling it again does nothing. A BusyError while a Trainer trains it.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    if (this.training) throw new BusyError(`cannot dispose the PeftModel: ${this.training}`);
    if (!this.unloaded && this.merged && !this.base.disposed) this.merging.unmerge();
    this.disposed = true;
    livePeftModels(this.base).delete(this);
    this.detach();
    await this.variants.release();
    this.variants.store.releaseAll();
  }

  /**
   * Marks the model as being trained by `what` until `end()`: meanwhile every change of its
   * adapters (and `dispose()`, `lossAndGradients`) is a BusyError, and so is a second lease. The
   * lease's `setParamValues` is how the trainer writes the trained values back.
   */
  beginTraining(what: string): TrainingLease {
    this.assertIdle('start training');
    const release = this.base.hold(what);
    this.training = what;
    let ended = false;
    return {
      setParamValues: (name, values) => this.writeParam(name, values),
      end: () => {
        if (ended) return;
        ended = true;
        this.training = undefined;
        release();
      },
    };
  }

  /**
   * The original ONNX file with the weights `run` uses written in place: the active adapters'
   * vectors folded in (whether or not `merge` was called; while merged, the merged weights) and
   * the active modules_to_save copies in their modules. Same graph, node list, input and output
   * names; raw_data, float_data and external data each written where they were (external files
   * returned under their locations, with the same offsets); float16 weights stay float16 (merged as
   * `merge` does). onnxruntime-web runs the result with no IA3 op. Needs a model from `loadModel` (which keeps the file's bytes).
   */
  async exportMergedOnnx(): Promise<OnnxWithExternalData> {
    this.assertLive();
    return this.merging.exportOnnx(this.disabled ? [] : this.active);
  }

  private param(name: string): AdapterParam {
    for (const a of this.adapters.values()) {
      const p = a.params.find((x) => x.name === name);
      if (p) return p;
    }
    throw new InputError(`no trainable tensor named '${name}'`);
  }

  /** modules_to_save replacements for the active adapters: the first active adapter's copy wins. */
  private savedInUse(): SavedCopy[] {
    return savedCopies(this.active, (n) => this.adapter(n));
  }

  private assertLive(): void {
    if (this.unloaded) throw new DisposedError('this PeftModel was unloaded by mergeAndUnload(); use the model it returned');
    if (this.disposed) throw new DisposedError('this PeftModel was disposed');
    this.base.assertUsable();
  }

  /** assertLive, and no Trainer is running on this model (`what` names the refused change). */
  private assertIdle(what: string): void {
    this.assertLive();
    if (this.training) throw new BusyError(`cannot ${what} while ${this.training}: stop() it and await train() first`);
  }

  private adapter(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) throw new InputError(`no adapter named '${name}' (adapters: ${[...this.adapters.keys()].join(', ')})`);
    return a;
  }
}

/** Input shapes of a training step: every model input [batch, sequence]; labels per the task. */
export function trainingShapes(model: Model, task: LossTask, batch: number, sequence: number): Record<string, number[]> {
  for (const [k, v] of Object.entries({ batch, sequence })) {
    if (!Number.isInteger(v) || v < 1) throw new InputError(`memoryPlan: ${k} must be a positive integer, got ${v}`);
  }
  const shapes: Record<string, number[]> = {};
  for (const name of model.inputNames) shapes[name] = name === LABELS && task === 'SEQ_CLS' ? [batch] : [batch, sequence];
  return shapes;
}

const parseAdapterConfig = (content: string | Uint8Array, fileName: string): IA3Config => IA3Config.fromJSON(content, fileName);

/** A PeftModel with a saved adapter loaded and active, like PEFT's `PeftModel.from_pretrained`. */
export async function loadPeftModel(model: Model, files: AdapterSource, adapterName = 'default'): Promise<PeftModel> {
  const { config, tensors } = await readAdapterFiles(files, parseAdapterConfig);
  const peft = new PeftModel(model, config.with({ inferenceMode: false }), adapterName);
  try {
    peft.loadStateDict(tensors, adapterName);
  } catch (e) {
    await peft.dispose(); // a failed load leaves nothing behind
    throw e;
  }
  return peft;
}

const LIVE = new WeakMap<Model, Set<PeftModel>>();

/** The PeftModels over `model` that are neither disposed nor unloaded. */
function livePeftModels(model: Model): Set<PeftModel> {
  let set = LIVE.get(model);
  if (!set) LIVE.set(model, (set = new Set()));
  return set;
}

/** A Trainer's hold on a PeftModel while it trains (see `PeftModel.beginTraining`). */
export interface TrainingLease {
  /** Sets a trainable tensor's values (CPU side and GPU buffer), as `setParamValues` would. */
  setParamValues(name: string, values: Float32Array): void;
  /** Ends the lease; calling it again does nothing. */
  end(): void;
}

/** Wraps a model with an IA3 adapter, like PEFT's `get_peft_model`. */
export function getPeftModel(model: Model, config: IA3Config, adapterName = 'default'): PeftModel {
  return new PeftModel(model, config, adapterName);
}
