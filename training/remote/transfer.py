"""Content-addressed uploads: `ROOT/blobs/<sha256>` on the remote.

A file already there under its hash is not sent again (the same split or base model for ten runs
crosses the network once). A transfer goes to `<sha256>.part` first; an interrupted one resumes
from the partial file's size; the remote hashes the finished part before renaming it into place,
so a name under blobs/ always matches its content.

The trainer itself travels the same way: `training/` is zipped deterministically, uploaded as a
blob and unpacked once into `ROOT/lib/<sha256>/`, which the run's PYTHONPATH puts first. The
remote needs Python and the ML libraries, not a studio install, and always runs the trainer
version that the local studio has.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import RemoteError

CHUNK = 4 << 20


@dataclass(frozen=True)
class BlobUpload:
    sha256: str
    size: int
    sent: int
    """Bytes that crossed the network this time (0 when the blob was already there)."""
    resumed_from: int
    """Size of the partial file found on the remote (0: started fresh)."""
    remote_path: str
    skipped: bool = False
    """The blob was already on the remote under its hash: nothing was sent."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def _size(sftp, path: str) -> int | None:
    import asyncssh

    try:
        return (await sftp.stat(path)).size
    except asyncssh.SFTPNoSuchFile:
        return None


async def put_blob(remote, local: Path | bytes, *, sha256: str | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> BlobUpload:
    """Make sure the remote has this content under blobs/<sha256>; send only what is missing.

    `local` is a file path or bytes. `on_progress(done, total)` is called after each chunk (an
    exception it raises interrupts the transfer, leaving the .part to resume from)."""
    data: bytes | bytearray | None = None
    if isinstance(local, (bytes, bytearray)):
        data = local
        sha = sha256 or hashlib.sha256(data).hexdigest()
        size = len(data)
    else:
        path = Path(local)
        sha = sha256 or file_sha256(path)
        size = path.stat().st_size
    sftp = remote.sftp
    await sftp.makedirs(remote.blobs, exist_ok=True)
    final = posixpath.join(remote.blobs, sha)
    if await _size(sftp, final) == size:
        return BlobUpload(sha, size, 0, 0, final, skipped=True)
    part = final + ".part"
    have = await _size(sftp, part) or 0
    if have > size:
        await sftp.remove(part)
        have = 0
    resumed_from = have
    async with sftp.open(part, "r+b" if have else "wb") as out:
        src: BinaryIO = io.BytesIO(data) if data is not None else open(path, "rb")
        with src:
            src.seek(have)
            offset = have
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                await out.write(block, offset)
                offset += len(block)
                if on_progress:
                    on_progress(offset, size)
    check = await remote.agent("sha256", {"path": part})
    if check["sha256"] != sha:
        await sftp.remove(part)
        raise RemoteError(f"{remote.spec.target}: upload of {sha[:12]} arrived corrupted "
                          f"({check['size']} of {size} bytes, other hash); the partial file was removed, run again")
    await sftp.posix_rename(part, final)
    return BlobUpload(sha, size, size - have, resumed_from, final)


def trainer_bundle() -> tuple[bytes, str]:
    """`training/` as a zip with fixed timestamps: same code, same bytes, same hash."""
    import training

    pkg = Path(training.__file__).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(pkg.rglob("*")):
            if not file.is_file() or "__pycache__" in file.parts or file.suffix in (".pyc", ".pyo"):
                continue
            info = zipfile.ZipInfo(str(Path("training") / file.relative_to(pkg)), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


async def ensure_trainer(remote) -> str:
    """Upload and unpack this studio's trainer on the remote (once per version); its lib folder."""
    data, sha = trainer_bundle()
    blob = await put_blob(remote, data, sha256=sha)
    lib = posixpath.join(remote.root, "lib", sha[:16])
    await remote.agent("extract", {"blob": blob.remote_path, "dest": lib})
    return lib
