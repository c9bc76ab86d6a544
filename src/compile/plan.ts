// Static execution plans: a shape-specialised graph compiled once, replayed as one command buffer.
//
// Compilation has two phases. `layoutPlan` is pure: it lowers every node through the op registry
// and assigns buffers by liveness — a value lives from its defining node to its last reader (views
// such as Reshape share their source's buffer and extend its life), and values whose lives do not
// overlap share a slot, assigned largest first — and checks every buffer against the device's
// limits, so a tensor that cannot fit is a SizeLimitError naming it before any GPU work. Its byte
// counts (slots, inputs, constants, uniform buffers) are the
// plan's memory, known before anything is allocated (`Model.memoryPlan`). `Plan.compile` then
// allocates exactly that layout: weights and constants uploaded once and resident, graph inputs in
// their own buffers that `execute` overwrites, one pooled buffer per slot; pipelines, uniform
// buffers and bind groups are all built here, so a step only records dispatches: no allocation, no
// compilation, no CPU readback.

import { GpuExecutionError, ShapeError, SizeLimitError } from '../errors.js';
import { sizeClass } from '../gpu/buffers.js';
import type { GpuContext } from '../gpu/device.js';
import { DispatchList, resolveBindings, type BoundProgram, type LoweringSteps } from '../gpu/dispatch.js';
import { uniformLayout } from '../gpu/kernel.js';
import { bindingLimit, type DeviceTraits } from '../gpu/traits.js';
import { residentBytes, type PlanGraph, type PlanNode } from '../ir/static-graph.js';
import { gpuArrayOf, sizeOf, type ValueInfo } from '../ir/tensor.js';
import { OPS, isOpType } from '../ops/registry.js';
import type { LoweringContext, OpDef } from '../ops/types.js';

export interface CompileOptions {
  /** Lower for these traits instead of the device's own (tests asking for a kernel variant). */
  readonly device?: DeviceTraits;
  /** The layout `layoutPlan` gave for this graph and device (computed again when absent). */
  readonly layout?: PlanLayout;
}

export interface PlanMemory {
  /** Bytes of resident tensors this plan uploads (weights and constants it owns). */
  residentBytes: number;
  /** Bytes of resident buffers the plan reads from elsewhere (the model's weight store). */
  sharedBytes: number;
  /** Peak bytes of activations and scratch buffers live at once during a step (their slots). */
  activationBytes: number;
  /** Bytes of the runtime input buffers. */
  inputBytes: number;
  /** Bytes of the dispatches' uniform buffers (a few dozen each). */
  uniformBytes: number;
}

/** Where a lowered node's buffers live: op inputs by value name, outputs and temps by slot. */
interface LoweredNode {
  readonly node: PlanNode;
  readonly lowering: LoweringSteps;
  readonly temps: readonly number[];
}

/** The pure result of planning: lowerings, slot sizes, which slot holds each value, the bytes. */
export interface PlanLayout {
  readonly lowered: readonly LoweredNode[];
  /** Bytes of each activation slot (a size class). */
  readonly slots: readonly number[];
  /** Activation value → slot (views are in `views`). */
  readonly valueSlot: ReadonlyMap<string, number>;
  /** View (Reshape, Squeeze, …) → the value whose buffer it shares. */
  readonly views: ReadonlyMap<string, string>;
  /** Runtime input → bytes of its buffer. */
  readonly inputs: ReadonlyMap<string, number>;
  /** Resident values this plan uploads itself (not shared), with their bytes. */
  readonly uploads: ReadonlyMap<string, number>;
  readonly memory: PlanMemory;
}

/**
 * Lowers every node and assigns buffers by liveness, without touching a GPU. Throws SizeLimitError for
 * a value, input, weight or scratch buffer larger than the device's binding limit, ShapeError for
 * a node the registry cannot lower. `sharedBytes(name)` gives the size of a resident tensor held
 * elsewhere (the model's weight store; by default `graph.shared`), undefined for one the plan uploads.
 */
export function layoutPlan(graph: PlanGraph, device: DeviceTraits, sharedBytes: (name: string) => number | undefined = (name) => graph.shared?.get(name)?.size): PlanLayout {
  const limit = bindingLimit(device);
  const limitName = device.limits.maxStorageBufferBindingSize <= device.limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  const check = (name: string, bytes: number, what: string, producer?: string): void => {
    if (!(bytes <= limit)) {
      throw SizeLimitError.binding(name, bytes, limit, limitName, `${what} cannot be split to fit one binding; use a shorter sequence or a smaller batch (a plan needs every tensor it binds under the limit)`, producer);
    }
  };
  const memory: PlanMemory = { residentBytes: 0, sharedBytes: 0, activationBytes: 0, inputBytes: 0, uniformBytes: 0 };

  const consumed = new Set(graph.nodes.flatMap((n) => n.inputs).filter((s) => s !== ''));
  const uploads = new Map<string, number>();
  const resident = new Set<string>();
  for (const name of consumed) {
    const shared = sharedBytes(name);
    if (shared !== undefined) {
      memory.sharedBytes += shared;
      resident.add(name);
      continue;
    }
    const r = graph.resident.get(name);
    if (!r) continue;
    // A weight kept packed (ir/dtype.ts) takes the bytes of its words, not 4 per element.
    const bytes = Math.max(16, Math.ceil(residentBytes(r) / 16) * 16);
    check(name, bytes, 'this weight or constant');
    uploads.set(name, bytes);
    memory.residentBytes += bytes;
    resident.add(name);
  }
  const inputs = new Map<string, number>();
  for (const inp of graph.inputs) {
    const bytes = sizeClass(4 * Math.max(1, sizeOf(inp.type.dims)), limit);
    check(inp.name, 4 * sizeOf(inp.type.dims), 'this runtime input');
    inputs.set(inp.name, bytes);
    memory.inputBytes += bytes;
  }

  // Liveness: index of the last node reading each value (outputs live to the end).
  const lastUse = new Map<string, number>();
  graph.nodes.forEach((n, i) => n.inputs.forEach((v) => v && lastUse.set(v, i)));
  for (const o of [...graph.outputs, ...(graph.checks ?? []).map((c) => c.value)]) lastUse.set(o, Infinity);
  for (const parts of graph.outputParts?.values() ?? []) for (const p of parts) lastUse.set(p, Infinity);
  // Views share a slot with their source: the root value owns it, and lives as long as any view.
  const root = new Map<string, string>();
  const rootOf = (v: string): string => root.get(v) ?? v;

  // Every activation and scratch buffer is an interval of nodes [defined, last read]; slots are
  // assigned once all intervals are known (below).
  interface Interval {
    readonly bytes: number;
    readonly start: number;
    end: number;
    slot: number;
  }
  const intervals: Interval[] = [];
  const open = new Map<string, Interval>();
  const interval = (bytes: number, start: number): Interval => {
    const iv = { bytes: Math.max(4, bytes), start, end: start, slot: -1 };
    intervals.push(iv);
    return iv;
  };
  const valueInterval = new Map<string, Interval>();
  const persistent = new Set<string>([...inputs.keys(), ...resident]);
  const lowered: (Omit<LoweredNode, 'temps'> & { temps: Interval[] })[] = [];

  const infoOf = (name: string): ValueInfo | undefined => {
    if (name === '') return undefined;
    const type = graph.types.get(name);
    if (!type) throw new Error(`plan: value '${name}' has no type`);
    const value = graph.constants.get(name);
    const storage = graph.resident.get(name)?.storage;
    return value || storage ? { ...type, ...(value ? { value } : {}), ...(storage ? { storage } : {}) } : type;
  };

  for (let i = 0; i < graph.nodes.length; i++) {
    const node = graph.nodes[i]!;
    const ctx: LoweringContext = { opType: node.opType, nodeName: node.name, opset: node.opset, numOutputs: node.outputs.length, device };
    if (!isOpType(node.opType)) throw new ShapeError(node.opType, node.name, 'no such op in the registry');
    const def: OpDef = OPS[node.opType];
    if (def.gpu === 'fold') {
      throw new ShapeError(node.opType, node.name, 'is computed on the CPU at specialisation and cannot run in a plan');
    }
    const inInfos = node.inputs.map(infoOf);
    inInfos.forEach((info, k) => {
      if (info?.storage && !(def.packedInputs?.includes(k) && (def.packedStorage?.(info.storage) ?? true))) {
        throw new ShapeError(node.opType, node.name, `input ${k} '${node.inputs[k]}' is a weight stored ${info.storage}, which this op's kernel does not read`);
      }
    });
    const outTypes = node.outputs.map((o) => {
      const t = graph.types.get(o);
      if (!t) throw new Error(`plan: output '${o}' of ${node.name} has no type`);
      return t;
    });
    const lowering = def.gpu(inInfos, outTypes, node.attrs, ctx);
    if ('alias' in lowering) {
      const src = node.inputs[lowering.alias]!;
      const out = node.outputs[0]!;
      const r = rootOf(src);
      root.set(out, r);
      lastUse.set(r, Math.max(lastUse.get(r) ?? -1, lastUse.get(out) ?? -1));
    } else {
      node.outputs.forEach((o, k) => {
        const bytes = 4 * sizeOf(outTypes[k]!.dims);
        check(o, bytes, 'this activation', `${node.opType} node '${node.name}' output ${k}`);
        const iv = interval(bytes, i);
        valueInterval.set(o, iv);
        open.set(o, iv);
      });
      const temps = (lowering.temps ?? []).map((bytes) => {
        check(`${node.name}.tmp`, bytes, `scratch memory of ${node.opType} node '${node.name}'`);
        return interval(bytes, i);
      });
      lowered.push({ node, lowering, temps });
      // DispatchList.prepare writes one uniform buffer per dispatch it records.
      for (const { program } of lowering.steps) {
        if (program.kernel.uniforms.length > 0 && !program.workgroups.some((w) => w === 0)) memory.uniformBytes += uniformLayout(program.kernel).size;
      }
    }
    // Values whose last use is this node (or that nothing reads) end here.
    for (const v of new Set([...node.inputs, ...node.outputs])) {
      if (!v) continue;
      const r = rootOf(v);
      if ((lastUse.get(r) ?? -1) <= i && !persistent.has(r)) {
        const iv = open.get(r);
        if (iv) iv.end = i;
        open.delete(r);
        persistent.add(r); // ended once only
      }
    }
  }
  for (const iv of open.values()) iv.end = Infinity;

  // Slots by greedy-by-size assignment (as TFLite's shared-object planner): largest buffers first,
  // each into the smallest slot whose buffers' intervals it does not overlap, else a new slot of
  // its size class. Buffers of different sizes then share memory (a scratch buffer of the loss
  // forward, the backward's transients), so the slots' sum stays near the peak of live bytes.
  const slots: number[] = [];
  const hosted: Interval[][] = [];
  const overlaps = (a: Interval, b: Interval): boolean => a.start <= b.end && b.start <= a.end;
  for (const iv of [...intervals].sort((a, b) => b.bytes - a.bytes || a.start - b.start)) {
    let best = -1;
    for (let k = 0; k < slots.length; k++) {
      if (slots[k]! < iv.bytes || (best >= 0 && slots[k]! >= slots[best]!)) continue;
      if (!hosted[k]!.some((h) => overlaps(h, iv))) best = k;
    }
    if (best < 0) {
      best = slots.push(sizeClass(iv.bytes, limit)) - 1;
      hosted.push([]);
    }
    hosted[best]!.push(iv);
    iv.slot = best;
  }
  const valueSlot = new Map([...valueInterval].map(([v, iv]) => [v, iv.slot]));
  const assigned = lowered.map((l) => ({ ...l, temps: l.temps.map((iv) => iv.slot) }));
  memory.activationBytes = slots.reduce((s, b) => s + b, 0);
  return { lowered: assigned, slots, valueSlot, views: root, inputs, uploads, memory };
}

/** A compiled plan. Create with `Plan.compile`; release GPU memory with `destroy`. */
export class Plan {
  private constructor(
    private readonly gpu: GpuContext,
    readonly graph: PlanGraph,
    private readonly dispatches: DispatchList,
    /** Buffer holding each value (aliases share). */
    readonly buffers: ReadonlyMap<string, GPUBuffer>,
    private readonly owned: readonly GPUBuffer[],
    readonly memory: PlanMemory,
  ) {}

  /** Number of GPU dispatches one execution records. */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  static async compile(gpu: GpuContext, graph: PlanGraph, options: CompileOptions = {}): Promise<Plan> {
    gpu.assertAlive();
    const layout = options.layout ?? layoutPlan(graph, options.device ?? gpu.traits);
    const pool = gpu.buffers;
    const buffers = new Map<string, GPUBuffer>();
    const owned: GPUBuffer[] = [];
    try {
      for (const name of new Set(graph.nodes.flatMap((n) => n.inputs))) {
        const shared = graph.shared?.get(name);
        if (shared && !layout.uploads.has(name)) buffers.set(name, shared);
      }
      for (const name of layout.uploads.keys()) {
        const data = graph.resident.get(name)!.data;
        if (!data) throw new Error(`plan: resident '${name}' has no data and no shared buffer`);
        const b = gpu.upload(data, name, true);
        buffers.set(name, b);
        owned.push(b);
      }
      for (const [name, bytes] of layout.inputs) {
        const b = pool.acquire(bytes, name);
        buffers.set(name, b);
        owned.push(b);
      }
      const slotBuffers = layout.slots.map((bytes, k) => {
        const b = pool.acquire(bytes, `slot${k}`);
        owned.push(b);
        return b;
      });
      for (const [v, slot] of layout.valueSlot) buffers.set(v, slotBuffers[slot]!);
      for (const [v, r] of layout.views) {
        const b = buffers.get(r);
        if (b) buffers.set(v, b);
      }
      const steps: BoundProgram[] = [];
      for (const { node, lowering, temps } of layout.lowered) {
        const slots = {
          inputs: node.inputs.map((name) => (name ? buffers.get(name) : undefined)),
          outputs: node.outputs.map((o) => buffers.get(o)!),
          temps: temps.map((t) => slotBuffers[t]!),
        };
        steps.push(...resolveBindings(lowering, slots, `plan: node '${node.name}'`).map((b) => ({ ...b, label: node.name })));
      }
      const dispatches = await DispatchList.prepare(gpu, steps);
      return new Plan(gpu, graph, dispatches, buffers, owned, { ...layout.memory });
    } catch (e) {
      for (const b of owned) pool.release(b);
      throw e;
    }
  }

  /** Writes runtime inputs into their buffers. */
  writeInputs(feeds: ReadonlyMap<string, Float32Array | Int32Array>): void {
    for (const inp of this.graph.inputs) {
      const data = feeds.get(inp.name);
      if (!data) throw new Error(`plan: input '${inp.name}' not fed`);
      this.gpu.write(this.buffers.get(inp.name)!, data);
    }
  }

  /** Records every dispatch of one execution into `encoder` (one compute pass). */
  encode(encoder: GPUCommandEncoder): void {
    const pass = encoder.beginComputePass();
    this.dispatches.encode(pass);
    pass.end();
  }

  /**
   * Profiling, not for the hot path: runs the written inputs once, one dispatch per awaited
   * submission (`DispatchList.profile`), and returns each dispatch's node name (`label`), kernel
   * and milliseconds.
   */
  profile(): Promise<{ label: string; kernel: string; ms: number }[]> {
    this.gpu.assertAlive();
    return this.dispatches.profile();
  }

  /** Runs the plan once on `feeds` and reads back the named outputs. */
  async execute(
    feeds: ReadonlyMap<string, Float32Array | Int32Array>,
    read: readonly string[] = this.graph.outputs,
  ): Promise<Map<string, Float32Array | Int32Array>> {
    this.gpu.assertAlive();
    this.writeInputs(feeds);
    const device = this.gpu.device;
    device.pushErrorScope('validation');
    const enc = device.createCommandEncoder({ label: 'plan' });
    this.encode(enc);
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) throw new GpuExecutionError(`plan execution failed: ${err.message}`);
    const out = new Map<string, Float32Array | Int32Array>();
    await Promise.all(read.map(async (name) => out.set(name, await this.read(name))));
    return out;
  }

  /** Whether `value` can be read after an execution (it has a buffer, or parts that do). */
  has(value: string): boolean {
    return this.buffers.has(value) || (this.graph.outputParts?.has(value) ?? false);
  }

  /** Reads a value back (its parts one after another, for an output computed in parts). */
  private async read(name: string): Promise<Float32Array | Int32Array> {
    const type = this.graph.types.get(name);
    if (!type) throw new Error(`plan: '${name}' is not a value of this plan`);
    const parts = this.graph.outputParts?.get(name);
    if (!parts) {
      const buf = this.buffers.get(name);
      if (!buf) throw new Error(`plan: '${name}' is not a value of this plan`);
      return gpuArrayOf(type, await this.gpu.read(buf, 4 * sizeOf(type.dims)));
    }
    const out = gpuArrayOf(type, new ArrayBuffer(4 * sizeOf(type.dims)));
    let at = 0;
    for (const p of parts) {
      const buf = this.buffers.get(p);
      const t = this.graph.types.get(p);
      if (!buf || !t) throw new Error(`plan: '${p}' is not a value of this plan`);
      const n = sizeOf(t.dims);
      out.set(gpuArrayOf(t, await this.gpu.read(buf, 4 * n)), at);
      at += n;
    }
    return out;
  }

  /** Frees the plan's GPU memory (resident tensors it uploaded, activations, uniforms). */
  destroy(): void {
    for (const b of this.owned) this.gpu.buffers.release(b);
    this.dispatches.destroy();
  }
}
