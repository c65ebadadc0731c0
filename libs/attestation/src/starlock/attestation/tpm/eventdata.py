"""Is an event's data what was measured? Binding event data to event digests.

Replaying a log proves the *digests* (they extend to the quoted PCRs); an event's *data* is only a
claim unless its digest is the hash of that data. For some event types the TCG PC Client Platform
Firmware Profile (PFP, §10.4.1 and §10.4.4) defines the digest as the hash of the event data:

* ``EV_SEPARATOR`` (the 4-byte separator value), ``EV_ACTION`` and ``EV_EFI_ACTION`` (the action
  string), ``EV_EFI_VARIABLE_DRIVER_CONFIG`` (the whole UEFI_VARIABLE_DATA, which is the event
  data). For these :data:`DATA_BOUND_EVENT_TYPES` a digest that is not the hash of the data makes
  the log invalid (:class:`EventLogMismatch`); go-attestation's secure-boot parser refuses the same.

For every other type the digest may or may not be over the data, and the real logs show both:

* ``EV_EFI_BOOT_SERVICES_APPLICATION``, ``EV_POST_CODE``, ``EV_EFI_PLATFORM_FIRMWARE_BLOB``: the
  digest is over the image or firmware volume, the data only describes it;
* ``EV_IPL``: grub hashes the command without its ``grub_cmd:`` prefix, grub and shim log a file
  name or variable name whose *content* was hashed; systemd-stub hashes the logged command line;
* ``EV_EFI_VARIABLE_BOOT``: EDK2 hashes only the VariableData of the UEFI_VARIABLE_DATA (the PFP's
  later ``EV_EFI_VARIABLE_BOOT2`` is over all of it); name and GUID are not bound;
* ``EV_EFI_VARIABLE_AUTHORITY``: defined over UEFI_VARIABLE_DATA, but 6 of 28 authority events in
  the GCE vectors (COS 85/93 ``db``, 6 trailing bytes) are not the hash of their data.

So every measured event is marked: **verified** when its digest in the replayed bank equals the
hash of its data (then its data is exactly what was measured), else **not verified** (its data is
an unchecked claim; a caller that reads it, e.g. a kernel command line, must not trust it).
EV_NO_ACTION events are never extended and never verified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlock.attestation.errors import EventLogMismatch

__all__ = [
    "DATA_BOUND_EVENT_TYPES",
    "EVENT_TYPE_NAMES",
    "EV_ACTION",
    "EV_EFI_ACTION",
    "EV_EFI_VARIABLE_DRIVER_CONFIG",
    "EV_SEPARATOR",
    "event_type_name",
    "unbound_data_error",
]

EV_SEPARATOR = 0x00000004
EV_ACTION = 0x00000005
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_ACTION = 0x80000007

#: Types whose digest the PFP defines as the hash of the event data: a mismatch rejects the log.
DATA_BOUND_EVENT_TYPES = frozenset({EV_SEPARATOR, EV_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_ACTION})

EVENT_TYPE_NAMES = {
    0x00000001: "EV_POST_CODE",
    0x00000003: "EV_NO_ACTION",
    EV_SEPARATOR: "EV_SEPARATOR",
    EV_ACTION: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION",
    0x00000009: "EV_CPU_MICROCODE",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000D: "EV_IPL",
    0x00000011: "EV_NONHOST_INFO",
    EV_EFI_VARIABLE_DRIVER_CONFIG: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    EV_EFI_ACTION: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
}


def event_type_name(event_type: int) -> str:
    return EVENT_TYPE_NAMES.get(event_type, f"0x{event_type:08x}")


def unbound_data_error(event: Any, bank: str, digest: bytes, new: Callable[[bytes], Any]) -> EventLogMismatch:
    """The error for a :data:`DATA_BOUND_EVENT_TYPES` event whose digest is not the hash of its data."""
    name = event_type_name(event.event_type)
    return EventLogMismatch(
        f"event log: event {event.number} ({name}, PCR {event.pcr_index}): expected the {bank} digest to be "
        f"the hash of the event data ({new(event.data).hexdigest()}), got {digest.hex()}; for {name} the "
        "digest is defined over the event data, so the logged data is not what was measured"
    )
