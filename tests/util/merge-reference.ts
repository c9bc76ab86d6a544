// The format of tests/fixtures/merge-fp16/merge_reference.json (written by tests/fixtures/merge_fp16.py:
// PyTorch's float16 IA3 merge and unmerge) and its decoding: pure data and functions, so unit and
// browser tests both read it.

/** Element-wise cases and the fp16 GPT-2 variants' merged and unmerged tensors (halves as bits). */
export interface MergeReference {
  rounding: { weight_bits: number[]; vector: number[]; merged_bits: number[]; unmerged_bits: number[] };
  gpt2: {
    files: string[];
    adapters: string[];
    tensors: Record<string, { dims: number[]; merged: string; unmerged: string; not_restored: number }>;
  };
}

/** Half bit patterns from the reference's base64 of little-endian uint16. */
export function halvesOf(b64: string): number[] {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return Array.from({ length: bytes.length / 2 }, (_, i) => bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
}
