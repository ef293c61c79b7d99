// Per-call cost of the component hosted in Node: `npm run bench` (after
// `cargo run --release -- component --output target/chatstore_storage.wasm`).
// One instance, in-memory metadata, chat directories on a temporary directory.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bindings } from './prepare.mjs';
import { loadComponent, JsHost, instantiate } from './host.mjs';

const component = await loadComponent(bindings);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatstore-bench-'));
try {
  let started = process.hrtime.bigint();
  const host = new JsHost({ root });
  const storage = instantiate(component, host);
  const instantiated = Number(process.hrtime.bigint() - started) / 1e6;
  const user = crypto.randomUUID();
  storage.ensureWorkspace(user);
  const chat = storage.createChat(user);
  storage.appendHistory(user, chat.chatId, host.stage(new TextEncoder().encode('x'.repeat(1024))));
  host.finishCall();
  const kib = new Uint8Array(1024);

  const measure = (name, n, f) => {
    for (let i = 0; i < Math.min(n, 200); i++) f(i); // warm up
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f(i);
    const us = Number(process.hrtime.bigint() - t) / 1e3 / n;
    console.log(`${name.padEnd(34)} ${us.toFixed(1).padStart(8)} µs/call  (${n} calls)`);
  };
  console.log(`instantiate (bindings loaded)      ${instantiated.toFixed(1).padStart(8)} ms`);
  measure('get-workspace', 20000, () => storage.getWorkspace(user));
  measure('get-chat', 20000, () => storage.getChat(user, chat.chatId));
  measure('read-history (1 KiB)', 20000, () => {
    storage.readHistory(user, chat.chatId);
    host.finishCall();
  });
  measure('upload-attachment (1 KiB, replace)', 5000, () => {
    storage.uploadAttachment(user, chat.chatId, 'a.bin', undefined, host.stage(kib));
    host.finishCall();
  });
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
