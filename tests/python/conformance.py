"""Plays the conformance scenarios (``conformance/README.md``) against the
component hosted by ``chatstore_host``: each scenario on a fresh host in a
temporary directory, stopping at the first step that differs."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from wasmtime.component import Record, Variant

from chatstore_host import Loaded, PyHost, StorageError, field, record

DEFAULT_QUOTA_BYTES = 1 << 30
DEFAULT_CLOCK = 1767225600



def wit_calls(wit_text: str) -> tuple[dict[str, list[str]], set[str]]:
    """Each call of the WIT ``storage`` interface, read from
    ``wit/storage.wit``: its parameters in order; and the ``read-…`` calls,
    whose content the host serves."""
    start = wit_text.index("interface storage")
    body = wit_text[start : wit_text.index("\n}", start)]
    calls: dict[str, list[str]] = {}
    content: set[str] = set()
    for name, params in re.findall(r"^\s*([a-z-]+): func\(([^)]*)\)", body, re.MULTILINE):
        calls[name] = [p.split(":")[0].strip() for p in params.split(",") if p.strip()]
        if name.startswith("read-"):
            content.add(name)
    return calls, content


CALLS, CONTENT_RESULTS = wit_calls(
    (Path(__file__).resolve().parents[2] / "wit" / "storage.wit").read_text()
)
HOST_ACTIONS = {
    "set-clock": ["seconds", "nanoseconds"],
    "start-sandbox": ["chat"],
    "end-sandbox": ["chat"],
    "sandbox-write": ["chat", "path", "content"],
    "list-dir": ["chat"],
}
OPTIONAL = {"content-type", "nanoseconds"}
STEP_KEYS = {"call", "host", "as", "expect", "note"}


class ScenarioError(Exception):
    """A scenario is malformed or refers to nothing: not a verdict."""


def load_scenarios(directory: Path) -> list[dict]:
    scenarios = []
    for path in sorted(Path(directory).glob("*.json")):
        scenario = json.loads(path.read_text("utf-8"))
        scenario["name"] = path.stem
        scenarios.append(scenario)
    return scenarios


def wit_json(value: Any) -> Any:
    """A value the component returned, in the WIT's JSON shape."""
    if isinstance(value, Record):
        return {name: wit_json(v) for name, v in vars(value).items()}
    if isinstance(value, (bytes, bytearray)):
        return content_value(bytes(value))
    if isinstance(value, list):
        return [wit_json(v) for v in value]
    return value


def wit_output(o: dict) -> Record:
    """A sandbox output of a scenario (WIT JSON) as wasmtime-py takes it."""
    return record(name=o["name"], content_type=o.get("content-type"), size_bytes=int(o["size-bytes"]), sha256=o["sha256"])


def outcome_json(outcome: Any) -> dict:
    """One `output-outcome` in the suite's JSON: {registered} or {refused: {error, subject}}.
    wasmtime-py gives a variant whose cases carry different Python classes as
    the case's value itself: a chat-file record, or the storage-error variant."""
    if isinstance(outcome, Variant) and outcome.tag in ("registered", "refused"):
        outcome = outcome.payload
    if isinstance(outcome, Record):
        return {"registered": wit_json(outcome)}
    error = StorageError(outcome)
    return {"refused": {"error": error.code, "subject": error.subject}}


def content_value(data: bytes) -> Any:
    """Bytes as the suite shows them: text if UTF-8, else {"hex"}."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": data.hex()}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Bindings:
    def __init__(self, ids: list[str]):
        self.vars: dict[str, Any] = {name: str(uuid.uuid4()) for name in ids}

    def lookup(self, reference: str) -> Any:
        name, *fields = reference[1:].split(".")
        if name not in self.vars:
            raise ScenarioError(f"{reference}: nothing is bound to {name!r}")
        value = self.vars[name]
        for f in fields:
            if not isinstance(value, dict) or f not in value:
                raise ScenarioError(f"{reference}: no field {f!r}")
            value = value[f]
        return value

    def content(self, spec: Any) -> bytes:
        if isinstance(spec, str):
            if not spec.startswith("$"):
                return spec.encode("utf-8")
            value = self.lookup(spec)
            if not isinstance(value, str):
                raise ScenarioError(f"{spec} is not text")
            return value.encode("utf-8")
        keys = sorted(spec) if isinstance(spec, dict) else []
        if keys == ["text"]:
            return spec["text"].encode("utf-8")
        if keys == ["count", "repeat"]:
            return (spec["repeat"] * spec["count"]).encode("utf-8")
        if keys == ["hex"]:
            try:
                return bytes.fromhex(spec["hex"])
            except ValueError:
                pass
        raise ScenarioError(f"{json.dumps(spec)} is not content")

    def text(self, spec: Any) -> str:
        try:
            return self.content(spec).decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError(f"{json.dumps(spec)} is not UTF-8 text") from None

    def matches(self, expected: Any, actual: Any) -> bool:
        """Whether `actual` has every field `expected` names, with its value."""
        return included(self.resolve(expected), actual)

    def resolve(self, value: Any) -> Any:
        """`value` with every `$` reference replaced by the value it names (taken as it is)."""
        if isinstance(value, str) and value.startswith("$"):
            return self.lookup(value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value


def included(expected: Any, actual: Any) -> bool:
    """Partial match: every field of `expected` is in `actual`, with its value
    (scalars of the same type: 1 is not True)."""
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(included, expected, actual))
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and included(v, actual[k]) for k, v in expected.items())
    return type(expected) is type(actual) and expected == actual


def parse_step(step: dict) -> tuple[str, str, list[str]]:
    is_host = "host" in step
    if is_host == ("call" in step):
        raise ScenarioError("needs exactly one of `call` or `host`")
    name = step["host"] if is_host else step["call"]
    params = (HOST_ACTIONS if is_host else CALLS).get(name)
    if params is None:
        raise ScenarioError(f"no such {'host action' if is_host else 'call'} {name!r}")
    for key in step:
        if key not in STEP_KEYS and key not in params:
            raise ScenarioError(f"{name} takes no {key!r}")
    for p in params:
        if p not in step and p not in OPTIONAL:
            raise ScenarioError(f"{name} needs {p!r}")
    return ("host" if is_host else "call"), name, params


def list_files(directory: Path) -> list[str] | None:
    """Sorted `/`-separated paths of the files under `directory`, or None if it does not exist."""
    if not directory.exists():
        return None
    found = []
    for path in directory.rglob("*"):
        if not path.is_dir() or path.is_symlink():
            found.append(path.relative_to(directory).as_posix())
    return sorted(found, key=lambda p: p.encode())


def run_scenario(loaded: Loaded, scenario: dict) -> dict:
    """Plays one scenario on a fresh host: `{"passed": True, "steps": n}` or
    `{"passed": False, "step", "action", "note", "expected", "actual"}`."""
    with tempfile.TemporaryDirectory(prefix="chatstore-py-") as tmp:
        root = Path(tmp)
        clock = [int(scenario.get("clock", DEFAULT_CLOCK)), 0]
        host = PyHost(root, quota_bytes=int(scenario.get("quota-bytes", DEFAULT_QUOTA_BYTES)), now=lambda: tuple(clock))
        storage = host.instantiate(loaded)
        bindings = Bindings(scenario.get("ids", []))

        def chat_of(spec: Any) -> dict:
            chat = bindings.lookup(spec) if isinstance(spec, str) and spec.startswith("$") else spec
            if not isinstance(chat, dict) or not isinstance(chat.get("chat-id"), str) or not isinstance(chat.get("workspace-id"), str):
                raise ScenarioError(f"`chat` must be a chat record, not {json.dumps(chat)}")
            return chat

        def call(name: str, params: list[str], step: dict) -> tuple[str, Any]:
            args = []
            for p in params:
                if p == "content":
                    content = bindings.content(step["content"])
                    if name != "upload-attachment":
                        # A history must be text, as the hosts check before staging it.
                        bindings.text(step["content"])
                    args.append(host.stage(content))
                elif p == "content-type":
                    args.append(None if step.get(p) is None else bindings.text(step[p]))
                elif p == "outputs":
                    args.append([wit_output(o) for o in bindings.resolve(step["outputs"])])
                else:
                    args.append(bindings.text(step[p]))
            try:
                value = storage.call(name, *args)
            except StorageError as e:
                host.finish_call()
                return "err", e
            opened = host.finish_call()
            if name in CONTENT_RESULTS:
                if opened is None:
                    raise ScenarioError(f"{name} opened nothing to serve")
                return "ok", content_value(opened)
            if name == "register-sandbox-outputs":
                return "ok", [outcome_json(o) for o in value]
            return "ok", wit_json(value)

        def register_outputs(chat: dict, directory: Path) -> None:
            # A session's end: the files it left that no record describes
            # are offered to the policy, as every host does.
            recorded = [f for f in host.files.values() if field(f, "chat-id") == chat["chat-id"]]
            outputs = []
            for entry in sorted(directory.iterdir()):
                if entry.name == "history.md" or entry.is_symlink() or not entry.is_file():
                    continue
                data = entry.read_bytes()
                if any(field(f, "name") == entry.name and field(f, "size-bytes") == len(data) for f in recorded):
                    continue
                outputs.append(
                    record(name=entry.name, content_type=None, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
                )
            if not outputs:
                return
            user = next(field(w, "user-id") for w in host.workspaces.values() if field(w, "workspace-id") == chat["workspace-id"])
            try:
                storage.call("register-sandbox-outputs", user, chat["chat-id"], outputs)
            finally:
                host.finish_call()

        def host_action(name: str, step: dict) -> tuple[str, Any]:
            if name == "set-clock":
                clock[:] = [int(step["seconds"]), int(step.get("nanoseconds", 0))]
                return "ok", None
            chat = chat_of(step["chat"])
            directory = root / "workspaces" / chat["workspace-id"] / "chats" / chat["chat-id"]
            if name == "start-sandbox":
                if chat["chat-id"] not in host.chats:
                    return "err", Refusal("chat_not_found", chat["chat-id"])
                session = record(session_id=str(uuid.uuid4()), chat_id=chat["chat-id"])
                host.sandboxes[chat["chat-id"]] = session
                return "ok", wit_json(session)
            if name == "end-sandbox":
                return "ok", wit_json(host.sandboxes.pop(chat["chat-id"], None))
            if name == "sandbox-write":
                rel = bindings.text(step["path"])
                if any(p in ("", ".", "..") for p in rel.split("/")):
                    raise ScenarioError(f"{rel} is not a relative path")
                target = directory.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                # A session around the write: its end counts what it wrote.
                host.sandboxes[chat["chat-id"]] = record(
                    session_id=str(uuid.uuid4()), chat_id=chat["chat-id"]
                )
                target.write_bytes(bindings.content(step["content"]))
                host.sandboxes.pop(chat["chat-id"], None)
                register_outputs(chat, directory)
                return "ok", None
            if name == "list-dir":
                return "ok", list_files(directory)
            raise ScenarioError(f"{name} has no runner")

        for i, step in enumerate(scenario["steps"], start=1):
            try:
                kind, name, params = parse_step(step)
                outcome = host_action(name, step) if kind == "host" else call(name, params, step)
                content_shaped = kind == "call" and name in CONTENT_RESULTS
                passed = check(bindings, step.get("expect"), outcome, content_shaped)
                if not passed:
                    return {
                        "passed": False,
                        "step": i,
                        "action": f"{kind} {name}",
                        "note": step.get("note"),
                        "expected": describe_expected(bindings, step.get("expect"), content_shaped),
                        "actual": f"ok {dumps(outcome[1])}" if outcome[0] == "ok" else describe_refusal(outcome[1]),
                    }
            except ScenarioError as e:
                raise ScenarioError(f"{scenario['name']}: step {i}: {e}") from None
            if "as" in step and outcome[0] == "ok":
                bindings.vars[step["as"]] = outcome[1]
        return {"passed": True, "steps": len(scenario["steps"])}


class Refusal:
    """A refusal by the host itself (not the component), shaped like `StorageError`."""

    def __init__(self, code: str, subject: str | None):
        self.code, self.subject = code, subject

    def __str__(self) -> str:
        return self.code


def check(bindings: Bindings, expect: Any, outcome: tuple[str, Any], content_shaped: bool) -> bool:
    kind, value = outcome
    if expect is None or expect == "ok":
        return kind == "ok"
    if not isinstance(expect, dict):
        raise ScenarioError('`expect` must be "ok", {"ok": value} or {"error": code}')
    if "ok" in expect:
        if kind != "ok":
            return False
        if content_shaped:
            return included(content_value(bindings.content(expect["ok"])), value)
        return bindings.matches(expect["ok"], value)
    if "error" in expect:
        if kind != "err" or value.code != expect["error"]:
            return False
        return "subject" not in expect or value.subject == bindings.text(expect["subject"])
    raise ScenarioError('`expect` must be "ok", {"ok": value} or {"error": code}')


def describe_expected(bindings: Bindings, expect: Any, content_shaped: bool) -> str:
    if expect is None or expect == "ok":
        return "ok"
    if "ok" in expect:
        value = content_value(bindings.content(expect["ok"])) if content_shaped else bindings.resolve(expect["ok"])
        return f"ok {dumps(value)}"
    if "subject" in expect:
        return f"error {expect['error']} ({bindings.text(expect['subject'])})"
    return f"error {expect['error']}"


def describe_refusal(e: Any) -> str:
    return f"error {e.code} ({e.subject})" if e.subject is not None else f"error {e}"
