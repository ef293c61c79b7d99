"""Hosts the chatstore storage component in Python with wasmtime-py.

The seven ports are implemented here: metadata in dictionaries, chat
directories on the local filesystem with the Rust host's layout
(``workspaces/<workspace-id>/chats/<chat-id>/``) and confinement rules (ids
and names checked again, no symlink followed). WASI comes from wasmtime,
except the wall clock, which is this host's.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Callable

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, FuncType, Linker, Record, ResultType, Variant

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HISTORY = "history.md"
MAX_NAME_BYTES = 255
PACKAGE = "chatstore:storage"


class PortFailure(Exception):
    """A port refused or failed; the guest receives it as its `port-error`."""

    def __init__(self, port: str, message: str):
        super().__init__(f"{port}: {message}")
        self.port = port
        self.message = message


def record(**fields: Any) -> Record:
    """A WIT record; `workspace_id=` becomes the field `workspace-id`."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def field(r: Record, name: str) -> Any:
    """A record's field by its WIT name (`workspace-id`)."""
    return getattr(r, name)


def check_id(port: str, value: str) -> str:
    if not isinstance(value, str) or not UUID.match(value):
        raise PortFailure(port, f"refused: {value[:64]!r} is not a canonical UUID")
    return value


# C0 and C1 controls and DEL; bidirectional formatting characters; Unicode's
# White_Space property (not str.isspace, which differs from it).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
WHITE = "[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
PADDED = re.compile(f"^{WHITE}|{WHITE}\\Z")


def check_name(port: str, name: str) -> str:
    """The attachment-name rules, checked again by the host: a policy passes names in NFC."""
    bad = (
        name in ("", ".", "..")
        or any(c in name for c in "/\\\0")
        or CONTROL.search(name) is not None
        or BIDI.search(name) is not None
        or PADDED.search(name) is not None
        or unicodedata.normalize("NFC", name) != name
        or len(name.encode()) > MAX_NAME_BYTES
        or name.lower() == HISTORY
    )
    if bad:
        raise PortFailure(port, f"refused: {name[:64]!r} is not a valid attachment name")
    return name


def _classes(ty: Any) -> set:
    found: set = set()
    if ty is None:
        found.add(object)
    else:
        ty.add_classes(found)
    return found


def _tagged(result: ResultType) -> bool:
    """Whether wasmtime-py represents this result as `Variant(tag, payload)`:
    it does when the ok and err payloads map to the same Python class (here:
    when the ok value can be a record, like the `port-error`)."""
    return bool(_classes(result.ok) & _classes(result.err))


class Loaded:
    """A compiled component, with the shape of every port function's result."""

    def __init__(self, engine: Engine, component: Component):
        self.engine = engine
        self.component = component
        self.tagged: dict[tuple[str, str], bool] = {}
        for name, extern in component.type.imports(engine).items():
            if not name.startswith(PACKAGE + "/"):
                continue
            for fn, fn_extern in extern.ty.exports(engine).items():
                if not isinstance(fn_extern.ty, FuncType):
                    continue  # a type the interface names
                result = fn_extern.ty.result
                self.tagged[(name, fn)] = isinstance(result, ResultType) and _tagged(result)
        exports = component.type.exports(engine)
        self.storage = next(n for n in exports if n.startswith(PACKAGE + "/storage@"))
        self.export_tagged = {
            fn: _tagged(extern.ty.result)
            for fn, extern in exports[self.storage].ty.exports(engine).items()
            if isinstance(extern.ty, FuncType)
        }


def load(path: str | os.PathLike) -> Loaded:
    engine = Engine()
    return Loaded(engine, Component.from_file(engine, str(path)))


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def bytes_under(directory: Path) -> int:
    """Bytes in regular files under `directory`, without following symlinks."""
    total = 0
    pending = [directory]
    while pending:
        at = pending.pop()
        if _lstat(at) is None:
            continue
        with os.scandir(at) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


class PyHost:
    """One store: metadata in memory, chat directories under `root`, a quota, a clock."""

    def __init__(self, root: Path, quota_bytes: int = 1 << 30, now: Callable[[], tuple[int, int]] | None = None):
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.now = now or (lambda: (int(time.time()), 0))
        self.workspaces: dict[str, Record] = {}
        self.chats: dict[str, Record] = {}
        self.files: dict[str, Record] = {}
        self.sandboxes: dict[str, Record] = {}
        # The content staged for the current call, by token, and what it opened to serve.
        self.staged: dict[str, dict] = {}
        self.opened: bytes | None = None
        (self.root / "workspaces").mkdir(parents=True, exist_ok=True)
        (self.root / "staging").mkdir(parents=True, exist_ok=True)

    # ---- content: staged in, opened out ----

    def stage(self, content: bytes) -> Record:
        """Stages content for the next call, outside every chat directory: the
        component gets its token, size and SHA-256, never its bytes."""
        staged = self.root / "staging" / str(uuid.uuid4())
        with open(staged, "xb") as f:
            f.write(content)
        token = f"staged-{len(self.staged) + 1}"
        self.staged[token] = {"file": staged, "stored": False}
        return record(token=token, size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest())

    def finish_call(self) -> bytes | None:
        """Ends a call: gives what it opened to serve, removes the content it did not store."""
        opened, self.opened = self.opened, None
        for entry in self.staged.values():
            if not entry["stored"]:
                entry["file"].unlink(missing_ok=True)
        self.staged.clear()
        return opened

    def store_staged(self, port: str, token: str, store: Callable[[Path], None]) -> None:
        """Stores staged content with `store(file)`: each content once."""
        entry = self.staged.get(token)
        if entry is None:
            raise PortFailure(port, "refused: no content was staged for this call under that token")
        if entry["stored"]:
            raise PortFailure(port, "refused: that staged content is already stored")
        store(entry["file"])
        entry["stored"] = True

    def keep_opened(self, port: str, content: bytes) -> None:
        """Keeps what the component opened for the caller: one file per call."""
        if self.opened is not None:
            raise PortFailure(port, "refused: a call opens one file to serve")
        self.opened = content

    def file_size(self, port: str, chat: Record, name: str) -> int | None:
        """A chat directory's file's size, without following a symlink (None if missing)."""
        st = _lstat(self.chat_dir(port, chat) / name)
        return None if st is None else st.st_size

    # ---- the chat directories ----

    def chat_dir(self, port: str, chat: Record) -> Path:
        """The chat's directory from checked ids; no component of it may be a symlink."""
        workspace_id = check_id(port, field(chat, "workspace-id"))
        chat_id = check_id(port, field(chat, "chat-id"))
        directory = self.root / "workspaces" / workspace_id / "chats" / chat_id
        at = self.root
        for part in directory.relative_to(self.root).parts:
            at = at / part
            st = _lstat(at)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise PortFailure(port, f"refused: {part} is not a directory")
        return directory

    def read_file(self, port: str, chat: Record, name: str) -> bytes:
        fd = os.open(self.chat_dir(port, chat) / name, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PortFailure(port, f"refused: {name} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def install(self, port: str, chat: Record, name: str, staged: Path) -> None:
        """Moves a staged file into the chat directory: a symlink there is replaced, never followed."""
        directory = self.chat_dir(port, chat)
        if not directory.is_dir():
            raise PortFailure(port, "no such chat directory")
        os.replace(staged, directory / name)

    def write_file(self, port: str, chat: Record, name: str, content: bytes) -> None:
        """Staged outside the chat directory, then renamed in."""
        staged = self.root / "staging" / str(uuid.uuid4())
        with open(staged, "xb") as f:
            f.write(content)
        self.install(port, chat, name, staged)

    def append_file(self, port: str, chat: Record, name: str, staged: Path) -> None:
        """Appends a staged file in place, without following a symlink: costs the message."""
        fd = os.open(self.chat_dir(port, chat) / name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PortFailure(port, f"refused: {name} is not a regular file")
            os.write(fd, staged.read_bytes())
        finally:
            os.close(fd)
        staged.unlink()

    def remove(self, path: Path) -> None:
        st = _lstat(path)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            for child in path.iterdir():
                self.remove(child)
            path.rmdir()
        else:
            path.unlink()

    # ---- the ports ----

    def ports(self) -> dict[str, dict[str, Callable[..., Any]]]:
        """The seven ports: interface name → function name → implementation.
        Implementations return the ok value or raise `PortFailure`."""
        return {
            "workspace-repository": {
                "get": lambda id: self.workspaces.get(check_id("workspace-repository", id)),
                "get-by-user-id": self._workspace_of,
                "save": self._save_workspace,
            },
            "chat-repository": {
                "get": lambda id: self.chats.get(check_id("chat-repository", id)),
                "list-by-workspace-id": self._chats_of,
                "save": self._save_chat,
                "delete": lambda id: self.chats.pop(check_id("chat-repository", id), None) and None,
            },
            "chat-file-repository": {
                "get": lambda id: self.files.get(check_id("chat-file-repository", id)),
                "get-by-chat-id-and-name": self._file_named,
                "list-by-chat-id": self._files_of,
                "save": self._save_file,
                "delete": lambda id: self.files.pop(check_id("chat-file-repository", id), None) and None,
                "delete-by-chat-id": self._delete_files_of,
            },
            "sandbox-session-repository": {
                "get-active-by-chat-id": lambda id: self.sandboxes.get(check_id("sandbox-session-repository", id)),
            },
            "chat-storage": {
                "ensure-chat": self._ensure_chat,
                "history-size": lambda chat: self.file_size("chat-storage", chat, HISTORY) or 0,
                "open-history": lambda chat: self.keep_opened(
                    "chat-storage", self.read_file("chat-storage", chat, HISTORY)
                ),
                "write-history": lambda chat, token: self.store_staged(
                    "chat-storage",
                    token,
                    lambda staged: self.install("chat-storage", chat, HISTORY, staged),
                ),
                "append-history": lambda chat, token: self.store_staged(
                    "chat-storage",
                    token,
                    lambda staged: self.append_file("chat-storage", chat, HISTORY, staged),
                ),
                "delete-chat": lambda chat: self.remove(self.chat_dir("chat-storage", chat)),
                "attachment-size": lambda chat, name: self.file_size(
                    "chat-storage", chat, check_name("chat-storage", name)
                ),
                "write-attachment": self._write_attachment,
                "open-attachment": lambda chat, name: self.keep_opened(
                    "chat-storage", self.read_file("chat-storage", chat, check_name("chat-storage", name))
                ),
                "delete-attachment": lambda chat, name: self.remove(
                    self.chat_dir("chat-storage", chat) / check_name("chat-storage", name)
                ),
                "clear-attachments": self._clear_attachments,
            },
            "storage-usage": {"get-workspace-usage": self._usage},
            "id-generator": {"new-id": lambda: str(uuid.uuid4())},
        }

    def _workspace_of(self, user_id: str) -> Record | None:
        check_id("workspace-repository", user_id)
        return next((w for w in self.workspaces.values() if field(w, "user-id") == user_id), None)

    def _save_workspace(self, w: Record) -> None:
        check_id("workspace-repository", field(w, "workspace-id"))
        check_id("workspace-repository", field(w, "user-id"))
        for key in [k for k, o in self.workspaces.items() if field(o, "user-id") == field(w, "user-id")]:
            del self.workspaces[key]
        self.workspaces[field(w, "workspace-id")] = w

    def _chats_of(self, workspace_id: str) -> list[Record]:
        check_id("chat-repository", workspace_id)
        return [c for c in self.chats.values() if field(c, "workspace-id") == workspace_id]

    def _files_of(self, chat_id: str) -> list[Record]:
        check_id("chat-file-repository", chat_id)
        return [f for f in self.files.values() if field(f, "chat-id") == chat_id]

    def _save_chat(self, c: Record) -> None:
        check_id("chat-repository", field(c, "chat-id"))
        check_id("chat-repository", field(c, "workspace-id"))
        self.chats[field(c, "chat-id")] = c

    def _file_named(self, chat_id: str, name: str) -> Record | None:
        check_id("chat-file-repository", chat_id)
        check_name("chat-file-repository", name)
        return next(
            (f for f in self.files.values() if field(f, "chat-id") == chat_id and field(f, "name") == name), None
        )

    def _save_file(self, f: Record) -> None:
        check_id("chat-file-repository", field(f, "file-id"))
        check_id("chat-file-repository", field(f, "chat-id"))
        check_name("chat-file-repository", field(f, "name"))
        for key in [
            k
            for k, o in self.files.items()
            if field(o, "chat-id") == field(f, "chat-id") and field(o, "name") == field(f, "name")
        ]:
            del self.files[key]
        self.files[field(f, "file-id")] = f

    def _delete_files_of(self, chat_id: str) -> None:
        check_id("chat-file-repository", chat_id)
        for key in [k for k, f in self.files.items() if field(f, "chat-id") == chat_id]:
            del self.files[key]

    def _write_attachment(self, chat: Record, name: str, token: str) -> None:
        check_name("chat-storage", name)
        self.chat_dir("chat-storage", chat)
        self.store_staged("chat-storage", token, lambda staged: self.install("chat-storage", chat, name, staged))

    def _ensure_chat(self, chat: Record) -> None:
        directory = self.chat_dir("chat-storage", chat)
        directory.mkdir(parents=True, exist_ok=True)
        if _lstat(directory / HISTORY) is None:
            self.write_file("chat-storage", chat, HISTORY, b"")

    def _clear_attachments(self, chat: Record) -> None:
        directory = self.chat_dir("chat-storage", chat)
        for child in directory.iterdir():
            if child.name != HISTORY:
                self.remove(child)

    def _usage(self, workspace: Record) -> Record:
        workspace_id = check_id("storage-usage", field(workspace, "workspace-id"))
        used = bytes_under(self.root / "workspaces" / workspace_id / "chats")
        return record(workspace_id=workspace_id, used_bytes=used, quota_bytes=self.quota_bytes)

    # ---- linking ----

    def linker(self, loaded: Loaded) -> Linker:
        """A linker with WASI (this host's wall clock) and the seven ports."""
        linker = Linker(loaded.engine)
        linker.add_wasip2()
        linker.allow_shadowing = True
        clock = next(n for n in loaded.component.type.imports(loaded.engine) if n.startswith("wasi:clocks/wall-clock@"))
        ports = self.ports()
        with linker.root() as root:
            with root.add_instance(clock) as instance:
                instance.add_func("now", lambda _store: record(**dict(zip(("seconds", "nanoseconds"), self.now()))))
                instance.add_func("resolution", lambda _store: record(seconds=0, nanoseconds=1))
            for interface in sorted({i for i, _ in loaded.tagged}):
                port = interface.split("/")[1].split("@")[0]
                with root.add_instance(interface) as instance:
                    for (i, fn), tagged in loaded.tagged.items():
                        if i == interface:
                            instance.add_func(fn, _port_function(port, ports[port][fn], tagged))
        return linker

    def instantiate(self, loaded: Loaded) -> "Storage":
        store = Store(loaded.engine)
        store.set_wasi(WasiConfig())
        instance = self.linker(loaded).instantiate(store, loaded.component)
        return Storage(store, instance, loaded)


def _port_function(port: str, impl: Callable[..., Any], tagged: bool) -> Callable[..., Any]:
    """Adapts an implementation to wasmtime-py: the store argument dropped,
    failures turned into the `port-error`, the result tagged if it must be."""

    def call(_store: Any, *args: Any) -> Any:
        try:
            value, ok = impl(*args), True
        except PortFailure as e:
            value, ok = record(port=e.port, message=e.message), False
        except (OSError, UnicodeError) as e:
            value, ok = record(port=port, message=str(e)), False
        if tagged:
            return Variant("ok" if ok else "err", value)
        return value

    return call


class StorageError(Exception):
    """A `storage` export refused: `code` is the stable code (`chat_not_found`),
    `subject` the id or name it carries (None for `storage_unavailable`)."""

    def __init__(self, error: Variant):
        self.code = error.tag.replace("-", "_")
        payload = error.payload
        self.subject = payload if isinstance(payload, str) else None
        detail = payload if isinstance(payload, str) else f"{field(payload, 'port')}: {field(payload, 'message')}"
        super().__init__(f"{self.code}: {detail}")


class Storage:
    """The component's `storage` exports, called by their WIT names."""

    def __init__(self, store: Store, instance: Any, loaded: Loaded):
        self.store = store
        self.instance = instance
        self.interface = instance.get_export_index(store, loaded.storage)
        self.tagged = loaded.export_tagged
        self.functions: dict[str, Any] = {}

    def call(self, name: str, *args: Any) -> Any:
        """Calls an export; returns its ok value or raises `StorageError`."""
        func = self.functions.get(name)
        if func is None:
            func = self.instance.get_func(self.store, self.instance.get_export_index(self.store, name, self.interface))
            self.functions[name] = func
        result = func(self.store, *args)
        func.post_return(self.store)
        if self.tagged[name]:
            if result.tag == "err":
                raise StorageError(result.payload)
            return result.payload
        if isinstance(result, Variant):
            raise StorageError(result)
        return result
