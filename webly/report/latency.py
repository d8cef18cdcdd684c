"""Milliseconds a row of the models of the results table, from what the compress stage measured
(``frontier.json``: ONNX Runtime on its validation rows, for every candidate it could deploy;
nothing is timed here).

Only candidates in their stored float32 weights count. They give the final network and the
stacker directly. An ensemble candidate's figure is the sum of its members' (each member: all
its fold models), so each member's own figure is solved from the candidates' sums
(`member_latencies`); a blend without a candidate of its own, or the zoo average, is then the
sum of its members of non-zero weight. Students were never candidates and get no figure; nor
does anything when the stage skipped timing (``compress.measure_latency: false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from webly.report.run_files import RunFiles
from webly.rundir import EnsembleRecord, ZooRecord

AVERAGE, BLEND, STACKER = "zoo average", "blend: ", "stacker"  # as results.json labels them


def member_latencies(candidates: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds a row of each member, from the timed ensemble candidates of
    ``frontier.json`` (float32 weights): the least-squares solution of "a candidate's figure is
    the sum of its members' figures", for the members those sums determine (a member whose
    figure the candidates leave open, e.g. one only ever timed beside another, is left out)."""
    timed = [
        c
        for c in candidates
        if c["kind"] == "ensemble" and c["compression"] is None and c["latency_ms"] is not None
    ]
    names = sorted({m for c in timed for m in c["members"]})
    if not names:
        return {}
    uses = np.array([[m in c["members"] for m in names] for c in timed], dtype=np.float64)
    figures = np.array([c["latency_ms"] for c in timed], dtype=np.float64)
    solution = np.linalg.lstsq(uses, figures, rcond=None)[0]
    _, singular, directions = np.linalg.svd(uses)  # directions: (n_members, n_members)
    rank = int((singular > singular.max() * 1e-9).sum())
    open_ = np.abs(directions[rank:]).max(axis=0, initial=0.0) > 1e-9  # moves without a change
    return {m: float(max(solution[i], 0.0)) for i, m in enumerate(names) if not open_[i]}


def row_latencies(files: RunFiles, labels: Sequence[str], final: str | None) -> dict[str, float]:
    """Milliseconds a row of those of ``labels`` (rows of ``results.json``) that the compress
    stage's measurements give; ``final`` is the row of the network it timed (the final network
    the run deploys)."""
    frontier = files.frontier
    if frontier is None:
        return {}
    candidates = frontier["candidates"]
    plain = {
        c["name"]: float(c["latency_ms"])
        for c in candidates
        if c["compression"] is None and not c.get("refit") and c["latency_ms"] is not None
    }
    final_ms = next(
        (ms for c in candidates if c["kind"] == "final" and (ms := plain.get(c["name"]))), None
    )
    members = member_latencies(candidates)
    ensemble = files.record(EnsembleRecord)
    stores = ensemble.stores if ensemble is not None else {}
    found: dict[str, float] = {}
    for label in labels:
        used: list[str] = []
        if label in members:
            found[label] = members[label]
        elif label == STACKER and STACKER in plain:
            found[label] = plain[STACKER]
        elif label == final and final_ms is not None:
            found[label] = final_ms
        elif label.startswith(BLEND) and label.removeprefix(BLEND) in stores:
            entry = label.removeprefix(BLEND)
            if f"blend {entry}" in plain:
                found[label] = plain[f"blend {entry}"]
                continue
            blend = files.store(stores[entry]).model["blend"]
            used = [n for n, w in zip(blend["names"], blend["weights"], strict=True) if w > 0]
        elif label == AVERAGE:
            zoo = files.record(ZooRecord)
            used = list(zoo.members if zoo is not None else {})
        if used and all(m in members for m in used):
            found[label] = sum(members[m] for m in used)
    return found
