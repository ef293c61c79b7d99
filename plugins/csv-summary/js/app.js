// csv-summary CHAT_ID, as a chatstore plugin written in JavaScript
// (componentize-js): summarises the chat's .csv attachments into summary.md
// and appends a line to its history. The format is in ../README.md.

import { open, Outgoing } from 'chatstore:storage/user-storage@0.5.0';
import { getArguments } from 'wasi:cli/environment@0.2.12';

const NUMBER = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/;

/** A column's [min, max, mean], if every non-empty value is a number. */
function numeric(values) {
  const numbers = [];
  for (let value of values) {
    value = value.replace(/^ +| +$/g, '');
    if (value === '') continue;
    if (!NUMBER.test(value)) return null;
    numbers.push(Number(value));
  }
  if (numbers.length === 0) return null;
  let low = numbers[0];
  let high = numbers[0];
  let total = 0;
  for (const x of numbers) {
    low = Math.min(low, x);
    high = Math.max(high, x);
    total += x;
  }
  return [low, high, total / numbers.length];
}

/** `x` with 3 decimals, as Rust's `{:.3}` and Python's `:.3f` write it. */
function fixed(x) {
  const text = x.toFixed(3);
  // toFixed drops the sign of a negative number that rounds to zero.
  return x < 0 && !text.startsWith('-') ? `-${text}` : text;
}

function summaryRow(name, text) {
  const lines = text
    .split('\n')
    .map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line))
    .filter((line) => line !== '');
  const header = lines.length ? lines[0].split(',') : [];
  const rows = lines.slice(1).map((line) => line.split(','));
  const stats = [];
  header.forEach((column, i) => {
    const found = numeric(rows.map((row) => (i < row.length ? row[i] : '')));
    if (found) {
      const [low, high, mean] = found.map(fixed);
      stats.push(`${column.replace(/^ +| +$/g, '')}: ${low} / ${high} / ${mean}`);
    }
  });
  const cells = stats.length ? stats.join('; ') : '-';
  return `| ${name} | ${rows.length} | ${header.length} | ${cells} |\n`;
}

function summary(rows) {
  return (
    '# CSV summary\n\n' +
    '| file | rows | columns | numeric columns: min / max / mean |\n' +
    '|---|---|---|---|\n' +
    rows.join('')
  );
}

function readAll(stream) {
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch (e) {
      if (e?.payload?.tag === 'closed' || e?.tag === 'closed') break;
      throw e;
    }
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export const run = {
  run() {
    const chat = getArguments()[1];
    if (!chat) throw new Error('usage: csv-summary CHAT_ID');
    const store = open();
    const rows = [];
    let after;
    for (;;) {
      const page = store.listAttachments(chat, 100, after);
      for (const file of page.data) {
        if (!file.name.endsWith('.csv')) continue;
        const [, stream] = store.readAttachment(chat, file.fileId);
        const text = new TextDecoder().decode(readAll(stream));
        rows.push(summaryRow(file.name, text));
      }
      if (!page.hasMore) break;
      after = page.lastId;
    }
    const data = new TextEncoder().encode(summary(rows));
    const outgoing = store.uploadAttachment(chat, 'summary.md', 'text/markdown');
    const body = outgoing.body();
    for (let at = 0; at < data.length; at += 4096) {
      body.blockingWriteAndFlush(data.subarray(at, at + 4096));
    }
    if (body[Symbol.dispose]) body[Symbol.dispose]();
    Outgoing.finish(outgoing);
    store.appendHistory(chat, `csv-summary: ${rows.length} CSV files summarised in summary.md\n`);
  },
};
