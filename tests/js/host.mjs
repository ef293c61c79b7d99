// Hosts the chatstore storage component in Node: the seven ports in
// JavaScript (in-memory repositories; chat directories on node:fs with the
// Rust host's layout and confinement rules) and the component transpiled by
// jco, instantiated with them.

import { randomUUID } from 'node:crypto';
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

/** The attachment-name rules, checked again by the host. */
function checkName(port, name) {
  const bad =
    name === '' ||
    name === '.' ||
    name === '..' ||
    /[/\\\0]/.test(name) ||
    Buffer.byteLength(name) > MAX_NAME_BYTES ||
    name === HISTORY;
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
    fs.mkdirSync(path.join(root, 'workspaces'), { recursive: true });
    fs.mkdirSync(path.join(root, 'staging'), { recursive: true });
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

  /** Writes a file of a chat directory: staged outside it, then renamed in (a symlink there is replaced, never followed). */
  writeFile(portName, chat, name, bytes) {
    const dir = this.chatDir(portName, chat);
    if (!fs.existsSync(dir)) throw new PortFailure(portName, 'no such chat directory');
    const staged = path.join(this.root, 'staging', randomUUID());
    fs.writeFileSync(staged, bytes, { flag: 'wx' });
    fs.renameSync(staged, path.join(dir, name));
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
      readHistory: (chat) => this.readFile(P, chat, HISTORY).toString('utf8'),
      writeHistory: (chat, content) => this.writeFile(P, chat, HISTORY, content),
      appendHistory: (chat, content) => {
        const old = this.readFile(P, chat, HISTORY);
        this.writeFile(P, chat, HISTORY, Buffer.concat([old, Buffer.from(content)]));
      },
      deleteChat: (chat) => fs.rmSync(this.chatDir(P, chat), { recursive: true, force: true }),
      writeAttachment: (chat, name, content) => this.writeFile(P, chat, checkName(P, name), content),
      readAttachment: (chat, name) => new Uint8Array(this.readFile(P, chat, checkName(P, name))),
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
