"""Cases and verdicts shared by the SNP and TPM generators."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs


@attrs.frozen
class Verdict:
    accept: bool
    stage: str
    reason: str


@attrs.frozen
class Case:
    """One piece of evidence for both implementations.

    ``tag`` names what was done to the evidence (the unit the intended-difference table speaks
    of); ``request`` is the Go program's JSON line; ``starlock`` computes Starlock's verdict.
    """

    id: str
    tag: str
    request: dict[str, Any]
    starlock: Callable[[], Verdict] = attrs.field(repr=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: Lines the differential run prints in pytest's terminal summary (see conftest.py).
SUMMARY: list[str] = []


def round_robin(generators: Iterable[Iterator[Case]], budget: int) -> list[Case]:
    """Up to ``budget`` distinct cases taken in turn from each generator, so every kind is represented.

    Random generators can repeat a mutation; a repeated case id is drawn again (bounded).
    """
    active = list(generators)
    out: list[Case] = []
    seen: set[str] = set()
    draws = 0
    while active and len(out) < budget and draws < 20 * budget:
        still: list[Iterator[Case]] = []
        for gen in active:
            if len(out) >= budget:
                break
            draws += 1
            case = next(gen, None)
            if case is None:
                continue
            still.append(gen)
            if case.id not in seen:
                seen.add(case.id)
                out.append(case)
        active = still
    return out


def flip(data: bytes, offset: int, mask: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)
