// Static execution plans: a shape-specialised graph compiled once, replayed as one command buffer.
//
// Compilation lowers every node through the op registry, then assigns GPU buffers by liveness:
// a value's buffer is taken from the pool at its defining node and handed back after its last use,
// so later values reuse it (views such as Reshape share their source's buffer and extend its life).
// Weights and constants are uploaded once and stay resident; graph inputs get their own buffers
// that `execute` overwrites. Pipelines, uniform buffers and bind groups are all built here, so a
// step only records dispatches: no allocation, no compilation, no CPU readback.

import { GpuExecutionError, ShapeError, SizeLimitError } from '../errors.js';
import { sizeClass } from '../gpu/buffers.js';
import type { GpuContext } from '../gpu/device.js';
import { DispatchList, resolveBindings, type BoundProgram } from '../gpu/dispatch.js';
import type { DeviceTraits } from '../gpu/traits.js';
import type { PlanGraph } from '../ir/static-graph.js';
import { gpuArrayOf, sizeOf, type ValueInfo } from '../ir/tensor.js';
import { OPS, isOpType } from '../ops/registry.js';
import type { LoweringContext, OpDef } from '../ops/types.js';

export interface CompileOptions {
  /** Lower for these traits instead of the device's own (tests asking for a kernel variant). */
  readonly device?: DeviceTraits;
}

export interface PlanMemory {
  /** Bytes of resident tensors this plan uploaded (weights and constants it owns). */
  residentBytes: number;
  /** Peak bytes of activations and scratch buffers live at once during a step. */
  activationBytes: number;
  /** Bytes of the runtime input buffers. */
  inputBytes: number;
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
    const device = options.device ?? gpu.traits;
    const pool = gpu.buffers;
    const buffers = new Map<string, GPUBuffer>();
    const owned: GPUBuffer[] = [];
    const memory: PlanMemory = { residentBytes: 0, activationBytes: 0, inputBytes: 0 };

    checkSizes(graph, gpu.traits);
    // Every buffer taken from the pool so far, handed back if compilation fails half way, so a
    // failed compile leaves the pool's accounting where it was.
    const held = new Set<GPUBuffer>();
    try {
      // Resident tensors referenced by the nodes, uploaded once.
      const consumed = new Set(graph.nodes.flatMap((n) => n.inputs).filter((s) => s !== ''));
      for (const name of consumed) {
        if (buffers.has(name)) continue;
        const shared = graph.shared?.get(name);
        if (shared) {
          buffers.set(name, shared);
          continue;
        }
        const r = graph.resident.get(name);
        if (!r) continue;
        const b = gpu.upload(r.data, name, true);
        held.add(b);
        buffers.set(name, b);
        owned.push(b);
        memory.residentBytes += b.size;
      }
      for (const inp of graph.inputs) {
        const b = pool.acquire(4 * Math.max(1, sizeOf(inp.type.dims)), inp.name);
        held.add(b);
        buffers.set(inp.name, b);
        owned.push(b);
        memory.inputBytes += b.size;
      }

      // Liveness: index of the last node reading each value (outputs live to the end).
      const lastUse = new Map<string, number>();
      graph.nodes.forEach((n, i) => n.inputs.forEach((v) => v && lastUse.set(v, i)));
      for (const o of [...graph.outputs, ...(graph.checks ?? []).map((c) => c.value)]) lastUse.set(o, Infinity);
      // Views share a buffer with their source: the root value owns it, and lives as long as any view.
      const root = new Map<string, string>();
      const rootOf = (v: string): string => root.get(v) ?? v;

      // Activation buffers come from a plan-local free list, so values whose lives do not overlap
      // share memory, while the pool never hands a plan's buffer to anyone else.
      const free = new Map<number, GPUBuffer[]>();
      const activations: GPUBuffer[] = [];
      const alloc = (bytes: number, label: string): GPUBuffer => {
        const size = sizeClass(Math.max(4, bytes));
        const b = free.get(size)?.pop() ?? pool.acquire(size, label);
        held.add(b);
        if (!activations.includes(b)) activations.push(b);
        return b;
      };
      const recycle = (b: GPUBuffer): void => {
        let list = free.get(b.size);
        if (!list) free.set(b.size, (list = []));
        list.push(b);
      };
      const steps: BoundProgram[] = [];
      const persistent = new Set<string>([...graph.inputs.map((x) => x.name), ...buffers.keys()]);

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
          if (info?.storage && !def.packedInputs?.includes(k)) {
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
          const b = buffers.get(src);
          if (!b) throw new Error(`plan: ${node.name} aliases '${src}', which has no buffer`);
          buffers.set(node.outputs[0]!, b);
          const r = rootOf(src);
          root.set(node.outputs[0]!, r);
          lastUse.set(r, Math.max(lastUse.get(r) ?? -1, lastUse.get(node.outputs[0]!) ?? -1));
        } else {
          const outBufs = node.outputs.map((o, k) => {
            const b = alloc(4 * sizeOf(outTypes[k]!.dims), o);
            buffers.set(o, b);
            return b;
          });
          const temps = (lowering.temps ?? []).map((bytes) => alloc(bytes, `${node.name}.tmp`));
          const inputs = node.inputs.map((name) => (name ? buffers.get(name) : undefined));
          steps.push(...resolveBindings(lowering, { inputs, outputs: outBufs, temps }, `plan: node '${node.name}'`));
          for (const t of temps) recycle(t);
        }
        // Values whose last use is this node (or that nothing reads) return to the free list.
        for (const v of new Set([...node.inputs, ...node.outputs])) {
          if (!v) continue;
          const r = rootOf(v);
          if ((lastUse.get(r) ?? -1) <= i && !persistent.has(r)) {
            const b = buffers.get(r);
            if (b) recycle(b);
            persistent.add(r); // recycled once only
          }
        }
      }
      owned.push(...activations);
      memory.activationBytes = activations.reduce((s, b) => s + b.size, 0);
      const dispatches = await DispatchList.prepare(gpu, steps);
      return new Plan(gpu, graph, dispatches, buffers, [...new Set(owned)], memory);
    } catch (e) {
      for (const b of held) pool.release(b);
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
    await Promise.all(
      read.map(async (name) => {
        const type = this.graph.types.get(name);
        const buf = this.buffers.get(name);
        if (!type || !buf) throw new Error(`plan: '${name}' is not a value of this plan`);
        const n = sizeOf(type.dims);
        const bytes = await this.gpu.read(buf, 4 * n);
        out.set(name, gpuArrayOf(type, bytes));
      }),
    );
    return out;
  }

  /** Frees the plan's GPU memory (resident tensors it uploaded, activations, uniforms). */
  destroy(): void {
    for (const b of this.owned) this.gpu.buffers.release(b);
    this.dispatches.destroy();
  }
}

/**
 * Every value of the plan fits one buffer the kernels can bind whole (the device's maxBufferSize
 * and maxStorageBufferBindingSize), checked before anything is allocated: a shape from an untrusted
 * file (Expand to [1e12]) is a SizeLimitError naming the node, not a failed allocation.
 */
function checkSizes(graph: PlanGraph, traits: DeviceTraits): void {
  const limit = Math.min(traits.limits.maxBufferSize, traits.limits.maxStorageBufferBindingSize);
  const check = (value: string, what: string): void => {
    // A weight kept packed (ir/dtype.ts) takes the bytes of its words, not 4 per element.
    const packed = graph.resident.get(value)?.storage ? graph.resident.get(value)!.data.byteLength : undefined;
    const type = graph.types.get(value);
    const bytes = packed ?? (type ? 4 * sizeOf(type.dims) : 0);
    if (bytes > limit) throw new SizeLimitError(what, bytes, limit, 'bytes', "a buffer the kernels bind whole: the device's maxBufferSize and maxStorageBufferBindingSize");
  };
  for (const inp of graph.inputs) check(inp.name, `input '${inp.name}'`);
  for (const n of graph.nodes) {
    n.inputs.forEach((v) => v && graph.resident.has(v) && check(v, `constant '${v}' read by ${n.opType} node '${n.name}'`));
    n.outputs.forEach((v, k) => v && check(v, `${n.opType} node '${n.name}' output ${k} ('${v}')`));
  }
}
