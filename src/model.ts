// The frozen base model: an imported ONNX graph that runs forward on WebGPU.
//
// `loadModel` decodes the file once; `run` specialises the graph to the feeds' shapes, compiles a
// plan for that shape (cached, so a repeated shape costs one command buffer and the readback) and
// executes it. Weights live in a WeightStore, uploaded on first use and shared by every shape's plan
// and by every variant `withGraph` makes (PEFT's rewritten graphs, the training graph). The graph
// is never mutated: `replaceInitializers` gives the model a new graph object, so CPU-side caches
// keyed by the graph (specialisations) cannot go stale.

import { backwardKey, buildBackward, type BackwardOptions, type BackwardSummary } from './autograd/grad.js';
import { fuseGraph } from './compile/fuse.js';
import { legalize, type LegalGraph } from './compile/legalize.js';
import { layoutPlan, Plan, type PlanLayout } from './compile/plan.js';
import { BusyError, DisposedError, InputError } from './errors.js';
import { createDevice, type GpuContext } from './gpu/device.js';
import { FLOAT_TYPES, gpuStorage, type DataType } from './ir/dtype.js';
import { initializerGpuData, type Graph, type Initializer } from './ir/graph.js';
import { residentBytes, type IndexCheckInfo, type PlanGraph, type SpecializedGraph } from './ir/static-graph.js';
import { sizeOf, type RefTensor, type TensorData } from './ir/tensor.js';
import { describeGraph } from './onnx/describe.js';
import { checkIndexFeeds } from './onnx/bounds.js';
import { runReferenceGraph } from './onnx/executor.js';
import { loadOnnx, type LoadOnnxOptions, type ModelSource } from './onnx/load.js';
import { findLmHead } from './onnx/heads.js';
import { detectModelType, findModules, type ModuleInfo } from './onnx/modules.js';
import { raiseIndexChecks } from './onnx/index-checks.js';
import { specialize } from './onnx/specialize.js';
import { WeightStore } from './gpu/weights.js';
import { GpuWeightSink } from './onnx/weights-sink.js';
import type { OnnxSourceFile } from './onnx/export.js';

/** A compiled forward + backward plan (see `Model.gradientPlan`). */
export interface GradientPlan {
  readonly plan: Plan;
  /** Value holding the loss. */
  readonly loss: string;
  /** Trainable value → value holding its gradient. */
  readonly gradients: ReadonlyMap<string, string>;
  /** Index checks of gathers whose indices the step computes (read them and `raiseIndexChecks`). */
  readonly checks: readonly IndexCheckInfo[];
  /** Runtime inputs the plan reads. */
  readonly inputs: readonly string[];
  readonly summary: BackwardSummary;
}

/**
 * GPU memory of one execution of a plan, known before it runs (`Model.memoryPlan`): bytes of the
 * buffers it binds, which is what it allocates (activations share buffers by liveness).
 */
export interface MemoryPlan {
  /** Frozen weights and adapter tensors the plan reads (resident in the model's weight store). */
  readonly weights: number;
  /** Peak bytes of activations and scratch buffers (the plan allocates them all once). */
  readonly activations: number;
  /** Runtime input buffers. */
  readonly inputs: number;
  /** Constants the plan uploads itself. */
  readonly constants: number;
  /** Uniform buffers of its dispatches (a few dozen bytes each). */
  readonly uniforms: number;
  /** All of the above. */
  readonly total: number;
}

/** Options of `Model.run`. */
export interface RunOptions {
  /**
   * The sequence positions whose logits to compute: 'all' (default), 'last' (what generation
   * reads), or position indices (negative from the end). With a plain LM head (onnx/heads.ts) the
   * head then runs on those positions only; `logits` is [batch, positions, vocabulary].
   */
  readonly positions?: 'all' | 'last' | readonly number[];
}

/** A feed: a tensor, or (for ids and masks) nested number arrays such as `number[][]`. */
export type Feed = TensorData | number[] | number[][] | number[][][];

export interface LoadModelOptions extends Omit<LoadOnnxOptions, 'sink'> {
  /** The GPU to run on; a new device is created when omitted. */
  device?: GpuContext;
  /** Explicit module paths for MatMul/Gemm nodes whose path cannot be recovered: node name → path. */
  moduleMap?: Record<string, string>;
  /**
   * Keep every weight's values on the CPU as well. By default a tensor over 1 MiB goes to the GPU
   * as the file streams in and lives only there (the JS heap holds no copy of the model); the CPU
   * reference executor (`runReference`) and modules_to_save copies of such weights then refuse
   * with an InputError, and merging reads them back from the GPU.
   */
  keepWeightsOnCpu?: boolean;
}

/**
 * The ONNX file a model was loaded from, read again when needed (the merged export rewrites it):
 * from its URL, its Files, or the bytes given to `loadModel` (which keep a reference to them).
 */
export interface OnnxFile {
  readonly fileName: string;
  read(): Promise<OnnxSourceFile>;
}

/** An OnnxFile over bytes in memory (a graph built in code, tests). */
export function onnxFileOf(file: OnnxSourceFile): OnnxFile {
  return { fileName: file.fileName, read: async () => file };
}

/**
 * What a model and its `withGraph` variants share beyond the weights: whether they are disposed,
 * who is training on them (dispose then waits for nobody: it is refused), and what must be
 * disposed with them (the PeftModels over the model).
 */
interface Lifetime {
  disposed: boolean;
  /** Why the model cannot be disposed now (a Trainer is running), or undefined. */
  busy: string | undefined;
  readonly dependents: Set<() => Promise<void>>;
}

/** A frozen transformer imported from ONNX. */
export class Model {
  private readonly plans = new Map<string, Promise<{ spec: SpecializedGraph; plan: Plan }>>();
  private readonly gradPlans = new Map<string, Promise<GradientPlan>>();
  /** Variants whose head computes the logits of some positions only, by `RunOptions.positions`. */
  private readonly headVariants = new Map<string, Model>();
  private currentGraph: Graph;
  private lifetime: Lifetime = { disposed: false, busy: undefined, dependents: new Set() };
  /** Made by `withGraph`: its weights and lifetime belong to the model it was made from. */
  private variant = false;
  /** GPU copies of initializers by name, uploaded on first use, shared with every `withGraph` variant. */
  readonly weights: WeightStore;

  constructor(
    readonly gpu: GpuContext,
    graph: Graph,
    /** Parsed `config.json` of a Hugging Face model folder, when there was one. */
    readonly config: Record<string, unknown> | undefined,
    /** Linear modules (MatMul/Gemm with a weight) with their PyTorch paths. */
    readonly modules: readonly ModuleInfo[],
    /** `model_type` from config.json, else inferred from module paths. */
    readonly modelType: string | undefined,
    /**
     * The weight store to share (variants of one model share it), or a Map of buffers by name for
     * the store to adopt; a fresh store by default.
     */
    weights: WeightStore | Map<string, GPUBuffer> = new Map(),
    /** The file `loadModel` decoded (absent for graphs built in code). */
    readonly onnxFile?: OnnxFile,
  ) {
    this.currentGraph = graph;
    this.weights = weights instanceof WeightStore ? weights : new WeightStore(gpu, weights);
  }

  /** The graph IR (replaced as a whole, never mutated, when initializers get new values). */
  get graph(): Graph {
    return this.currentGraph;
  }

  /** GPU copies of initializers by name (a read-only view of `weights`). */
  get weightBuffers(): ReadonlyMap<string, GPUBuffer> {
    return this.weights.buffers;
  }

  /**
   * A model running `graph` on the same device, config, modules and file, sharing this model's
   * weight store (a weight is uploaded once for all of them; or `weights`, an overlay of it) and
   * its lifetime (disposing this model makes the variant unusable); its plans are its own.
   */
  withGraph(graph: Graph, weights: WeightStore = this.weights): Model {
    const m = new Model(this.gpu, graph, this.config, this.modules, this.modelType, weights, this.onnxFile);
    m.lifetime = this.lifetime;
    m.variant = true;
    return m;
  }

  /** True once `dispose()` ran (on this model or the model it is a variant of). */
  get disposed(): boolean {
    return this.lifetime.disposed;
  }

  /** Throws DisposedError after `dispose()`. */
  assertUsable(): void {
    if (this.lifetime.disposed) throw new DisposedError('this model was disposed: load it again to use it');
  }

  /**
   * Registers `dispose` to run first when this model is disposed (a PeftModel over it); returns the
   * function that unregisters it.
   */
  onDispose(dispose: () => Promise<void>): () => void {
    this.lifetime.dependents.add(dispose);
    return () => this.lifetime.dependents.delete(dispose);
  }

  /**
   * Marks the model in use until the returned function is called (a Trainer's run): `dispose()`
   * meanwhile is a BusyError naming `what`.
   */
  hold(what: string): () => void {
    if (this.lifetime.busy) throw new BusyError(`the model is in use: ${this.lifetime.busy}`);
    this.lifetime.busy = what;
    return () => {
      this.lifetime.busy = undefined;
    };
  }

  /**
   * Gives initializers new values on the CPU side: a new graph holding the given Initializer
   * objects in place of those of the same name. GPU copies are the store's business (`weights.write`);
   * compiled plans stay valid (they read weights from the store).
   */
  replaceInitializers(replacements: readonly Initializer[]): void {
    const initializers = new Map(this.currentGraph.initializers);
    for (const init of replacements) initializers.set(init.name, init);
    this.currentGraph = { ...this.currentGraph, initializers };
  }

  /** PyTorch module paths of the linear layers, in graph order. */
  moduleNames(): string[] {
    return this.modules.map((m) => m.path);
  }

  /** A readable summary: inputs, outputs, op histogram, parameter count, modules. */
  describe(): string {
    return describeGraph(this.graph, this.modules);
  }

  /** Names and declared types of the runtime inputs. */
  get inputNames(): string[] {
    return this.graph.inputs.map((i) => i.name);
  }

  get outputNames(): string[] {
    return this.graph.outputs.map((o) => o.name);
  }

  /**
   * Runs the frozen model forward on the GPU.
   * @param feeds one entry per graph input the outputs depend on; ids may be `number[][]`.
   * @returns every graph output (or those named in `outputs`).
   */
  async run(feeds: Record<string, Feed>, outputs: readonly string[] = this.outputNames, options: RunOptions = {}): Promise<Record<string, TensorData>> {
    this.assertUsable();
    const positions = options.positions ?? 'all';
    if (positions !== 'all') return this.atPositions(positions).run(feeds, outputs);
    const tensors = this.normaliseFeeds(feeds);
    const shapes = Object.fromEntries([...tensors].map(([k, v]) => [k, v.dims]));
    const values = valuesOf(tensors);
    // Fed ids past a table are rejected here, before upload, as onnxruntime rejects them.
    checkIndexFeeds(specialize(this.graph, shapes, { values }), tensors);
    const { spec, plan } = await this.planFor(shapes, values);
    for (const o of outputs) {
      if (!spec.outputNames.includes(o)) throw new InputError(`'${o}' is not an output of the model (outputs: ${spec.outputNames.join(', ')})`);
    }
    const valueOf = (o: string): string => spec.outputs[spec.outputNames.indexOf(o)]!;
    const checks = spec.checks ?? [];
    const toRead = [...outputs.map(valueOf).filter((v) => !spec.constants.has(v) && plan.has(v)), ...checks.map((c) => c.value)];
    const gpuFeeds = new Map([...tensors].filter(([k]) => spec.inputs.some((i) => i.name === k)).map(([k, v]) => [k, v.data]));
    const read = await plan.execute(gpuFeeds, toRead);
    raiseIndexChecks(checks, (v) => read.get(v));
    const result: Record<string, TensorData> = {};
    for (const o of outputs) {
      const v = valueOf(o);
      const type = spec.types.get(v)!;
      const constant = spec.constants.get(v);
      if (constant) {
        result[o] = { data: gpuStorage(constant.dtype) === 'f32' ? Float32Array.from(constant.data) : Int32Array.from(constant.data), dims: [...constant.dims] };
      } else {
        const data = read.get(v);
        if (!data) throw new InputError(`output '${o}' does not depend on the inputs given`);
        result[o] = { data, dims: [...type.dims] };
      }
    }
    return result;
  }

  /** Runs the same specialised graph on the float64 CPU reference executor (the test oracle). */
  runReference(feeds: Record<string, Feed>): Record<string, RefTensor> {
    const tensors = this.normaliseFeeds(feeds);
    const spec = specialize(this.graph, Object.fromEntries([...tensors].map(([k, v]) => [k, v.dims])), { values: valuesOf(tensors) });
    const refFeeds: Record<string, RefTensor> = {};
    for (const [k, v] of tensors) refFeeds[k] = { dtype: v.dtype, dims: v.dims, data: Float64Array.from(v.data) };
    return runReferenceGraph(spec, refFeeds);
  }

  /**
   * This model with its LM head computing the logits of `positions` only (see RunOptions): the
   * head's input gathered at those positions first. Cached per positions.
   */
  private atPositions(positions: 'last' | readonly number[]): Model {
    const list = positions === 'last' ? [-1] : [...positions];
    if (list.length === 0 || list.some((p) => !Number.isInteger(p))) throw new InputError(`positions must be 'all', 'last' or a non-empty list of integers, got ${JSON.stringify(positions)}`);
    const key = list.join(',');
    let m = this.headVariants.get(key);
    if (!m) {
      const head = findLmHead(this.graph);
      if (!head) throw new InputError("positions other than 'all' need a model whose 'logits' come from a plain LM head (a MatMul or Gemm of the last hidden states)");
      const g = this.graph;
      const idx = 'positions/indices';
      const picked = 'positions/hidden';
      const logits = g.outputs.find((o) => o.name === head.node.outputs[0]);
      const nodes = g.nodes.flatMap((n) =>
        n === head.node
          ? [{ name: 'positions/Gather', opType: 'Gather', domain: '', inputs: [head.hidden, idx], outputs: [picked], attrs: { axis: -2 } }, { ...n, inputs: [picked, ...n.inputs.slice(1)] }]
          : [n],
      );
      const initializers = new Map(g.initializers).set(idx, { name: idx, dtype: 'int64', dims: [list.length], data: BigInt64Array.from(list.map(BigInt)) });
      const outputs = g.outputs.map((o) => (o === logits && o.dims ? { ...o, dims: o.dims.map((d, i) => (i === o.dims!.length - 2 ? list.length : d)) } : o));
      m = this.withGraph({ ...g, nodes, initializers, outputs });
      this.headVariants.set(key, m);
    }
    return m;
  }

  /**
   * The specialised graph and compiled plan for a set of input shapes (compiled once per shape and
   * If decision; `values`, the feeds, decide the If branches of graphs that have them).
   */
  planFor(shapes: Record<string, readonly number[]>, values?: InputValues): Promise<{ spec: SpecializedGraph; plan: Plan }> {
    this.assertUsable();
    const spec = specialize(this.graph, shapes, values ? { values } : {});
    let entry = this.plans.get(spec.key);
    if (!entry) {
      entry = this.compile(spec).then((plan) => ({ spec, plan }));
      entry.catch(() => this.plans.delete(spec.key));
      this.plans.set(spec.key, entry);
    }
    return entry;
  }

  /**
   * The GPU memory a forward pass on inputs of these shapes takes, computed without running or
   * allocating anything (a SizeLimitError when a tensor cannot fit the device's buffers).
   */
  memoryPlan(shapes: Record<string, readonly number[]>, values?: InputValues): MemoryPlan {
    this.assertUsable();
    return memoryOf(this.prepare(specialize(this.graph, shapes, values ? { values } : {})).layout);
  }

  /** The memory of the gradient plan `gradientPlan(shapes, loss, wrt, values, options)` would compile (see memoryPlan). */
  gradientMemoryPlan(shapes: Record<string, readonly number[]>, loss: string, wrt: readonly string[], values?: InputValues, options: BackwardOptions = {}): MemoryPlan {
    this.assertUsable();
    return memoryOf(this.prepare(buildBackward(specialize(this.graph, shapes, values ? { values } : {}), loss, wrt, options).graph).layout);
  }

  /**
   * A specialised graph made ready for this device, without GPU work: legalised for its buffer
   * limits (weights in blocks, large outputs in parts, else a SizeLimitError), fused, laid out.
   */
  private prepare(spec: SpecializedGraph): { legal: LegalGraph; graph: PlanGraph; layout: PlanLayout } {
    const legal = legalize(spec, this.gpu.traits, (name) => this.weights.get(name) !== undefined);
    const graph = fuseGraph(legal);
    const stored = new Set(legal.weights);
    const layout = layoutPlan(graph, this.gpu.traits, (name) => {
      if (!stored.has(name)) return undefined;
      const b = this.weights.get(name);
      const r = legal.resident.get(name);
      return b ? b.size : r ? Math.max(16, Math.ceil(residentBytes(r) / 16) * 16) : undefined;
    });
    return { legal, graph, layout };
  }

  /** Compiles a specialised graph: prepared, its weights uploaded to the store (once), then planned. */
  private compile(spec: SpecializedGraph): Promise<Plan> {
    const { legal, graph, layout } = this.prepare(spec);
    // int64 values beyond 32 bits have no GPU form: only the CPU reads them.
    for (const name of legal.weights) this.weights.ensure(name, () => legal.resident.get(name)?.data);
    return Plan.compile(this.gpu, { ...graph, shared: this.weights.buffers }, { layout });
  }

  /**
   * The compiled forward + backward plan of `loss` (a scalar output) with respect to `wrt` (float
   * initializers or inputs) for the feeds' shapes, built once per shape. Callers that replay it
   * inside larger command buffers (the Trainer) write inputs and encode it themselves.
   */
  gradientPlan(shapes: Record<string, readonly number[]>, loss: string, wrt: readonly string[], values?: InputValues, options: BackwardOptions = {}): Promise<GradientPlan> {
    this.assertUsable();
    const spec = specialize(this.graph, shapes, values ? { values } : {});
    const key = `grad:${loss}:${wrt.join(',')}${backwardKey(options)}:${spec.key}`;
    let entry = this.gradPlans.get(key);
    if (!entry) {
      const backward = buildBackward(spec, loss, wrt, options);
      entry = this.compile(backward.graph).then((plan) => ({
        plan,
        loss: backward.graph.outputs[backward.graph.outputNames.indexOf(loss)]!,
        gradients: backward.gradients,
        checks: backward.graph.checks ?? [],
        inputs: backward.graph.inputs.map((i) => i.name),
        summary: backward.summary,
      }));
      entry.catch(() => this.gradPlans.delete(key));
      this.gradPlans.set(key, entry);
    }
    return entry;
  }

  /** Feeds converted to GPU storage (validated against the declared inputs), with their dims. */
  gpuFeeds(feeds: Record<string, Feed>): Map<string, { dims: number[]; data: Float32Array | Int32Array }> {
    return this.normaliseFeeds(feeds);
  }

  /**
   * Runs the graph and the backward of `loss` with respect to `wrt` on the GPU in one command
   * buffer, and reads back the loss and the gradients.
   */
  async lossAndGradients(
    feeds: Record<string, Feed>,
    loss: string,
    wrt: readonly string[],
    options: BackwardOptions = {},
  ): Promise<{ loss: number; gradients: Map<string, Float32Array> }> {
    const tensors = this.normaliseFeeds(feeds);
    const shapes = Object.fromEntries([...tensors].map(([k, v]) => [k, v.dims]));
    const values = valuesOf(tensors);
    checkIndexFeeds(specialize(this.graph, shapes, { values }), tensors);
    const g = await this.gradientPlan(shapes, loss, wrt, values, options);
    const gpuFeeds = new Map([...tensors].filter(([k]) => g.inputs.includes(k)).map(([k, v]) => [k, v.data]));
    const read = await g.plan.execute(gpuFeeds, [g.loss, ...g.gradients.values(), ...g.checks.map((c) => c.value)]);
    raiseIndexChecks(g.checks, (v) => read.get(v));
    const out = new Map<string, Float32Array>();
    for (const [w, name] of g.gradients) out.set(w, read.get(name) as Float32Array);
    return { loss: read.get(g.loss)![0]!, gradients: out };
  }

  /** The loss and gradients of `lossAndGradients` from the float64 CPU executor on the same backward IR (the oracle). */
  lossAndGradientsReference(feeds: Record<string, Feed>, loss: string, wrt: readonly string[], options: BackwardOptions = {}): { loss: number; gradients: Map<string, Float64Array> } {
    const tensors = this.normaliseFeeds(feeds);
    const spec = specialize(this.graph, Object.fromEntries([...tensors].map(([k, v]) => [k, v.dims])), { values: valuesOf(tensors) });
    const backward = buildBackward(spec, loss, wrt, options);
    const refFeeds: Record<string, RefTensor> = {};
    for (const [k, v] of tensors) if (backward.graph.inputs.some((i) => i.name === k)) refFeeds[k] = { dtype: v.dtype, dims: v.dims, data: Float64Array.from(v.data) };
    const out = runReferenceGraph(backward.graph, refFeeds);
    const gradients = new Map<string, Float64Array>();
    for (const w of wrt) gradients.set(w, out[`grad/${w}`]!.data);
    return { loss: out[loss]!.data[0]!, gradients };
  }

  /** Frees every compiled plan (weights stay uploaded). Plans are rebuilt on the next run. */
  async releasePlans(): Promise<void> {
    const plans = [...this.plans.values(), ...this.gradPlans.values()];
    this.plans.clear();
    this.gradPlans.clear();
    for (const p of plans) (await p).plan.destroy();
    const variants = [...this.headVariants.values()];
    this.headVariants.clear();
    for (const m of variants) await m.releasePlans();
  }

  /**
   * Frees every GPU buffer the model holds — its plans, its weights, and (first) the PeftModels
   * over it, with their plans and vectors — so the device's live bytes return to what they were
   * before it was loaded. Afterwards every use is a DisposedError; calling it again does nothing.
   * A BusyError while a Trainer trains on the model. On a `withGraph` variant it frees the
   * variant's plans only.
   */
  async dispose(): Promise<void> {
    if (this.variant) return this.releasePlans();
    if (this.lifetime.disposed) return;
    if (this.lifetime.busy) throw new BusyError(`cannot dispose the model: ${this.lifetime.busy}`);
    for (const d of [...this.lifetime.dependents]) await d();
    this.lifetime.dependents.clear();
    this.lifetime.disposed = true;
    await this.releasePlans();
    this.weights.releaseAll();
  }

  /** Bytes of weights resident on the GPU. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** The GPU copy of an initializer, uploaded now if no plan has needed it yet (undefined: no GPU form). */
  weightBuffer(name: string): GPUBuffer | undefined {
    this.assertUsable();
    const init = this.graph.initializers.get(name);
    return init && this.weights.ensure(name, () => initializerGpuData(init));
  }

  private normaliseFeeds(feeds: Record<string, Feed>): Map<string, { dtype: DataType; dims: number[]; data: Float32Array | Int32Array }> {
    const out = new Map<string, { dtype: DataType; dims: number[]; data: Float32Array | Int32Array }>();
    for (const [name, feed] of Object.entries(feeds)) {
      const decl = this.graph.inputs.find((i) => i.name === name);
      if (!decl) throw new InputError(`'${name}' is not an input of the model (inputs: ${this.inputNames.join(', ')})`);
      out.set(name, { dtype: decl.dtype, ...toGpuFeed(name, decl.dtype, feed) });
    }
    return out;
  }
}

/** Values of runtime inputs by name: what decides the If branches of a graph (see `specialize`). */
export type InputValues = Readonly<Record<string, ArrayLike<number | bigint>>>;

function valuesOf(tensors: ReadonlyMap<string, { readonly data: Float32Array | Int32Array }>): InputValues {
  return Object.fromEntries([...tensors].map(([k, v]) => [k, v.data]));
}

/** The MemoryPlan of a layout. */
function memoryOf(layout: PlanLayout): MemoryPlan {
  const m = layout.memory;
  return {
    weights: m.sharedBytes,
    activations: m.activationBytes,
    inputs: m.inputBytes,
    constants: m.residentBytes,
    uniforms: m.uniformBytes,
    total: m.sharedBytes + m.activationBytes + m.inputBytes + m.residentBytes + m.uniformBytes,
  };
}

/** Converts a feed to the GPU storage of `dtype` (f32, or i32 for integer and bool types). */
function toGpuFeed(name: string, dtype: DataType, feed: Feed): { dims: number[]; data: Float32Array | Int32Array } {
  let dims: number[];
  let values: ArrayLike<number | bigint>;
  if (Array.isArray(feed)) {
    dims = [];
    let level: unknown = feed;
    while (Array.isArray(level)) {
      dims.push(level.length);
      level = level[0];
    }
    const flat = (feed as unknown[]).flat(dims.length) as unknown[];
    if (flat.length !== sizeOf(dims) || flat.some((v) => typeof v !== 'number')) {
      throw new InputError(`input '${name}': nested arrays must be rectangular arrays of numbers`);
    }
    values = flat as number[];
  } else {
    dims = [...feed.dims];
    values = feed.data;
    if (values.length !== sizeOf(dims)) {
      throw new InputError(`input '${name}': ${values.length} values for dims [${dims.join(', ')}]`);
    }
  }
  const isFloat = FLOAT_TYPES.has(dtype);
  if (!isFloat && (values instanceof Float32Array || values instanceof Float64Array)) {
    throw new InputError(`input '${name}' is ${dtype}; got floating-point data`);
  }
  if (isFloat && (values instanceof BigInt64Array || values instanceof Int32Array)) {
    throw new InputError(`input '${name}' is ${dtype}; got integer data`);
  }
  if (isFloat) return { dims, data: values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>) };
  if (values instanceof Int32Array) return { dims, data: values };
  const data = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]!);
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new InputError(`input '${name}': element ${i} (${String(values[i])}) is not a 32-bit integer`);
    }
    data[i] = v;
  }
  return { dims, data };
}

/**
 * Loads a frozen transformer exported to ONNX. The files are read as streams: weights over 1 MiB go
 * to the GPU as they arrive (see LoadModelOptions.keepWeightsOnCpu), so memory holds the graph and
 * small tensors only; `onProgress` reports bytes and tensors as they land.
 * @param source URL of a Hugging Face model folder or of an `.onnx` file, the file's bytes, or
 *   `File`s (a picked folder); in Node also the file path of such a folder or `.onnx` file.
 *   External data is found by its location name, next to the `.onnx`.
 */
export async function loadModel(source: ModelSource, options: LoadModelOptions = {}): Promise<Model> {
  const gpu = options.device ?? (await createDevice());
  const weights = new WeightStore(gpu);
  const sink = options.keepWeightsOnCpu ? undefined : new GpuWeightSink(gpu, weights);
  let loaded: Awaited<ReturnType<typeof loadOnnx>>;
  try {
    loaded = await loadOnnx(source, { ...options, ...(sink ? { sink } : {}) });
  } catch (e) {
    sink?.abort();
    throw e;
  }
  let graph = loaded.graph;
  if (sink && sink.stats.size > 0) {
    const initializers = new Map([...graph.initializers].map(([k, v]) => [k, !v.data && sink.stats.has(k) ? { ...v, stats: sink.stats.get(k)! } : v]));
    graph = { ...graph, initializers };
  }
  const config = loaded.config as Record<string, unknown> | undefined;
  const declaredType = typeof config?.model_type === 'string' ? config.model_type : undefined;
  const modules = findModules(graph, { ...(options.moduleMap ? { moduleMap: options.moduleMap } : {}), ...(declaredType ? { modelType: declaredType } : {}) });
  const onnxFile: OnnxFile = { fileName: loaded.modelPath.split('/').pop() ?? loaded.modelPath, read: loaded.reread };
  return new Model(gpu, graph, config, modules, detectModelType(modules, config), weights, onnxFile);
}
