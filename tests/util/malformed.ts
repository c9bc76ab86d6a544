// The malformed-adapter corpus: broken variants of one valid PEFT adapter (the GPT-2 fixture's,
// tests/fixtures/peft/gpt2), each built programmatically from the valid files and paired with the
// typed error it must raise and a message naming the tensor, key or byte offset.
//
// Safetensors cases edit the header (as parsed JSON, or as text where the edit is not expressible
// as JSON: duplicate keys, escapes, broken syntax) or the bytes, and reassemble the file with a
// correct header length unless the length itself is the defect. Config cases edit
// adapter_config.json. The config cases name GPT-2 modules (c_attn, mlp.c_proj, q_proj).
import { FormatError, InputError } from '../../src/errors.js';
import { NoMatchingModulesError } from '../../src/peft/match.js';

export interface AdapterFileSet {
  'adapter_model.safetensors': Uint8Array;
  'adapter_config.json': string | Uint8Array;
}

export interface MalformedCase {
  readonly name: string;
  /** The broken files; a missing entry is the defect of the 'no …' cases. */
  readonly files: Partial<AdapterFileSet>;
  /** The error class the load must reject with. */
  readonly error: typeof FormatError | typeof InputError;
  /** What the message must say: the tensor, key, field or byte range at fault. */
  readonly message: RegExp;
  /** FormatError.byteOffset, where the defect has one exact position. */
  readonly at?: number;
}

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
type Header = Record<string, Entry | Record<string, string>>;

const METADATA = '__metadata__';
const enc = new TextEncoder();
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const W = 'adapter_model\\.safetensors: ';
const C = 'adapter_config\\.json: ';

/** The parts of a safetensors file: header JSON text (padding removed) and the data area. */
function split(file: Uint8Array): { text: string; data: Uint8Array } {
  const n = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  return { text: new TextDecoder().decode(file.subarray(8, 8 + n)).trimEnd(), data: file.subarray(8 + n) };
}

/** A file from header bytes (padded with spaces to 8) and data; `length` overrides the header length. */
function assemble(header: string | Uint8Array, data: Uint8Array, length?: bigint): Uint8Array {
  const h = typeof header === 'string' ? enc.encode(header) : header;
  const n = Math.ceil(h.length / 8) * 8;
  const out = new Uint8Array(8 + n + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(n), true);
  out.set(h, 8);
  out.fill(0x20, 8 + h.length, 8 + n);
  out.set(data, 8 + n);
  return out;
}

/** File byte where the data area of a safetensors file starts (8 + its header length). */
function dataStartOf(file: Uint8Array): number {
  return 8 + Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
}

/** The malformed corpus for the valid adapter `valid` (the GPT-2 fixture). */
export function malformedCorpus(valid: { weights: Uint8Array; config: string }): MalformedCase[] {
  const { text, data } = split(valid.weights);
  const header = JSON.parse(text) as Header;
  // Tensors in data order; the corpus needs at least three (GPT-2's adapter has four).
  const names = Object.keys(header)
    .filter((k) => k !== METADATA)
    .sort((a, b) => (header[a] as Entry).data_offsets[0] - (header[b] as Entry).data_offsets[0]);
  const [first, second] = [names[0]!, names[1]!];
  const last = names[names.length - 1]!;
  const entry = (name: string): Entry => header[name] as Entry;
  const same = names.find((k, i) => i > 0 && entry(k).shape.join() === entry(first).shape.join())!;
  const dataStart = dataStartOf(valid.weights);
  const config = JSON.parse(valid.config) as Record<string, unknown>;

  const weights = (bytes: Uint8Array): Partial<AdapterFileSet> => ({ 'adapter_model.safetensors': bytes, 'adapter_config.json': valid.config });
  const configOnly = (c: string | Uint8Array): Partial<AdapterFileSet> => ({ 'adapter_model.safetensors': valid.weights, 'adapter_config.json': c });
  // The header re-serialised after an edit of the parsed JSON (key order kept).
  const edited = (edit: (h: Header) => void, newData = data): Uint8Array => {
    const h = structuredClone(header);
    edit(h);
    return assemble(JSON.stringify(h), newData);
  };
  // Text edits: `from` must occur in the header.
  const replaced = (from: string, to: string): string => {
    if (!text.includes(from)) throw new Error(`corpus: ${from} is not in the header`);
    return text.replace(from, to);
  };
  const withConfig = (changes: Record<string, unknown>): string => JSON.stringify({ ...config, ...changes }, null, 2);
  const tensorsOnly = (tensors: Record<string, { shape: number[]; bytes: Uint8Array }>): Uint8Array => {
    const h: Record<string, unknown> = { [METADATA]: { format: 'pt' } };
    let offset = 0;
    const parts: Uint8Array[] = [];
    for (const [k, t] of Object.entries(tensors)) {
      h[k] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
      offset += t.bytes.length;
      parts.push(t.bytes);
    }
    const all = new Uint8Array(offset);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return assemble(JSON.stringify(h), all);
  };
  const tensorBytes = (name: string): Uint8Array => data.subarray(...entry(name).data_offsets);
  const validTensors = (): Record<string, { shape: number[]; bytes: Uint8Array }> =>
    Object.fromEntries(names.map((k) => [k, { shape: entry(k).shape, bytes: tensorBytes(k) }]));

  const [b1, e1] = entry(first).data_offsets;
  const [b2, e2] = entry(second).data_offsets;
  const [bl, el] = entry(last).data_offsets;
  const firstShape = entry(first).shape;
  const firstBytes = e1 - b1;

  const cases: MalformedCase[] = [
    // --- Sizes and the header length
    { name: 'empty file', files: weights(new Uint8Array(0)), error: FormatError, message: new RegExp(`${W}file is 0 bytes, too short for the 8-byte header length`) },
    { name: 'truncated inside the header length', files: weights(valid.weights.subarray(0, 5)), error: FormatError, message: /file is 5 bytes, too short/ },
    {
      name: 'truncated inside the header',
      files: weights(valid.weights.subarray(0, 40)),
      error: FormatError,
      message: new RegExp(`header length ${dataStart - 8} runs past the end of the file \\(header would end at byte ${dataStart}, file is 40 bytes\\)`),
      at: 0,
    },
    {
      name: 'truncated inside the data',
      files: weights(valid.weights.subarray(0, valid.weights.length - 10)),
      error: FormatError,
      message: new RegExp(`tensor "${esc(last)}": data_offsets \\[${bl}, ${el}\\] extend past the end of the data area \\(${data.length - 10} bytes, starting at file byte ${dataStart}\\)`),
      at: dataStart + bl,
    },
    {
      name: 'header length past the end of the file',
      files: weights(assemble(text, data, BigInt(valid.weights.length))),
      error: FormatError,
      message: new RegExp(`header length ${valid.weights.length} runs past the end of the file`),
      at: 0,
    },
    {
      name: 'huge header length (2^64 - 1)',
      files: weights(assemble(text, data, 2n ** 64n - 1n)),
      error: FormatError,
      message: /header length 18446744073709551615 exceeds the limit of 100000000 bytes/,
      at: 0,
    },
    {
      name: 'header length one past the 100 MB limit',
      files: weights(assemble(text, data, 100_000_001n)),
      error: FormatError,
      message: /header length 100000001 exceeds the limit of 100000000 bytes/,
      at: 0,
    },
    { name: 'header length 0', files: weights(assemble('', data, 0n)), error: FormatError, message: /header is empty/, at: 8 },

    // --- The header's JSON
    (() => {
      const t = replaced('"dtype":"F32"', '"dtype":F32');
      return { name: 'non-JSON header (unquoted value)', files: weights(assemble(t, data)), error: FormatError, message: /header is not valid JSON: unexpected character "F"/, at: 8 + t.indexOf(':F32') + 1 }; // ASCII: string index = byte index
    })(),
    (() => {
      const t = text.slice(0, -1) + ',}';
      return { name: 'non-JSON header (trailing comma)', files: weights(assemble(t, data)), error: FormatError, message: /header is not valid JSON: unexpected character "}"/, at: 8 + t.length - 1 };
    })(),
    (() => {
      const t = text + '{}';
      return { name: 'non-JSON header (a second value after the object)', files: weights(assemble(t, data)), error: FormatError, message: /header is not valid JSON: unexpected character "\{"/, at: 8 + text.length };
    })(),
    (() => {
      const bytes = enc.encode(text);
      const p = text.indexOf(first) + 5; // inside the first tensor's name
      const broken = new Uint8Array([...bytes.subarray(0, p), 0xff, ...bytes.subarray(p)]);
      return { name: 'invalid UTF-8 in a tensor name', files: weights(assemble(broken, data)), error: FormatError, message: /header is not valid UTF-8/, at: 8 + p };
    })(),
    (() => {
      const bytes = enc.encode(text);
      const p = text.indexOf('"pt"') + 1;
      // 0xC0 0xAF: an overlong encoding of '/', which strict decoders refuse.
      const broken = new Uint8Array([...bytes.subarray(0, p), 0xc0, 0xaf, ...bytes.subarray(p)]);
      return { name: 'overlong UTF-8 sequence in metadata', files: weights(assemble(broken, data)), error: FormatError, message: /header is not valid UTF-8/, at: 8 + p };
    })(),
    {
      name: 'header is an array, not an object',
      files: weights(assemble(JSON.stringify(Object.entries(header)), data)),
      error: FormatError,
      message: /header must begin with '\{' \(0x7b\), found 0x5b/,
      at: 8,
    },
    {
      name: 'tensor entry is not an object',
      files: weights(edited((h) => ((h as Record<string, unknown>)[first] = [entry(first).dtype, entry(first).shape]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": entry must be an object, found an array`),
    },
    {
      name: 'JSON nested deeper than any header',
      files: weights(assemble(`{"${first}":${'['.repeat(40)}${']'.repeat(40)}}`, data)),
      error: FormatError,
      message: /header is not valid JSON: nesting deeper than 16 levels/,
    },

    // --- Prototype keys
    {
      name: '__proto__ as a tensor name',
      files: weights(assemble(replaced(JSON.stringify(first), '"__proto__"'), data)),
      error: FormatError,
      message: /header is not valid JSON: forbidden key "__proto__"/,
      at: 8 + text.indexOf(JSON.stringify(first)),
    },
    {
      name: '__proto__ written with a \\u escape',
      files: weights(assemble(replaced(JSON.stringify(first), '"\\u005f_proto__"'), data)),
      error: FormatError,
      message: /forbidden key "__proto__"/,
    },
    {
      name: 'constructor as a field of a tensor entry',
      files: weights(assemble(replaced('"dtype":"F32"', '"constructor":{},"dtype":"F32"'), data)),
      error: FormatError,
      message: /forbidden key "constructor"/,
      at: 8 + text.indexOf('"dtype":"F32"'),
    },
    {
      name: '__proto__ inside __metadata__',
      files: weights(assemble(replaced('"format":"pt"', '"format":"pt","__proto__":"x"'), data)),
      error: FormatError,
      message: /forbidden key "__proto__"/,
    },
    {
      name: 'prototype as a tensor name',
      files: weights(assemble(replaced(JSON.stringify(last), '"prototype"'), data)),
      error: FormatError,
      message: /forbidden key "prototype"/,
    },

    // --- Duplicate keys (JSON.parse would keep the last one silently)
    (() => {
      const one = `${JSON.stringify(first)}:${JSON.stringify(entry(first))}`;
      const t = replaced(one, `${one},${one}`);
      return { name: 'duplicate tensor name', files: weights(assemble(t, data)), error: FormatError, message: new RegExp(`duplicate key "${esc(first)}"`), at: 8 + t.indexOf(one, t.indexOf(one) + 1) };
    })(),
    {
      name: 'duplicate field in a tensor entry',
      files: weights(assemble(replaced('"dtype":"F32"', '"dtype":"F32","dtype":"F32"'), data)),
      error: FormatError,
      message: /duplicate key "dtype"/,
    },
    {
      name: 'duplicate __metadata__',
      files: weights(assemble(replaced('"__metadata__":{"format":"pt"}', '"__metadata__":{"format":"pt"},"__metadata__":{}'), data)),
      error: FormatError,
      message: /duplicate key "__metadata__"/,
    },

    // --- Entries
    {
      name: 'missing data_offsets',
      files: weights(edited((h) => delete (h[first] as Partial<Entry>).data_offsets)),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": missing field "data_offsets"`),
    },
    {
      name: 'unknown field in a tensor entry',
      files: weights(edited((h) => ((h[first] as unknown as Record<string, unknown>).offsets = [b1, e1]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": unknown field "offsets"`),
    },
    {
      name: 'metadata value that is not a string',
      files: weights(edited((h) => ((h[METADATA] as Record<string, unknown>).format = 1))),
      error: FormatError,
      message: /__metadata__ value of "format" must be a string, found the number 1/,
    },
    {
      name: 'lone surrogate escape in a tensor name',
      files: weights(assemble(replaced(JSON.stringify(first), JSON.stringify(first).slice(0, -1) + '\\ud800"'), data)),
      error: FormatError,
      message: /lone surrogate in \\u escape/,
    },

    // --- dtype
    { name: 'unknown dtype', files: weights(edited((h) => ((h[first] as Entry).dtype = 'F33'))), error: FormatError, message: new RegExp(`tensor "${esc(first)}": unknown dtype "F33"`) },
    { name: 'dtype the format defines but this reader does not (FP8)', files: weights(edited((h) => ((h[first] as Entry).dtype = 'F8_E4M3'))), error: FormatError, message: new RegExp(`tensor "${esc(first)}": unsupported dtype "F8_E4M3"`) },
    {
      name: 'dtype of a different size (F16 for F32 data)',
      files: weights(edited((h) => ((h[first] as Entry).dtype = 'F16'))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": shape \\[${firstShape.join(', ')}\\] of F16 needs ${firstBytes / 2} bytes but data_offsets \\[${b1}, ${e1}\\] hold ${firstBytes}`),
    },
    {
      name: 'integer dtype of the same size (I32)',
      files: weights(edited((h) => ((h[first] as Entry).dtype = 'I32'))),
      error: FormatError,
      message: new RegExp(`${W}tensor '${esc(first)}' has dtype I32; adapter tensors are floating point`),
    },

    // --- shape
    {
      name: 'shape that does not match the byte count',
      files: weights(edited((h) => ((h[first] as Entry).shape = [firstShape[0]! - 1, ...firstShape.slice(1)]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": shape \\[${firstShape[0]! - 1}, ${firstShape.slice(1).join(', ')}\\] of F32 needs ${firstBytes - 4 * firstShape.slice(1).reduce((a, b) => a * b, 1)} bytes but data_offsets \\[${b1}, ${e1}\\] hold ${firstBytes}`),
    },
    {
      name: 'negative dimension',
      files: weights(edited((h) => ((h[first] as Entry).shape = [-firstShape[0]!, ...firstShape.slice(1)]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": shape must be an array of non-negative integers, found the number -${firstShape[0]} at index 0`),
    },
    {
      name: 'non-integer dimension (96.0)',
      files: weights(assemble(replaced(`"shape":${JSON.stringify(firstShape)}`, `"shape":[${firstShape[0]}.0${firstShape.slice(1).map((d) => `,${d}`).join('')}]`), data)),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": shape must be an array of non-negative integers, found the number ${firstShape[0]}\\.0 at index 0`),
    },
    {
      name: 'dimension written with an exponent (9.6e1)',
      files: weights(assemble(replaced(`"shape":${JSON.stringify(firstShape)}`, `"shape":[${firstShape[0]! / 10}e1${firstShape.slice(1).map((d) => `,${d}`).join('')}]`), data)),
      error: FormatError,
      message: /shape must be an array of non-negative integers, found the number \d+(\.\d+)?e1 at index 0/,
    },
    { name: 'shape that is a string', files: weights(edited((h) => ((h[first] as unknown as Record<string, unknown>).shape = '96,1'))), error: FormatError, message: new RegExp(`tensor "${esc(first)}": shape must be an array of non-negative integers, found the string "96,1"`) },
    {
      name: 'dimensions whose product overflows 64 bits',
      files: weights(edited((h) => ((h[first] as Entry).shape = [2 ** 40, 2 ** 40, 2 ** 20]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": shape \\[1099511627776, 1099511627776, 1048576\\] of F32 needs 5070602400912917605986812821504 bytes but data_offsets \\[${b1}, ${e1}\\] hold ${firstBytes}`),
    },
    {
      name: 'dimension past 2^53',
      files: weights(assemble(replaced(`"shape":${JSON.stringify(firstShape)}`, '"shape":[9007199254740993,1]'), data)),
      error: FormatError,
      message: /shape: 9007199254740993 at index 0 is too large/,
    },

    // --- Offsets
    (() => {
      const bytes = edited((h) => ((h[second] as Entry).data_offsets = [b2 - 4, e2 - 4]));
      return {
        name: 'overlapping offsets',
        files: weights(bytes),
        error: FormatError,
        message: new RegExp(`tensor "${esc(second)}": data_offsets \\[${b2 - 4}, ${e2 - 4}\\] overlap tensor "${esc(first)}" \\[${b1}, ${e1}\\]`),
        at: dataStartOf(bytes) + b2 - 4,
      };
    })(),
    {
      name: 'two tensors on the same bytes (aliasing)',
      files: weights(edited((h) => ((h[same] as Entry).data_offsets = [b1, e1]))),
      error: FormatError,
      message: new RegExp(`data_offsets \\[${b1}, ${e1}\\] overlap tensor "${esc(first)}"|tensor "${esc(first)}": data_offsets \\[${b1}, ${e1}\\] overlap`),
    },
    {
      name: 'offsets past the end of the data area',
      files: weights(edited((h) => ((h[last] as Entry).data_offsets = [bl + 8, el + 8]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(last)}": data_offsets \\[${bl + 8}, ${el + 8}\\] extend past the end of the data area \\(${data.length} bytes`),
    },
    (() => {
      const bytes = edited((h) => ((h[last] as Entry).data_offsets = [2 ** 50, 2 ** 50 + (el - bl)]));
      return {
        name: 'offsets far out of range',
        files: weights(bytes),
        error: FormatError,
        message: new RegExp(`tensor "${esc(last)}": data_offsets \\[${2 ** 50}, ${2 ** 50 + el - bl}\\] extend past the end of the data area`),
        at: dataStartOf(bytes) + data.length,
      };
    })(),
    {
      name: 'offsets that end before they begin',
      files: weights(edited((h) => ((h[first] as Entry).data_offsets = [e1, b1]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": data_offsets \\[${e1}, ${b1}\\] end before they begin`),
    },
    {
      name: 'negative offset',
      files: weights(edited((h) => ((h[first] as Entry).data_offsets = [-4, e1 - 4]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": data_offsets must be an array of non-negative integers, found the number -4 at index 0`),
    },
    {
      name: 'three offsets',
      files: weights(edited((h) => ((h[first] as unknown as { data_offsets: number[] }).data_offsets = [b1, e1, e1]))),
      error: FormatError,
      message: new RegExp(`tensor "${esc(first)}": data_offsets must be \\[begin, end\\], found 3 numbers`),
    },
    (() => {
      // 8 unused bytes between the first and the second tensor; later offsets shifted past them.
      const gapped = new Uint8Array(data.length + 8);
      gapped.set(data.subarray(0, e1), 0);
      gapped.set(data.subarray(e1), e1 + 8);
      const bytes = edited((h) => {
        for (const k of names.slice(1)) (h[k] as Entry).data_offsets = (h[k] as Entry).data_offsets.map((o) => o + 8) as [number, number];
      }, gapped);
      return { name: 'gap between tensors (non-contiguous offsets)', files: weights(bytes), error: FormatError, message: new RegExp(`data area bytes \\[${e1}, ${e1 + 8}\\) belong to no tensor \\(gap before tensor "${esc(second)}"\\)`), at: dataStartOf(bytes) + e1 };
    })(),
    (() => {
      const bytes = edited((h) => {
        for (const k of names) (h[k] as Entry).data_offsets = (h[k] as Entry).data_offsets.map((o) => o + 4) as [number, number];
      }, new Uint8Array([0, 0, 0, 0, ...data]));
      return { name: 'gap at the start of the data area', files: weights(bytes), error: FormatError, message: new RegExp(`data area bytes \\[0, 4\\) belong to no tensor \\(gap before tensor "${esc(first)}"\\)`), at: dataStartOf(bytes) };
    })(),
    {
      name: 'bytes after the last tensor',
      files: weights(assemble(text, new Uint8Array([...data, 1, 2, 3, 4]))),
      error: FormatError,
      message: new RegExp(`data area bytes \\[${data.length}, ${data.length + 4}\\) belong to no tensor \\(after the last one\\)`),
      at: dataStart + data.length,
    },

    // --- Valid files whose tensors do not fit the config (InputError from the state dict load)
    (() => {
      const t = validTensors();
      delete t[second];
      return { name: 'a tensor missing', files: weights(tensorsOnly(t)), error: InputError, message: new RegExp(`missing key '${esc(second)}'`) };
    })(),
    (() => {
      const t = validTensors();
      t['base_model.model.transformer.h.0.attn.c_proj.ia3_l'] = { shape: [32, 1], bytes: new Uint8Array(128) };
      return { name: 'an unexpected tensor', files: weights(tensorsOnly(t)), error: InputError, message: /unexpected key 'base_model\.model\.transformer\.h\.0\.attn\.c_proj\.ia3_l'/ };
    })(),
    (() => {
      const t = validTensors();
      t[first] = { shape: [...firstShape].reverse(), bytes: tensorBytes(first) };
      return { name: 'a vector with the transposed shape', files: weights(tensorsOnly(t)), error: InputError, message: new RegExp(`'${esc(first)}': shape \\[${[...firstShape].reverse().join(', ')}\\], expected \\[${firstShape.join(', ')}\\]`) };
    })(),
    (() => {
      const t = validTensors();
      delete t[first];
      t[`${second.replace('base_model.model.', '')}`] = t[second]!; // the same key twice: with and without the prefix
      t['base_model.model.lm_head.ia3_l'] = { shape: [120, 1], bytes: new Uint8Array(480) };
      t[last] = { shape: [entry(last).shape.reduce((a, b) => a * b, 1)], bytes: tensorBytes(last) };
      return {
        name: 'every problem at once, all named',
        files: weights(tensorsOnly(t)),
        error: InputError,
        message: new RegExp(
          [`given twice`, `unexpected key 'base_model\\.model\\.lm_head\\.ia3_l'`, `'${esc(last)}': shape \\[\\d+\\], expected`, `missing key '${esc(first)}'`].map((p) => `(?=[\\s\\S]*${p})`).join(''),
        ),
      };
    })(),

    // --- adapter_config.json
    { name: 'config that is not JSON', files: configOnly(valid.config.slice(0, -2)), error: FormatError, message: new RegExp(`${C}not valid JSON`) },
    (() => {
      // Inside a string value, where a lenient decoder would load a silently different config.
      const p = valid.config.indexOf('"base_model_name_or_path": "') + 28;
      if (p < 28) throw new Error('corpus: the config has no base_model_name_or_path string');
      const bytes = new Uint8Array([...enc.encode(valid.config.slice(0, p)), 0xff, ...enc.encode(valid.config.slice(p))]);
      return { name: 'config that is not UTF-8', files: configOnly(bytes), error: FormatError, message: new RegExp(`${C}not valid UTF-8`) };
    })(),
    { name: 'config that is a JSON array', files: configOnly(JSON.stringify([config])), error: FormatError, message: new RegExp(`${C}must hold a JSON object, found an array`) },
    { name: 'config without peft_type', files: configOnly(JSON.stringify({ ...config, peft_type: undefined })), error: FormatError, message: new RegExp(`${C}missing field "peft_type"`) },
    { name: 'config of another PEFT method (LORA)', files: configOnly(withConfig({ peft_type: 'LORA' })), error: FormatError, message: new RegExp(`${C}field "peft_type" must be "IA3" for an IA3 adapter, found "LORA"`) },
    { name: 'target_modules that is a number', files: configOnly(withConfig({ target_modules: 5 })), error: FormatError, message: new RegExp(`${C}field "target_modules" must be a list of strings, a regex string or null, found 5`) },
    { name: 'target_modules list holding a number', files: configOnly(withConfig({ target_modules: ['c_attn', 3] })), error: FormatError, message: /field "target_modules" must be a list of strings, a regex string or null, found an array/ },
    { name: 'modules_to_save that is a string', files: configOnly(withConfig({ modules_to_save: 'lm_head' })), error: FormatError, message: /field "modules_to_save" must be a list of strings or null, found "lm_head"/ },
    { name: 'fan_in_fan_out that is a string', files: configOnly(withConfig({ fan_in_fan_out: 'yes' })), error: FormatError, message: /field "fan_in_fan_out" must be true or false, found "yes"/ },
    { name: 'unknown task type', files: configOnly(withConfig({ task_type: 'TEXT_GENERATION' })), error: FormatError, message: /Invalid task type: 'TEXT_GENERATION'\. Must be one of the following task types: SEQ_CLS, /i },
    {
      name: 'feedforward_modules not a subset of target_modules',
      files: configOnly(withConfig({ target_modules: ['c_attn', 'mlp.c_proj'], feedforward_modules: ['mlp.c_proj', 'mlp.c_fc'] })),
      error: FormatError,
      message: /`feedforward_modules` should be a subset of `target_modules`/,
    },
    { name: 'config over the size limit', files: configOnly(withConfig({ base_model_name_or_path: 'x'.repeat(1_000_001) })), error: FormatError, message: /larger than the 1000000-byte limit/ },
    {
      name: 'target modules that do not exist in the model',
      files: configOnly(withConfig({ target_modules: ['q_proj', 'v_proj'], feedforward_modules: [] })),
      error: NoMatchingModulesError,
      message: /Target modules \{'q_proj', 'v_proj'\}|Target modules \{'v_proj', 'q_proj'\}/,
    },
    { name: 'target_modules regex that matches nothing', files: configOnly(withConfig({ target_modules: '.*\\.nothing', feedforward_modules: [] })), error: NoMatchingModulesError, message: /Target modules \.\*\\\.nothing not found in the base model/ },
    { name: 'target_modules regex that does not compile', files: configOnly(withConfig({ target_modules: 'transformer.(h', feedforward_modules: [] })), error: InputError, message: /target_modules: "transformer\.\(h" is not a regular expression/ },
    {
      name: 'config targeting fewer modules than the file holds',
      files: configOnly(withConfig({ target_modules: ['c_attn'], feedforward_modules: [] })),
      error: InputError,
      message: /unexpected key 'base_model\.model\.transformer\.h\.0\.mlp\.c_proj\.ia3_l'[\s\S]*unexpected key 'base_model\.model\.transformer\.h\.1\.mlp\.c_proj\.ia3_l'/,
    },
    {
      name: 'config with another feed-forward placement than the file',
      files: configOnly(withConfig({ target_modules: ['c_attn', 'mlp.c_proj'], feedforward_modules: ['c_attn', 'mlp.c_proj'] })),
      error: InputError,
      message: /'base_model\.model\.transformer\.h\.0\.attn\.c_attn\.ia3_l': shape \[96, 1\], expected \[1, 32\]/,
    },
    {
      name: 'modules_to_save whose tensors the file lacks',
      files: configOnly(withConfig({ modules_to_save: ['transformer.h.1.attn.c_proj'] })),
      error: InputError,
      message: /missing key 'base_model\.model\.transformer\.h\.1\.attn\.c_proj\.weight'[\s\S]*missing key 'base_model\.model\.transformer\.h\.1\.attn\.c_proj\.bias'/,
    },

    // --- Missing files
    { name: 'no adapter_config.json', files: { 'adapter_model.safetensors': valid.weights }, error: InputError, message: /the adapter has no adapter_config\.json/ },
    { name: 'no adapter_model.safetensors', files: { 'adapter_config.json': valid.config }, error: InputError, message: /the adapter has no adapter_model\.safetensors/ },
  ];
  return cases;
}
