// Parsing of the data files a user brings to the demo: CSV (header row, a `text` column, an
// optional `label` column) or JSONL (one object per line with "text" and an optional "label").
//
// The input is untrusted: the file and each row are size-bounded before anything is built from
// them, every failure is a DataFileError that names the line (1-based, as an editor shows it) and
// the problem, and nothing is silently dropped except blank lines.
//
// Labels: integers (or strings that spell integers, as every CSV cell is a string) are class
// indices; other strings are class names, mapped to indices in sorted (code-unit) order, so the
// shipped set's "ham"/"spam" become 0/1. Every row is labelled or none is.

import Papa from 'papaparse';

/** One example: the text, its class index when the file is labelled, its split when given. */
export interface DataRow {
  text: string;
  label?: number;
  split?: DataSplit;
}

export type DataSplit = 'train' | 'validation' | 'test';

export interface ParsedDataFile {
  examples: DataRow[];
  /** `labels[i]` is the name of class i; null when the file has no labels. */
  labels: string[] | null;
  format: 'csv' | 'jsonl';
}

/** A data file the demo cannot use. `line` is 1-based, null for problems of the whole file. */
export class DataFileError extends Error {
  readonly line: number | null;
  constructor(message: string, line: number | null = null) {
    super(line === null ? message : `line ${line}: ${message}`);
    this.name = 'DataFileError';
    this.line = line;
  }
}

export const MAX_FILE_BYTES = 64 * 1024 * 1024;
export const MAX_LINE_BYTES = 1024 * 1024;
/** Integer labels index an output layer; a stray large number must not allocate a huge head. */
export const MAX_CLASSES = 1000;

const SPLITS: readonly string[] = ['train', 'validation', 'test'];

/** UTF-8 length of `s[start, end)`, stopping early once it passes `limit`. */
function utf8Length(s: string, start = 0, end = s.length, limit = Infinity): number {
  let n = 0;
  for (let i = start; i < end && n <= limit; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      n += 4; // surrogate pair: one 4-byte code point
      i++;
    } else n += 3;
  }
  return n;
}

const mb = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;

/** Refuses a file larger than MAX_FILE_BYTES; call it with `File.size` before reading the file. */
export function checkDataFileSize(bytes: number): void {
  if (bytes > MAX_FILE_BYTES) {
    throw new DataFileError(`file is ${mb(bytes)}, larger than the ${mb(MAX_FILE_BYTES)} limit`);
  }
}

function checkLineSize(content: string, start: number, end: number, line: number): void {
  // A line of n UTF-16 units holds at most 3n UTF-8 bytes: short lines need no count.
  if ((end - start) * 3 <= MAX_LINE_BYTES) return;
  const bytes = utf8Length(content, start, end, MAX_LINE_BYTES);
  if (bytes > MAX_LINE_BYTES) {
    throw new DataFileError(`row is longer than the ${mb(MAX_LINE_BYTES)} limit`, line);
  }
}

type RawLabel = { kind: 'int'; value: number } | { kind: 'name'; value: string } | null;

interface RawRow {
  line: number;
  text: string;
  label: RawLabel;
  split?: DataSplit;
}

/**
 * JSON.parse's message for one line, with its position as a column of that line. Engines append
 * "at position N" and some "(line 1 column M)" — a second line number, always 1, that contradicts
 * the file's line the error names.
 */
export function jsonProblem(message: string): string {
  const column = /\(line \d+ column (\d+)\)/.exec(message)?.[1] ?? /at position (\d+)/.exec(message)?.[1];
  const what = message
    .replace(/\s*\(line \d+ column \d+\)/, '')
    .replace(/\s*(?:in JSON )?at position \d+/, '')
    .replace(/\s*in JSON$/, '');
  const col = column === undefined ? '' : ` at column ${/\(line/.test(message) ? column : Number(column) + 1}`;
  return `not valid JSON${col}: ${what}`;
}

function readText(value: unknown, line: number): string {
  if (typeof value !== 'string') throw new DataFileError('"text" must be a string', line);
  if (value.trim() === '') throw new DataFileError('"text" is empty', line);
  return value;
}

function readLabel(value: unknown, line: number): RawLabel {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new DataFileError('label must be an integer or a string', line);
    return intLabel(value, line);
  }
  if (typeof value !== 'string') throw new DataFileError('label must be an integer or a string', line);
  const name = value.trim();
  if (name === '') return null;
  return /^[+-]?\d+$/.test(name) ? intLabel(Number(name), line) : { kind: 'name', value: name };
}

function intLabel(value: number, line: number): RawLabel {
  if (value < 0 || value >= MAX_CLASSES) {
    throw new DataFileError(`label ${value} is out of range (class indices run from 0 to ${MAX_CLASSES - 1})`, line);
  }
  return { kind: 'int', value };
}

function readSplit(value: unknown, line: number): DataSplit | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !SPLITS.includes(value)) {
    throw new DataFileError(`"split" must be one of ${SPLITS.join(', ')}, got ${JSON.stringify(value)}`, line);
  }
  return value as DataSplit;
}

function parseJsonl(content: string): RawRow[] {
  const rows: RawRow[] = [];
  let start = 0;
  for (let line = 1; start <= content.length; line++) {
    let end = content.indexOf('\n', start);
    if (end < 0) end = content.length;
    checkLineSize(content, start, end, line);
    const text = content.slice(start, end).trim();
    start = end + 1;
    if (text === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new DataFileError(jsonProblem((e as Error).message), line);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new DataFileError('expected a JSON object like {"text": "...", "label": 0}', line);
    }
    const obj = value as Record<string, unknown>;
    if (!('text' in obj)) throw new DataFileError('missing "text"', line);
    rows.push({
      line,
      text: readText(obj.text, line),
      label: readLabel(obj.label, line),
      split: readSplit(obj.split, line),
    });
  }
  return rows;
}

/**
 * The delimiter comes from the header row, not from Papa Parse's guess over the data: a
 * single-column file of prose full of commas would otherwise be split on them. A header without
 * any delimiter is a single column, read with the ASCII unit separator, which prose never holds.
 */
function headerDelimiter(content: string, name: string): string {
  if (/\.tsv$/i.test(name)) return '\t';
  const end = content.indexOf('\n');
  const header = end < 0 ? content : content.slice(0, end);
  for (const d of [',', '\t', ';']) if (header.includes(d)) return d;
  return '\u001f';
}

function parseCsv(content: string, name: string): RawRow[] {
  const rows: RawRow[] = [];
  let header: string[] | null = null;
  let textCol = -1;
  let labelCol = -1;
  let splitCol = -1;
  let failure: DataFileError | null = null;
  // Line numbers: Papa Parse reports where each row ends (meta.cursor); newlines are counted
  // incrementally from there, so quoted fields spanning lines keep the numbering right.
  let counted = 0;
  let newlines = 0;
  let prevEnd = 0;
  const lineAt = (offset: number): number => {
    for (; counted < offset; counted++) if (content.charCodeAt(counted) === 10) newlines++;
    return newlines + 1;
  };

  Papa.parse<string[]>(content, {
    delimiter: headerDelimiter(content, name),
    skipEmptyLines: 'greedy',
    step: (result, parser) => {
      let start = prevEnd;
      while (start < content.length && /\s/.test(content[start]!)) start++;
      prevEnd = result.meta.cursor;
      const line = lineAt(start);
      try {
        checkLineSize(content, start, result.meta.cursor, line);
        const quoteError = result.errors.find((e) => e.type === 'Quotes');
        if (quoteError) throw new DataFileError(`bad quoting: ${quoteError.message}`, line);
        const cells = result.data;
        if (header === null) {
          header = cells.map((c) => c.trim());
          const find = (col: string): number => header!.findIndex((h) => h.toLowerCase() === col);
          textCol = find('text');
          labelCol = find('label');
          splitCol = find('split');
          if (textCol < 0) {
            throw new DataFileError(`column 'text' not found (columns: ${header.join(', ')})`, line);
          }
          return;
        }
        if (cells.length !== header.length) {
          throw new DataFileError(
            `${cells.length} fields but the header has ${header.length} ` +
              `(put a field in double quotes when it contains ${JSON.stringify(result.meta.delimiter)})`,
            line,
          );
        }
        rows.push({
          line,
          text: readText(cells[textCol], line),
          label: labelCol < 0 ? null : readLabel(cells[labelCol], line),
          split: splitCol < 0 ? undefined : readSplit(cells[splitCol]!.trim(), line),
        });
      } catch (e) {
        failure = e as DataFileError;
        parser.abort();
      }
    },
  });
  if (failure) throw failure;
  if (header === null) throw new DataFileError('no rows (a CSV file needs a header row with a "text" column)');
  return rows;
}

/** Names classes and turns raw labels into indices; all rows labelled, or none. */
function resolveLabels(rows: RawRow[]): ParsedDataFile['labels'] {
  const labelled = rows.find((r) => r.label !== null);
  if (!labelled) return null;
  const unlabelled = rows.find((r) => r.label === null);
  if (unlabelled) {
    throw new DataFileError(
      `no label, but line ${labelled.line} has one (label every row or none)`,
      unlabelled.line,
    );
  }
  const kind = labelled.label!.kind;
  const other = rows.find((r) => r.label!.kind !== kind);
  if (other) {
    const what = (k: string): string => (k === 'int' ? 'an integer' : 'a name');
    throw new DataFileError(
      `label is ${what(other.label!.kind)} but line ${labelled.line}'s is ${what(kind)} (use one kind)`,
      other.line,
    );
  }
  if (kind === 'int') {
    const max = Math.max(...rows.map((r) => r.label!.value as number));
    return Array.from({ length: max + 1 }, (_, i) => String(i));
  }
  const names = [...new Set(rows.map((r) => r.label!.value as string))].sort();
  if (names.length > MAX_CLASSES) throw new DataFileError(`${names.length} distinct labels, more than ${MAX_CLASSES}`);
  return names;
}

/**
 * Parses a user's data file. `name` picks the format (`.csv`/`.tsv` or `.jsonl`/`.ndjson`); for
 * other names a file whose first non-blank character is `{` is read as JSONL, anything else as
 * CSV. Throws DataFileError.
 */
export function parseDataFile(name: string, content: string): ParsedDataFile {
  if (content.length * 3 > MAX_FILE_BYTES) checkDataFileSize(utf8Length(content, 0, content.length, MAX_FILE_BYTES));
  const body = content.charCodeAt(0) === 0xfeff ? content.slice(1) : content;
  const format: ParsedDataFile['format'] = /\.(csv|tsv)$/i.test(name)
    ? 'csv'
    : /\.(jsonl|ndjson)$/i.test(name) || body.trimStart().startsWith('{')
      ? 'jsonl'
      : 'csv';
  const rows = format === 'csv' ? parseCsv(body, name) : parseJsonl(body);
  if (rows.length === 0) throw new DataFileError('no rows');
  const labels = resolveLabels(rows);
  const index = new Map(labels?.map((l, i) => [l, i]));
  const examples = rows.map((r): DataRow => {
    const row: DataRow = { text: r.text };
    if (r.label !== null) row.label = r.label.kind === 'int' ? r.label.value : index.get(r.label.value)!;
    if (r.split !== undefined) row.split = r.split;
    return row;
  });
  return { examples, labels, format };
}
