// safetensors reader and writer: golden bytes, round trips, and a corpus of broken files.
//
// Golden bytes are derived by hand from the format rules (comments show the arithmetic) and were
// cross-checked once against Python's safetensors 0.8.0 (`safetensors.numpy.save`), which is not
// needed to run these tests.

import { describe, expect, it } from 'vitest';
import { FormatError, InputError } from '../../src/errors.js';
import {
  MAX_HEADER_BYTES,
  halfToFloat,
  readSafetensors,
  tensorToFloat32,
  writeSafetensors,
  type TensorToWrite,
} from '../../src/io/safetensors.js';

const enc = new TextEncoder();
const hex = (s: string): Uint8Array => new Uint8Array((s.replace(/\s+/g, '').match(/../g) ?? []).map((b) => parseInt(b, 16)));

/** A file from a header string (or raw header bytes) and data bytes; `n` overrides the length field. */
function file(header: string | Uint8Array, data: Uint8Array | number[] = [], n?: bigint): Uint8Array {
  const h = typeof header === 'string' ? enc.encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const entry = (dtype: string, shape: number[], begin: number, end: number): string =>
  `{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`;

function headerText(bytes: Uint8Array): string {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return new TextDecoder().decode(bytes.subarray(8, 8 + n));
}

function expectFormatError(bytes: Uint8Array, message: RegExp, byteOffset?: number): FormatError {
  let caught: unknown;
  try {
    readSafetensors(bytes, 'broken.safetensors');
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a FormatError matching ${message}`).toBeInstanceOf(FormatError);
  const err = caught as FormatError;
  expect(err.message).toMatch(/^broken\.safetensors: /);
  expect(err.message).toMatch(message);
  if (byteOffset !== undefined) expect(err.byteOffset).toBe(byteOffset);
  return err;
}

describe('writer: golden bytes', () => {
  it('one F32 tensor with PEFT metadata', () => {
    // Header JSON (compact serde_json, "__metadata__" first):
    //   {"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
    //   = 16 ({"__metadata__":) + 15 ({"format":"pt"}) + 1 (,) + 4 ("a":) + 15 ({"dtype":"F32",)
    //   + 12 ("shape":[2],) + 20 ("data_offsets":[0,8]) + 2 (}}) = 85 bytes,
    //   padded with 3 spaces to 88 = 0x58 (a multiple of 8).
    // Then 1.0f = 00 00 80 3f and 2.0f = 00 00 00 40 (little endian). 8 + 88 + 8 = 104 bytes.
    const golden = new Uint8Array([
      ...hex('5800000000000000'),
      ...enc.encode('{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   '),
      ...hex('0000803f 00000040'),
    ]);
    const bytes = writeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } }, { format: 'pt' });
    expect(bytes.length).toBe(104);
    expect([...bytes]).toEqual([...golden]);
  });

  it('an empty file is "{}" padded to 8 bytes', () => {
    expect([...writeSafetensors({})]).toEqual([...hex('0800000000000000'), ...enc.encode('{}      ')]);
    // Python's 0.8.0 writes the invalid `{},"__metadata__":{}}` here (a serde map length-hint
    // bug); we write the valid object.
    expect(headerText(writeSafetensors({}, {}))).toBe('{"__metadata__":{}}     ');
  });

  it('orders tensors by descending dtype alignment, then name; escapes like serde_json', () => {
    const u8 = (dtype: 'U8' | 'BOOL'): TensorToWrite => ({ dtype, shape: [1], data: new Uint8Array([1]) });
    const bytes = writeSafetensors(
      {
        b: { dtype: 'F16', shape: [1], data: new Uint16Array([0x3c00]) },
        a: { dtype: 'F16', shape: [1], data: new Uint16Array([0x4000]) },
        z: { dtype: 'I64', shape: [1], data: new BigInt64Array([-1n]) },
        c: { dtype: 'F32', shape: [1], data: new Float32Array([0.5]) },
        d: u8('BOOL'),
        'é\n\x01\x7f"\\/': u8('U8'),
      },
      { format: 'pt', b: 'x', a: 'y☃' },
    );
    // Rule (tensor.rs `prepare`): sort by Dtype descending (I64 > F32 > F16 > U8 > BOOL in the
    // enum), ties by name; metadata keys sorted here (a Rust HashMap has no order). Control
    // characters become \n / \u0001 (lowercase hex); DEL, '/' and non-ASCII stay raw UTF-8.
    const expected =
      '{"__metadata__":{"a":"y☃","b":"x","format":"pt"},' +
      `"z":${entry('I64', [1], 0, 8)},"c":${entry('F32', [1], 8, 12)},"a":${entry('F16', [1], 12, 14)},` +
      `"b":${entry('F16', [1], 14, 16)},"é\\n\\u0001\x7f\\"\\\\/":${entry('U8', [1], 16, 17)},"d":${entry('BOOL', [1], 17, 18)}}`;
    expect(enc.encode(expected).length).toBe(393);
    expect(headerText(bytes)).toBe(expected + ' '.repeat(7)); // 393 → 400
    expect(bytes.length).toBe(8 + 400 + 18);
    expect([...bytes.subarray(408)]).toEqual([
      ...hex('ffffffffffffffff'), ...hex('0000003f'), ...hex('0040'), ...hex('003c'), 1, 1,
    ]);
  });

  it('scalars and empty tensors', () => {
    const bytes = writeSafetensors({
      e: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      s: { dtype: 'F64', shape: [], data: new Float64Array([3]) },
    });
    // 108 bytes of JSON + 4 spaces = 112 = 0x70 ('p'), as Python writes it.
    expect(headerText(bytes)).toBe(`{"s":${entry('F64', [], 0, 8)},"e":${entry('F32', [0, 3], 8, 8)}}    `);
    expect(bytes[0]).toBe(0x70);
    const back = readSafetensors(bytes);
    expect(back.tensors.get('s')!.shape).toEqual([]);
    expect([...tensorToFloat32(back.tensors.get('s')!)]).toEqual([3]);
    expect(back.tensors.get('e')!.data.length).toBe(0);
  });

  it('reads the reference implementation\'s own example (unpadded header)', () => {
    // From tensor.rs's doc test: b"<\0\0\0\0\0\0\0{...}" + 16 zero bytes; '<' = 60 = header length.
    const bytes = file('{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', new Uint8Array(16));
    expect(bytes[0]).toBe(0x3c);
    const t = readSafetensors(bytes).tensors.get('test')!;
    expect(t.dtype).toBe('I32');
    expect(t.shape).toEqual([2, 2]);
    expect(t.data.length).toBe(16);
  });
});

describe('round trip', () => {
  it('every dtype, values and metadata intact, data as views', () => {
    const tensors: Record<string, TensorToWrite> = {
      f64: { dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -1e300]) },
      f32: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 3.5, 1e-30]) },
      f16: { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
      bf16: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0x4049]) },
      i64: { dtype: 'I64', shape: [1], data: new BigInt64Array([-(2n ** 62n)]) },
      u64: { dtype: 'U64', shape: [1], data: new BigUint64Array([2n ** 63n]) },
      i32: { dtype: 'I32', shape: [2], data: new Int32Array([-5, 7]) },
      u32: { dtype: 'U32', shape: [1], data: new Uint32Array([4e9]) },
      i16: { dtype: 'I16', shape: [1], data: new Int16Array([-300]) },
      u16: { dtype: 'U16', shape: [1], data: new Uint16Array([65000]) },
      i8: { dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) },
      u8: { dtype: 'U8', shape: [1], data: new Uint8Array([255]) },
      bool: { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
    };
    const bytes = writeSafetensors(tensors, { format: 'pt' });
    const back = readSafetensors(bytes);
    expect({ ...back.metadata }).toEqual({ format: 'pt' });
    expect(Object.getPrototypeOf(back.metadata)).toBeNull();
    expect([...back.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const r = back.tensors.get(name)!;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect([...r.data]).toEqual([...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)]);
      expect(r.data.buffer).toBe(bytes.buffer); // a view, not a copy
    }
    // Writing what was read gives the same bytes (raw Uint8Array data is accepted for any dtype).
    expect([...writeSafetensors(back.tensors, back.metadata)]).toEqual([...bytes]);
    // Map iteration follows the data offsets.
    const begins = [...back.tensors.values()].map((t) => t.data.byteOffset);
    expect(begins).toEqual([...begins].sort((a, b) => a - b));
  });

  it('writes subarray views at their own offset', () => {
    const big = new Float32Array([9, 9, 1, 2, 9]);
    const bytes = writeSafetensors({ v: { dtype: 'F32', shape: [2], data: big.subarray(2, 4) } });
    expect([...tensorToFloat32(readSafetensors(bytes).tensors.get('v')!)]).toEqual([1, 2]);
  });

  it('converts to float32', () => {
    const bytes = writeSafetensors({
      h: { dtype: 'F16', shape: [7], data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x8000]) },
      b: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0x4049]) },
      d: { dtype: 'F64', shape: [2], data: new Float64Array([0.1, 1e300]) },
      f: { dtype: 'F32', shape: [1], data: new Float32Array([0.25]) },
      i: { dtype: 'I32', shape: [1], data: new Int32Array([1]) },
    });
    const t = readSafetensors(bytes).tensors;
    const h = tensorToFloat32(t.get('h')!);
    expect([...h.subarray(0, 6)]).toEqual([1, -2, 65504, 2 ** -24, Infinity, -Infinity]);
    expect(Object.is(h[6], -0)).toBe(true);
    expect(Number.isNaN(halfToFloat(0x7e00))).toBe(true);
    expect([...tensorToFloat32(t.get('b')!)]).toEqual([1, 3.140625]);
    expect([...tensorToFloat32(t.get('d')!)]).toEqual([Math.fround(0.1), Infinity]);
    const f = t.get('f')!;
    const f32 = tensorToFloat32(f);
    expect([...f32]).toEqual([0.25]);
    expect(f32.buffer === bytes.buffer).toBe(f.data.byteOffset % 4 === 0);
    expect(() => tensorToFloat32(t.get('i')!, 'i')).toThrow(InputError);
    // An F32 tensor at an odd offset is copied, not misread.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const fs = readSafetensors(shifted.subarray(1)).tensors.get('f')!;
    expect(fs.data.byteOffset % 4).not.toBe(0);
    expect([...tensorToFloat32(fs)]).toEqual([0.25]);
  });

  it('rejects invalid tensors to write with InputError', () => {
    const w = (t: Record<string, unknown>, meta?: Record<string, unknown>) => () =>
      writeSafetensors(t as Record<string, TensorToWrite>, meta as Record<string, string>);
    expect(w({ a: { dtype: 'F32', shape: [2], data: new Float64Array(2) } })).toThrow(/needs a Float32Array/);
    expect(w({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/needs 12 bytes, data has 8/);
    expect(w({ a: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } })).toThrow(/non-negative integers/);
    expect(w({ a: { dtype: 'F8', shape: [1], data: new Uint8Array(1) } })).toThrow(/unknown dtype "F8"/);
    expect(w({ a: { dtype: 'BOOL', shape: [1], data: new Uint8Array([2]) } })).toThrow(/BOOL element 0 is 2/);
    expect(w({ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } })).toThrow(/reserved/);
    expect(w({ constructor: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } })).toThrow(/prototype key/);
    expect(w({ ['\ud800']: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } })).toThrow(/lone surrogate/);
    expect(w({}, { format: 3 })).toThrow(/must be a string/);
    for (const make of [
      w({ a: { dtype: 'F32', shape: [2], data: new Float64Array(2) } }),
      w({}, { format: 3 }),
    ]) expect(make).toThrow(InputError);
  });
});

describe('reader: broken files', () => {
  const valid = writeSafetensors(
    { a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }, b: { dtype: 'I32', shape: [1], data: new Int32Array([3]) } },
    { format: 'pt' },
  );
  const dataStart = 8 + Number(new DataView(valid.buffer).getBigUint64(0, true));

  it('is valid before it is broken', () => {
    expect(readSafetensors(valid).tensors.size).toBe(2);
  });

  it('every truncation is a FormatError', () => {
    for (let cut = 0; cut < valid.length; cut++) expectFormatError(valid.slice(0, cut), /./);
    expectFormatError(valid.slice(0, 0), /file is 0 bytes, too short for the 8-byte header length/);
    expectFormatError(valid.slice(0, 7), /file is 7 bytes, too short/);
    expectFormatError(valid.slice(0, 8), /header length \d+ runs past the end of the file \(header would end at byte \d+, file is 8 bytes\)/, 0);
    expectFormatError(valid.slice(0, 40), /runs past the end of the file/, 0);
    // Cut inside the data area: the last tensor's range leaves the file.
    expectFormatError(valid.slice(0, valid.length - 2), /tensor "b": data_offsets \[8, 12\] extend past the end of the data area \(10 bytes, starting at file byte \d+\)/, dataStart + 8);
  });

  it('header length past the end, or huge', () => {
    expectFormatError(file('{}', [], 1000n), /header length 1000 runs past the end of the file \(header would end at byte 1008, file is 10 bytes\)/, 0);
    expectFormatError(file('{}', [], 2n ** 64n - 1n), /header length 18446744073709551615 exceeds the limit of 100000000 bytes/, 0);
    expectFormatError(file('{}', [], BigInt(MAX_HEADER_BYTES + 1)), /exceeds the limit/, 0);
    expectFormatError(file('', [], 0n), /header is empty/, 8);
  });

  it('header not JSON, not UTF-8, not an object', () => {
    expectFormatError(file('{not json}'), /header is not valid JSON: unexpected character "n"/, 9);
    expectFormatError(file('{"a":{}'), /header is not valid JSON: unexpected end of header/, 15);
    expectFormatError(file('{} x'), /unexpected character "x"/, 11);
    expectFormatError(file('{"a":1,}'), /unexpected character "}"/, 15);
    expectFormatError(file('{"a":01}'), /unexpected character "1"/, 14);
    expectFormatError(file('{"a":"\x01"}'), /control character in string/, 14);
    expectFormatError(file('{"a":"\\x"}'), /invalid escape in string/, 14);
    expectFormatError(file('{"\\ud800":1}'), /lone surrogate/, 10);
    expectFormatError(file(new Uint8Array([...enc.encode('{"é\xff'.slice(0, 3)), 0xff, ...enc.encode('":1}')])), /header is not valid UTF-8/, 12);
    expectFormatError(file(new Uint8Array([...enc.encode('{"'), 0xc0, 0x80, ...enc.encode('":1}')])), /not valid UTF-8/, 10); // overlong NUL
    expectFormatError(file(new Uint8Array([...enc.encode('{"'), 0xed, 0xa0, 0x80, ...enc.encode('":1}')])), /not valid UTF-8/, 10); // surrogate
    expectFormatError(file('[1]'), /header must begin with '\{' \(0x7b\), found 0x5b/, 8);
    expectFormatError(file(' {}'), /must begin with '\{'/, 8);
    expectFormatError(file(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), /nesting deeper than 16 levels/);
  });

  it('byte offsets count UTF-8 bytes, not characters', () => {
    // '{"☃":x}': "x" is string index 5 but header byte 7 ('{', '"', 3 bytes of ☃, '"', ':'),
    // so file byte 8 + 7 = 15 (counting characters would say 13).
    expectFormatError(file('{"☃":x}'), /unexpected character "x"/, 15);
  });

  it('entries with the wrong fields or types', () => {
    const one = (e: string, data: number[] = [0, 0, 0, 0]) => file(`{"t":${e}}`, data);
    expectFormatError(one('[]'), /tensor "t": entry must be an object, found an array/, 13);
    expectFormatError(one('{"shape":[1],"data_offsets":[0,4]}'), /tensor "t": missing field "dtype"/);
    expectFormatError(one('{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}'), /tensor "t": unknown field "extra"/);
    expectFormatError(one('{"dtype":5,"shape":[1],"data_offsets":[0,4]}'), /tensor "t": dtype must be a string, found the number 5/);
    expectFormatError(one(entry('F128', [1], 0, 4)), /tensor "t": unknown dtype "F128"/);
    expectFormatError(one(entry('F8_E4M3', [4], 0, 4)), /tensor "t": unsupported dtype "F8_E4M3"/);
    expectFormatError(one(entry('F32', [-1], 0, 4)), /tensor "t": shape must be an array of non-negative integers, found the number -1 at index 0/);
    expectFormatError(one(entry('F32', [1.0], 0, 4).replace('[1]', '[1.0]')), /shape must be an array of non-negative integers, found the number 1\.0 at index 0/);
    expectFormatError(one(entry('F32', [1], 0, 4).replace('[1]', '[1e0]')), /found the number 1e0/);
    expectFormatError(one(entry('F32', [1], 0, 4).replace('[1]', '"1"')), /shape must be an array of non-negative integers, found the string "1"/);
    expectFormatError(one(entry('F32', [1], 0, 4).replace('[1]', '[100000000000000000000]')), /shape: 100000000000000000000 at index 0 is too large/);
    expectFormatError(one(entry('F32', [1], 0, 4).replace('[0,4]', '[0,4,8]')), /tensor "t": data_offsets must be \[begin, end\], found 3 numbers/);
    expectFormatError(one(entry('F32', [1], 0, 4).replace('[0,4]', '[4,0]')), /tensor "t": data_offsets \[4, 0\] end before they begin/);
    expectFormatError(file(`{"__metadata__":{"format":1},"t":${entry('U8', [1], 0, 1)}}`, [0]), /__metadata__ value of "format" must be a string, found the number 1/);
    expectFormatError(file(`{"__metadata__":[],"t":${entry('U8', [1], 0, 1)}}`, [0]), /__metadata__ must be an object of strings, found an array/);
  });

  it('element count × dtype size must equal the byte range', () => {
    expectFormatError(file(`{"t":${entry('F32', [3], 0, 8)}}`, new Array(8).fill(0)),
      /tensor "t": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/);
    // A product past 2^53 must not wrap around to a "matching" size.
    const huge = `{"t":${entry('U8', [4294967296, 4294967296], 0, 0)}}`;
    expectFormatError(file(huge), /needs 18446744073709551616 bytes but data_offsets \[0, 0\] hold 0/);
    expectFormatError(file(`{"t":${entry('F32', [0, 5], 0, 0)}}`, [1]), /data area bytes \[0, 1\) belong to no tensor \(after the last one\)/);
  });

  it('ranges must stay inside the data area, not overlap, and leave no gap', () => {
    const two = (a: string, b: string, n: number) => file(`{"a":${a},"b":${b}}`, new Array(n).fill(0));
    const out = file(`{"a":${entry('F32', [2], 0, 8)}}`, [0, 0, 0, 0]);
    const outStart = out.length - 4;
    expectFormatError(out, /tensor "a": data_offsets \[0, 8\] extend past the end of the data area \(4 bytes, starting at file byte \d+\)/, outStart);
    const overlap = two(entry('F32', [2], 0, 8), entry('F32', [2], 4, 12), 12);
    expectFormatError(overlap, /tensor "b": data_offsets \[4, 12\] overlap tensor "a" \[0, 8\]/, overlap.length - 12 + 4);
    const same = two(entry('F32', [1], 0, 4), entry('F32', [1], 0, 4), 4);
    expectFormatError(same, /overlap tensor "a" \[0, 4\]/);
    const gap = two(entry('F32', [1], 0, 4), entry('F32', [1], 8, 12), 12);
    expectFormatError(gap, /data area bytes \[4, 8\) belong to no tensor \(gap before tensor "b"\)/, gap.length - 12 + 4);
    const late = file(`{"a":${entry('F32', [1], 4, 8)}}`, new Array(8).fill(0));
    expectFormatError(late, /data area bytes \[0, 4\) belong to no tensor \(gap before tensor "a"\)/, late.length - 8);
    const trailing = file(`{"a":${entry('F32', [1], 0, 4)}}`, new Array(6).fill(0));
    expectFormatError(trailing, /data area bytes \[4, 6\) belong to no tensor \(after the last one\)/, trailing.length - 2);
    expectFormatError(file('{}', [7]), /data area bytes \[0, 1\) belong to no tensor/);
    // Zero-length tensors may share an offset; header order does not matter.
    const fine = two(entry('F32', [0], 4, 4), entry('F32', [1], 0, 4), 4);
    expect([...readSafetensors(fine).tensors.keys()]).toEqual(['b', 'a']);
  });

  it('duplicate keys and prototype keys', () => {
    const e = entry('U8', [1], 0, 1);
    expectFormatError(file(`{"a":${e},"a":${e}}`, [0]), /duplicate key "a"/, 8 + 5 + e.length + 1);
    expectFormatError(file(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, [0]), /duplicate key "dtype"/);
    expectFormatError(file(`{"__metadata__":{"k":"1","k":"2"}}`), /duplicate key "k"/);
    expectFormatError(file(`{"__proto__":${e}}`, [0]), /forbidden key "__proto__"/, 9);
    expectFormatError(file(`{"constructor":${e}}`, [0]), /forbidden key "constructor"/);
    expectFormatError(file(`{"__metadata__":{"prototype":"x"}}`), /forbidden key "prototype"/);
    // Escaped spellings are the same key.
    expectFormatError(file(`{"\\u005f_proto__":${e}}`, [0]), /forbidden key "__proto__"/);
    expectFormatError(file(`{"a":${e},"\\u0061":${e}}`, [0]), /duplicate key "a"/);
    expect(({} as Record<string, unknown>).dtype).toBeUndefined();
  });

  it('accepts what the reference accepts: null metadata, whitespace padding, any header order', () => {
    const ok = file(`{"__metadata__":null,"b":${entry('U8', [1], 1, 2)},"a":${entry('U8', [1], 0, 1)}}\n\t `, [5, 6]);
    const r = readSafetensors(ok);
    expect({ ...r.metadata }).toEqual({});
    expect([...r.tensors.keys()]).toEqual(['a', 'b']);
    expect([...r.tensors.get('b')!.data]).toEqual([6]);
  });

  it('random corruption yields a FormatError or a valid parse, never anything else', () => {
    // mulberry32: a fixed-seed PRNG so failures reproduce.
    let seed = 0x1a3;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    let errors = 0;
    for (let k = 0; k < 3000; k++) {
      const bytes = valid.slice();
      const edits = 1 + Math.floor(rand() * 3);
      for (let j = 0; j < edits; j++) {
        const at = Math.floor(rand() * bytes.length);
        bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : bytes[at]! ^ (1 << Math.floor(rand() * 8));
      }
      try {
        readSafetensors(bytes);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(2000); // most corruptions are caught
  });
});
