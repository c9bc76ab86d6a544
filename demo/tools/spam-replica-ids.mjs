// Tokenises the demo's spam corpus as the page does (worker.ts classIds: the first seqLen − 1 tokens of
// the text cut at 8 characters a token, then <|endoftext|>) for demo/tools/spam-replica.py, at
// 32 to 512 tokens (256 is the shipped models' n_positions; 512 only for the bag-of-tokens checks).
//   node demo/tools/spam-replica-ids.mjs demo/public/models/mail-gpt2 /tmp/ids.json
import { readFileSync, writeFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';

const [modelDir, out] = process.argv.slice(2);
if (!modelDir || !out) throw new Error('usage: node demo/tools/spam-replica-ids.mjs MODEL_DIR OUT.json');
const json = (p) => JSON.parse(readFileSync(`${modelDir}/${p}`, 'utf8'));
const tok = new Tokenizer(json('tokenizer.json'), json('tokenizer_config.json'));
const eos = json('config.json').eos_token_id;
const rows = readFileSync(new URL('../public/data/spam-assassin.jsonl', import.meta.url), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const ids = {};
for (const L of [32, 64, 128, 256, 512]) {
  ids[L] = rows.filter((r) => r.text.length > 0).map((r) => ({ s: r.split, y: r.label, ids: [...tok.encode(r.text.slice(0, (L - 1) * 8)).ids.slice(0, L - 1), eos] }));
}
writeFileSync(out, JSON.stringify(ids));
