// The conformance scenarios, and the host's confinement rules, with the
// component hosted in Node (`node --test`, after `node prepare.mjs`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bindings, scenarios } from './prepare.mjs';
import { loadComponent, JsHost, instantiate } from './host.mjs';
import { loadScenarios, runScenario, ScenarioError } from './conformance.mjs';

const component = await loadComponent(bindings);
const all = loadScenarios(scenarios);

test('the scenario directory holds the suite', () => {
  assert.ok(all.length >= 10, `${all.length} scenarios`);
});

for (const scenario of all) {
  test(`scenario ${scenario.name}`, () => {
    const verdict = runScenario(component, scenario);
    assert.deepEqual(verdict, { passed: true, steps: scenario.steps.length }, JSON.stringify(verdict));
  });
}

test('a wrong expectation fails at its step', () => {
  const chats = all.find((s) => s.name === 'chats');
  const wrong = JSON.parse(JSON.stringify(chats).replace('"used-bytes":15', '"used-bytes":16'));
  const verdict = runScenario(component, wrong);
  assert.equal(verdict.passed, false);
  assert.equal(verdict.step, 15);
  assert.equal(verdict.action, 'call get-usage');
  assert.match(verdict.actual, /"used-bytes":15/);
});

test('a scenario that names nothing is an error, not a verdict', () => {
  const scenario = { name: 'unbound', rule: 'r', steps: [{ call: 'get-workspace', 'user-id': '$nobody' }] };
  assert.throws(() => runScenario(component, scenario), (e) => e instanceof ScenarioError && /nothing is bound to "nobody"/.test(e.message));
});

/** A host and its component on a temporary directory, with one user and chat. */
function withChat(run) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatstore-js-'));
  try {
    const host = new JsHost({ root });
    const storage = instantiate(component, host);
    const user = crypto.randomUUID();
    storage.ensureWorkspace(user);
    const chat = storage.createChat(user);
    const dir = path.join(root, 'workspaces', chat.workspaceId, 'chats', chat.chatId);
    run({ root, host, storage, user, chat, dir });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

test('a symlink a sandbox planted is never followed', () => {
  withChat(({ root, host, storage, user, chat, dir }) => {
    const outside = path.join(root, 'outside.txt');
    fs.writeFileSync(outside, 'secret');
    const upload = (text) => {
      const file = storage.uploadAttachment(user, chat.chatId, 'a.txt', undefined, host.stage(new TextEncoder().encode(text)));
      host.finishCall();
      return file;
    };
    const file = upload('mine');
    fs.rmSync(path.join(dir, 'a.txt'));
    fs.symlinkSync(outside, path.join(dir, 'a.txt'));
    assert.throws(
      () => storage.readAttachment(user, chat.chatId, file.fileId),
      (e) => e.payload?.tag === 'storage-unavailable' && e.payload.val.port === 'chat-storage',
    );
    host.finishCall();
    // A write replaces the link itself; the file it pointed to is untouched.
    upload('new');
    assert.equal(fs.readFileSync(outside, 'utf8'), 'secret');
    assert.equal(fs.lstatSync(path.join(dir, 'a.txt')).isSymbolicLink(), false);
  });
});

test('staged content is stored once, by a token the host issued for the call', () => {
  withChat(({ host, chat }) => {
    const storagePort = host.ports()['chat-storage'];
    const refused = (f, why) => assert.throws(f, (e) => why.test(e.payload?.message));
    refused(() => storagePort.writeAttachment(chat, 'a.txt', 'staged-99'), /no content was staged/);
    const { token } = host.stage(new TextEncoder().encode('once'));
    storagePort.writeAttachment(chat, 'a.txt', token);
    refused(() => storagePort.writeAttachment(chat, 'b.txt', token), /already stored/);
    refused(() => storagePort.appendHistory(chat, token), /already stored/);
    host.finishCall();
    refused(() => storagePort.writeAttachment(chat, 'c.txt', token), /no content was staged/);
  });
});

test('the ports refuse hostile ids and names from a guest', () => {
  withChat(({ root, host, chat }) => {
    const ports = host.ports();
    const storagePort = ports['chat-storage'];
    const files = ports['chat-file-repository'];
    const refused = (f) => assert.throws(f, (e) => typeof e.payload?.port === 'string' && /refused/.test(e.payload.message));
    for (const id of ['../../etc', '..', '', 'NOT-A-UUID', '/etc/passwd', chat.chatId.toUpperCase()]) {
      refused(() => storagePort.openHistory({ ...chat, chatId: id }));
      refused(() => storagePort.historySize({ ...chat, chatId: id }));
      refused(() => storagePort.writeHistory({ ...chat, workspaceId: id }, host.stage(new Uint8Array([1])).token));
      refused(() => files.listByChatId(id));
    }
    const names = ['', '.', '..', '../x', 'a/b', 'a\\b', 'a\0b', 'history.md', 'HISTORY.MD', 'n'.repeat(256)];
    names.push('a\u0001', 'a\u007f', 'a\u202eb', ' ', 'x ', '\u00a0x', 'e\u0301');
    for (const name of names) {
      refused(() => storagePort.writeAttachment(chat, name, host.stage(new Uint8Array([1])).token));
      refused(() => storagePort.openAttachment(chat, name));
      refused(() => storagePort.attachmentSize(chat, name));
    }
    host.finishCall();
    assert.deepEqual(fs.readdirSync(root).sort(), ['staging', 'workspaces']);
    assert.deepEqual(fs.readdirSync(path.join(root, 'staging')), []);
  });
});
