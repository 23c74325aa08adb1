"""``batch_report.json``: one record per job, rewritten atomically after every finished job.

Format (``"format": "retarget-batch-report"``, ``"version": 1``)::

    {
      "format": "retarget-batch-report", "version": 1,
      "backend": "local", "workers": 2, "started": "...", "updated": "...",
      "summary": {"jobs": 4, "ok": 3, "skipped": 0, "failed": 1, "pending": 0, "running": 0, "frames": 36,
                  "densepose_calls": 24, "seconds": 12.5},
      "jobs": [
        {"name": "dance_as_anna.mp4", "source": "/abs/anna.jpg", "driver": "/abs/dance.mp4",
         "output": "/abs/out/dance_as_anna.mp4", "origin": "cross",
         "status": "ok",            # ok | skipped (finished earlier, verified) | failed | pending | running
         "error": null,             # one line when failed
         "frames": 12, "missing_frames": 0, "densepose_calls": 12, "seconds": 3.1,
         "output_sha256": "…",     # of the output file, null unless ok/skipped
         "fingerprint": "…"},      # hash of inputs' content + settings + weights
        ...
      ]
    }

A later run skips a job only when its record is ``ok``/``skipped``, the fingerprint is unchanged and
the output file's SHA-256 still equals ``output_sha256``.

``running`` marks a job a worker was given when the report was last written: if the batch was killed,
its output (if the worker finished it) belongs to the batch, and the next run replaces it rather than
refusing it. Workers also append one JSON line per finished job to the journal beside the report
(:func:`journal_path`, ``.<report-name>.journal``) before returning: if the main process dies
before it records the job, :func:`load_report` still knows the job finished (output hash and
fingerprint), and a rerun skips it. The journal is folded into the report and removed when the next
run starts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from retarget.errors import InputError
from retarget.io.atomic import write_bytes_atomic

FORMAT = "retarget-batch-report"
VERSION = 1
FINISHED = ("ok", "skipped")
RUNNING = "running"
STATUSES = ("ok", "skipped", "failed", "pending", "running")
REPORT_NAME = "batch_report.json"

#: The fields of a job record, in output order.
RECORD_FIELDS = ("name", "source", "driver", "output", "origin", "status", "error", "frames", "missing_frames",
                 "densepose_calls", "seconds", "output_sha256", "fingerprint")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def journal_path(report: Path) -> Path:
    """The workers' journal of finished jobs beside ``report``: ``.<report-name>.journal``."""
    report = Path(report)
    return report.with_name(f".{report.name}.journal")


def append_journal(journal: str | Path | None, record: dict[str, Any]) -> None:
    """Append one finished job (one JSON line, a single ``O_APPEND`` write) to ``journal``; best effort."""
    if not journal:
        return
    line = (json.dumps({k: record.get(k) for k in RECORD_FIELDS}, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_json_file(path: Path, limit: int = 256 << 20) -> str | None:
    from retarget.io.guard import is_regular_file

    if not is_regular_file(path):
        return None
    try:
        if path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load_report(path: Path) -> dict[str, dict[str, Any]]:
    """Records of an earlier report by resolved output path, updated by the workers' journal lines
    (:func:`journal_path`); empty when there is none or it is unusable. Only regular files are read."""
    path = Path(path)
    out: dict[str, dict[str, Any]] = {}
    text = _read_json_file(path)
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        data = None  # a damaged report verifies nothing: every job runs again
    if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("jobs"), list):
        for record in data["jobs"]:
            if isinstance(record, dict) and isinstance(record.get("output"), str):
                out[os.path.realpath(record["output"])] = record
    journal = _read_json_file(journal_path(path))
    for line in (journal or "").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(record, dict) and isinstance(record.get("output"), str) and record.get("status") == "ok":
            out[os.path.realpath(record["output"])] = record
    return out


def remove_journal(report: Path) -> None:
    """Remove the journal once the report holds what it said."""
    import contextlib

    with contextlib.suppress(OSError):
        journal_path(report).unlink()


def summarise(records: list[dict[str, Any]], seconds: float | None = None) -> dict[str, Any]:
    counts = {status: sum(r["status"] == status for r in records) for status in STATUSES}
    return {"jobs": len(records), **counts,
            "frames": sum(int(r.get("frames") or 0) for r in records if r["status"] == "ok"),
            "densepose_calls": sum(int(r.get("densepose_calls") or 0) for r in records if r["status"] != "skipped"),
            "seconds": round(seconds, 3) if seconds is not None else None}


def write_report(path: Path, records: list[dict[str, Any]], meta: dict[str, Any], seconds: float | None = None
                 ) -> None:
    """Write the report atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, **meta, "updated": now_iso(),
            "summary": summarise(records, seconds),
            "jobs": [{k: r.get(k) for k in RECORD_FIELDS} for r in records]}
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        write_bytes_atomic(path, text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def summary_table(records: list[dict[str, Any]], width: int = 60) -> str:
    """A plain-text table: status, frames, seconds, output, error."""
    rows = [("status", "frames", "seconds", "output", "error")]
    for r in records:
        error = (r.get("error") or "")
        if len(error) > width:
            error = error[: width - 1] + "…"
        rows.append((r["status"], "" if r.get("frames") is None else str(r["frames"]),
                     "" if r.get("seconds") is None else f"{r['seconds']:.1f}", r["name"], error))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3].ljust(widths[3])]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)
