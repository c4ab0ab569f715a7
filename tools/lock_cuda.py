"""Freeze the CUDA wheels that PyPI's torch build pulls on Linux x86_64 into requirements-cuda.lock.

`requirements.lock` is frozen on a CPU machine, whose torch is the `+cpu` build: it names none
of the ~25 CUDA runtime wheels (cuDNN, NCCL, cuBLAS, ..., triton) that the same `torch==X` from
PyPI installs on a GPU node. This tool resolves that closure from PyPI's own metadata (the
`.metadata` file published beside each wheel), without downloading a wheel, so it also works
where the wheels themselves are out of reach. It must run on the lock's platform (Linux
x86_64, the Python of the lock): wheel compatibility is judged by this interpreter's tags.

    python tools/lock_cuda.py > requirements-cuda.lock      (what `make lock-cuda` runs)

torch is pinned with `===`, which only the build without a local version (`2.13.0`, PyPI's
CUDA build) satisfies: a `2.13.0+cpu` wheel offered by a local index can no longer win.
"""

from __future__ import annotations

import io
import json
import re
import sys
import urllib.error
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

INDEX = "https://pypi.org/simple"
REPO = Path(__file__).resolve().parents[1]


def locked_versions(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.split("#", 1)[0].strip())
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def fetch(url: str, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def newest_wheel(name: str, specifier: SpecifierSet) -> tuple[Version, str]:
    """The newest release satisfying `specifier` with a wheel this interpreter installs, and that wheel's URL."""
    index = json.loads(fetch(f"{INDEX}/{name}/", "application/vnd.pypi.simple.v1+json"))
    supported = set(sys_tags())
    candidates = []
    for file in index["files"]:
        if not file["filename"].endswith(".whl") or file.get("yanked"):
            continue
        _, version, _, tags = parse_wheel_filename(file["filename"])
        if version.local is None and specifier.contains(version, prereleases=False) and tags & supported:
            candidates.append((version, file["url"]))
    if not candidates:
        raise SystemExit(f"no wheel of {name} {specifier} for this platform on {INDEX}")
    return max(candidates, key=lambda candidate: candidate[0])


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a file over HTTP range requests: `zipfile` reads a
    wheel's directory and its METADATA member without fetching the (GB-sized) rest."""

    def __init__(self, url: str):
        self.url = url
        self.size = int(urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=120).headers["Content-Length"])
        self.position = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size < 0 else min(self.size, self.position + size)
        if end <= self.position:
            return b""
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.position}-{end - 1}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            data = response.read()
        self.position += len(data)
        return data


def wheel_metadata(url: str) -> str:
    """A wheel's METADATA: the `.metadata` file PyPI publishes beside it, else read from the
    wheel itself (older uploads have no such file)."""
    try:
        return fetch(url + ".metadata").decode()
    except urllib.error.HTTPError:
        with zipfile.ZipFile(RemoteFile(url)) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
            return wheel.read(member).decode()


def requirements_of(url: str, extras: set[str]) -> list[Requirement]:
    """The requirements a wheel declares that apply here with `extras` asked for."""
    declared = Parser().parsestr(wheel_metadata(url)).get_all("Requires-Dist") or []
    found = []
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras | {""}):
            found.append(requirement)
    return found


class Conflict(Exception):
    """A requirement met a version chosen earlier for a looser one."""


def resolve_once(root: Requirement, locked: dict[str, Version], narrowed: dict[str, SpecifierSet]) -> dict[str, Version]:
    chosen: dict[str, Version] = {}
    queue = [root]
    while queue:
        requirement = queue.pop(0)
        name = canonicalize_name(requirement.name)
        if name in locked and name != canonicalize_name(root.name):
            if not requirement.specifier.contains(locked[name], prereleases=True):
                raise SystemExit(f"{requirement} conflicts with requirements.lock's {name}=={locked[name]}")
            continue
        if name in chosen:
            if not requirement.specifier.contains(chosen[name], prereleases=True):
                narrowed[name] = narrowed.get(name, SpecifierSet()) & requirement.specifier
                raise Conflict(name)
            continue
        version, url = newest_wheel(name, requirement.specifier & narrowed.get(name, SpecifierSet()))
        chosen[name] = version
        queue.extend(requirements_of(url, set(requirement.extras)))
    return chosen


def resolve(root: Requirement, locked: dict[str, Version]) -> dict[str, Version]:
    """Versions of everything `root` pulls in that `requirements.lock` does not already pin.

    Breadth first, newest first; a later, tighter requirement on a package narrows it and
    the walk starts again, until every requirement holds.
    """
    narrowed: dict[str, SpecifierSet] = {}
    while True:
        try:
            return resolve_once(root, locked, narrowed)
        except Conflict:
            continue


def main() -> None:
    locked = locked_versions(REPO / "requirements.lock")
    torch = Requirement(f"torch==={locked['torch']}")
    chosen = resolve(torch, locked)
    print("# Generated by 'make lock-cuda' (tools/lock_cuda.py) from PyPI's metadata; do not edit by hand.")
    print("# The CUDA build of torch and the runtime wheels it pulls on Linux x86_64 (driver >= 580),")
    print("# installed beside requirements.lock by `make setup` on a GPU node.")
    print(f"torch==={chosen.pop('torch')}")
    for name in sorted(chosen):
        print(f"{name}=={chosen[name]}")


if __name__ == "__main__":
    sys.exit(main())
