"""csv-summary CHAT_ID, as a chatstore plugin written in Python
(componentize-py): summarises the chat's .csv attachments into summary.md
and appends a line to its history. The format is in ../README.md."""

import re
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import user_storage
from wit_world.imports.streams import StreamError_Closed

NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def numeric(values):
    """A column's (min, max, mean), if every non-empty value is a number."""
    numbers = []
    for value in values:
        value = value.strip(" ")
        if value == "":
            continue
        if not NUMBER.fullmatch(value):
            return None
        numbers.append(float(value))
    if not numbers:
        return None
    low = high = numbers[0]
    total = 0.0
    for x in numbers:
        low = min(low, x)
        high = max(high, x)
        total += x
    return low, high, total / len(numbers)


def summary_row(name, text):
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    lines = [line for line in lines if line != ""]
    header = lines[0].split(",") if lines else []
    rows = [line.split(",") for line in lines[1:]]
    stats = []
    for i, column in enumerate(header):
        found = numeric([row[i] if i < len(row) else "" for row in rows])
        if found is not None:
            low, high, mean = found
            stats.append(f"{column.strip(' ')}: {low:.3f} / {high:.3f} / {mean:.3f}")
    cells = "; ".join(stats) if stats else "-"
    return f"| {name} | {len(rows)} | {len(header)} | {cells} |\n"


def summary(rows):
    return (
        "# CSV summary\n\n"
        "| file | rows | columns | numeric columns: min / max / mean |\n"
        "|---|---|---|---|\n" + "".join(rows)
    )


def read_all(stream):
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(1 << 16))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                return b"".join(chunks)
            raise


class Run(exports.Run):
    def run(self) -> None:
        if len(sys.argv) < 2:
            print("usage: csv-summary CHAT_ID", file=sys.stderr)
            raise SystemExit(1)
        chat = sys.argv[1]
        store = user_storage.open()
        rows = []
        after = None
        while True:
            page = store.list_attachments(chat, 100, after)
            for file in page.data:
                if file.name.endswith(".csv"):
                    _, stream = store.read_attachment(chat, file.file_id)
                    text = read_all(stream).decode("utf-8", errors="replace")
                    stream.__exit__(None, None, None)
                    rows.append(summary_row(file.name, text))
            if not page.has_more:
                break
            after = page.last_id
        data = summary(rows).encode("utf-8")
        outgoing = store.upload_attachment(chat, "summary.md", "text/markdown")
        body = outgoing.body()
        for at in range(0, len(data), 4096):
            body.blocking_write_and_flush(data[at : at + 4096])
        body.__exit__(None, None, None)
        user_storage.Outgoing.finish(outgoing)
        store.append_history(chat, f"csv-summary: {len(rows)} CSV files summarised in summary.md\n")
