// Pipeline cache: one compute pipeline per (kernel, override constants).
//
// Pipelines are built with createComputePipelineAsync so compilation never blocks the thread, and
// concurrent requests for the same key share one in-flight promise. Bind group layouts are
// explicit (not 'auto') so a binding the shader happens not to read still validates. A compile
// failure is raised as ShaderCompileError with the offending WGSL line.

import { ShaderCompileError } from '../errors.js';
import { awaitGpu } from '../runtime.js';
import { ShaderStage } from './flags.js';
import type { KernelDef, Program } from './kernel.js';

export class PipelineCache {
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly ready = new Map<string, GPUComputePipeline>();
  private readonly inFlight = new Map<string, Promise<GPUComputePipeline>>();
  private readonly moduleErrors = new Map<string, Promise<GPUError | null>>();
  /** Number of pipelines compiled so far (a figure tests use to prove nothing recompiles). */
  compiled = 0;

  constructor(private readonly device: GPUDevice) {}

  static key(kernel: KernelDef, overrides?: Readonly<Record<string, number>>): string {
    if (!overrides) return kernel.name;
    const keys = Object.keys(overrides).sort();
    return `${kernel.name}|${keys.map((k) => `${k}=${overrides[k]}`).join(',')}`;
  }

  bindGroupLayout(kernel: KernelDef): GPUBindGroupLayout {
    let layout = this.layouts.get(kernel.name);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      let b = 0;
      for (let i = 0; i < kernel.inputs.length; i++) {
        entries.push({ binding: b++, visibility: ShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } });
      }
      for (let i = 0; i < kernel.outputs.length; i++) {
        entries.push({ binding: b++, visibility: ShaderStage.COMPUTE, buffer: { type: 'storage' } });
      }
      if (kernel.uniforms.length > 0) {
        entries.push({ binding: b++, visibility: ShaderStage.COMPUTE, buffer: { type: 'uniform' } });
      }
      layout = this.device.createBindGroupLayout({ label: kernel.name, entries });
      this.layouts.set(kernel.name, layout);
    }
    return layout;
  }

  /** The pipeline for a program, compiling it on first use. */
  get(program: Pick<Program, 'kernel' | 'overrides'>): Promise<GPUComputePipeline> {
    const key = PipelineCache.key(program.kernel, program.overrides);
    const done = this.ready.get(key);
    if (done) return Promise.resolve(done);
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.build(program.kernel, program.overrides).then(
        (p) => {
          this.ready.set(key, p);
          this.inFlight.delete(key);
          return p;
        },
        (e: unknown) => {
          this.inFlight.delete(key);
          throw e;
        },
      );
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  /** A pipeline already built by `get`; throws if it was not prepared (a planning bug). */
  getReady(program: Pick<Program, 'kernel' | 'overrides'>): GPUComputePipeline {
    const p = this.ready.get(PipelineCache.key(program.kernel, program.overrides));
    if (!p) throw new Error(`pipeline ${PipelineCache.key(program.kernel, program.overrides)} was not prepared`);
    return p;
  }

  private module(kernel: KernelDef): GPUShaderModule {
    let m = this.modules.get(kernel.name);
    if (!m) {
      // The validation error scope around creation is the reliable signal of a compile failure:
      // pipeline creation on an invalid module may never settle on some implementations.
      this.device.pushErrorScope('validation');
      m = this.device.createShaderModule({ label: kernel.name, code: kernel.source });
      this.moduleErrors.set(kernel.name, this.device.popErrorScope());
      this.modules.set(kernel.name, m);
    }
    return m;
  }

  private async build(kernel: KernelDef, overrides?: Readonly<Record<string, number>>): Promise<GPUComputePipeline> {
    const module = this.module(kernel);
    const moduleError = await this.moduleErrors.get(kernel.name);
    if (moduleError) throw await describeCompileFailure(kernel, module, moduleError);
    try {
      const pipeline = await awaitGpu(this.device.createComputePipelineAsync({
        label: PipelineCache.key(kernel, overrides),
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.bindGroupLayout(kernel)] }),
        compute: { module, entryPoint: kernel.entryPoint ?? 'main', constants: overrides ? { ...overrides } : {} },
      }));
      this.compiled++;
      return pipeline;
    } catch (cause) {
      throw await describeCompileFailure(kernel, module, cause);
    }
  }
}

async function describeCompileFailure(kernel: KernelDef, module: GPUShaderModule, cause: unknown): Promise<Error> {
  const detail = typeof (cause as { message?: unknown })?.message === 'string' ? (cause as { message: string }).message : String(cause);
  // getCompilationInfo gives structured messages; bounded, since it is a diagnostic only.
  const info = await Promise.race([
    module.getCompilationInfo(),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2000)),
  ]);
  const lines = kernel.source.split('\n');
  let errors = (info?.messages ?? []).filter((m) => m.type === 'error').map((m) => ({ line: m.lineNum, col: m.linePos, text: m.message }));
  if (errors.length === 0) {
    // Fall back to the validation message, which quotes ':line:col error: text'.
    errors = [...detail.matchAll(/:(\d+):(\d+) error: ([^\n]*)/g)].map((x) => ({ line: Number(x[1]), col: Number(x[2]), text: x[3]! }));
  }
  if (errors.length === 0) {
    return new ShaderCompileError(kernel.name, `kernel ${kernel.name}: pipeline creation failed: ${detail}`);
  }
  const text = errors.map((e) => `  line ${e.line}:${e.col}: ${e.text}\n    ${(lines[e.line - 1] ?? '').trim()}`).join('\n');
  return new ShaderCompileError(kernel.name, `kernel ${kernel.name}: WGSL compile error\n${text}`, errors[0]!.line);
}
