// Naming conventions that map the projections of optimised and tool-built graphs back to Hugging
// Face module paths, so IA3 targets the modules PEFT would (same keys, same shapes).
//
// Three sources of names, each a table of facts about a tool or a model family, not about a file:
//   - onnxruntime-genai's model builder names a decoder's attention `attn` where transformers has
//     `self_attn` (`/model/layers.0/attn/qkv_proj/MatMul`), and packs q/k/v into one `qkv_proj`
//     that transformers keeps separate (except where the model itself packs them: Phi-3);
//   - onnxruntime's transformer optimizer fuses the query/key/value projections into Attention
//     (`Attention_0_qkv_weight`): the names come from the attention's output projection, which the
//     optimizer leaves alone (`bert.encoder.layer.0.attention.output.dense`), and the family's
//     layout of the sibling modules (`…attention.self.query`);
//   - families whose own projection is packed (GPT-2's `c_attn`, GPT-NeoX's `query_key_value`)
//     keep it as one module, as PEFT does.

/** A decoder layer's attention as the genai builder names it. */
const GENAI_ATTN = /^(model\.layers\.\d+)\.attn\.((?:q|k|v|qkv|o)_proj)$/;

/**
 * The transformers path of a path the genai builder named (`model.layers.0.attn.o_proj` →
 * `model.layers.0.self_attn.o_proj`); other paths unchanged. Only applies to graphs that name no
 * `self_attn` module themselves (`hasSelfAttn` false).
 */
export function transformersPath(path: string, hasSelfAttn: boolean): string {
  if (hasSelfAttn) return path;
  const m = GENAI_ATTN.exec(path);
  return m ? `${m[1]}.self_attn.${m[2]}` : path;
}

/** Packed projections a tool made from modules that transformers keeps separate. */
const TOOL_PACKED: Readonly<Record<string, readonly string[]>> = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
};

/** Model types whose transformers modules are packed themselves (so a packed projection is one module). */
const NATIVELY_PACKED: Readonly<Record<string, readonly string[]>> = {
  phi3: ['qkv_proj'],
  phi4mm: ['qkv_proj'],
};

/**
 * The module paths of the parts of a packed projection at `path` (q, k, v in column order), or
 * undefined when the path is one module of the model.
 */
export function packedPartPaths(path: string, parts: number, modelType: string | undefined): string[] | undefined {
  const dot = path.lastIndexOf('.');
  const name = path.slice(dot + 1);
  const names = TOOL_PACKED[name];
  if (!names || names.length !== parts) return undefined;
  if (modelType && NATIVELY_PACKED[modelType]?.includes(name)) return undefined;
  return names.map((n) => `${path.slice(0, dot + 1)}${n}`);
}

/** Where a family keeps the query/key/value projections, relative to the attention's output projection. */
type Siblings = { readonly separate: readonly [string, string, string] } | { readonly packed: string };

const SIBLINGS: readonly (readonly [outputSuffix: string, siblings: Siblings])[] = [
  ['attention.output.dense', { separate: ['attention.self.query', 'attention.self.key', 'attention.self.value'] }], // BERT, RoBERTa, ELECTRA, …
  ['attention.out_lin', { separate: ['attention.q_lin', 'attention.k_lin', 'attention.v_lin'] }], // DistilBERT
  ['self_attn.o_proj', { separate: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] }], // Llama, Mistral, Qwen2, Gemma
  ['self_attn.out_proj', { separate: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] }], // BART, OPT
  ['self_attn.dense', { separate: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] }], // Phi
  ['attn.out_proj', { separate: ['attn.q_proj', 'attn.k_proj', 'attn.v_proj'] }], // GPT-J
  ['attn.c_proj', { packed: 'attn.c_attn' }], // GPT-2
  ['attention.dense', { packed: 'attention.query_key_value' }], // GPT-NeoX
  ['self_attention.dense', { packed: 'self_attention.query_key_value' }], // BLOOM, Falcon
];

/** The query/key/value paths of the attention whose output projection is at `outputPath`. */
export function siblingPaths(outputPath: string): { separate?: readonly [string, string, string]; packed?: string } | undefined {
  for (const [suffix, s] of SIBLINGS) {
    if (outputPath !== suffix && !outputPath.endsWith(`.${suffix}`)) continue;
    const prefix = outputPath.slice(0, outputPath.length - suffix.length);
    return 'packed' in s ? { packed: prefix + s.packed } : { separate: s.separate.map((p) => prefix + p) as unknown as [string, string, string] };
  }
  return undefined;
}
