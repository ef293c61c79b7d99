"""The conformance scenarios, and the host's confinement rules, with the
component hosted by wasmtime-py. The component is $CHATSTORE_WASM (default
target/chatstore_storage.wasm)."""

import copy
import json
import os
import uuid
from pathlib import Path

import pytest

from chatstore_host import PortFailure, PyHost, StorageError, load, record
from conformance import ScenarioError, load_scenarios, run_scenario

REPO = Path(__file__).resolve().parents[2]
WASM = Path(os.environ.get("CHATSTORE_WASM", REPO / "target" / "chatstore_storage.wasm"))
SCENARIOS = load_scenarios(Path(os.environ.get("CHATSTORE_SCENARIOS", REPO / "conformance" / "scenarios")))


@pytest.fixture(scope="session")
def loaded():
    if not WASM.exists():
        pytest.fail(f"no component at {WASM}: run `cargo run -- component --output target/chatstore_storage.wasm` first, or set CHATSTORE_WASM")
    return load(WASM)


def test_the_scenario_directory_holds_the_suite():
    assert len(SCENARIOS) >= 10


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(loaded, scenario):
    assert run_scenario(loaded, scenario) == {"passed": True, "steps": len(scenario["steps"])}


def test_a_wrong_expectation_fails_at_its_step(loaded):
    chats = next(s for s in SCENARIOS if s["name"] == "chats")
    wrong = json.loads(json.dumps(chats).replace('"used-bytes": 15', '"used-bytes": 16'))
    verdict = run_scenario(loaded, wrong)
    assert verdict["passed"] is False
    assert (verdict["step"], verdict["action"]) == (15, "call get-usage")
    assert '"used-bytes":15' in verdict["actual"]


def test_a_scenario_that_names_nothing_is_an_error_not_a_verdict(loaded):
    scenario = {"name": "unbound", "rule": "r", "steps": [{"call": "get-workspace", "user-id": "$nobody"}]}
    with pytest.raises(ScenarioError, match="nothing is bound to 'nobody'"):
        run_scenario(loaded, scenario)


@pytest.fixture
def chat(loaded, tmp_path):
    host = PyHost(tmp_path)
    storage = host.instantiate(loaded)
    user = str(uuid.uuid4())
    storage.call("ensure-workspace", user)
    c = storage.call("create-chat", user)
    directory = tmp_path / "workspaces" / getattr(c, "workspace-id") / "chats" / getattr(c, "chat-id")
    return host, storage, user, c, directory


def test_a_symlink_a_sandbox_planted_is_never_followed(chat, tmp_path):
    host, storage, user, c, directory = chat
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    def upload(content: bytes):
        file = storage.call("upload-attachment", user, getattr(c, "chat-id"), "a.txt", None, host.stage(content))
        host.finish_call()
        return file

    file = upload(b"mine")
    (directory / "a.txt").unlink()
    (directory / "a.txt").symlink_to(outside)
    with pytest.raises(StorageError) as refused:
        storage.call("read-attachment", user, getattr(c, "chat-id"), getattr(file, "file-id"))
    assert refused.value.code == "storage_unavailable"
    host.finish_call()
    upload(b"new")
    assert outside.read_text() == "secret"
    assert not (directory / "a.txt").is_symlink()


def test_the_ports_refuse_hostile_ids_and_names_from_a_guest(chat, tmp_path):
    host, storage, user, c, directory = chat
    ports = host.ports()
    good = record(chat_id=getattr(c, "chat-id"), workspace_id=getattr(c, "workspace-id"), created_at=getattr(c, "created-at"))
    for bad in ["../../etc", "..", "", "NOT-A-UUID", "/etc/passwd", getattr(c, "chat-id").upper()]:
        hostile = copy.copy(good)
        setattr(hostile, "chat-id", bad)
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-storage"]["open-history"](hostile)
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-storage"]["history-size"](hostile)
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-file-repository"]["list-by-chat-id"](bad)
    names = ["", ".", "..", "../x", "a/b", "a\\b", "a\0b", "history.md", "HISTORY.MD", "n" * 256]
    names += ["a\u0001", "a\u007f", "a\u202eb", " ", "x ", "\u00a0x", "e\u0301"]
    for name in names:
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-storage"]["write-attachment"](good, name, getattr(host.stage(b"x"), "token"))
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-storage"]["open-attachment"](good, name)
        with pytest.raises(PortFailure, match="refused"):
            ports["chat-storage"]["attachment-size"](good, name)
    host.finish_call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging", "workspaces"]
    assert list((tmp_path / "staging").iterdir()) == []


def test_staged_content_is_stored_once_by_a_token_the_host_issued_for_the_call(chat):
    host, storage, user, c, directory = chat
    port = host.ports()["chat-storage"]
    good = record(chat_id=getattr(c, "chat-id"), workspace_id=getattr(c, "workspace-id"), created_at=getattr(c, "created-at"))
    with pytest.raises(PortFailure, match="no content was staged"):
        port["write-attachment"](good, "a.txt", "staged-99")
    token = getattr(host.stage(b"once"), "token")
    port["write-attachment"](good, "a.txt", token)
    with pytest.raises(PortFailure, match="already stored"):
        port["write-attachment"](good, "b.txt", token)
    with pytest.raises(PortFailure, match="already stored"):
        port["append-history"](good, token)
    host.finish_call()
    with pytest.raises(PortFailure, match="no content was staged"):
        port["write-attachment"](good, "c.txt", token)
