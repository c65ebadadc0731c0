"""Assemble the runtime root filesystem of the services image (runs in the Containerfile's build stage).

Copies into DEST only what the virtual environment needs to run: the files of the Debian packages
that hold the Python interpreter, its standard library and every shared library that an ELF file
of the interpreter or the virtual environment loads, with their dependencies. Libraries loaded
with dlopen by name (libtss2-tctildr's TCTI modules) are invisible to ldd: they are named on the
command line by soname, found in the dynamic linker cache, and must end up in DEST's. Essential packages
(shell, coreutils, dpkg...) and the package tools are left out, so the result has no shell, no
package manager and no compiler. It also writes /etc/passwd and /etc/group with the unprivileged
user, /tmp, the CA bundle, the dynamic linker cache, the standard library's bytecode, and one
status stanza per package under /var/lib/dpkg/status.d (read by image scanners; no dpkg to use it).

Usage: python3 collect_runtime.py DEST VENV [UID [SONAME...]]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Never copied even when something depends on them: package tools and their configuration, and
# tpm-udev (every libtss2 package depends on it: udev rules and a tss user for the host's /dev/tpm*,
# nothing a container uses; it would pull in udev and adduser).
EXCLUDED = {
    "apt", "dpkg", "debconf", "debianutils", "python3-pip-whl", "python3-setuptools-whl", "perl-base", "tpm-udev",
}  # fmt: skip
SKIPPED_PREFIXES = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/locale/",
    "/usr/share/lintian/",
    "/usr/share/info/",
)
USER = "starlock"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # the build stage's own tools, absolute paths, argument lists: no shell, no outside input
    return subprocess.run(args, capture_output=True, text=True, check=check)  # noqa: S603


def _query(fmt: str, *packages: str) -> list[str]:
    return _run("/usr/bin/dpkg-query", "-W", "-f", fmt, *packages).stdout.splitlines()


def _owner(path: str) -> str:
    out = _run("/usr/bin/dpkg-query", "-S", path, check=False)
    if out.returncode != 0:
        real = os.path.realpath(path)
        if real == path:
            raise SystemExit(f"collect_runtime: no Debian package owns {path}")
        return _owner(real)
    return out.stdout.split(":", 1)[0].strip()


def _elf_files(root: Path) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(p)
    return found


def _libraries(elf: str) -> set[str]:
    out = _run("/usr/bin/ldd", elf, check=False)
    libs = set()
    for line in out.stdout.splitlines():
        if "not found" in line:
            raise SystemExit(f"collect_runtime: {elf}: {line.strip()}")
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.add(m.group(1))
    return libs


def _linker_cache(cache: str = "/etc/ld.so.cache") -> dict[str, str]:
    """soname -> path of the libraries in a dynamic linker cache (``ldconfig -p``)."""
    found: dict[str, str] = {}
    for line in _run("/sbin/ldconfig", "-p", "-C", cache).stdout.splitlines()[1:]:
        m = re.match(r"\s*(\S+) \((.*)\) => (/\S+)$", line)
        if m and "x32" not in m.group(2):
            found.setdefault(m.group(1), m.group(3))
    return found


def _closure(roots: set[str]) -> set[str]:
    essential = {line.split()[0] for line in _query("${Package} ${Essential}\n") if line.endswith(" yes")}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        pkg = todo.pop().split(":")[0]
        if pkg in seen or pkg in EXCLUDED or (pkg in essential and pkg not in roots):
            continue
        seen.add(pkg)
        depends = _query("${Pre-Depends}, ${Depends}", pkg)
        for clause in ",".join(depends).split(","):
            for alternative in clause.split("|"):
                name = alternative.strip().split(" ")[0].split(":")[0]
                if name and _query("${db:Status-Status}", name) == ["installed"]:
                    todo.append(name)
                    break
    return seen


def _copy(src: str, dest: Path) -> None:
    target = dest / src.lstrip("/")
    if os.path.isdir(src) and not os.path.islink(src):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copystat(src, target)
        return
    if not os.path.lexists(src) or src.startswith(SKIPPED_PREFIXES):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(src):
        if not os.path.lexists(target):
            os.symlink(os.readlink(src), target)
    else:
        shutil.copy2(src, target)


def main() -> int:
    dest, venv = Path(sys.argv[1]), Path(sys.argv[2])
    uid = int(sys.argv[3]) if len(sys.argv) > 3 else 65532
    dlopened = sys.argv[4:]
    stdlib = sysconfig.get_paths()["stdlib"]
    roots = {_owner(p) for p in (sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3")}
    roots |= {_owner(f"{stdlib}/{module}") for module in ("os.py", "json/__init__.py", "http/client.py")}
    cache = _linker_cache()
    missing = [name for name in dlopened if name not in cache]
    if missing:
        raise SystemExit(f"collect_runtime: not in the dynamic linker cache: {' '.join(missing)}")
    extra = [os.path.realpath(cache[name]) for name in dlopened]
    roots |= {_owner(cache[name]) for name in dlopened}
    for elf in [
        os.path.realpath(sys.executable),
        *_elf_files(venv),
        *_elf_files(Path(stdlib + "/lib-dynload")),
        *extra,
    ]:
        roots |= {_owner(lib) for lib in _libraries(elf)}
    packages = _closure(roots)
    # merged /usr: keep the top-level symlinks (/lib -> usr/lib, /bin -> usr/bin ...)
    for top in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink("/" + top):
            (dest / "usr" / top).mkdir(parents=True, exist_ok=True)
            _copy("/" + top, dest)
    status_dir = dest / "var/lib/dpkg/status.d"
    status_dir.mkdir(parents=True, exist_ok=True)
    for pkg in sorted(packages):
        for path in _query("${db-fsys:Files}", pkg):
            _copy(path.strip(), dest)
        stanza = _run("/usr/bin/dpkg-query", "-s", pkg).stdout
        (status_dir / pkg).write_text(stanza)
    _copy("/etc/ssl/certs/ca-certificates.crt", dest)
    for name in ("etc/os-release", "usr/lib/os-release", "etc/nsswitch.conf"):
        _copy("/" + name, dest)
    (dest / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/sbin/nologin\n{USER}:x:{uid}:{uid}::/nonexistent:/sbin/nologin\n"
    )
    (dest / "etc/group").write_text(f"root:x:0:\n{USER}:x:{uid}:\n")
    (dest / "tmp").mkdir(exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)  # noqa: S103 - /tmp is world-writable and sticky by definition
    _run(sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(dest), "-p", "/", str(dest) + stdlib)
    _run("/sbin/ldconfig", "-r", str(dest))
    # what the image's own linker cache resolves, so that dlopen("libtss2-tcti-device.so.0") works there
    dest_cache = _linker_cache(str(dest / "etc/ld.so.cache"))
    missing = [name for name in dlopened if name not in dest_cache or not (dest / dest_cache[name][1:]).exists()]
    if missing:
        raise SystemExit(f"collect_runtime: dlopen'ed libraries missing from {dest}: {' '.join(missing)}")
    print("collect_runtime: " + " ".join(sorted(packages)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
