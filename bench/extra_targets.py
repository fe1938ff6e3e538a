"""The targets read from the extras' own outputs (`bench/<module>.py` scripts).

Job: turn the tables that `bench/mongo_roundtrips.py`, `bench/mongo_e2e.py`,
`bench/recovery.py` and `bench/duplicates.py` print into `report.Target` rows of the
report's targets table. Contract: `extra_targets(appendices)` takes the extras' outputs
by title (`run.run_extras`) and returns one row per figure found, or a row saying why
nothing was measured; it never raises on a missing or partial output.
"""

from __future__ import annotations

from bench.report import LABELS, Target


def extra_targets(appendices: dict[str, str]) -> list[Target]:
    """Every extra's targets, in the order the report lists them."""
    return [
        *mongo_targets(appendices),
        *recovery_targets(appendices),
        *duplicates_targets(appendices),
    ]


def mongo_targets(appendices: dict[str, str]) -> list[Target]:
    """The MongoDB targets, read from the tables `bench/mongo_roundtrips.py` and
    `bench/mongo_e2e.py` print (rows with a "per invocation" column)."""
    texts = [t for title, t in appendices.items() if "MongoDB" in title]
    if not texts:
        why = "not measured (see 'Not measured in this run')"
        return [Target("MongoDB commands per invocation", "-", "<= 3 single, <= 1.5 batch", why)]
    found: list[Target] = []
    for text in texts:
        found += _per_invocation_rows(text)
    return found or [Target("MongoDB commands per invocation", "-", "-", "no table in its output")]


def _per_invocation_rows(text: str) -> list[Target]:
    found: list[Target] = []
    column = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "per invocation" in cells:
            column = cells.index("per invocation")
            continue
        if column is None or len(cells) <= column or cells[0].startswith("---"):
            continue
        try:
            per = float(cells[column])
        except ValueError:
            continue
        bound = 3.0 if cells[0].startswith("single") else 1.5
        status = "met" if per <= bound else "MISSED"
        found.append(
            Target(
                f"MongoDB commands per invocation, {cells[0]}",
                f"{per:.2f}",
                f"<= {bound:g}",
                status,
            )
        )
    return found


def recovery_targets(appendices: dict[str, str]) -> list[Target]:
    """Issue 15's recovery targets, read from the table `bench/recovery.py` prints: all 3
    tasks finished <= 12 s after a new worker started on the host of the killed one, and
    requeued <= 15 s after the last heartbeat of a host that does not come back."""
    text = next((t for title, t in appendices.items() if "Recovery time" in title), None)
    if text is None:
        why = "not measured (see 'Not measured in this run')"
        return [Target("Recovery of a SIGKILLed worker (s)", "-", "<= 12 / <= 15", why)]
    found: list[Target] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|"):
            continue
        try:
            same, gone = float(cells[1]), float(cells[2])
        except ValueError:
            continue  # the header and the rule
        for what, value, bound in (
            (f"{cells[0]}: same-host restart, all finished after new start (s)", same, 12.0),
            (f"{cells[0]}: host gone, requeued after last heartbeat (s)", gone, 15.0),
        ):
            status = "met" if value <= bound else "MISSED"
            found.append(Target(what, f"{value:.1f}", f"<= {bound:g}", status))
    return found or [Target("Recovery of a SIGKILLed worker", "-", "-", "no table in its output")]

    return found or [Target("MongoDB commands per invocation", "-", "-", "no table in its output")]


DUPLICATES = "completed twice (total)"
"""The column of `bench/duplicates.py`'s summary table the duplicates targets read."""


def duplicates_targets(appendices: dict[str, str]) -> list[Target]:
    """fleet's bodies completed twice under worker kills against Celery's reliable
    setting in the same run, and none lost; read from `bench/duplicates.py`'s summary."""
    text = next((t for title, t in appendices.items() if "completed twice" in title), None)
    what = "bodies completed twice under SIGKILLs vs Celery acks_late"
    if text is None:
        why = "not measured (see 'Not measured in this run')"
        return [Target(f"fleet: {what}", "-", "<= Celery", why)]
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if DUPLICATES in cells:
            header = cells
        elif header and len(cells) == len(header) and not cells[0].startswith("---"):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    celery = rows.get("celery-reliable")
    found: list[Target] = []
    for system in ("rabbitmq-sqlite", "embedded"):
        mine = rows.get(system)
        label = LABELS[system]
        if mine is None or celery is None:
            found.append(Target(f"{label}: {what}", "-", "<= Celery", "not measured"))
            continue
        ours, theirs = int(mine[DUPLICATES]), int(celery[DUPLICATES])
        found.append(
            Target(
                f"{label}: {what}",
                f"{ours} vs {theirs} (totals over {mine['runs']} runs; "
                f"{mine['kills (total)']} vs {celery['kills (total)']} kills)",
                "<= Celery",
                "met" if ours <= theirs else "MISSED",
            )
        )
        lost = int(mine["lost (total)"])
        found.append(
            Target(
                f"{label}: bodies never completed under SIGKILLs",
                str(lost),
                "0",
                "met" if lost == 0 else "MISSED",
            )
        )
    return found
