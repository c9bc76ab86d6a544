// Folding IA3 vectors into the frozen weights (PEFT's merge / unmerge / merge_and_unload), on the
// GPU and on the CPU, and the merged ONNX export; `MergeState` is the merged state of a PeftModel.
//
// IA3 scales a linear module's output (y·l: the weight's output axis and the bias) or, for a
// feed-forward module, its input (x·l: the weight's input axis). Which axis of the stored 2-D
// weight that is depends on its layout (ModuleInfo.weightLayout): [in, out] for MatMul and GPT-2's
// Conv1D (Gemm transB = 0), [out, in] for Gemm transB = 1. A fused QKV projection is one module
// whose output axis holds q, k and v: its vector covers all three, so nothing special is needed.
// A packed projection whose parts are modules of their own (the optimizer's BERT Attention, the
// genai builder's qkv_proj) scales each part's columns: full-length vectors, ones elsewhere.
//
// The GPU scales a float32 weight with the registry's element-wise Mul (broadcasting the vector as
// [n] or [n, 1]) into a scratch buffer, then copies the result over the weight's buffer, so every
// compiled plan that reads the weight sees the merged values without being rebuilt. The CPU copy is
// computed with the same single float32 product per element (Math.fround of an exact double
// product), and WGSL's f32 multiplication is correctly rounded, so both copies hold the same bits.
//
// A float16 weight (or bias) merges in float16, as PEFT does: `torch.mul(W_fp16, l_fp32)` promotes
// to float32 (the same single float32 product) and `.to(orig_dtype)` rounds it to the nearest half
// (ties to even, subnormals kept, past ±65504 to ±∞): `castBack`. The rounding is done on the CPU,
// not in WGSL, whose f32 → f16 conversions (pack2x16float, quantizeToF16) may round either way and
// are indeterminate past the half range; the rounded halves are then written over the weight's GPU
// buffer in the form it already has (packed `f16x2` words, or f32 for a widened one), so the weight
// stays half on the GPU and every plan keeps reading it. Unmerge divides in float32 by (l + 1e-8)
// and rounds back the same way: lossy in float16 (a rounded product divided and rounded again need
// not give the original half back), as in PEFT. `safe` checks the values as stored: a product that
// is finite in float32 but overflows float16 is refused too (PEFT checks the float32 product only,
// and would store ±∞).

import { GpuExecutionError, IA3Error, InputError } from '../errors.js';
import type { GpuContext } from '../gpu/device.js';
import { resolveBindings, type BoundProgram } from '../gpu/dispatch.js';
import { halfToFloat, type DataType } from '../ir/dtype.js';
import { initializerGpuData, type Graph, type Initializer } from '../ir/graph.js';
import { sizeOf, type ValueInfo } from '../ir/tensor.js';
import type { Model } from '../model.js';
import { rewriteOnnxTensors, type OnnxWithExternalData } from '../onnx/export.js';
import { moduleSites, type ModuleInfo } from '../onnx/modules.js';
import { f16round } from '../ops/elementwise.js';
import { OPS } from '../ops/registry.js';
import type { Adapter } from './adapter.js';
import type { SavedCopy } from './inject.js';

/** `merge({ safe: true })` found non-finite merged values (PEFT's message); nothing was changed. */
export class MergeError extends IA3Error {
  override readonly name: string = 'MergeError';
  readonly adapter: string;
  constructor(adapter: string, detail: string) {
    super('MERGE_NON_FINITE', `NaNs detected in the merged weights. The adapter ${adapter} seems to be broken (${detail})`);
    this.adapter = adapter;
  }
}

/** PEFT's tolerance added to the vector when dividing it out again (ia3/layer.py `unmerge`). */
export const UNMERGE_EPSILON = 1e-8;

/** One scaling of a weight or bias tensor: every slice along `axis` multiplied by one vector element. */
export interface ScaleStep {
  readonly initializer: string;
  readonly dims: readonly number[];
  /** The axis the vector runs along (0 or 1 of a 2-D weight; 0 of a bias). */
  readonly axis: number;
  readonly vector: Float32Array;
}

/** The tensors an IA3 vector of `module` scales, with their axes (PEFT's Linear.merge). */
export function mergeSteps(graph: Graph, module: ModuleInfo, feedforward: boolean, vector: Float32Array): ScaleStep[] {
  const weight = graph.initializers.get(module.weight);
  if (!weight) throw new InputError(`module '${module.path}': weight initializer '${module.weight}' not found`);
  // [in, out] stores the output axis last; [out, in] stores it first.
  const outAxis = module.weightLayout === 'in_out' ? 1 : 0;
  const axis = feedforward ? 1 - outAxis : outAxis;
  // A part of a packed weight or bias scales its own columns: ones elsewhere change nothing.
  const within = (length: number, start: number): Float32Array => {
    if (start === 0 && length === vector.length) return vector;
    if (start + vector.length > length) throw new InputError(`module '${module.path}': ${vector.length} values from ${start} do not fit ${length}`);
    const full = new Float32Array(length).fill(1);
    full.set(vector, start);
    return full;
  };
  const steps: ScaleStep[] = [{ initializer: module.weight, dims: weight.dims, axis, vector: module.part && !feedforward ? within(weight.dims[axis]!, module.part.start) : vector }];
  if (!feedforward && module.bias) {
    const bias = graph.initializers.get(module.bias.initializer);
    if (!bias) throw new InputError(`module '${module.path}': bias initializer '${module.bias.initializer}' not found`);
    steps.push({ initializer: module.bias.initializer, dims: bias.dims, axis: 0, vector: module.bias.offset !== undefined ? within(bias.dims[0]!, module.bias.offset) : vector });
  }
  for (const s of steps) {
    if (s.dims[s.axis] !== s.vector.length || (s.dims.length !== 2 && s.dims.length !== 1)) {
      throw new InputError(`module '${module.path}': a vector of ${s.vector.length} values cannot scale axis ${s.axis} of '${s.initializer}' [${s.dims.join(', ')}]`);
    }
  }
  return steps;
}

/**
 * Checks that folding vectors into these modules' weights changes nothing but the modules: float32
 * or float16 weights read only by the module's own node (a tied weight would also change its other
 * readers), and no Transpose between weight and MatMul (a compiled plan may hold the transposed
 * weight as a constant folded on the CPU, which writing the weight's buffer would not update).
 */
export function checkMergeable(graph: Graph, modules: readonly ModuleInfo[], options: { readonly gpu: boolean }): void {
  const readers = new Map<string, string[]>();
  for (const n of graph.nodes) {
    for (const i of new Set(n.inputs)) if (i) readers.set(i, [...(readers.get(i) ?? []), n.name]);
  }
  const nodes = new Map(graph.nodes.map((n) => [n.name, n]));
  // A half bias read through an exact `Cast(to=FLOAT)` that only the module reads is the module's own.
  const widensFor = (reader: string, own: ReadonlySet<string>): boolean => {
    const n = nodes.get(reader);
    return n?.opType === 'Cast' && Number(n.attrs.to) === 1 && (readers.get(n.outputs[0]!) ?? []).every((r) => own.has(r));
  };
  const problems: string[] = [];
  for (const m of modules) {
    const own = new Set(moduleSites(m).flatMap((x) => [x.node, x.transpose, x.bias?.node, x.bias?.split]).filter((n): n is string => !!n));
    for (const name of [m.weight, m.bias?.initializer].filter((n): n is string => !!n)) {
      const init = graph.initializers.get(name)!;
      // Quantised weights are refused rather than requantised (lossy: PEFT's bnb merge dequantises,
      // scales and quantises again, and warns so); the same adapter merges into the fp32 export of
      // the model, whose modules and keys are these. Half weights merge in half (see the header).
      if (init.storage?.startsWith('q4b')) {
        problems.push(`'${name}' of module '${m.path}' is a 4-bit weight (MatMulNBits); merging would requantise it (lossy): load this adapter into the model's fp32 export and merge or export there`);
      } else if (init.storage && init.storage !== 'f16x2') {
        problems.push(`'${name}' of module '${m.path}' is an 8-bit weight (DequantizeLinear or MatMulInteger); merging would requantise it (lossy): load this adapter into the model's fp32 export and merge or export there`);
      } else if (init.dtype !== 'float32' && init.dtype !== 'float16') {
        problems.push(`'${name}' of module '${m.path}' is ${init.dtype}; merging supports float32 and float16 weights: load this adapter into the model's fp32 export and merge or export there`);
      }
      const others = (readers.get(name) ?? []).filter((r) => !own.has(r) && !widensFor(r, own));
      if (others.length > 0) {
        problems.push(`initializer '${name}' of module '${m.path}' is also read by node${others.length > 1 ? 's' : ''} ${others.map((o) => `'${o}'`).join(', ')} (tied weights): merging would change ${others.length > 1 ? 'them' : 'it'} too`);
      }
    }
    if (options.gpu && m.transpose) {
      problems.push(`module '${m.path}' reads its weight '${m.weight}' through Transpose node '${m.transpose}', whose folded result compiled plans keep`);
    }
    if (options.gpu && m.bias?.split) {
      problems.push(`module '${m.path}' reads its bias from the packed '${m.bias.initializer}' through Split node '${m.bias.split}' (a fused attention's bias), whose folded result compiled plans keep`);
    }
  }
  if (problems.length > 0) throw new InputError(`cannot merge the adapters into the weights:\n  ${problems.join('\n  ')}`);
}

/**
 * One step per tensor: the parts of a packed projection scale disjoint columns of one weight, so
 * their full-length vectors (ones outside each part) multiply exactly into one. (GPU jobs must
 * write distinct buffers.)
 */
export function combineSteps(steps: readonly ScaleStep[]): ScaleStep[] {
  const byTensor = new Map<string, ScaleStep>();
  for (const s of steps) {
    const prev = byTensor.get(s.initializer);
    if (!prev) byTensor.set(s.initializer, s);
    else if (prev.axis !== s.axis || prev.vector.length !== s.vector.length) {
      throw new InputError(`'${s.initializer}' would be scaled along two different axes by one adapter`);
    } else byTensor.set(s.initializer, { ...prev, vector: prev.vector.map((v, i) => v * s.vector[i]!) });
  }
  return [...byTensor.values()];
}

/** `data` (shape `dims`) with every slice along `axis` multiplied (or divided) by `vector`, in float32. */
export function scaleCpu(data: ArrayLike<number>, dims: readonly number[], axis: number, vector: Float32Array, op: 'mul' | 'div' = 'mul'): Float32Array {
  const out = new Float32Array(data.length);
  // Row-major: along axis 0 of [r, c] the vector index is i / c; along the last axis it is i % c.
  const inner = axis === 0 && dims.length === 2 ? dims[1]! : 1;
  const n = vector.length;
  for (let i = 0; i < out.length; i++) {
    const v = vector[inner === 1 ? i % n : Math.floor(i / inner)]!;
    out[i] = op === 'mul' ? data[i]! * v : data[i]! / v;
  }
  return out;
}

/**
 * `values` (float32) as a tensor of `dtype` holds them: PyTorch's `.to(orig_dtype)` after PEFT's
 * float32 product. float16 rounds each value to the nearest half (ties to even, subnormals kept,
 * past ±65504 to ±∞) and keeps it widened (the IR's float16 data); float32 is returned as it is.
 */
export function castBack(dtype: DataType, values: Float32Array): Float32Array {
  return dtype === 'float16' ? values.map(f16round) : values;
}

/**
 * One merge (or unmerge) step on CPU values as PEFT computes it for a tensor of `dtype`: the
 * float32 product (or quotient) with the vector, cast back to `dtype`.
 */
export function scaleAs(dtype: DataType, data: ArrayLike<number>, s: ScaleStep, op: 'mul' | 'div' = 'mul'): Float32Array {
  return castBack(dtype, scaleCpu(data, s.dims, s.axis, s.vector, op));
}

/** PEFT's unmerge divisor, `l + 1e-8` in float32 (PyTorch adds the scalar in the tensor's dtype). */
export function unmergeDivisor(vector: Float32Array): Float32Array {
  const eps = Math.fround(UNMERGE_EPSILON);
  return vector.map((v) => v + eps);
}

/** True when every value is finite; else the index of the first that is not. */
export function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

/**
 * `safe` merging's check of one merged tensor: `stored` (the float32 `product` cast back to the
 * tensor's dtype) must be finite, else MergeError naming the tensor, the element, and a float16
 * overflow when the float32 product itself was finite.
 */
export function checkFinite(adapter: string, name: string, product: Float32Array, stored: Float32Array): void {
  const at = firstNonFinite(stored);
  if (at < 0) return;
  const overflow = Number.isFinite(product[at]!) ? ` (the float32 product ${product[at]} overflows float16, whose largest finite value is 65504)` : '';
  throw new MergeError(adapter, `'${name}' element ${at} would be ${stored[at]}${overflow}`);
}

/**
 * Scales GPU buffers in place: for each job, `buffer ← buffer ⊙ vector` (broadcast along `axis`),
 * with the registry's Mul lowering writing a scratch buffer that is then copied over `buffer`.
 * The jobs' buffers must be distinct. Returns once the GPU has validated the work.
 */
export async function scaleGpu(gpu: GpuContext, jobs: readonly (ScaleStep & { readonly buffer: GPUBuffer })[]): Promise<void> {
  if (jobs.length === 0) return;
  const pool = gpu.buffers;
  const held: GPUBuffer[] = [];
  try {
    const steps: BoundProgram[] = [];
    const copies: { from: GPUBuffer; to: GPUBuffer; bytes: number }[] = [];
    for (const job of jobs) {
      const x: ValueInfo = { dtype: 'float32', dims: [...job.dims] };
      const l: ValueInfo = { dtype: 'float32', dims: job.axis === 0 && job.dims.length === 2 ? [job.vector.length, 1] : [job.vector.length] };
      const ctx = { opType: 'Mul', nodeName: `merge/${job.initializer}`, opset: 17, device: gpu.traits };
      const outTypes = OPS.Mul.shape([x, l], {}, ctx);
      const lowering = OPS.Mul.gpu === 'fold' ? undefined : OPS.Mul.gpu([x, l], outTypes, {}, ctx);
      if (!lowering || 'alias' in lowering) throw new Error('merge: the Mul lowering is not a GPU kernel');
      const bytes = 4 * sizeOf(job.dims);
      const vec = gpu.upload(job.vector);
      const out = pool.acquire(bytes, `merge/${job.initializer}`);
      const temps = (lowering.temps ?? []).map((b) => pool.acquire(Math.max(4, b)));
      held.push(vec, out, ...temps);
      steps.push(...resolveBindings(lowering, { inputs: [job.buffer, vec], outputs: [out], temps }, ctx.nodeName));
      copies.push({ from: out, to: job.buffer, bytes });
    }
    await gpu.run(steps);
    gpu.device.pushErrorScope('validation');
    const enc = gpu.device.createCommandEncoder({ label: 'merge' });
    for (const c of copies) enc.copyBufferToBuffer(c.from, 0, c.to, 0, c.bytes);
    gpu.device.queue.submit([enc.finish()]);
    const err = await gpu.device.popErrorScope();
    if (err) throw new GpuExecutionError(`merge: copying the merged weights failed: ${err.message}`);
  } finally {
    // Released buffers may be reused by later submissions only, which the queue orders after this one.
    for (const b of held) pool.release(b);
  }
}

// ---------------------------------------------------------------------------------------------
// The merged state of a PeftModel: PEFT's merge_adapter / unmerge_adapter / merge_and_unload, and
// the merged ONNX export.

/** PEFT's warnings (Python `warnings.warn`) go to the console. */
export function warn(message: string): void {
  console.warn(message);
}

/** What merging reads of a PeftModel. */
export interface MergeHost {
  readonly base: Model;
  adapter(name: string): Adapter;
  /** The active adapters' modules_to_save substitutions. */
  savedInUse(): SavedCopy[];
  /** The rewritten models whose graphs hold the base model's initializers (variants). */
  variants(): Model[];
}

/**
 * Adapters folded into the frozen weights, in merge order (PEFT's `merged_adapters`), and the
 * initializers whose values merging replaced. The GPU copies are scaled in place (every compiled
 * plan keeps working); the CPU copies are new Initializer objects in the base model and every
 * variant (the original data may be a view into the file's bytes, which must stay the original for
 * export).
 */
export class MergeState {
  private list: string[] = [];
  private readonly touched = new Set<string>();

  constructor(private readonly host: MergeHost) {}

  get merged(): readonly string[] {
    return this.list;
  }

  /** Merges `names` (known adapters, in order) after PEFT's checks and warnings; all-or-nothing. */
  async merge(names: readonly string[], safe: boolean): Promise<void> {
    if (this.list.length > 0) {
      names = names.filter((n) => !this.list.includes(n));
      if (names.length === 0) {
        warn('All adapters are already merged, nothing to do.'); // PEFT's warning
        return;
      }
      warn(`Already following adapters were merged ${this.list.join(',')}. You are now additionally merging ${names.join(',')}.`);
    }
    if (names.length === 0) return;
    const base = this.host.base;
    const graph = base.graph;
    const rounds = names.map((n) => ({ adapter: n, steps: this.vectorSteps(n, (v) => v) }));
    const modules = [...new Map(names.flatMap((n) => this.host.adapter(n).targets.map((t) => [t.module.path, t.module] as const))).values()];
    checkMergeable(graph, modules, { gpu: true });
    const replaced = new Set(this.host.savedInUse().map((s) => s.replace));
    const clash = modules.filter((m) => replaced.has(m.weight) || (m.bias && replaced.has(m.bias.initializer)));
    if (clash.length > 0) throw new InputError(`cannot merge into modules whose weights a modules_to_save copy replaces: ${clash.map((m) => `'${m.path}'`).join(', ')}`);
    // CPU first: every result computed (and checked when safe) before anything changes. Each
    // adapter's product is cast back to the tensor's dtype before the next one (PEFT's loop).
    const values = new Map<string, Float32Array>();
    const dtype = (name: string): DataType => graph.initializers.get(name)!.dtype;
    for (const r of rounds) {
      for (const s of r.steps) {
        const product = scaleCpu(values.get(s.initializer) ?? (await this.cpuValues(graph, s.initializer)), s.dims, s.axis, s.vector);
        const next = castBack(dtype(s.initializer), product);
        if (safe) checkFinite(r.adapter, s.initializer, product, next);
        values.set(s.initializer, next);
      }
    }
    // float32 tensors are scaled on the GPU (the same bits); float16 ones get the CPU's rounded halves.
    for (const r of rounds) {
      await scaleGpu(base.gpu, r.steps.filter((s) => dtype(s.initializer) === 'float32').map((s) => ({ ...s, buffer: this.weightBuffer(s.initializer) })));
    }
    this.write(this.replace(values).filter((i) => i.dtype !== 'float32'));
    this.list.push(...names);
  }

  /** Divides the merged vectors out again, last merged first, on the CPU; writes the GPU copies. */
  unmerge(): void {
    if (this.list.length === 0) {
      warn('Already unmerged. Nothing to do.'); // PEFT's warning
      return;
    }
    warn('Unmerge result can be inaccurate for (IA)^3.'); // PEFT's warning
    const graph = this.host.base.graph;
    const values = new Map<string, Float32Array>();
    for (const adapter of [...this.list].reverse()) {
      for (const s of this.vectorSteps(adapter, unmergeDivisor)) {
        // Merging gave every weight it touched CPU values (read back from the GPU if need be).
        const init = graph.initializers.get(s.initializer)!;
        values.set(s.initializer, scaleAs(init.dtype, values.get(s.initializer) ?? (init.data as Float32Array), s, 'div'));
      }
    }
    this.write(this.replace(values));
    this.list = [];
  }

  /** Writes the active modules_to_save copies into the frozen weights they replace (merge_and_unload). */
  foldSavedCopies(): void {
    const saved = this.host.savedInUse();
    const graph = this.host.base.graph;
    checkMergeable(graph, [...new Set(saved.map((s) => s.module))], { gpu: false });
    const values = new Map(saved.map((s) => [s.replace, castBack(graph.initializers.get(s.replace)!.dtype, Float32Array.from(s.by.data as Float32Array))]));
    this.write(this.replace(values));
  }

  /**
   * The original ONNX file with the weights `run` uses: the `active` adapters' vectors folded in
   * (unless already merged) and their modules_to_save copies; `active` empty when disabled.
   */
  async exportOnnx(active: readonly string[]): Promise<OnnxWithExternalData> {
    const source = this.host.base.onnxFile;
    if (!source) throw new InputError('exportMergedOnnx needs a model loaded from an ONNX file by loadModel (this graph was built in code)');
    const graph = this.host.base.graph;
    const values = new Map<string, Float32Array>();
    for (const name of this.touched) values.set(name, graph.initializers.get(name)!.data as Float32Array);
    if (active.length > 0) {
      if (this.list.length === 0) {
        checkMergeable(graph, [...new Map(active.flatMap((n) => this.host.adapter(n).targets.map((t) => [t.module.path, t.module] as const))).values()], { gpu: false });
        for (const a of active) {
          for (const s of this.vectorSteps(a, (v) => v)) {
            values.set(s.initializer, scaleAs(graph.initializers.get(s.initializer)!.dtype, values.get(s.initializer) ?? (await this.cpuValues(graph, s.initializer)), s));
          }
        }
      }
      const saved = this.host.savedInUse();
      checkMergeable(graph, [...new Set(saved.map((s) => s.module))], { gpu: false });
      for (const s of saved) values.set(s.replace, castBack(graph.initializers.get(s.replace)!.dtype, s.by.data as Float32Array));
    }
    // The file was not kept: read it again (its URL, Files, or the bytes loadModel was given).
    return rewriteOnnxTensors(await source.read(), values);
  }

  /**
   * A frozen float32 or float16 weight's values on the CPU (float16 widened): its data, or a
   * read-back of its GPU copy (f32, or packed halves) for a weight that streamed to the GPU only at
   * load (unmerged: the GPU holds the file's values).
   */
  private async cpuValues(graph: Graph, name: string): Promise<Float32Array> {
    const init = graph.initializers.get(name)!;
    if (init.data) return init.data as Float32Array;
    const buffer = this.host.base.weights.get(name);
    if (!buffer) throw new InputError(`weight '${name}' is on the GPU in blocks (over the device's binding limit): merging it is not supported`);
    const n = sizeOf(init.dims);
    if (init.storage !== 'f16x2') return new Float32Array(await this.host.base.gpu.read(buffer, 4 * n));
    return Float32Array.from(new Uint16Array(await this.host.base.gpu.read(buffer, 2 * n + (n % 2) * 2), 0, n), halfToFloat);
  }

  /** The weight and bias scalings of an adapter's vectors (each vector mapped by `f`), one per tensor. */
  private vectorSteps(adapter: string, f: (v: Float32Array) => Float32Array): ScaleStep[] {
    const a = this.host.adapter(adapter);
    return combineSteps(a.targets.flatMap((t) => mergeSteps(this.host.base.graph, t.module, t.feedforward, f(a.params.find((p) => p.target === t)!.values))));
  }

  /** The GPU copy of a frozen weight, uploaded now if no plan has needed it yet. */
  private weightBuffer(name: string): GPUBuffer {
    const b = this.host.base.weightBuffer(name);
    if (!b) throw new InputError(`weight '${name}' has no GPU form`);
    return b;
  }

  /**
   * New CPU values for frozen initializers, in the base model and every variant holding them (each
   * keeps its GPU storage); returns the new initializers.
   */
  private replace(values: ReadonlyMap<string, Float32Array>): Initializer[] {
    const base = this.host.base;
    const olds = [...values.keys()].map((name) => base.graph.initializers.get(name)!);
    const nexts = olds.map((old): Initializer => {
      const data = values.get(old.name)!;
      return { name: old.name, dtype: old.dtype, dims: old.dims, data, ...(old.constant ? { constant: true } : {}), ...(old.storage ? { storage: old.storage } : {}) };
    });
    for (const m of [base, ...this.host.variants()]) m.replaceInitializers(nexts.filter((_, i) => m.graph.initializers.get(olds[i]!.name) === olds[i]));
    for (const name of values.keys()) this.touched.add(name);
    return nexts;
  }

  /** Writes initializers' new values over their resident GPU copies, in the form each has there (f32, packed halves). */
  private write(inits: readonly Initializer[]): void {
    for (const init of inits) this.host.base.weights.write(init.name, initializerGpuData(init)!);
  }
}
