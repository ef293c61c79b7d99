// Plays the conformance scenarios (`conformance/README.md`) against the
// component hosted by `host.mjs`: each scenario on a fresh host in a
// temporary directory, stopping at the first step that differs.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { JsHost, instantiate } from './host.mjs';

const DEFAULT_QUOTA_BYTES = 1n << 30n;
const DEFAULT_CLOCK = 1767225600;

/**
 * Each call of the WIT `storage` interface, read from `wit/storage.wit`: its
 * parameters in order, and 'content' for a `read-…` export, whose content
 * the host serves.
 */
export function witCalls(witText) {
  const start = witText.indexOf('interface storage');
  const body = witText.slice(start, witText.indexOf('\n}', start));
  const calls = {};
  for (const [, name, params] of body.matchAll(/^\s*([a-z-]+): func\(([^)]*)\)/gm)) {
    const names = params.split(',').map((p) => p.split(':')[0].trim()).filter(Boolean);
    calls[name] = [names, name.startsWith('read-') ? 'content' : undefined];
  }
  return calls;
}
const CALLS = witCalls(fs.readFileSync(new URL('../../wit/storage.wit', import.meta.url), 'utf8'));
const HOST_ACTIONS = {
  'set-clock': ['seconds', 'nanoseconds'],
  'start-sandbox': ['chat'],
  'end-sandbox': ['chat'],
  'sandbox-write': ['chat', 'path', 'content'],
  'list-dir': ['chat'],
};
const OPTIONAL = new Set(['content-type', 'nanoseconds']);
const STEP_KEYS = new Set(['call', 'host', 'as', 'expect', 'note']);

/** The scenarios of a directory, in name order. */
export function loadScenarios(dir) {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.slice(0, -'.json'.length), ...JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) }));
}

/** A scenario is malformed or refers to nothing: not a verdict. */
export class ScenarioError extends Error {}

const camel = (kebab) => kebab.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const kebab = (camelCase) => camelCase.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A value the component returned, in the WIT's JSON shape (kebab-case, numbers, null for none). */
export function witJson(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Uint8Array) return contentValue(value);
  if (Array.isArray(value)) return value.map(witJson);
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [kebab(k), witJson(v)]));
  }
  return value;
}

/** A sandbox output of a scenario (WIT JSON) as jco takes it. */
function witOutput(o) {
  return {
    name: o.name,
    contentType: o['content-type'] ?? undefined,
    sizeBytes: BigInt(o['size-bytes']),
    sha256: o.sha256,
  };
}

/** One `output-outcome` in the suite's JSON: `{registered}` or `{refused: {error, subject}}`. */
function outcomeJson(outcome) {
  if (outcome.tag === 'registered') return { registered: witJson(outcome.val) };
  const { error, subject } = componentRefusal({ payload: outcome.val });
  return { refused: { error, subject } };
}

/** Bytes as the suite shows them: text if UTF-8, else `{"hex"}`. */
export function contentValue(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { hex: Buffer.from(bytes).toString('hex') };
  }
}

/** A refusal: its stable code and the id or name it carries. */
function refusal(code, subject, message = '') {
  return { error: code, subject, message };
}

/** What a component call threw, as a refusal (a trap is rethrown). */
function componentRefusal(e) {
  const err = e?.payload;
  if (!err || typeof err.tag !== 'string') throw e;
  const code = err.tag.replaceAll('-', '_');
  return typeof err.val === 'string' ? refusal(code, err.val) : refusal(code, null, `${err.val.port}: ${err.val.message}`);
}

class Bindings {
  constructor(ids) {
    this.vars = new Map(ids.map((name) => [name, randomUUID()]));
  }

  lookup(reference) {
    const [name, ...fields] = reference.slice(1).split('.');
    if (!this.vars.has(name)) throw new ScenarioError(`${reference}: nothing is bound to ${JSON.stringify(name)}`);
    let value = this.vars.get(name);
    for (const field of fields) {
      if (value === null || typeof value !== 'object' || !(field in value)) {
        throw new ScenarioError(`${reference}: no field ${JSON.stringify(field)}`);
      }
      value = value[field];
    }
    return value;
  }

  /** Content: a string, a `$` reference, `{text}`, `{repeat, count}` or `{hex}`. */
  content(spec) {
    if (typeof spec === 'string') {
      if (!spec.startsWith('$')) return Buffer.from(spec, 'utf8');
      const value = this.lookup(spec);
      if (typeof value !== 'string') throw new ScenarioError(`${spec} is not text`);
      return Buffer.from(value, 'utf8');
    }
    const keys = spec && typeof spec === 'object' ? Object.keys(spec).sort().join(',') : '';
    if (keys === 'text') return Buffer.from(spec.text, 'utf8');
    if (keys === 'count,repeat') return Buffer.from(spec.repeat.repeat(spec.count), 'utf8');
    if (keys === 'hex' && /^([0-9a-fA-F]{2})*$/.test(spec.hex)) return Buffer.from(spec.hex, 'hex');
    throw new ScenarioError(`${JSON.stringify(spec)} is not content`);
  }

  text(spec) {
    const bytes = this.content(spec);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new ScenarioError(`${JSON.stringify(spec)} is not UTF-8 text`);
    }
  }

  /** Whether `actual` has every field `expected` names, with its value. */
  matches(expected, actual) {
    return included(this.resolve(expected), actual);
  }

  /** `value` with every `$` reference replaced by the value it names (taken as it is). */
  resolve(value) {
    if (typeof value === 'string' && value.startsWith('$')) return this.lookup(value);
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolve(v)]));
    return value;
  }
}

/** Partial match: every field of `expected` is in `actual`, with its value. */
function included(expected, actual) {
  if (Array.isArray(expected)) return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => included(e, actual[i]));
  if (expected !== null && typeof expected === 'object') {
    return actual !== null && typeof actual === 'object' && !Array.isArray(actual) && Object.entries(expected).every(([k, v]) => k in actual && included(v, actual[k]));
  }
  return expected === actual;
}

/** Checks a step's shape; returns [kind, name, params]. */
function parseStep(step) {
  const isHost = 'host' in step;
  if (isHost === 'call' in step) throw new ScenarioError('needs exactly one of `call` or `host`');
  const name = isHost ? step.host : step.call;
  const params = isHost ? HOST_ACTIONS[name] : CALLS[name]?.[0];
  if (!params) throw new ScenarioError(`no such ${isHost ? 'host action' : 'call'} ${JSON.stringify(name)}`);
  for (const key of Object.keys(step)) {
    if (!STEP_KEYS.has(key) && !params.includes(key)) throw new ScenarioError(`${name} takes no ${JSON.stringify(key)}`);
  }
  for (const p of params) {
    if (!(p in step) && !OPTIONAL.has(p)) throw new ScenarioError(`${name} needs ${JSON.stringify(p)}`);
  }
  return [isHost ? 'host' : 'call', name, params];
}

/**
 * Plays one scenario on a fresh host. Returns `{passed: true, steps}` or
 * `{passed: false, step, action, note, expected, actual}`.
 */
export function runScenario(component, scenario) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatstore-js-'));
  try {
    let clock = { seconds: BigInt(scenario.clock ?? DEFAULT_CLOCK), nanoseconds: 0 };
    const host = new JsHost({ root, quotaBytes: BigInt(scenario['quota-bytes'] ?? DEFAULT_QUOTA_BYTES), now: () => clock });
    const storage = instantiate(component, host);
    const vars = new Bindings(scenario.ids ?? []);

    const chatOf = (spec) => {
      const chat = typeof spec === 'string' && spec.startsWith('$') ? vars.lookup(spec) : spec;
      if (!chat || typeof chat['chat-id'] !== 'string' || typeof chat['workspace-id'] !== 'string') {
        throw new ScenarioError(`\`chat\` must be a chat record, not ${JSON.stringify(chat)}`);
      }
      return { chatId: chat['chat-id'], workspaceId: chat['workspace-id'] };
    };

    const call = (name, params, step) => {
      const args = params.map((p) => {
        if (p === 'content') {
          const bytes = vars.content(step.content);
          // A history must be text, as the hosts check before staging it.
          if (name !== 'upload-attachment') vars.text(step.content);
          return host.stage(bytes);
        }
        if (p === 'content-type') return step[p] === undefined || step[p] === null ? undefined : vars.text(step[p]);
        if (p === 'outputs') return vars.resolve(step.outputs).map(witOutput);
        return vars.text(step[p]);
      });
      try {
        const value = storage[camel(name)](...args);
        const opened = host.finishCall();
        if (CALLS[name][1] === 'content') {
          if (opened === null) throw new Error(`${name} opened nothing to serve`);
          return { ok: contentValue(opened) };
        }
        return { ok: name === 'register-sandbox-outputs' ? value.map(outcomeJson) : witJson(value) };
      } catch (e) {
        host.finishCall();
        return { err: componentRefusal(e) };
      }
    };

    // A session's end: the files it left that no record describes are
    // offered to the policy, as every host does.
    const registerOutputs = (chat, dir) => {
      const recorded = [...host.files.values()].filter((f) => f.chatId === chat.chatId);
      const outputs = [];
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        if (entry.name === 'history.md' || !entry.isFile()) continue;
        const bytes = fs.readFileSync(path.join(dir, entry.name));
        if (recorded.some((f) => f.name === entry.name && f.sizeBytes === BigInt(bytes.length))) continue;
        outputs.push({
          name: entry.name,
          contentType: undefined,
          sizeBytes: BigInt(bytes.length),
          sha256: createHash('sha256').update(bytes).digest('hex'),
        });
      }
      if (outputs.length === 0) return;
      const user = [...host.workspaces.values()].find((w) => w.workspaceId === chat.workspaceId).userId;
      try {
        storage.registerSandboxOutputs(user, chat.chatId, outputs);
      } finally {
        host.finishCall();
      }
    };

    const hostAction = (name, step) => {
      if (name === 'set-clock') {
        clock = { seconds: BigInt(step.seconds), nanoseconds: step.nanoseconds ?? 0 };
        return { ok: null };
      }
      const chat = chatOf(step.chat);
      const dir = path.join(root, 'workspaces', chat.workspaceId, 'chats', chat.chatId);
      switch (name) {
        case 'start-sandbox': {
          if (!host.chats.has(chat.chatId)) return { err: refusal('chat_not_found', chat.chatId) };
          const session = { sessionId: randomUUID(), chatId: chat.chatId };
          host.sandboxes.set(chat.chatId, session);
          return { ok: witJson(session) };
        }
        case 'end-sandbox': {
          const session = host.sandboxes.get(chat.chatId) ?? null;
          host.sandboxes.delete(chat.chatId);
          return { ok: witJson(session) };
        }
        case 'sandbox-write': {
          const rel = vars.text(step.path);
          if (rel.split('/').some((p) => p === '' || p === '.' || p === '..')) throw new ScenarioError(`${rel} is not a relative path`);
          fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
          // A session around the write: its end counts what it wrote.
          host.sandboxes.set(chat.chatId, { sessionId: randomUUID(), chatId: chat.chatId });
          fs.writeFileSync(path.join(dir, rel), vars.content(step.content));
          host.sandboxes.delete(chat.chatId);
          registerOutputs(chat, dir);
          return { ok: null };
        }
        case 'list-dir':
          return { ok: listFiles(dir) };
      }
      throw new ScenarioError(`${name} has no runner`);
    };

    for (const [i, step] of scenario.steps.entries()) {
      const at = (e) => {
        if (e instanceof ScenarioError) e.message = `${scenario.name}: step ${i + 1}: ${e.message}`;
        return e;
      };
      let kind, name, params, outcome;
      try {
        [kind, name, params] = parseStep(step);
        outcome = kind === 'host' ? hostAction(name, step) : call(name, params, step);
      } catch (e) {
        throw at(e);
      }
      const contentShaped = kind === 'call' && CALLS[name][1] === 'content';
      let passed;
      try {
        passed = check(vars, step.expect, outcome, contentShaped);
      } catch (e) {
        throw at(e);
      }
      if (!passed) {
        return {
          passed: false,
          step: i + 1,
          action: `${kind} ${name}`,
          note: step.note ?? null,
          expected: describeExpected(vars, step.expect, contentShaped),
          actual: 'ok' in outcome ? `ok ${JSON.stringify(outcome.ok)}` : describeRefusal(outcome.err),
        };
      }
      if (step.as !== undefined && 'ok' in outcome) vars.vars.set(step.as, outcome.ok);
    }
    return { passed: true, steps: scenario.steps.length };
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function check(vars, expect, outcome, contentShaped) {
  if (expect === undefined || expect === 'ok') return 'ok' in outcome;
  if ('ok' in expect) {
    if (!('ok' in outcome)) return false;
    if (contentShaped) return included(contentValue(vars.content(expect.ok)), outcome.ok);
    return vars.matches(expect.ok, outcome.ok);
  }
  if ('error' in expect) {
    if (!('err' in outcome) || outcome.err.error !== expect.error) return false;
    return expect.subject === undefined || outcome.err.subject === vars.text(expect.subject);
  }
  throw new ScenarioError('`expect` must be "ok", {"ok": value} or {"error": code}');
}

function describeExpected(vars, expect, contentShaped) {
  if (expect === undefined || expect === 'ok') return 'ok';
  if ('ok' in expect) {
    const value = contentShaped ? contentValue(vars.content(expect.ok)) : vars.resolve(expect.ok);
    return `ok ${JSON.stringify(value)}`;
  }
  return expect.subject === undefined ? `error ${expect.error}` : `error ${expect.error} (${vars.text(expect.subject)})`;
}

function describeRefusal(err) {
  return err.subject === null ? `error ${err.error}: ${err.message}` : `error ${err.error} (${err.subject})`;
}

/** Sorted `/`-separated paths of the files under `dir` (byte order), or null if it does not exist. */
export function listFiles(dir) {
  if (!fs.existsSync(dir)) return null;
  const files = [];
  const pending = [['', dir]];
  while (pending.length) {
    const [prefix, at] = pending.pop();
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory()) pending.push([`${prefix}${entry.name}/`, path.join(at, entry.name)]);
      else files.push(`${prefix}${entry.name}`);
    }
  }
  return files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
