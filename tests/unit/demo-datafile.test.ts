import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DataFileError,
  MAX_FILE_BYTES,
  MAX_LINE_BYTES,
  checkDataFileSize,
  parseDataFile,
  jsonProblem,
} from '../../demo/src/datafile.js';

/** Runs `fn`, expecting a DataFileError; returns it for closer checks. */
function failure(fn: () => unknown): DataFileError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DataFileError);
    return e as DataFileError;
  }
  throw new Error('expected a DataFileError, nothing was thrown');
}

describe('parseDataFile: CSV', () => {
  it('reads quoted fields with commas, doubled quotes and newlines', () => {
    const csv = 'text,label\n"Hello, world",ham\n"She said ""buy now""\nand left",spam\nplain,ham\n';
    const out = parseDataFile('mail.csv', csv);
    expect(out.format).toBe('csv');
    expect(out.labels).toEqual(['ham', 'spam']);
    expect(out.examples).toEqual([
      { text: 'Hello, world', label: 0 },
      { text: 'She said "buy now"\nand left', label: 1 },
      { text: 'plain', label: 0 },
    ]);
  });

  it('reads an unlabelled single-column file whose text is full of commas', () => {
    const out = parseDataFile('notes.csv', 'text\nhello, world, again\nsecond\n');
    expect(out.labels).toBeNull();
    expect(out.examples).toEqual([{ text: 'hello, world, again' }, { text: 'second' }]);
  });

  it('takes integer labels as class indices and other columns are ignored', () => {
    const out = parseDataFile('x.csv', 'id,Text,label\r\n1,a,2\r\n2,b,0\r\n');
    expect(out.labels).toEqual(['0', '1', '2']);
    expect(out.examples).toEqual([
      { text: 'a', label: 2 },
      { text: 'b', label: 0 },
    ]);
  });

  it('reads a split column and TSV by extension', () => {
    const out = parseDataFile('x.tsv', 'text\tlabel\tsplit\na, b\t1\ttrain\nc\t0\ttest\n');
    expect(out.examples).toEqual([
      { text: 'a, b', label: 1, split: 'train' },
      { text: 'c', label: 0, split: 'test' },
    ]);
  });

  it('names a missing text column and lists the columns', () => {
    const e = failure(() => parseDataFile('x.csv', 'body,label\nhi,1\n'));
    expect(e.message).toBe("line 1: column 'text' not found (columns: body, label)");
    expect(e.line).toBe(1);
  });

  it('counts lines across quoted newlines when reporting a field-count mismatch', () => {
    const csv = 'text,label\n"one\ntwo\nthree",1\n\nfour,1,extra\n';
    const e = failure(() => parseDataFile('x.csv', csv));
    expect(e.line).toBe(6);
    expect(e.message).toMatch(/^line 6: 3 fields but the header has 2/);
  });

  it('reports an unclosed quote on the line where its row starts', () => {
    const e = failure(() => parseDataFile('x.csv', 'text,label\nok,1\n"never closed,1\nmore,0\n'));
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/^line 3: bad quoting/);
  });

  it('refuses an empty text cell', () => {
    const e = failure(() => parseDataFile('x.csv', 'text,label\na,1\n  ,0\n'));
    expect(e.message).toBe('line 3: "text" is empty');
  });

  it('refuses a file with a header and no rows, and an empty file', () => {
    expect(failure(() => parseDataFile('x.csv', 'text,label\n')).message).toBe('no rows');
    const empty = failure(() => parseDataFile('x.csv', ''));
    expect(empty.message).toMatch(/^no rows/);
    expect(empty.line).toBeNull();
  });
});

describe('parseDataFile: JSONL', () => {
  it('reads objects, skips blank lines and ignores unknown keys', () => {
    const jsonl = '{"text":"a","label":1,"id":7}\n\n   \r\n{"text":"b\\nc","label":0}\r\n';
    const out = parseDataFile('data.jsonl', jsonl);
    expect(out.format).toBe('jsonl');
    expect(out.labels).toEqual(['0', '1']);
    expect(out.examples).toEqual([
      { text: 'a', label: 1 },
      { text: 'b\nc', label: 0 },
    ]);
  });

  it('maps string labels to indices in sorted order', () => {
    const jsonl = ['{"text":"x","label":"spam"}', '{"text":"y","label":"ham"}', '{"text":"z","label":"eggs"}'];
    const out = parseDataFile('d.jsonl', jsonl.join('\n'));
    expect(out.labels).toEqual(['eggs', 'ham', 'spam']);
    expect(out.examples.map((r) => r.label)).toEqual([2, 1, 0]);
  });

  it('treats integer-valued strings as indices, like CSV cells', () => {
    const out = parseDataFile('d.jsonl', '{"text":"x","label":"1"}\n{"text":"y","label":0}\n');
    expect(out.labels).toEqual(['0', '1']);
    expect(out.examples.map((r) => r.label)).toEqual([1, 0]);
  });

  it('detects JSONL by content when the name says nothing', () => {
    expect(parseDataFile('upload', '\n{"text":"x"}\n').format).toBe('jsonl');
    expect(parseDataFile('upload', 'text\nx\n').format).toBe('csv');
  });

  it('names the line of invalid JSON', () => {
    const e = failure(() => parseDataFile('d.jsonl', '{"text":"a"}\n\n{"text": oops}\n'));
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/^line 3: not valid JSON( at column \d+)?: /);
    // One line number only: the file's (engines add "(line 1 column N)" for the parsed line).
    expect(e.message.match(/line \d+/g)).toEqual(['line 3']);
  });

  it('gives the column of a JSON error in the engines\' wordings', () => {
    expect(jsonProblem("Expected ',' or '}' after property value in JSON at position 29")).toBe("not valid JSON at column 30: Expected ',' or '}' after property value");
    expect(jsonProblem("Expected ',' or '}' after property value in JSON at position 29 (line 1 column 30)")).toBe("not valid JSON at column 30: Expected ',' or '}' after property value");
    expect(jsonProblem('Unexpected token \'}\', "{"a":}" is not valid JSON')).toBe('not valid JSON: Unexpected token \'}\', "{"a":}" is not valid JSON');
  });

  it('refuses a line that is not an object', () => {
    expect(failure(() => parseDataFile('d.jsonl', '["text"]\n')).message).toMatch(/^line 1: expected a JSON object/);
  });

  it('names a missing or non-string text', () => {
    expect(failure(() => parseDataFile('d.jsonl', '{"text":"a"}\n{"body":"b"}\n')).message).toBe(
      'line 2: missing "text"',
    );
    expect(failure(() => parseDataFile('d.jsonl', '{"text":5}')).message).toBe('line 1: "text" must be a string');
  });

  it('refuses labels that are neither integers nor strings', () => {
    for (const bad of ['1.5', 'true', '[1]', '{"a":1}']) {
      const e = failure(() => parseDataFile('d.jsonl', `{"text":"a","label":0}\n{"text":"b","label":${bad}}\n`));
      expect(e.message).toBe('line 2: label must be an integer or a string');
    }
  });

  it('refuses negative and huge class indices', () => {
    expect(failure(() => parseDataFile('d.jsonl', '{"text":"a","label":-1}')).message).toMatch(
      /^line 1: label -1 is out of range/,
    );
    expect(failure(() => parseDataFile('d.jsonl', '{"text":"a","label":1000000}')).message).toMatch(
      /^line 1: label 1000000 is out of range/,
    );
  });

  it('refuses mixed labelled and unlabelled rows', () => {
    const e = failure(() => parseDataFile('d.jsonl', '{"text":"a","label":1}\n{"text":"b"}\n{"text":"c","label":0}'));
    expect(e.line).toBe(2);
    expect(e.message).toBe('line 2: no label, but line 1 has one (label every row or none)');
  });

  it('refuses mixed integer and named labels', () => {
    const e = failure(() => parseDataFile('d.jsonl', '{"text":"a","label":1}\n{"text":"b","label":"spam"}'));
    expect(e.message).toBe("line 2: label is a name but line 1's is an integer (use one kind)");
  });

  it('refuses an unknown split', () => {
    expect(failure(() => parseDataFile('d.jsonl', '{"text":"a","split":"dev"}')).message).toBe(
      'line 1: "split" must be one of train, validation, test, got "dev"',
    );
  });

  it('refuses a file of blank lines', () => {
    expect(failure(() => parseDataFile('d.jsonl', '\n\n  \n')).message).toBe('no rows');
  });
});

describe('parseDataFile: bounds', () => {
  it('refuses a line over 1 MB and names it', () => {
    const long = `{"text":"${'é'.repeat(MAX_LINE_BYTES / 2)}"}`; // 2 bytes each in UTF-8
    const e = failure(() => parseDataFile('d.jsonl', `{"text":"a"}\n${long}\n`));
    expect(e.line).toBe(2);
    expect(e.message).toBe('line 2: row is longer than the 1.0 MB limit');
  });

  it('refuses a CSV row over 1 MB even when its newlines are quoted', () => {
    const field = `"${'ab\n'.repeat(MAX_LINE_BYTES / 3 + 10)}"`;
    const e = failure(() => parseDataFile('x.csv', `text\nfirst\n${field}\n`));
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/^line 3: row is longer than/);
  });

  it('accepts a line just under the limit', () => {
    const text = 'a'.repeat(MAX_LINE_BYTES - 20);
    expect(parseDataFile('d.jsonl', `{"text":"${text}"}`).examples[0]!.text.length).toBe(text.length);
  });

  it('refuses a file over 64 MB, by size and by content', () => {
    expect(() => checkDataFileSize(MAX_FILE_BYTES)).not.toThrow();
    expect(failure(() => checkDataFileSize(MAX_FILE_BYTES + 1)).message).toBe(
      'file is 64.0 MB, larger than the 64.0 MB limit',
    );
    // 22.4 M three-byte characters: few enough UTF-16 units to pass a naive length check.
    const big = '\u4e00'.repeat(Math.ceil(MAX_FILE_BYTES / 3) + 1000);
    expect(failure(() => parseDataFile('d.jsonl', big)).message).toMatch(/^file is 64\.0 MB, larger than/);
  });
});

describe('parseDataFile: the shipped SpamAssassin set', () => {
  it('parses, with both classes in every split', () => {
    const url = new URL('../../demo/public/data/spam-assassin.jsonl', import.meta.url);
    const out = parseDataFile('spam-assassin.jsonl', readFileSync(url, 'utf8'));
    expect(out.labels).toEqual(['0', '1']);
    expect(out.examples.length).toBeGreaterThan(5500);
    for (const split of ['train', 'validation', 'test'] as const) {
      const rows = out.examples.filter((r) => r.split === split);
      expect(rows.some((r) => r.label === 0) && rows.some((r) => r.label === 1)).toBe(true);
    }
    expect(out.examples.every((r) => r.text.startsWith('Subject: '))).toBe(true);
    // No text in two splits.
    const splitOf = new Map<string, string>();
    for (const r of out.examples) {
      const seen = splitOf.get(r.text);
      expect(seen === undefined || seen === r.split).toBe(true);
      splitOf.set(r.text, r.split!);
    }
  });
});
