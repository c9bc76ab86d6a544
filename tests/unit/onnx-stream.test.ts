// Streaming loads without a GPU: a model read in chunks of a few bytes gives the graph the
// in-memory decoder gives; the raw_data of large tensors (single file) and their ranges of external
// data go to the sink, whole and in order, and nowhere else (those initializers have no CPU data);
// progress reaches every byte and tensor; truncated files and external files that end early are
// FormatErrors naming the byte or the tensor; the files are read again for the export.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { loadOnnx } from '../../src/onnx/load.js';
import { readModelStream, type ByteSource, type LoadProgress, type TensorHeader, type TensorSink } from '../../src/onnx/stream.js';

const gpt2 = new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model.onnx'));

/** `bytes` in chunks of `size` bytes. */
function chunked(name: string, bytes: Uint8Array, size: number): ByteSource {
  return {
    name,
    size: bytes.length,
    async *chunks() {
      for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
    },
  };
}

/** A sink that records what each tensor received. */
function recorder(): TensorSink & { got: Map<string, { header: TensorHeader; bytes: number[]; ended: boolean }> } {
  const got = new Map<string, { header: TensorHeader; bytes: number[]; ended: boolean }>();
  return {
    got,
    begin(header) {
      const entry = { header, bytes: [] as number[], ended: false };
      got.set(header.name, entry);
      return { write: (b) => entry.bytes.push(...b), end: () => (entry.ended = true) };
    },
  };
}

/** The raw_data of every initializer of the file over `min` bytes. */
function largeRaw(bytes: Uint8Array, min: number): Map<string, Uint8Array> {
  const p = onnx.ModelProto.decode(bytes);
  return new Map(p.graph!.initializer!.filter((t) => (t.rawData?.length ?? 0) > min).map((t) => [t.name!, t.rawData!]));
}

describe('streaming reads', () => {
  it('gives the in-memory graph, large raw_data to the sink, in chunks of 7 bytes', async () => {
    const sink = recorder();
    const { proto, streamed } = await readModelStream(chunked('model.onnx', gpt2, 7), { sink, keepBytes: 4096 });
    const large = largeRaw(gpt2, 4096);
    expect(large.size).toBeGreaterThan(3);
    expect([...sink.got.keys()].sort()).toEqual([...large.keys()].sort());
    for (const [name, raw] of large) {
      const g = sink.got.get(name)!;
      expect(g.ended).toBe(true);
      expect(Uint8Array.from(g.bytes)).toEqual(raw);
      expect(g.header.byteLength).toBe(raw.length);
    }
    // The sink knows how the graph reads each tensor (nodes come first in the file).
    expect(sink.got.get('transformer.wte.weight')!.header.readers.map((r) => r.opType)).toEqual(['Gather']);
    expect(streamed.size).toBe(large.size);
    const whole = onnx.ModelProto.decode(gpt2);
    expect(proto.graph!.node!.length).toBe(whole.graph!.node!.length);
    expect(proto.graph!.initializer!.map((t) => t.name)).toEqual(whole.graph!.initializer!.map((t) => t.name));
  });

  it('loads with a sink: large initializers without CPU data, the rest as decodeOnnx gives them; progress to the last byte', async () => {
    const sink = recorder();
    const events: LoadProgress[] = [];
    const r = await loadOnnx(gpt2, { sink, keepBytes: 4096, onProgress: (p) => events.push(p) });
    const ref = decodeOnnx(gpt2);
    for (const [name, init] of ref.initializers) {
      const got = r.graph.initializers.get(name)!;
      expect(got.dims).toEqual(init.dims);
      if (sink.got.has(name)) expect(got.data).toBeUndefined();
      else expect(Array.from(got.data as ArrayLike<number>)).toEqual(Array.from(init.data as ArrayLike<number>));
    }
    const last = events[events.length - 1]!;
    expect(last.loadedBytes).toBe(gpt2.length);
    expect(last.tensors).toBe(last.totalTensors);
    expect(events.every((e, i) => i === 0 || e.loadedBytes >= events[i - 1]!.loadedBytes)).toBe(true);
    expect((await r.reread()).bytes).toEqual(gpt2);
  });

  it('streams ranges of external data to the sink and keeps the small ones', async () => {
    const p = onnx.ModelProto.decode(gpt2);
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (const t of p.graph!.initializer!) {
      if ((t.rawData?.length ?? 0) < 256) continue;
      parts.push(t.rawData!.slice());
      t.externalData = [
        { key: 'location', value: 'model.onnx_data' },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(t.rawData!.length) },
      ];
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      offset += t.rawData!.length;
      t.rawData = new Uint8Array(0);
    }
    const data = new Uint8Array(offset);
    parts.reduce((at, c) => (data.set(c, at), at + c.length), 0);
    const model = onnx.ModelProto.encode(p).finish();
    const sink = recorder();
    const r = await loadOnnx(model, { sink, keepBytes: 4096, externalData: { 'model.onnx_data': new Blob([data]) } });
    const large = largeRaw(gpt2, 4096);
    expect([...sink.got.keys()].sort()).toEqual([...large.keys()].sort());
    for (const [name, raw] of large) expect(Uint8Array.from(sink.got.get(name)!.bytes)).toEqual(raw);
    const ref = decodeOnnx(gpt2);
    const small = [...ref.initializers.values()].find((i) => !large.has(i.name) && i.dims.length === 1 && i.dims[0]! >= 64)!;
    expect(Array.from(r.graph.initializers.get(small.name)!.data as Float32Array)).toEqual(Array.from(small.data as Float32Array));
    // An external file shorter than its tensors' ranges.
    const short = await loadOnnx(model, { sink: recorder(), keepBytes: 4096, externalData: { 'model.onnx_data': data.subarray(0, data.length - 8) } }).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(FormatError);
    expect((short as Error).message).toMatch(/^model\.onnx_data: tensor '.+' needs bytes \d+\.\.\d+ but the file has \d+ bytes/);
  });

  it('refuses a truncated file with the byte offset, whatever the chunking', async () => {
    for (const size of [5, 4096]) {
      const e = await readModelStream(chunked('cut.onnx', gpt2.subarray(0, 20000), size), { sink: recorder(), keepBytes: 4096 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as FormatError).byteOffset).toBeGreaterThan(0);
    }
  });
});
