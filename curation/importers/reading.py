"""Finding the data files behind a path and turning their bytes into text.

Paths: a symbolic link that cannot be followed (a loop, a missing target) is named with where it
points; given by name it stops the import, met inside a folder it is passed over with a warning. A
folder named like a data file (`x.jsonl`) is imported only when written as a folder (`x.jsonl/`).

Folders: the data files in them and in their subfolders, at any depth (hidden folders such as
`.git` and `.cache` left out), so a dataset repository as the Hugging Face hub lays it out
(`repo/data/train-00000-of-00001.parquet`, `repo/test.jsonl`) imports whole; such a file's split
(train, test, validation, ... from its name or its folder's) is kept as the tag `split:NAME`.

Compression: gzip, zstd, bzip2 and xz files are read through fsspec's codecs (zstd needs the
zstandard package), recognised by their first bytes whatever their name (`x.jsonl.gz`,
`x.json.zst`, a gzip file named `x.jsonl`); everything after (the file type, the row format, the
encoding) is decided on the decompressed bytes.

Encodings: UTF-8 with or without a BOM and UTF-16/UTF-32 with a BOM are read without being told;
anything else needs `encoding=` (the CLI's `--encoding`). A file that is not UTF-8 fails with the
byte offset and line of the first bad byte and the option that would read it (or, for an archive
or a file still compressed, what it is).
"""
from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import StudioError

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq")
HF_MARKERS = ("state.json", "dataset_dict.json")

# Compression: the name (and fsspec codec) by the file's first bytes; the suffixes a name may carry.
COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
_BZ2_BLOCK = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # first block / end of an empty stream
_ARCHIVES = ((b"PK\x03\x04", "a zip archive: unzip it and import the files inside"),
             (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it and import the files inside"))
SKIPPED_FOLDERS = ("__pycache__", "node_modules")  # besides every hidden folder (.git, .cache, ...)
# A dataset repository's split, from a file name (train.jsonl, test-00000-of-00001.parquet,
# validation_0.json) or a folder name (data/train/...), as `datasets` recognises them.
SPLIT_NAMES = ("train", "training", "validation", "valid", "val", "dev", "test", "testing", "eval", "evaluation")
_SPLIT_FILE = re.compile(rf"^(?:({'|'.join(SPLIT_NAMES)})(?=$|[-._ 0-9])|([A-Za-z][\w]*?)-\d{{5}}-of-\d{{5}})", re.IGNORECASE)

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
    split: str | None = None  # the split a dataset repository's file belongs to (found in a folder)

    @property
    def is_hf_folder(self) -> bool:
        return self.path.is_dir()


def compression_of(head: bytes) -> str | None:
    """gzip, zstd, bz2, xz or None, from the first bytes of a file."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] in _BZ2_BLOCK:
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


def plain_name(path: Path) -> Path:
    """The name without a compression suffix: x.jsonl.gz -> x.jsonl (what says the file type)."""
    return path.with_suffix("") if path.suffix.lower() in COMPRESSION_SUFFIXES else path


def is_data_name(path: Path) -> bool:
    return plain_name(path).suffix.lower() in DATA_SUFFIXES


def split_of(relative: Path) -> str | None:
    """The split of a file below a dataset folder: from its name, else from the nearest folder named for one."""
    m = _SPLIT_FILE.match(relative.name)
    if m:
        return (m.group(1) or m.group(2)).lower()
    for part in reversed(relative.parts[:-1]):
        if part.lower() in SPLIT_NAMES:
            return part.lower()
    return None


def open_data(path: Path, compression: str | None) -> "IO[bytes] | _Decompressed":
    """The file's bytes, decompressed when it is compressed (fsspec's codec for the name)."""
    f = open(path, "rb")
    if compression is None:
        return f
    from fsspec.compression import compr

    codec = compr.get(compression)
    if codec is None:  # zstd without the zstandard package
        f.close()
        raise StudioError(f"{path}: a {compression}-compressed file, and this installation cannot read {compression}: "
                          f"install the zstandard package (pip install zstandard), or decompress the file first.")
    try:
        return _Decompressed(codec(f, mode="rb"), f)
    except BaseException:
        f.close()
        raise


class _Decompressed:
    """A codec's reader that also closes the file under it (gzip, bz2 and lzma leave a file object
    they were given open)."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes]):
        self.inner, self.raw = inner, raw

    def read(self, n: int = -1) -> bytes:
        return self.inner.read(n)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.raw.close()

    def __enter__(self) -> "_Decompressed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decompress_problem(path: Path, compression: str, exc: BaseException) -> StudioError:
    what = str(exc) or type(exc).__name__
    return StudioError(f"{path}: a {compression}-compressed file that cannot be decompressed ({what}); "
                       f"it may be cut short or damaged: copy or download it again.")


def read_head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None


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
    other folders for the data files inside them and their subfolders (sorted by name, hidden
    folders left out). A link inside a folder that cannot be followed is left out, with a line in
    `warnings`."""
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
            found: list[DataFile] = []
            _walk(path, Path(path.name), Path(path.name), found, warnings)
            if not found:
                raise StudioError(
                    f"{path}: no data files in this folder or its subfolders (looked for {', '.join(DATA_SUFFIXES)}, "
                    f"also compressed (.gz, .zst, .bz2, .xz), and datasets save_to_disk folders). Name the files to import."
                )
            out.extend(found)
    return out


def _walk(folder: Path, shown: Path, root: Path, found: list[DataFile], warnings: list[str] | None, depth: int = 0) -> None:
    """The data files below `folder`, sorted by name at each level; `shown` is how the folder is
    named (below `root`, the folder the person named)."""
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        if warnings is not None:
            warnings.append(f"{shown}: cannot list this folder ({exc.strerror or exc}); skipped it")
        return
    for child in children:
        rel = shown / child.name
        if child.is_symlink():
            try:
                os.stat(child)
            except OSError as exc:
                link = _unfollowable_link(child, exc)
                if link and (exc.errno == errno.ELOOP or is_data_name(child)):
                    if warnings is not None:
                        warnings.append(f"{rel}: {link}; skipped it")
                    continue
        if child.is_file() and is_data_name(child):
            found.append(DataFile(child, rel.as_posix(), split_of(rel.relative_to(root))))
        elif is_hf_folder(child):
            found.append(DataFile(child, rel.as_posix(), split_of(rel.relative_to(root))))
        elif (child.is_dir() and not child.name.startswith(".") and child.name not in SKIPPED_FOLDERS
              and not child.is_symlink() and depth < 16):
            _walk(child, rel, root, found, warnings, depth + 1)


def read_bytes(path: Path, compression: str | None = None) -> bytes:
    """The file's bytes, decompressed."""
    try:
        f = open_data(path, compression)
    except OSError as exc:
        raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
    with f:
        try:
            return f.read()
        except MemoryError:
            raise
        except Exception as exc:  # OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError, ...
            if compression is None:
                if isinstance(exc, OSError):
                    raise StudioError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
                raise
            raise decompress_problem(path, compression, exc) from None


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
        if (what := binary_kind(data)) is not None:
            raise StudioError(f"{display}: file: {what}.") from None
        line = data[: exc.start].count(b"\n") + 1
        hint = _guess(data)
        raise StudioError(
            f"{display}:{line}: file: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}). "
            f"If the file uses another encoding, pass it, e.g. --encoding {hint}."
        ) from None


def binary_kind(data: bytes) -> str | None:
    """What a file that is not text is, when its first bytes say so (an archive, a file compressed
    twice): a better hint than an encoding."""
    for magic, what in _ARCHIVES:
        if data.startswith(magic):
            return what
    if data.startswith(b"PAR1"):
        return "a Parquet file: pass --format parquet, or name it .parquet"
    if (inner := compression_of(data[:16])) is not None:
        return f"{inner}-compressed data (inside a file that was already decompressed, or compressed twice): decompress it and import the result"
    return None


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
