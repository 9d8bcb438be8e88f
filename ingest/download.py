"""Downloads MovieLens 100k once into a local cache, verifying its checksum.

Every step writes to a temporary name and renames it into place, so an interrupted download or
extraction never leaves a partial file or directory where later calls would trust it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Optional, Union
from urllib.request import urlopen

from ingest.errors import DataError

MOVIELENS_100K = 'movielens-100k'
URL = 'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
ARCHIVE_NAME = 'ml-100k.zip'
EXTRACTED_NAME = 'ml-100k'
MARKER_FILE = 'u.data'
# The digest GroupLens publishes for ml-100k.zip (ml-100k.zip.md5).
CHECKSUM_ALGORITHM = 'md5'
EXPECTED_DIGEST = '0e33842e24a9c977be4e0107933c0723'
DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20


def default_cache_dir() -> Path:
  """`~/.cache/recsys-distill`, the cache used when none is given."""
  return Path.home() / '.cache' / 'recsys-distill'


def file_digest(path: Path) -> str:
  """Hex digest of a file with `CHECKSUM_ALGORITHM`."""
  digest = hashlib.new(CHECKSUM_ALGORITHM)
  with open(path, 'rb') as handle:
    for chunk in iter(lambda: handle.read(CHUNK_BYTES), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _download_archive(archive: Path) -> None:
  """Downloads `URL` to a temporary file beside `archive`, verifies it, then renames it."""
  handle, partial = tempfile.mkstemp(dir=archive.parent, prefix=f'.{archive.name}.', suffix='.part')
  try:
    with os.fdopen(handle, 'wb') as out, urlopen(URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
      shutil.copyfileobj(response, out, CHUNK_BYTES)
    actual = file_digest(Path(partial))
    if actual != EXPECTED_DIGEST:
      problem = f'{CHECKSUM_ALGORITHM} mismatch: expected {EXPECTED_DIGEST}, got {actual}'
      raise DataError(URL, problem)
    os.replace(partial, archive)
  except BaseException:
    Path(partial).unlink(missing_ok=True)
    raise


def _extract(archive: Path, target: Path) -> None:
  """Extracts `archive` into a temporary directory and renames its ml-100k folder to `target`."""
  staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.'))
  try:
    with zipfile.ZipFile(archive) as bundle:
      bundle.extractall(staging)
    extracted = staging / EXTRACTED_NAME
    if not (extracted / MARKER_FILE).is_file():
      raise DataError(archive, f'archive holds no {EXTRACTED_NAME}/{MARKER_FILE}')
    try:
      extracted.rename(target)
    except OSError:
      if not (target / MARKER_FILE).is_file():  # not a concurrent extraction that won
        raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def fetch_movielens_100k(cache_dir: Optional[Union[str, Path]] = None) -> Path:
  """Returns the extracted ml-100k directory in `cache_dir`, downloading it when absent.

  The archive is downloaded only if no verified copy is cached, and extracted only if the
  directory is missing, so a second call touches no network.
  """
  cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
  target = cache / EXTRACTED_NAME
  if (target / MARKER_FILE).is_file():
    return target
  cache.mkdir(parents=True, exist_ok=True)
  archive = cache / ARCHIVE_NAME
  if not archive.is_file() or file_digest(archive) != EXPECTED_DIGEST:
    _download_archive(archive)
  _extract(archive, target)
  return target
