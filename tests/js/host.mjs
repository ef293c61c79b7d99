// Hosts the chatstore storage component in Node: the seven ports in
// JavaScript (in-memory repositories; chat directories on node:fs with the
// Rust host's layout and confinement rules) and the component transpiled by
// jco, instantiated with them.

import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as shim from '@bytecodealliance/preview2-shim';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HISTORY = 'history.md';
const MAX_NAME_BYTES = 255;

/** A port refused or failed: becomes the import's `port-error`. */
class PortFailure extends Error {
  constructor(port, message) {
    super(`${port}: ${message}`);
    this.payload = { port, message };
  }
}

/** Loads the component that `jco transpile --instantiation sync` wrote to `dir`. */
export async function loadComponent(dir, name = 'chatstore') {
  const bindings = await import(pathToFileURL(path.resolve(dir, `${name}.js`)).href);
  const modules = new Map();
  const getCoreModule = (file) => {
    if (!modules.has(file)) {
      modules.set(file, new WebAssembly.Module(fs.readFileSync(path.join(dir, file))));
    }
    return modules.get(file);
  };
  // The interfaces the component imports, named as the bindings look them up.
  const source = fs.readFileSync(path.join(dir, `${name}.js`), 'utf8');
  const imports = new Set([...source.matchAll(/imports\['([^']+)'\]/g)].map((m) => m[1]));
  return { instantiate: bindings.instantiate, getCoreModule, imports: [...imports] };
}

/** `wasi:cli/terminal-stdout@0.2.6` → the preview2-shim object for it. */
function shimFor(name) {
  const [pkg, iface] = name.split('@')[0].slice('wasi:'.length).split('/');
  const camel = iface.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  const found = shim[pkg]?.[camel];
  if (!found) throw new Error(`no WASI shim for ${name}`);
  return found;
}

function checkId(port, id) {
  if (typeof id !== 'string' || !UUID.test(id)) {
    throw new PortFailure(port, `refused: ${JSON.stringify(String(id).slice(0, 64))} is not a canonical UUID`);
  }
  return id;
}

/** C0 and C1 controls and DEL; bidirectional formatting characters. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
/** Unicode's White_Space property, at either end of a name. */
const WHITE = '[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PADDED = new RegExp(`^${WHITE}|${WHITE}$`);

/** The attachment-name rules, checked again by the host: a policy passes names in NFC. */
function checkName(port, name) {
  const bad =
    name === '' ||
    name === '.' ||
    name === '..' ||
    /[/\\\0]/.test(name) ||
    CONTROL.test(name) ||
    BIDI.test(name) ||
    PADDED.test(name) ||
    name !== name.normalize('NFC') ||
    Buffer.byteLength(name) > MAX_NAME_BYTES ||
    name.toLowerCase() === HISTORY;
  if (bad) throw new PortFailure(port, `refused: ${JSON.stringify(name.slice(0, 64))} is not a valid attachment name`);
  return name;
}

/** Wraps every function of a port so that any failure is that port's `port-error`. */
function port(name, functions) {
  const wrapped = {};
  for (const [fn, impl] of Object.entries(functions)) {
    wrapped[fn] = (...args) => {
      try {
        return impl(...args);
      } catch (e) {
        if (e instanceof PortFailure) throw e;
        throw new PortFailure(name, e?.message ?? String(e));
      }
    };
  }
  return wrapped;
}

/**
 * One store: its metadata in memory, its chat directories under `root`
 * (`workspaces/<workspace-id>/chats/<chat-id>/`), a quota, a clock.
 */
export class JsHost {
  constructor({ root, quotaBytes = 1n << 30n, now = () => ({ seconds: BigInt(Math.floor(Date.now() / 1000)), nanoseconds: 0 }) }) {
    this.root = root;
    this.quotaBytes = BigInt(quotaBytes);
    this.now = now;
    this.workspaces = new Map();
    this.chats = new Map();
    this.files = new Map();
    this.sandboxes = new Map();
    // The content staged for the current call, by token, and what it opened to serve.
    this.staged = new Map();
    this.opened = null;
    fs.mkdirSync(path.join(root, 'workspaces'), { recursive: true });
    fs.mkdirSync(path.join(root, 'staging'), { recursive: true });
  }

  /**
   * Stages content for the next call, outside every chat directory: the
   * component gets its token, size and SHA-256, never its bytes.
   */
  stage(bytes) {
    const file = path.join(this.root, 'staging', randomUUID());
    fs.writeFileSync(file, bytes, { flag: 'wx' });
    const token = `staged-${this.staged.size + 1}`;
    this.staged.set(token, { file, stored: false });
    return { token, sizeBytes: BigInt(bytes.length), sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  /** Ends a call: gives what it opened to serve, removes the content it did not store. */
  finishCall() {
    const opened = this.opened;
    for (const { file, stored } of this.staged.values()) if (!stored) fs.rmSync(file, { force: true });
    this.staged.clear();
    this.opened = null;
    return opened;
  }

  /** Stores staged content with `store(file)`: each content once. */
  storeStaged(portName, token, store) {
    const entry = this.staged.get(token);
    if (!entry) throw new PortFailure(portName, 'refused: no content was staged for this call under that token');
    if (entry.stored) throw new PortFailure(portName, 'refused: that staged content is already stored');
    store(entry.file);
    entry.stored = true;
  }

  /** Keeps what the component opened for the caller: one file per call. */
  keepOpened(portName, bytes) {
    if (this.opened !== null) throw new PortFailure(portName, 'refused: a call opens one file to serve');
    this.opened = bytes;
  }

  /** The size of a file of a chat directory (`undefined` if missing), without following a symlink. */
  fileSize(portName, chat, name) {
    const stat = lstatOrNull(path.join(this.chatDir(portName, chat), name));
    return stat ? BigInt(stat.size) : undefined;
  }

  /** The chat's directory, after checking its ids; no component of it may be a symlink. */
  chatDir(portName, chat) {
    const dir = path.join(this.root, 'workspaces', checkId(portName, chat.workspaceId), 'chats', checkId(portName, chat.chatId));
    let at = this.root;
    for (const part of path.relative(this.root, dir).split(path.sep)) {
      at = path.join(at, part);
      const stat = lstatOrNull(at);
      if (stat && !stat.isDirectory()) throw new PortFailure(portName, `refused: ${part} is not a directory`);
    }
    return dir;
  }

  /** Reads a file of a chat directory without following a symlink. */
  readFile(portName, chat, name) {
    const fd = fs.openSync(path.join(this.chatDir(portName, chat), name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      if (!fs.fstatSync(fd).isFile()) throw new PortFailure(portName, `refused: ${name} is not a regular file`);
      return fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Moves a staged file into a chat directory (a symlink there is replaced, never followed). */
  install(portName, chat, name, staged) {
    const dir = this.chatDir(portName, chat);
    if (!fs.existsSync(dir)) throw new PortFailure(portName, 'no such chat directory');
    fs.renameSync(staged, path.join(dir, name));
  }

  /** Writes a new file of a chat directory: staged outside it, then renamed in. */
  writeFile(portName, chat, name, bytes) {
    const staged = path.join(this.root, 'staging', randomUUID());
    fs.writeFileSync(staged, bytes, { flag: 'wx' });
    this.install(portName, chat, name, staged);
  }

  /** The seven ports, by interface name. */
  ports() {
    return {
      'workspace-repository': this.workspacePort(),
      'chat-repository': this.chatPort(),
      'chat-file-repository': this.filePort(),
      'sandbox-session-repository': port('sandbox-session-repository', {
        getActiveByChatId: (chatId) => this.sandboxes.get(checkId('sandbox-session-repository', chatId)),
      }),
      'chat-storage': this.storagePort(),
      'storage-usage': this.usagePort(),
      'id-generator': port('id-generator', { newId: () => randomUUID() }),
      types: {},
    };
  }

  /**
   * The import object for `names` (as the bindings look them up): the
   * seven ports, and WASI from preview2-shim with this host's wall clock.
   */
  imports(names) {
    const ports = this.ports();
    const imports = {};
    for (const name of names) {
      const [iface] = name.split('@');
      if (iface.startsWith('chatstore:storage/')) {
        imports[name] = ports[iface.slice('chatstore:storage/'.length)];
      } else if (iface === 'wasi:clocks/wall-clock') {
        imports[name] = { now: () => this.now(), resolution: () => ({ seconds: 0n, nanoseconds: 1 }) };
      } else {
        imports[name] = shimFor(name);
      }
      if (!imports[name]) throw new Error(`nothing to supply for ${name}`);
    }
    return imports;
  }

  workspacePort() {
    const P = 'workspace-repository';
    return port(P, {
      get: (id) => this.workspaces.get(checkId(P, id)),
      getByUserId: (userId) => {
        checkId(P, userId);
        return [...this.workspaces.values()].find((w) => w.userId === userId);
      },
      save: (w) => {
        checkId(P, w.workspaceId);
        checkId(P, w.userId);
        for (const [id, other] of this.workspaces) if (other.userId === w.userId) this.workspaces.delete(id);
        this.workspaces.set(w.workspaceId, w);
      },
    });
  }

  chatPort() {
    const P = 'chat-repository';
    return port(P, {
      get: (id) => this.chats.get(checkId(P, id)),
      listByWorkspaceId: (id) => {
        checkId(P, id);
        return [...this.chats.values()].filter((c) => c.workspaceId === id);
      },
      save: (c) => {
        checkId(P, c.chatId);
        checkId(P, c.workspaceId);
        this.chats.set(c.chatId, c);
      },
      delete: (id) => {
        this.chats.delete(checkId(P, id));
      },
    });
  }

  filePort() {
    const P = 'chat-file-repository';
    return port(P, {
      get: (id) => this.files.get(checkId(P, id)),
      getByChatIdAndName: (chatId, name) => {
        checkId(P, chatId);
        checkName(P, name);
        return [...this.files.values()].find((f) => f.chatId === chatId && f.name === name);
      },
      listByChatId: (chatId) => {
        checkId(P, chatId);
        return [...this.files.values()].filter((f) => f.chatId === chatId);
      },
      save: (f) => {
        checkId(P, f.fileId);
        checkId(P, f.chatId);
        checkName(P, f.name);
        for (const [id, other] of this.files) {
          if (other.chatId === f.chatId && other.name === f.name) this.files.delete(id);
        }
        this.files.set(f.fileId, f);
      },
      delete: (id) => {
        this.files.delete(checkId(P, id));
      },
      deleteByChatId: (chatId) => {
        checkId(P, chatId);
        for (const [id, f] of this.files) if (f.chatId === chatId) this.files.delete(id);
      },
    });
  }

  storagePort() {
    const P = 'chat-storage';
    return port(P, {
      ensureChat: (chat) => {
        const dir = this.chatDir(P, chat);
        fs.mkdirSync(dir, { recursive: true });
        if (!lstatOrNull(path.join(dir, HISTORY))) this.writeFile(P, chat, HISTORY, '');
      },
      historySize: (chat) => this.fileSize(P, chat, HISTORY) ?? 0n,
      openHistory: (chat) => this.keepOpened(P, this.readFile(P, chat, HISTORY)),
      writeHistory: (chat, token) => {
        this.chatDir(P, chat);
        this.storeStaged(P, token, (file) => this.install(P, chat, HISTORY, file));
      },
      appendHistory: (chat, token) =>
        this.storeStaged(P, token, (file) => {
          // In place, without following a symlink: costs the message, not the history.
          const history = path.join(this.chatDir(P, chat), HISTORY);
          const fd = fs.openSync(history, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NOFOLLOW);
          try {
            if (!fs.fstatSync(fd).isFile()) throw new PortFailure(P, 'refused: history.md is not a regular file');
            fs.writeSync(fd, fs.readFileSync(file));
          } finally {
            fs.closeSync(fd);
          }
          fs.rmSync(file);
        }),
      deleteChat: (chat) => fs.rmSync(this.chatDir(P, chat), { recursive: true, force: true }),
      attachmentSize: (chat, name) => this.fileSize(P, chat, checkName(P, name)),
      writeAttachment: (chat, name, token) => {
        checkName(P, name);
        this.chatDir(P, chat);
        this.storeStaged(P, token, (file) => this.install(P, chat, name, file));
      },
      openAttachment: (chat, name) => this.keepOpened(P, this.readFile(P, chat, checkName(P, name))),
      deleteAttachment: (chat, name) => fs.rmSync(path.join(this.chatDir(P, chat), checkName(P, name)), { force: true }),
      clearAttachments: (chat) => {
        const dir = this.chatDir(P, chat);
        for (const entry of fs.readdirSync(dir)) {
          if (entry !== HISTORY) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
        }
      },
    });
  }

  usagePort() {
    const P = 'storage-usage';
    return port(P, {
      getWorkspaceUsage: (workspace) => {
        const chats = path.join(this.root, 'workspaces', checkId(P, workspace.workspaceId), 'chats');
        return { workspaceId: workspace.workspaceId, usedBytes: bytesUnder(chats), quotaBytes: this.quotaBytes };
      },
    });
  }
}

function lstatOrNull(p) {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

/** Bytes in regular files under `dir`, without following symlinks. */
function bytesUnder(dir) {
  let total = 0n;
  const pending = [dir];
  while (pending.length) {
    const at = pending.pop();
    if (!lstatOrNull(at)) continue;
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const p = path.join(at, entry.name);
      if (entry.isDirectory()) pending.push(p);
      else if (entry.isFile()) total += BigInt(fs.lstatSync(p).size);
    }
  }
  return total;
}

/** Instantiates the component on a host; returns its `storage` exports. */
export function instantiate(component, host) {
  const root = component.instantiate(component.getCoreModule, host.imports(component.imports));
  return root.storage;
}
