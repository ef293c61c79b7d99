// Transpiles the storage component with jco, for the tests and the benchmark.
// The component is $CHATSTORE_WASM (default: target/chatstore_storage.wasm,
// which `cargo run -- component --output target/chatstore_storage.wasm`
// writes); the bindings go to $CHATSTORE_JS_BINDINGS (default:
// target/js-bindings).

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const wasm = process.env.CHATSTORE_WASM ?? path.join(repo, 'target/chatstore_storage.wasm');
export const bindings = process.env.CHATSTORE_JS_BINDINGS ?? path.join(repo, 'target/js-bindings');
export const scenarios = process.env.CHATSTORE_SCENARIOS ?? path.join(repo, 'conformance/scenarios');

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!fs.existsSync(wasm)) {
    console.error(`no component at ${wasm}: run \`cargo run -- component --output target/chatstore_storage.wasm\` first, or set CHATSTORE_WASM`);
    process.exit(1);
  }
  const jco = path.join(here, 'node_modules/@bytecodealliance/jco/dist/jco.js');
  fs.rmSync(bindings, { recursive: true, force: true });
  execFileSync(process.execPath, [jco, 'transpile', wasm, '-o', bindings, '--name', 'chatstore', '--instantiation', 'sync', '--quiet'], {
    stdio: 'inherit',
  });
}
