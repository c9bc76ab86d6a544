// The demo model's tokenizer (demo/public/models/sotu-gpt2/tokenizer.json), trained by
// demo/tools/pretrain.py with its own byte-level BPE trainer, read by @huggingface/tokenizers as
// the page reads it: the library must give exactly the ids of the script's Python encoder
// (reference.json, written from the same run that trained the model) and decode them back.
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';

const DIR = new URL('../../demo/public/models/sotu-gpt2/', import.meta.url);
const readJson = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, DIR), 'utf8')) as T;

interface Reference {
  tokenizer_samples: { text: string; ids: number[] }[];
  input: { text: string; input_ids: number[][] };
}
interface Config {
  vocab_size: number;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
}

const tokenizerJson = readJson<{ model: { vocab: Record<string, number>; merges: string[] } }>('tokenizer.json');
const tokenizer = new Tokenizer(tokenizerJson, readJson<object>('tokenizer_config.json'));
const reference = readJson<Reference>('reference.json');
const config = readJson<Config>('config.json');

describe('demo tokenizer (sotu-gpt2)', () => {
  it('encodes the reference strings to the Python encoder ids and decodes them back', () => {
    expect(reference.tokenizer_samples).toHaveLength(3);
    for (const { text, ids } of reference.tokenizer_samples) {
      expect(tokenizer.encode(text).ids, text).toEqual(ids);
      expect(tokenizer.decode(ids), text).toBe(text);
    }
    // The model's reference input is the first 12 ids of its text.
    const input = reference.input.input_ids[0]!;
    expect(tokenizer.encode(reference.input.text).ids).toEqual(input);
  });

  it('has the vocabulary the model config declares, with <|endoftext|> as bos = eos = pad', () => {
    const vocab = tokenizer.get_vocab();
    expect(vocab.size).toBe(config.vocab_size);
    const ids = [...vocab.values()].sort((a, b) => a - b);
    expect(ids[0]).toBe(0);
    expect(ids[ids.length - 1]).toBe(config.vocab_size - 1);
    expect(new Set(ids).size).toBe(config.vocab_size); // ids are 0..vocab_size-1, each once
    const eot = tokenizer.token_to_id('<|endoftext|>');
    expect(eot).toBe(config.eos_token_id);
    expect(config.bos_token_id).toBe(eot);
    expect(config.pad_token_id).toBe(eot);
    // 256 byte symbols + one merge per further id + the special token.
    expect(tokenizerJson.model.merges).toHaveLength(config.vocab_size - 256 - 1);
  });

  it('splits the special token out of text and can skip it when decoding', () => {
    const eot = config.eos_token_id;
    const ids = tokenizer.encode('Union.<|endoftext|>Congress').ids;
    expect(ids.filter((i) => i === eot)).toHaveLength(1);
    expect(tokenizer.decode(ids)).toBe('Union.<|endoftext|>Congress');
    expect(tokenizer.decode(ids, { skip_special_tokens: true })).toBe('Union.Congress');
  });

  it('is lossless on text outside the corpus (byte-level: any UTF-8 round-trips)', () => {
    const texts = [
      'Call me Ishmael.  Some years ago—never mind how long precisely—',
      'naïve café, 東京, emoji 🙂, tabs\tand\nnew lines',
      "  leading spaces, 'quoted' \"words\", 3.14159 and 1,000,000",
    ];
    for (const text of texts) {
      const ids = tokenizer.encode(text).ids;
      expect(ids.every((i) => Number.isInteger(i) && i >= 0 && i < config.vocab_size), text).toBe(true);
      expect(tokenizer.decode(ids), text).toBe(text);
    }
  });
});
