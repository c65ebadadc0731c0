"""TCG PC Client event logs: parsing and replay against quoted PCR values.

Two formats are read (TCG PC Client Platform Firmware Profile, section 10):

* **crypto-agile**: a first SHA-1-format ``TCG_PCR_EVENT`` (EV_NO_ACTION, PCR 0) whose data is
  the ``Spec ID Event03`` header listing every algorithm and its digest size, then
  ``TCG_PCR_EVENT2`` records (pcrIndex, eventType, TPML_DIGEST_VALUES, eventSize, event);
* **legacy SHA-1**: ``TCG_PCR_EVENT`` records only (when the first event is not Spec ID Event03).

All integers are little-endian. Parsing is bounded by :data:`MAX_EVENT_LOG_SIZE`,
:data:`MAX_EVENTS`, :data:`MAX_EVENT_DATA_SIZE` and :data:`MAX_ALGORITHMS`; every problem raises
:class:`MalformedEvidence`. Replay follows the TCG rules: EV_NO_ACTION events are not extended, and
the ``StartupLocality`` EV_NO_ACTION event sets PCR 0's initial value to the locality (last byte of
an otherwise zero value). :func:`verify_replay` raises :class:`EventLogMismatch`.

Replay also binds event data to digests (:mod:`.eventdata`): an event of a type whose digest the
PFP defines as the hash of its data (EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION,
EV_EFI_VARIABLE_DRIVER_CONFIG) must have exactly that digest, and :class:`EventLogReplay` marks
every event whose data is verified (digest == hash of its data in the replayed bank).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from collections.abc import Callable
from itertools import compress
from typing import Any, NamedTuple

import attrs

from starlock.attestation.document import PCRs
from starlock.attestation.errors import EventLogMismatch, MalformedEvidence
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm._reader import Reader, check_size
from starlock.attestation.tpm._specid import MAX_ALGORITHMS, SPEC_ID_SIGNATURE, SpecIdEvent, parse_spec_id
from starlock.attestation.tpm.eventdata import DATA_BOUND_EVENT_TYPES, unbound_data_error
from starlock.attestation.tpm.public import HASHLIB_CONSTRUCTORS

__all__ = [
    "EV_NO_ACTION",
    "MAX_ALGORITHMS",
    "MAX_EVENTS",
    "MAX_EVENT_DATA_SIZE",
    "MAX_EVENT_LOG_SIZE",
    "EventLog",
    "EventLogReplay",
    "SpecIdEvent",
    "TcgEvent",
    "parse_event_log",
    "replay",
    "verify_replay",
]

#: Real firmware logs are 20–60 KiB; 1 MiB leaves room for large db/dbx variables and long boots.
MAX_EVENT_LOG_SIZE = 1024 * 1024
#: Events per log (real logs have 40–1000).
MAX_EVENTS = 16384
#: Data of one event (the largest real ones are dbx variables of some tens of KiB).
MAX_EVENT_DATA_SIZE = 256 * 1024
#: PCR indices (a TPM has at most 32 PCRs; PC Client TPMs have 24).
MAX_PCR_INDEX = 31

EV_NO_ACTION = 0x00000003
_STARTUP_LOCALITY = b"StartupLocality\x00"
_SHA1_SIZE = 20


class TcgEvent(NamedTuple):
    """One event: ``number`` is its position in the log (the Spec ID header is number 0).

    A named tuple, immutable like the other parsed structures: a log has tens to thousands of
    events, and a tuple is built about four times faster than a frozen attrs instance.
    """

    number: int
    pcr_index: int
    event_type: int
    digests: tuple[tuple[int, bytes], ...]
    data: bytes

    def digest(self, hash_alg: int) -> bytes | None:
        for a, d in self.digests:
            if a == hash_alg:
                return d
        return None


@attrs.frozen
class EventLog:
    """A parsed log; ``spec_id`` is None for a legacy SHA-1 log. ``events`` excludes the header."""

    spec_id: SpecIdEvent | None
    events: tuple[TcgEvent, ...]

    @property
    def digest_sizes(self) -> dict[int, int]:
        if self.spec_id is None:
            return {alg.TPM_ALG_SHA1: _SHA1_SIZE}
        return dict(self.spec_id.digest_sizes)

    @property
    def hash_algs(self) -> tuple[int, ...]:
        return tuple(self.digest_sizes)


@attrs.frozen
class EventLogReplay:
    """A successful replay: the bank, the replayed value of every PCR in the log, the events.

    ``data_verified[i]`` says whether ``events[i]``'s data is bound to its digest in this bank
    (digest == hash of the data): only then is the data what was measured. EV_NO_ACTION events
    and events whose digest is over something else (an image, a file) are False.
    """

    hash_alg: int
    pcrs: dict[int, bytes]
    events: tuple[TcgEvent, ...]
    data_verified: tuple[bool, ...] = ()

    @property
    def verified_events(self) -> tuple[TcgEvent, ...]:
        """The events whose data is bound to their digest."""
        return tuple(compress(self.events, self._marks()))

    @property
    def unverified_events(self) -> tuple[TcgEvent, ...]:
        """The events whose data is an unchecked claim (not the preimage of their digest)."""
        return tuple(ev for ev, ok in zip(self.events, self._marks(), strict=True) if not ok)

    def _marks(self) -> tuple[bool, ...]:
        # A replay built without marks (by hand) verifies no event's data.
        if len(self.data_verified) == len(self.events):
            return self.data_verified
        return (False,) * len(self.events)


def parse_event_log(data: bytes) -> EventLog:
    """Parse a crypto-agile or legacy SHA-1 TCG event log."""
    check_size(data, "event log", MAX_EVENT_LOG_SIZE)
    r = Reader(data, "event log", little_endian=True)
    if not r.remaining:
        return EventLog(None, ())
    first = _read_sha1_event(r, 0)
    spec_id = None
    if first.event_type == EV_NO_ACTION and first.data.startswith(SPEC_ID_SIGNATURE):
        spec_id = parse_spec_id(first.data)
        events: list[TcgEvent] = []
    else:
        events = [first]
    if spec_id is not None:
        return EventLog(spec_id, tuple(_read_events2(r, spec_id.digest_sizes)))
    while r.remaining:
        number = len(events)
        if number > MAX_EVENTS:
            raise MalformedEvidence(f"event log: more than {MAX_EVENTS} events")
        events.append(_read_sha1_event(r, number))
    return EventLog(spec_id, tuple(events))


def replay(log: EventLog | bytes, hash_alg: int) -> dict[int, bytes]:
    """Replay the log for one bank: PCR index → final value, for every PCR the log touches.

    Raises :class:`EventLogMismatch` for an event whose type binds its data (EV_SEPARATOR...) but
    whose digest is not the hash of its data.
    """
    return _replay(log, hash_alg)[0]


def _replay(log: EventLog | bytes, hash_alg: int, *, marks: bool = True) -> tuple[dict[int, bytes], tuple[bool, ...]]:
    """The replayed PCRs and, per event, whether its data is bound to its digest.

    With ``marks=False`` only the events of :data:`DATA_BOUND_EVENT_TYPES` have their data hashed
    (a mismatch still raises); every other mark is False. For a bank whose marks nobody reads.
    """
    if not isinstance(log, EventLog):
        log = parse_event_log(log)
    name = alg.alg_name(hash_alg)
    header = log.digest_sizes
    size = header.get(hash_alg)
    if size is None:
        banks = ", ".join(alg.alg_name(a) for a in header)
        raise EventLogMismatch(f"event log has no {name} digests (its banks: {banks})")
    hash_ = alg.hash_for(hash_alg, "event log replay bank")
    if hash_.digest_size != size:
        raise MalformedEvidence(f"event log: header gives {size}-byte {name} digests, expected {hash_.digest_size}")
    new = HASHLIB_CONSTRUCTORS.get(hash_alg) or functools.partial(hashlib.new, hash_.name.replace("-", ""))
    zero = bytes(size)
    slot = list(header).index(hash_alg)
    bound_types = DATA_BOUND_EVENT_TYPES
    pcrs: dict[int, bytes] = {}
    bound: list[bool] = []
    mark = bound.append
    for ev in log.events:
        _, index, event_type, digests, data = ev
        if event_type == EV_NO_ACTION:
            if index == 0 and data.startswith(_STARTUP_LOCALITY):
                pcrs[0] = _startup_locality(ev, pcrs, size)
            mark(False)
            continue
        # Firmware lists the digests in header order: look there first, then search.
        try:
            found, measured = digests[slot]
        except IndexError:
            found = None
        if found != hash_alg:
            other = ev.digest(hash_alg)
            if other is None:
                raise EventLogMismatch(f"event log: event {ev.number} (PCR {index}) has no {name} digest")
            measured = other
        # Digests and data are public: a plain comparison is fine.
        if marks or event_type in bound_types:
            data_bound = new(data).digest() == measured
            if not data_bound and event_type in bound_types:
                raise unbound_data_error(ev, name, measured, new)
            mark(data_bound)
        else:
            mark(False)
        pcrs[index] = new(pcrs.get(index, zero) + measured).digest()
    return dict(sorted(pcrs.items())), tuple(bound)


def verify_replay(log: EventLog | bytes, pcrs: PCRs, *, marks: bool = True) -> EventLogReplay:
    """Replay ``log`` for the bank of ``pcrs`` and compare every PCR the log touches.

    A PCR in the log whose value differs from the quoted one, or that the quote lacks, is a
    mismatch; all mismatching indices are named. PCRs that the log does not touch are not compared.
    ``marks=False``: no event is marked as having its data verified (see :func:`_replay`).
    """
    if not isinstance(log, EventLog):
        log = parse_event_log(log)
    replayed, data_verified = _replay(log, pcrs.hash, marks=marks)
    _compare(replayed, pcrs)
    return EventLogReplay(pcrs.hash, replayed, log.events, data_verified)  # hash_alg, pcrs, events, data_verified


def _compare(replayed: dict[int, bytes], pcrs: PCRs) -> None:
    quoted_pcrs = pcrs.pcrs
    # PCR values are public: one list comparison decides the common case, the loop below names
    # every mismatching index otherwise.
    if list(map(quoted_pcrs.get, replayed)) == list(replayed.values()):
        return
    problems: dict[int, str] = {}
    for index, value in replayed.items():
        quoted = quoted_pcrs.get(index)
        if quoted is None:
            problems[index] = "in the event log but not in the quote"
        elif not hmac.compare_digest(quoted, value):
            problems[index] = f"replayed {value.hex()}, quoted {quoted.hex()}"
    if problems:
        indices = ", ".join(str(i) for i in problems)
        details = "; ".join(f"PCR {i}: {why}" for i, why in problems.items())
        raise EventLogMismatch(f"event log replay ({pcrs.hash_name}) differs from the quoted PCRs {indices}: {details}")


def _startup_locality(ev: TcgEvent, pcrs: dict[int, bytes], size: int) -> bytes:
    if len(ev.data) <= len(_STARTUP_LOCALITY):
        raise MalformedEvidence(f"event log: event {ev.number}: StartupLocality event without a locality byte")
    if 0 in pcrs:
        raise MalformedEvidence(f"event log: event {ev.number}: StartupLocality after PCR 0 was extended")
    return bytes(size - 1) + ev.data[len(_STARTUP_LOCALITY) : len(_STARTUP_LOCALITY) + 1]


def _read_header(r: Reader, number: int) -> tuple[int, int]:
    pcr_index = r.u32(f"event[{number}].pcrIndex")
    event_type = r.u32(f"event[{number}].eventType")
    if pcr_index > MAX_PCR_INDEX:
        raise MalformedEvidence(f"event log: event {number}: PCR index {pcr_index} out of range 0..{MAX_PCR_INDEX}")
    return pcr_index, event_type


def _read_data(r: Reader, number: int) -> bytes:
    size = r.u32(f"event[{number}].eventSize")
    if size > MAX_EVENT_DATA_SIZE:
        raise MalformedEvidence(f"event log: event {number}: eventSize {size}, more than {MAX_EVENT_DATA_SIZE}")
    return r.take(size, f"event[{number}].event")


_SHA1_EVENT_HEAD = struct.Struct("<II20sI")  # pcrIndex, eventType, SHA-1 digest, eventSize


def _read_sha1_event(r: Reader, number: int) -> TcgEvent:
    """TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, eventSize, event.

    A well-formed record is read with one ``struct`` unpack; anything else goes through
    :func:`_read_sha1_event_checked`, which names what is wrong.
    """
    data, pos = r.data, r.pos
    if len(data) - pos >= _SHA1_EVENT_HEAD.size:
        pcr_index, event_type, sha1, size = _SHA1_EVENT_HEAD.unpack_from(data, pos)
        start = pos + _SHA1_EVENT_HEAD.size
        if pcr_index <= MAX_PCR_INDEX and size <= MAX_EVENT_DATA_SIZE and start + size <= len(data):
            r.seek(start + size)
            return TcgEvent(number, pcr_index, event_type, ((alg.TPM_ALG_SHA1, sha1),), data[start : start + size])
    return _read_sha1_event_checked(r, number)


def _read_sha1_event_checked(r: Reader, number: int) -> TcgEvent:
    pcr_index, event_type = _read_header(r, number)
    sha1 = r.take(_SHA1_SIZE, f"event[{number}].digest")
    return TcgEvent(number, pcr_index, event_type, ((alg.TPM_ALG_SHA1, sha1),), _read_data(r, number))


_EVENT2_HEADER = struct.Struct("<III")  # pcrIndex, eventType, TPML_DIGEST_VALUES.count
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _read_events2(r: Reader, digest_sizes: tuple[tuple[int, int], ...]) -> list[TcgEvent]:
    """The TCG_PCR_EVENT2 records after the Spec ID header, numbered from 1.

    The hot path of log parsing. An event that carries one digest of every header algorithm, in
    header order (what firmware writes), is read with a single ``struct`` unpack of its fixed
    part; any other event, well formed or not, goes through :func:`_read_event2`, which checks
    field by field and names what is wrong.
    """
    sizes = dict(digest_sizes)
    algs = tuple(a for a, _ in digest_sizes)
    layout = struct.Struct("<III" + "".join(f"H{size}s" for _, size in digest_sizes) + "I")
    unpack, fixed, count_all, pairs = layout.unpack_from, layout.size, len(algs), _digest_pairs(algs)
    data, pos, end = r.data, r.pos, len(r.data)
    events: list[TcgEvent] = []
    append, new_event = events.append, tuple.__new__  # TcgEvent's fields in order, without its __new__
    for number in range(1, MAX_EVENTS + 1):
        if pos >= end:
            break
        if end - pos >= fixed:
            fields = unpack(data, pos)
            start = pos + fixed
            stop = start + fields[-1]
            if (
                fields[2] == count_all
                and fields[3:-1:2] == algs
                and fields[0] <= MAX_PCR_INDEX
                and fields[-1] <= MAX_EVENT_DATA_SIZE
                and stop <= end
            ):
                append(new_event(TcgEvent, (number, fields[0], fields[1], pairs(fields), data[start:stop])))
                pos = stop
                continue
        r.seek(pos)
        append(_read_event2(r, number, sizes))
        pos = r.pos
    else:
        if pos < end:
            raise MalformedEvidence(f"event log: more than {MAX_EVENTS} events")
    r.seek(pos)
    return events


def _digest_pairs(algs: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[tuple[int, bytes], ...]]:
    """(alg, digest) pairs from the unpacked fields (digests at 4, 6, ...), spelled out for the usual
    bank counts (a tuple display is several times cheaper than ``tuple(zip(...))``)."""
    if len(algs) == 1:
        (a,) = algs
        return lambda f: ((a, f[4]),)
    if len(algs) == 2:
        a, b = algs
        return lambda f: ((a, f[4]), (b, f[6]))
    if len(algs) == 3:
        a, b, c = algs
        return lambda f: ((a, f[4]), (b, f[6]), (c, f[8]))
    if len(algs) == 4:
        a, b, c, d = algs
        return lambda f: ((a, f[4]), (b, f[6]), (c, f[8]), (d, f[10]))
    return lambda f: tuple(zip(algs, f[4:-1:2], strict=True))


def _read_event2(r: Reader, number: int, sizes: dict[int, int]) -> TcgEvent:
    """TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES, eventSize, event.

    It unpacks with ``struct`` and checks every bound itself, and builds error messages only on
    failure.
    """
    data, pos, end = r.data, r.pos, len(r.data)
    if end - pos < _EVENT2_HEADER.size:
        raise _truncated(number, "header", pos)
    pcr_index, event_type, count = _EVENT2_HEADER.unpack_from(data, pos)
    pos += _EVENT2_HEADER.size
    if pcr_index > MAX_PCR_INDEX:
        raise MalformedEvidence(f"event log: event {number}: PCR index {pcr_index} out of range 0..{MAX_PCR_INDEX}")
    if count > len(sizes):
        raise MalformedEvidence(
            f"event log: event {number}: {count} digests, but the Spec ID header lists {len(sizes)} algorithms"
        )
    digests: list[tuple[int, bytes]] = []
    for _ in range(count):
        if end - pos < 2:
            raise _truncated(number, "digest algorithm", pos)
        (hash_alg,) = _U16.unpack_from(data, pos)
        pos += 2
        size = sizes.get(hash_alg)
        if size is None:
            raise MalformedEvidence(
                f"event log: event {number}: digest algorithm {alg.alg_name(hash_alg)} is not in the Spec ID header"
            )
        if any(a == hash_alg for a, _ in digests):
            raise MalformedEvidence(f"event log: event {number}: two {alg.alg_name(hash_alg)} digests")
        if end - pos < size:
            raise _truncated(number, f"{alg.alg_name(hash_alg)} digest", pos)
        digests.append((hash_alg, data[pos : pos + size]))
        pos += size
    if end - pos < 4:
        raise _truncated(number, "eventSize", pos)
    (event_size,) = _U32.unpack_from(data, pos)
    pos += 4
    if event_size > MAX_EVENT_DATA_SIZE:
        raise MalformedEvidence(f"event log: event {number}: eventSize {event_size}, more than {MAX_EVENT_DATA_SIZE}")
    if end - pos < event_size:
        raise _truncated(number, "event data", pos)
    event_data = data[pos : pos + event_size]
    r.seek(pos + event_size)
    return TcgEvent(number, pcr_index, event_type, tuple(digests), event_data)


def _truncated(number: int, field: str, pos: int) -> MalformedEvidence:
    return MalformedEvidence(f"event log: event {number}: truncated {field} at offset {pos}")
