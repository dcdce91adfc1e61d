"""The inbox: which files to ingest, and the path policy that guards it (tenant folders must
be slugs; symlinks, loops and anything not a regular file are refused, each as a rejected
file with its reason; inputs, lake and reports must not overlap)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
def check_slug(name: str) -> str:
    if not SLUG.match(name):
        raise ConfigError(
            f"{name!r} is not a valid tenant slug: use 1–63 characters of a-z, 0-9, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


@dataclass
class InputFile:
    path: Path
    tenant: str
    display: str
    problem: str | None = None  # refused before reading (bad folder name, symlink, ...)


NOT_REGULAR = ("not a regular file (a pipe, device, socket or broken link); give the "
               "export file itself")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: a file entry, refused as such below
        return False


def _loops(path: Path) -> bool:
    try:
        path.resolve(strict=True)
        return False
    except RuntimeError:
        return True
    except OSError as exc:
        return exc.errno == 40  # ELOOP


def _walk(folder: Path, root: Path, tenant: str, prefix: str) -> Iterable[InputFile]:
    """Files under `folder`, by name, folder by folder (os.scandir: an inbox of a month's
    exports holds tens of thousands of files, and most of them are only skipped)."""
    def scan(path: str, rel: str) -> Iterable[InputFile]:
        try:
            with os.scandir(path) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as exc:
            yield InputFile(Path(path), tenant, f"{prefix}{rel}" or prefix,
                            f"cannot read the folder ({exc.strerror})")
            return
        folders = [e for e in entries if _is_dir(e)]
        for e in folders:
            if e.is_symlink():
                yield InputFile(Path(e.path), tenant, f"{prefix}{rel}/{e.name}",
                                "a symlinked folder; copy the files into the inbox instead")
        for e in entries:
            if _is_dir(e):
                continue
            p, shown = Path(e.path), f"{prefix}{rel}/{e.name}"
            if e.is_symlink() and _loops(p):
                yield InputFile(p, tenant, shown, "a symlink loop (it leads back to itself)")
            elif e.is_symlink() and not _inside(p, root):
                yield InputFile(p, tenant, shown, "a symlink pointing outside the inbox")
            elif not e.is_file():
                yield InputFile(p, tenant, shown, NOT_REGULAR)
            else:
                yield InputFile(p, tenant, shown)
        for e in folders:
            if not e.is_symlink():
                yield from scan(e.path, f"{rel}/{e.name}")

    return scan(str(folder), "")


def discover(paths: Iterable[Path], tenant: str | None) -> list[InputFile]:
    """Files to ingest: loose files and tenant folders (with --tenant) or inbox folders."""
    found: list[InputFile] = []
    for path in paths:
        if not path.exists() and not path.is_symlink():
            raise ConfigError(f"{path}: no such file or folder")
        if tenant:
            if path.is_dir():
                found += _walk(path, path, tenant, tenant)
            else:
                found.append(InputFile(path, tenant, f"{tenant}/{path.name}",
                                       None if path.is_file() else NOT_REGULAR))
            continue
        if not path.is_dir():
            raise ConfigError(f"{path}: a single file needs --tenant SLUG (or put it in "
                              "<inbox>/<tenant>/ and ingest the inbox)")
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") and not child.is_dir():
                continue  # .DS_Store and friends; a hidden *folder* is refused below
            if child.is_symlink() and child.is_dir():
                found.append(InputFile(child, "", child.name,
                                       "a symlinked folder: a tenant folder must be a real "
                                       "folder (a link to the inbox or another tenant would "
                                       "read their files again); copy or move the files"))
            elif child.is_symlink() and not _inside(child, path):
                found.append(InputFile(child, "", child.name,
                                       "a symlink pointing outside the inbox"))
            elif child.is_dir():
                if SLUG.match(child.name):
                    found += _walk(child, path, child.name, child.name)
                else:
                    found += [InputFile(f.path, "", f.display,
                                        f"folder name {child.name!r} is not a valid tenant slug "
                                        "(a-z, 0-9, '.', '_', '-'; rename the folder)")
                              for f in _walk(child, path, "", child.name)]
            else:
                found.append(InputFile(child, "", child.name,
                                       "not inside a tenant folder; move it to "
                                       "<inbox>/<tenant>/"))
    return found


def check_apart(folders: list[tuple[str, Path]]) -> None:
    """Inputs, lake and reports must not overlap: a lake inside the inbox would be read as
    tenants, a reports folder inside it would feed its rejects back every night."""
    where = []
    for name, folder in folders:
        try:
            where.append((name, folder, Path(folder).expanduser().resolve()))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{folder}: cannot resolve the {name} path ({exc})") from None
    for i, (a, fa, pa) in enumerate(where):
        for b, fb, pb in where[i + 1:]:
            if pa.is_relative_to(pb) or pb.is_relative_to(pa):
                raise ConfigError(f"the {a} ({fa}) and the {b} ({fb}) overlap; give each its "
                                  "own folder, neither inside the other")


def total_bytes(paths: Iterable[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()
                         and not f.is_symlink())
    return total
