// Seeded fuzz of the two untrusted file types (issue 11, item 5): ONNX models and PEFT adapters,
// mutated from the GPT-2 fixtures by truncations, byte flips, length/offset/dim/attribute mutations
// at the protobuf and safetensors-header level, hostile external-data locations and hostile regexes
// in adapter_config.json. Every case must end in a result or a typed error (IA3Error): an untyped
// error, a hang or a state change is a finding. Each case's synchronous work (decode, specialise,
// the CPU reference; config parsing and module matching) runs under node:vm's watchdog, which
// interrupts JavaScript that makes no progress for STALL_MS — a per-case bound on a stall, not a
// budget for the run — and the asynchronous rest is raced against the same bound. The counts are
// printed per file type; the seed is fixed so a finding reproduces.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { IA3Error } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/device.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { sizeOf } from '../../src/ir/tensor.js';
import { Model } from '../../src/model.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { detectModelType, findModules } from '../../src/onnx/modules.js';
import { specialize } from '../../src/onnx/specialize.js';
import { IA3Config } from '../../src/peft/config.js';
import { resolveConfig, createAdapter } from '../../src/peft/adapter.js';
import { getPeftModel } from '../../src/peft/model.js';

const CASES = 600;
/** A case whose synchronous part runs this long without finishing counts as a hang. */
const STALL_MS = 30_000;

function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * n;
  };
}

type Outcome = 'accepted' | 'typed' | 'untyped' | 'hang';

interface Tally {
  cases: number;
  accepted: number;
  typed: number;
  untyped: string[];
  hangs: string[];
  stateChanged: string[];
}

const tally = (): Tally => ({ cases: 0, accepted: 0, typed: 0, untyped: [], hangs: [], stateChanged: [] });

/** Runs `sync` under the vm watchdog: a result, a typed error, an untyped one, or a hang. */
function guarded<T>(sync: () => T): { outcome: Outcome; value?: T; error?: unknown } {
  try {
    const value = vm.runInNewContext('run()', { run: sync }, { timeout: STALL_MS }) as T;
    return { outcome: 'accepted', value };
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return { outcome: 'hang' };
    return { outcome: e instanceof IA3Error ? 'typed' : 'untyped', error: e };
  }
}

async function raced<T>(p: Promise<T>): Promise<{ outcome: Outcome; error?: unknown }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), STALL_MS)));
  try {
    const r = await Promise.race([p.then(() => 'accepted' as const), stalled]);
    return { outcome: r };
  } catch (e) {
    return { outcome: e instanceof IA3Error ? 'typed' : 'untyped', error: e };
  } finally {
    clearTimeout(timer);
  }
}

function record(t: Tally, name: string, outcome: Outcome, error?: unknown): void {
  t.cases++;
  if (outcome === 'accepted') t.accepted++;
  else if (outcome === 'typed') t.typed++;
  else if (outcome === 'hang') t.hangs.push(name);
  else t.untyped.push(`${name}: ${(error as Error)?.name} ${(error as Error)?.message}`.slice(0, 300));
}

const print = (kind: string, t: Tally): void =>
  console.log(`[fuzz] ${kind}: ${t.cases} cases: ${t.typed} typed errors, ${t.accepted} accepted, ${t.untyped.length} untyped, ${t.hangs.length} hangs, ${t.stateChanged.length} states changed`);

// Locations an attacker would write, and random traversal strings.
const HOSTILE_LOCATIONS = ['../../../../etc/passwd', '..\\..\\secret.bin', '%2e%2e/x', '%252e%252e%252fx', 'a/../../x', '/abs/x', 'C:\\x', '//host/x', 'http://host/x', 'data:,AAAA', 'blob:x', 'x:y', '...', '\u0000x'];
// Patterns a config could carry: catastrophic for a backtracking engine, or features RE2 lacks.
const HOSTILE_PATTERNS = ['(.|.)*Z', '((.|.)|(.|.))*Z', '(x+x+)+y', '(a|aa)*$', '(?=a)a', '(?<!a)b', '(a)\\1', 'a*+', '(?>a)', '(a{999}){999}', 'a{1001}', '(?P<n>a)(?P=n)', '[[:alpha:]]+', '\\N{X}', '(?x) a', '(', '[', '\\', 'x'.repeat(9000)];
const REGEX_ALPHABET = '().|*+?{}[]^$\\aZ0-9:=!<>P#,';

function randomPattern(r: (n: number) => number): string {
  let s = '';
  const n = 1 + Math.floor(r(24));
  for (let i = 0; i < n; i++) s += REGEX_ALPHABET[Math.floor(r(REGEX_ALPHABET.length))];
  return s;
}

describe('fuzz', () => {
  it(`ONNX files: ${CASES} mutated models, typed errors only, no hang, no state change`, () => {
    const seed = new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model_opset17.onnx'));
    const feeds = { input_ids: { dtype: 'int64' as const, dims: [1, 4], data: Float64Array.of(11, 12, 13, 14) }, attention_mask: { dtype: 'int64' as const, dims: [1, 4], data: Float64Array.of(1, 1, 1, 1) } };
    const baseline = runReferenceModel(decodeOnnx(seed), feeds).logits!.data;
    const seedCopy = seed.slice();
    const r = rng(20261207);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r(xs.length))]!;
    const t = tally();
    const mutators: [string, () => { bytes: Uint8Array; external?: Record<string, Uint8Array> }][] = [
      ['truncate', () => ({ bytes: seed.slice(0, Math.floor(r(seed.length))) })],
      ['flip', () => {
        const b = seed.slice();
        for (let k = 1 + Math.floor(r(16)); k > 0; k--) b[Math.floor(r(b.length))] ^= 1 << Math.floor(r(8));
        return { bytes: b };
      }],
      ['varint', () => {
        const b = seed.slice();
        b.fill(0xff, Math.floor(r(b.length)), Math.floor(r(b.length)) + 1 + Math.floor(r(10)));
        return { bytes: b.subarray(0, seed.length) };
      }],
      ['dims', () => proto((m) => {
        const init = pick(m.graph!.initializer!);
        const dims = init.dims!;
        if (dims.length > 0) dims[Math.floor(r(dims.length))] = pick([0, -1, 2 ** 31, 2 ** 40, 1e15, Number(dims[0]) * 2]);
        else init.dims = [pick([2, 2 ** 40])];
      })],
      ['shape values', () => proto((m) => {
        const ints = m.graph!.initializer!.filter((i) => i.dataType === onnx.TensorProto.DataType.INT64 && (i.rawData?.length ?? 0) > 0 && (i.rawData?.length ?? 0) <= 64);
        const init = ints.length > 0 ? pick(ints) : pick(m.graph!.initializer!);
        const raw = new Uint8Array(init.rawData ?? new Uint8Array(8));
        new DataView(raw.buffer).setBigInt64(8 * Math.floor(r(Math.max(1, raw.length / 8))), BigInt(pick([-5, 0, 1e8, 1e12, 2 ** 40, -(2 ** 40)])), true);
        init.rawData = raw;
      })],
      ['attribute', () => proto((m) => {
        const withAttrs = m.graph!.node!.filter((n) => (n.attribute ?? []).length > 0);
        const a = pick(pick(withAttrs).attribute!);
        const v = pick([-(2 ** 31), -7, 0, 1e9, 2 ** 40]);
        if (a.ints && a.ints.length > 0) a.ints[Math.floor(r(a.ints.length))] = v;
        else if (a.t) a.t.dims = [pick([0, 1e9, 2 ** 40])];
        else a.i = v;
      })],
      ['wiring', () => proto((m) => {
        const nodes = m.graph!.node!;
        const n = pick(nodes);
        if (r(2) < 1 && n.input!.length > 0) n.input![Math.floor(r(n.input!.length))] = pick([...nodes.flatMap((x) => x.output!), 'nowhere', '']);
        else n.opType = pick(nodes).opType;
      })],
      ['opset', () => proto((m) => {
        m.opsetImport![0]!.version = pick([0, 1, 6, 22, 1e6]);
      })],
      ['external data', () => {
        let external: Record<string, Uint8Array> = {};
        const res = proto((m) => {
          const init = pick(m.graph!.initializer!.filter((i) => (i.rawData?.length ?? 0) > 0));
          const data = init.rawData!;
          const location = r(3) < 2 ? pick(HOSTILE_LOCATIONS) : `w${Math.floor(r(3))}.bin`;
          const offset = pick([0, 0, 7, data.length, 2 ** 40]);
          const length = pick([data.length, data.length, data.length - 4, 2 ** 53]);
          const file = new Uint8Array(Math.max(0, Math.min(offset, 64)) + data.length);
          file.set(data, Math.max(0, Math.min(offset, 64)));
          external = { [location]: file };
          init.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }];
          init.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
          delete (init as { rawData?: Uint8Array }).rawData;
        });
        return { ...res, external };
      }],
    ];
    function proto(mutate: (m: onnx.ModelProto) => void): { bytes: Uint8Array } {
      const m = onnx.ModelProto.decode(seed);
      mutate(m);
      return { bytes: onnx.ModelProto.encode(m).finish() };
    }
    for (let i = 0; i < CASES; i++) {
      const [name, mutate] = mutators[i % mutators.length]!;
      const { bytes, external } = mutate();
      const g = guarded(() => {
        const graph = decodeOnnx(bytes, { externalData: external });
        const spec = specialize(graph, { input_ids: [1, 4], attention_mask: [1, 4] });
        // The CPU reference on every third graph of model size (a mutated shape may ask for far
        // more: the budgets refuse that, and are tested; the fuzz keeps its memory and time small).
        let elements = 0;
        for (const ty of spec.types.values()) elements += sizeOf(ty.dims);
        if (elements <= 4e6 && i % 3 === 0) runReferenceModel(graph, feeds);
      });
      record(t, `${name} #${i}`, g.outcome, g.error);
    }
    // Nothing a failed case did is visible: the seed's bytes and the model's outputs are unchanged.
    if (!seed.every((b, k) => b === seedCopy[k])) t.stateChanged.push('the seed bytes');
    if (!runReferenceModel(decodeOnnx(seed), feeds).logits!.data.every((v, k) => v === baseline[k])) t.stateChanged.push('the reference outputs');
    print('onnx', t);
    expect(t.cases).toBeGreaterThanOrEqual(500);
    expect(t.typed).toBeGreaterThan(t.cases / 2);
    expect({ untyped: t.untyped, hangs: t.hangs, stateChanged: t.stateChanged }).toEqual({ untyped: [], hangs: [], stateChanged: [] });
  }, 0); // no wall-clock limit: each case's stall is bounded by the watchdog, the run by CASES

  it(`adapter files: ${CASES} mutated adapters, typed errors only, no hang, no state change`, async () => {
    const weights = new Uint8Array(readFileSync('tests/fixtures/peft/gpt2/adapter_model.safetensors'));
    const config = readFileSync('tests/fixtures/peft/gpt2/adapter_config.json', 'utf8');
    const graph = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model_opset17.onnx')));
    const modules = findModules(graph);
    // Adapters load on the CPU side: nothing here touches a GPU.
    const model = new Model({} as GpuContext, graph, undefined, modules, detectModelType(modules, undefined) ?? 'gpt2');
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    await peft.loadAdapter({ 'adapter_model.safetensors': weights, 'adapter_config.json': config }, 'default2');
    await peft.deleteAdapter('default2');
    const state = JSON.stringify(Object.entries(peft.stateDict()).map(([k, v]) => [k, Array.from(v.data as Float32Array)]));
    const headerLength = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(weights.subarray(8, 8 + headerLength))) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    const data = weights.subarray(8 + headerLength);
    const r = rng(7_2026);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r(xs.length))]!;
    const assemble = (h: string, d: Uint8Array = data, length?: bigint): Uint8Array => {
      const bytes = new TextEncoder().encode(h);
      const out = new Uint8Array(8 + bytes.length + d.length);
      new DataView(out.buffer).setBigUint64(0, length ?? BigInt(bytes.length), true);
      out.set(bytes, 8);
      out.set(d, 8 + bytes.length);
      return out;
    };
    const entryKeys = Object.keys(header).filter((k) => k !== '__metadata__');
    const withConfig = (edit: (c: Record<string, unknown>) => void): [Uint8Array, string] => {
      const c = JSON.parse(config) as Record<string, unknown>;
      edit(c);
      return [weights, JSON.stringify(c)];
    };
    const mutators: [string, () => [Uint8Array, string | Uint8Array]][] = [
      ['truncate weights', () => [weights.slice(0, Math.floor(r(weights.length))), config]],
      ['flip weights', () => {
        const b = weights.slice();
        for (let k = 1 + Math.floor(r(8)); k > 0; k--) b[Math.floor(r(b.length))] ^= 1 << Math.floor(r(8));
        return [b, config];
      }],
      ['header length', () => [assemble(JSON.stringify(header), data, BigInt(pick([0, 1, headerLength - 1, headerLength + 9, 2 ** 40, 2 ** 62]))), config]],
      ['header entry', () => {
        const h = JSON.parse(JSON.stringify(header)) as typeof header;
        const e = h[pick(entryKeys)]!;
        const field = pick(['shape', 'offsets', 'dtype'] as const);
        if (field === 'shape') e.shape[Math.floor(r(e.shape.length))] = pick([0, -1, 2 ** 31, 2 ** 53, 1e300]);
        else if (field === 'offsets') e.data_offsets[Math.floor(r(2))] = pick([-1, 0, 3, data.length + 4, 2 ** 53]);
        else e.dtype = pick(['F64', 'I64', 'BOOL', 'U8', 'X', '']);
        return [assemble(JSON.stringify(h)), config];
      }],
      ['truncate config', () => [weights, config.slice(0, Math.floor(r(config.length)))]],
      ['flip config', () => {
        const b = new TextEncoder().encode(config);
        b[Math.floor(r(b.length))] ^= 1 << Math.floor(r(8));
        return [weights, b];
      }],
      ['hostile regex', () => withConfig((c) => {
        const pattern = r(2) < 1 ? pick(HOSTILE_PATTERNS) : randomPattern(r);
        const field = pick(['target_modules', 'exclude_modules', 'feedforward_modules', 'modules_to_save']);
        c[field] = field === 'modules_to_save' ? [pattern] : pattern;
      })],
      ['config types', () => withConfig((c) => {
        c[pick(Object.keys(c))] = pick([null, 5, -1, 'x', [], {}, [1, 2], 'all-linear', true, 'x'.repeat(2000)]);
      })],
    ];
    const t = tally();
    for (let i = 0; i < CASES; i++) {
      const [name, mutate] = mutators[i % mutators.length]!;
      const [w, c] = mutate();
      // The synchronous work of a load — parsing both files, matching the config's modules —
      // under the watchdog, then the load itself through the public API.
      const probe = guarded(() => {
        const cfg = IA3Config.fromJSON(c, 'adapter_config.json');
        readSafetensors(w);
        createAdapter('probe', resolveConfig(cfg.with({ inferenceMode: false }), model), model);
      });
      if (probe.outcome === 'hang') {
        record(t, `${name} #${i}`, 'hang');
        continue;
      }
      const load = await raced(peft.loadAdapter({ 'adapter_model.safetensors': w, 'adapter_config.json': c }, 'candidate'));
      record(t, `${name} #${i}`, load.outcome, load.error);
      if (load.outcome === 'accepted') await peft.deleteAdapter('candidate');
      const now = JSON.stringify(Object.entries(peft.stateDict()).map(([k, v]) => [k, Array.from(v.data as Float32Array)]));
      if (now !== state || peft.listAdapters().join() !== 'default' || peft.activeAdapters.join() !== 'default') t.stateChanged.push(`${name} #${i}`);
    }
    print('adapter', t);
    expect(t.cases).toBeGreaterThanOrEqual(500);
    expect(t.typed).toBeGreaterThan(t.cases / 2);
    expect({ untyped: t.untyped, hangs: t.hangs, stateChanged: t.stateChanged }).toEqual({ untyped: [], hangs: [], stateChanged: [] });
  }, 0);
});
