"""Per-call cost of the component hosted by wasmtime-py:
``python tests/python/bench.py`` (after
``cargo run --release -- component --output target/chatstore_storage.wasm``).
One instance, in-memory metadata, chat directories on a temporary directory."""

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chatstore_host import PyHost, load  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WASM = Path(os.environ.get("CHATSTORE_WASM", REPO / "target" / "chatstore_storage.wasm"))


def measure(name, n, f):
    for i in range(min(n, 100)):
        f()
    started = time.perf_counter()
    for i in range(n):
        f()
    us = (time.perf_counter() - started) * 1e6 / n
    print(f"{name:34} {us:8.1f} µs/call  ({n} calls)")


def main():
    started = time.perf_counter()
    loaded = load(WASM)
    print(f"{'compile component':34} {(time.perf_counter() - started) * 1e3:8.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        host = PyHost(Path(tmp))
        started = time.perf_counter()
        storage = host.instantiate(loaded)
        print(f"{'instantiate':34} {(time.perf_counter() - started) * 1e3:8.1f} ms")
        user = str(uuid.uuid4())
        storage.call("ensure-workspace", user)
        chat_id = getattr(storage.call("create-chat", user), "chat-id")
        storage.call("append-history", user, chat_id, host.stage(b"x" * 1024))
        host.finish_call()
        kib = bytes(1024)
        measure("get-workspace", 5000, lambda: storage.call("get-workspace", user))
        measure("get-chat", 5000, lambda: storage.call("get-chat", user, chat_id))
        def read_history():
            storage.call("read-history", user, chat_id)
            host.finish_call()

        def upload():
            storage.call("upload-attachment", user, chat_id, "a.bin", None, host.stage(kib))
            host.finish_call()

        measure("read-history (1 KiB)", 5000, read_history)
        measure("upload-attachment (1 KiB, replace)", 1000, upload)


if __name__ == "__main__":
    main()
