"""Where a season's archive lives: a directory of a pyarrow filesystem (a local path or file:// in tests, s3:// in
production), its files written and read there, each file's SHA-256 taken as it is written."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hajj_ledger.domain.errors import ValidationError

MANIFEST = "manifest.json"
BATCH = 65_536  # rows a batch, read or written


class ArchiveError(ValueError):
    """An archive that cannot be reached, written or read."""


class _Hashing(io.RawIOBase):
    """A stream that hashes what it passes on: the SHA-256 of a file without reading it back."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.stream.write(chunk)
        self.size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.size


@dataclass
class Written:
    """A file as written: its rows, bytes and SHA-256."""

    rows: int = 0
    size: int = 0
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "bytes": self.size, "sha256": self.sha256, **self.extra}


class Target:
    """A directory at a pyarrow filesystem URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(url)
        except (pa.ArrowInvalid, ValueError, OSError) as error:
            raise ValidationError("url", f"not a filesystem URL pyarrow can open ({error})") from None
        self.root = self.root.rstrip("/")

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return bool(self.fs.get_file_info(self.path(name)).type == pafs.FileType.File)

    def make(self) -> None:
        """The directory, made if missing; refused if it holds an archive already (nothing is overwritten)."""
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as error:
            raise ArchiveError(f"{self.url}: cannot make the archive's directory ({error})") from None
        if self.exists(MANIFEST):
            raise ArchiveError(f"{self.url} holds an archive already: give an empty place")

    @contextmanager
    def parquet(self, name: str, schema: pa.Schema) -> Iterator[tuple[pq.ParquetWriter, Written]]:
        """A Parquet file written batch by batch; its rows, size and SHA-256 in `Written` once closed."""
        written = Written()
        try:
            if "/" in name:
                self.fs.create_dir(self.path(name.rpartition("/")[0]), recursive=True)
            with self.fs.open_output_stream(self.path(name)) as stream:
                hashing = _Hashing(stream)
                writer = pq.ParquetWriter(hashing, schema, compression="zstd")
                try:
                    yield writer, written
                finally:
                    writer.close()  # also when writing failed: never closed later, on a stream gone by then
        except OSError as error:
            raise ArchiveError(f"{self.url}: cannot write {name} ({error})") from None
        written.size, written.sha256 = hashing.size, hashing.sha256.hexdigest()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        try:
            with self.fs.open_output_stream(self.path(name)) as stream:
                stream.write(json.dumps(data, indent=2, sort_keys=True).encode())
        except OSError as error:
            raise ArchiveError(f"{self.url}: cannot write {name} ({error})") from None

    def read_json(self, name: str) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(self.path(name)) as stream:
                data: dict[str, Any] = json.loads(stream.read())
        except FileNotFoundError:
            raise ArchiveError(f"{self.url}: no {name}: not a season's archive") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ArchiveError(f"{self.url}: cannot read {name} ({error})") from None
        return data

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(self.path(name)) as stream:
            while block := stream.read(1 << 22):
                digest.update(block)
        return digest.hexdigest()

    def batches(self, name: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self.fs.open_input_file(self.path(name)) as file:
            yield from pq.ParquetFile(file).iter_batches(batch_size=BATCH, columns=columns)
