"""A synthetic measured boot for tests and the demo: a TCG event log that replays to live PCRs.

:func:`run_synthetic_boot` extends a small, plausible UEFI boot into every allocated PCR bank of a
freshly started TPM and writes the matching TCG PC Client crypto-agile event log (the format of
``/sys/kernel/security/tpm0/binary_bios_measurements``):

* a header event in the SHA-1 ``TCG_PCClientPCREvent`` format: PCR 0, EV_NO_ACTION, 20 zero
  bytes, ``TCG_EfiSpecIDEventStruct`` "Spec ID Event03" listing the banks and digest sizes;
* then one ``TCG_PCR_EVENT2`` per :class:`BootEvent` (every integer little-endian), with one
  digest per bank in the header's order.

:func:`default_boot_events` is the default boot: S-CRTM version and a POST code into PCR 0, the
"Calling EFI Application from Boot Option" action into PCR 4, separators into PCRs 0–7, the boot
loader and kernel as EV_EFI_BOOT_SERVICES_APPLICATION into PCR 4, the kernel command line and
initrd as EV_IPL into PCRs 8 and 9, and the ExitBootServices actions into PCR 5 (the order that
go-tpm-tools' event-log checks expect of firmware). PCR 15 (node lock) is left alone.

The log encoder here is independent of the parser in ``starlock.attestation.tpm.eventlog``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from starlock.attestation.tpm_device import HASH_FUNCTIONS, NUM_PCRS, TpmDevice, TpmError

__all__ = [
    "EV_EFI_ACTION",
    "EV_EFI_BOOT_SERVICES_APPLICATION",
    "EV_IPL",
    "EV_NO_ACTION",
    "EV_POST_CODE",
    "EV_SEPARATOR",
    "EV_S_CRTM_VERSION",
    "BootEvent",
    "default_boot_events",
    "encode_event_log",
    "golden_measurements",
    "replay",
    "run_synthetic_boot",
]

# Event types (TCG PC Client Platform Firmware Profile, 10.4.1).
EV_POST_CODE = 0x00000001
EV_NO_ACTION = 0x00000003
EV_SEPARATOR = 0x00000004
EV_S_CRTM_VERSION = 0x00000008
EV_IPL = 0x0000000D
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007

_SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
_MAX_EVENT_DATA = 64 * 1024


@attrs.frozen
class BootEvent:
    """One measurement: ``data`` is logged, ``measured`` (default: ``data``) is what was hashed.

    The digest in every bank is ``H(measured)``, e.g. an image's bytes for an application event
    whose logged data is only its load record.
    """

    pcr: int
    event_type: int
    data: bytes
    measured: bytes | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.pcr < NUM_PCRS:
            raise ValueError(f"BootEvent PCR {self.pcr} out of range 0..{NUM_PCRS - 1}")
        if not 0 <= self.event_type < 2**32:
            raise ValueError(f"BootEvent type {self.event_type} is not a 32-bit value")
        if len(self.data) > _MAX_EVENT_DATA:
            raise ValueError(f"BootEvent data is {len(self.data)} bytes, at most {_MAX_EVENT_DATA}")

    def digest(self, alg: int) -> bytes:
        """The digest extended into bank ``alg`` (TPM_ALG_ID)."""
        return hashlib.new(_hash_name(alg), self.data if self.measured is None else self.measured).digest()


def _hash_name(alg: int) -> str:
    name = HASH_FUNCTIONS.get(alg)
    if name is None:
        raise TpmError(f"PCR bank 0x{alg:04x} uses a hash algorithm the synthetic boot cannot compute")
    return name


def _ucs2(text: str) -> bytes:
    return (text + "\x00").encode("utf-16-le")


def _image_load_event(image: bytes) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT with a made-up load address and an empty device path."""
    return struct.pack("<QQQQ", 0x7E000000, len(image), 0, 0)


def default_boot_events(kernel_cmdline: str = "console=ttyS0 root=/dev/vda2 ro") -> list[BootEvent]:
    """The synthetic boot's events, in log order."""
    bootloader = b"starlock synthetic boot loader image v1"
    kernel = b"starlock synthetic kernel image v1"
    initrd = b"starlock synthetic initrd v1"
    cmdline = f"/boot/vmlinuz {kernel_cmdline}".encode()
    calling = b"Calling EFI Application from Boot Option"
    events = [
        BootEvent(0, EV_S_CRTM_VERSION, _ucs2("Starlock Synthetic Firmware v1")),
        BootEvent(0, EV_POST_CODE, b"POST CODE"),
        BootEvent(4, EV_EFI_ACTION, calling),
    ]
    events += [BootEvent(pcr, EV_SEPARATOR, b"\x00\x00\x00\x00") for pcr in range(8)]
    events += [
        BootEvent(4, EV_EFI_BOOT_SERVICES_APPLICATION, _image_load_event(bootloader), bootloader),
        BootEvent(8, EV_IPL, b"kernel_cmdline: " + cmdline + b"\x00", cmdline),
        BootEvent(9, EV_IPL, b"/boot/vmlinuz\x00", kernel),
        BootEvent(9, EV_IPL, b"/boot/initrd.img\x00", initrd),
        BootEvent(4, EV_EFI_BOOT_SERVICES_APPLICATION, _image_load_event(kernel), kernel),
        BootEvent(5, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
        BootEvent(5, EV_EFI_ACTION, b"Exit Boot Services Returned with Success"),
    ]
    return events


def encode_event_log(events: Iterable[BootEvent], algs: Sequence[int]) -> bytes:
    """The crypto-agile TCG event log for ``events`` with digests for the banks ``algs``."""
    if not algs:
        raise TpmError("an event log needs at least one PCR bank")
    sizes = [(alg, hashlib.new(_hash_name(alg)).digest_size) for alg in algs]
    spec_id = _SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(sizes))
    spec_id += b"".join(struct.pack("<HH", alg, size) for alg, size in sizes)
    spec_id += b"\x00"  # vendorInfoSize
    out = [struct.pack("<II", 0, EV_NO_ACTION), bytes(20), struct.pack("<I", len(spec_id)), spec_id]
    for event in events:
        out.append(struct.pack("<III", event.pcr, event.event_type, len(sizes)))
        out += [struct.pack("<H", alg) + event.digest(alg) for alg, _size in sizes]
        out.append(struct.pack("<I", len(event.data)) + event.data)
    return b"".join(out)


def replay(events: Iterable[BootEvent], alg: int, pcrs: Iterable[int] = range(NUM_PCRS)) -> dict[int, bytes]:
    """PCR values of bank ``alg`` after extending ``events`` from the reset values.

    Reset values as after TPM2_Startup at locality 0: zeros, but all ones for PCRs 17–22.
    """
    name = _hash_name(alg)
    size = hashlib.new(name).digest_size
    values = {i: (b"\xff" if 17 <= i <= 22 else b"\x00") * size for i in pcrs}
    for event in events:
        if event.pcr in values:
            values[event.pcr] = hashlib.new(name, values[event.pcr] + event.digest(alg)).digest()
    return values


def run_synthetic_boot(
    tcti: str, log_path: str | os.PathLike[str], events: Sequence[BootEvent] | None = None
) -> list[BootEvent]:
    """Extend ``events`` (default :func:`default_boot_events`) into every bank and write the log.

    The TPM must be freshly started: every PCR the boot touches must still hold its reset value
    (restart the swtpm to boot again). The log is written atomically after all extends succeed.
    """
    chosen = list(default_boot_events() if events is None else events)
    path = Path(log_path)
    with TpmDevice(tcti) as tpm:
        banks = tpm.pcr_banks()
        if not banks:
            raise TpmError("the TPM reports no allocated PCR bank")
        algs = list(banks)
        touched = sorted({e.pcr for e in chosen})
        for alg in algs:
            current = tpm.read_pcrs(alg, touched).pcrs
            reset = replay((), alg, touched)
            dirty = [i for i, value in current.items() if value != reset[i]]
            if dirty:
                raise TpmError(
                    f"PCRs {dirty} of bank 0x{alg:04x} are not at their reset value: the TPM has already "
                    "booted; restart it before running the synthetic boot"
                )
        log = encode_event_log(chosen, algs)
        for event in chosen:
            tpm.extend(event.pcr, {alg: event.digest(alg) for alg in algs})
    _write_atomically(path, log)
    return chosen


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def golden_measurements(
    events: Iterable[BootEvent], *, pcr15: bytes | None = bytes(32)
) -> dict[str, dict[str, object]]:
    """The ``measurements`` of an attestation config for a boot, as an image build publishes them:
    the SHA-256 values the events leave in the PCRs they touch, all enforced. ``pcr15`` is added
    as the expected PCR 15 (default zero: a node not bootstrapped yet); None leaves PCR 15 out."""
    from starlock.attestation.document import HASH_ALG_IDS

    chosen = list(events)
    golden = replay(chosen, HASH_ALG_IDS["SHA256"], sorted({e.pcr for e in chosen}))
    measurements: dict[str, dict[str, object]] = {
        str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items() if i != 15
    }
    if pcr15 is not None:
        measurements["15"] = {"expected": pcr15.hex(), "warnOnly": False}
    return measurements
