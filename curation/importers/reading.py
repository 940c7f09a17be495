"""Finding the data files behind a path and turning their bytes into text.

Paths: a symbolic link that cannot be followed (a loop, a missing target) is named with where it
points; given by name it stops the import, met inside a folder it is passed over with a warning. A
folder named like a data file (`x.jsonl`) is imported only when written as a folder (`x.jsonl/`).

Encodings: UTF-8 with or without a BOM and UTF-16/UTF-32 with a BOM are read without being told;
anything else needs `encoding=` (the CLI's `--encoding`). A file that is not UTF-8 fails with the
byte offset and line of the first bad byte and the option that would read it.
"""
from __future__ import annotations

import codecs
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import StudioError

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq")
HF_MARKERS = ("state.json", "dataset_dict.json")

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]


@dataclass(frozen=True)
class DataFile:
    """One thing to import: a file, or a `datasets.save_to_disk` folder. `name` is what samples
    record as their source file (the file name, or its path below a folder that was named)."""

    path: Path
    name: str

    @property
    def is_hf_folder(self) -> bool:
        return self.path.is_dir()


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


def _link_chain(path: Path, hops: int = 6) -> str:
    """`a.jsonl -> b.jsonl -> a.jsonl`: where a link leads, as far as it goes (or round)."""
    chain, seen, here = [str(path)], set(), path
    while here.is_symlink() and len(chain) <= hops:
        key = os.path.abspath(here)
        if key in seen:
            break
        seen.add(key)
        target = os.readlink(here)
        chain.append(target)
        here = here.parent / target
    return " -> ".join(chain)


def _unfollowable_link(path: Path, exc: OSError) -> str | None:
    """What is wrong with a link that cannot be followed, or None when the error is something else."""
    if exc.errno == errno.ELOOP:
        if path.is_symlink():
            return f"a symbolic link loop ({_link_chain(path)}): it never reaches a file"
        return "a symbolic link on this path points back at itself (a link loop)"
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return f"a broken symbolic link ({_link_chain(path)}): its target does not exist"
    return None


def _check_readable(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        if (link := _unfollowable_link(path, exc)):
            raise StudioError(f"{path}: {link}. Point the link at the data file, or name the file itself.") from None
        raise StudioError(f"{path}: no such file or directory. Check the path.") from None
    except NotADirectoryError:
        raise StudioError(f"{path}: cannot read it: a part of the path is a file, not a folder.") from None
    except PermissionError:
        raise StudioError(f"{path}: permission denied. Check the file's permissions.") from None
    except OSError as exc:
        link = _unfollowable_link(path, exc)
        what = link or f"cannot read it: {exc.strerror or exc}"
        raise StudioError(f"{path}: {what}. Point the link at the data file, or name the file itself."
                          if link else f"{path}: {what}.") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise StudioError(f"{path}: not a regular file (a pipe, socket or device); copy the data into a file and import that.")
    if not os.access(path, os.R_OK):
        raise StudioError(f"{path}: permission denied. Check the file's permissions.")


def _written_as_folder(raw: str | os.PathLike[str]) -> bool:
    """True when the argument says "folder": text ending in a slash (`x.jsonl/`). A Path object has
    lost any trailing slash, so it counts as a folder too (the caller already chose it)."""
    if not isinstance(raw, str):
        return True
    return raw.endswith(("/", os.sep, "/.", os.sep + "."))


def expand(paths: list[str | os.PathLike[str]], warnings: list[str] | None = None) -> list[DataFile]:
    """The data files behind the given paths: files as they are, `save_to_disk` folders whole,
    other folders for the data files directly inside them (sorted by name). A link inside a folder
    that cannot be followed is left out, with a line in `warnings`."""
    out: list[DataFile] = []
    for raw in paths:
        path = Path(raw)
        _check_readable(path)
        if path.is_file():
            out.append(DataFile(path, path.name))
        elif is_hf_folder(path):
            out.append(DataFile(path, path.name))
        else:
            if path.suffix.lower() in DATA_SUFFIXES and not _written_as_folder(raw):
                raise StudioError(
                    f"{path} is a folder, not a file. To import the data files inside it, "
                    f"write it as a folder, with a trailing slash: {path}/")
            found = []
            for child in sorted(path.iterdir()):
                if child.is_symlink():
                    try:
                        os.stat(child)
                    except OSError as exc:
                        link = _unfollowable_link(child, exc)
                        if link and (exc.errno == errno.ELOOP or child.suffix.lower() in DATA_SUFFIXES):
                            if warnings is not None:
                                warnings.append(f"{path.name}/{child.name}: {link}; skipped it")
                            continue
                if child.is_file() and child.suffix.lower() in DATA_SUFFIXES:
                    found.append(DataFile(child, f"{path.name}/{child.name}"))
                elif is_hf_folder(child):
                    found.append(DataFile(child, f"{path.name}/{child.name}"))
            if not found:
                raise StudioError(
                    f"{path}: no data files in this folder (looked for {', '.join(DATA_SUFFIXES)} "
                    f"and datasets save_to_disk folders). Name the files to import."
                )
            out.extend(found)
    return out


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None


def check_encoding(encoding: str | None) -> None:
    """Raise StudioError for an encoding name Python does not know (before any file is read)."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise StudioError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, gbk, gb18030, big5, latin-1, utf-16.") from None


def decode(data: bytes, display: str, encoding: str | None) -> str:
    """The file's text. Raises StudioError naming the line and byte offset of undecodable bytes."""
    if encoding:
        check_encoding(encoding)
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise StudioError(
                f"{display}:{line}: file: cannot decode byte 0x{data[exc.start]:02x} at offset {exc.start} as {encoding}; "
                f"check the encoding (--encoding)."
            ) from None
        return text[1:] if text.startswith("\ufeff") else text
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise StudioError(f"{display}:1: file: starts with a {codec} byte-order mark but byte {exc.start} is not {codec}.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = _guess(data)
        raise StudioError(
            f"{display}:{line}: file: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}). "
            f"If the file uses another encoding, pass it, e.g. --encoding {hint}."
        ) from None


def _guess(data: bytes) -> str:
    """The encoding to suggest: GBK (GB18030) for Chinese files from Windows tools, else latin-1."""
    sample = data[:65536]
    if sample.count(b"\0") > len(sample) // 4:
        return "utf-16"
    for codec, name in (("gb18030", "gbk"), ("big5", "big5"), ("shift_jis", "shift_jis")):
        try:
            sample.decode(codec)
            return name
        except UnicodeDecodeError as exc:
            if exc.start >= len(sample) - 4:  # cut in the middle of a character by the sample
                return name
    return "latin-1"
