"""Model registry on a plain directory tree: versioned artifacts and a production pointer.

Layout::

    <root>/<family>/<version>/metadata.json   # what, from which data and code, how good
    <root>/<family>/<version>/drift_reference.json  # optional: training feature histograms
    <root>/<family>/<version>/<artifact files>
    <root>/<family>/PRODUCTION.json           # {"version": ..., "history": [older, ...]}
    <root>/<family>/SHADOW.json               # {"version": ...}: the challenger run in shadow
    <root>/ENSEMBLE.json                      # ensemble weights fitted on validation data

The version is the first 12 hex digits of a sha256 over the artifact files (names and bytes),
so the same training produces the same version and saving it twice is a no-op. Versions are
written to a temporary directory and renamed into place; the production pointer is written to a
temporary file and renamed, so readers never see a half-written version or pointer.

Serving replicas follow the pointers: :meth:`ModelRegistry.pointer_stamp` is a cheap change
detector (two ``stat`` calls) they poll before re-reading the pointers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
#: Per-version drift reference (feature histograms of the training data, serve/drift.py): not
#: an artifact file, so not part of the version hash.
DRIFT_REFERENCE_FILE = "drift_reference.json"
PRODUCTION_FILE = "PRODUCTION.json"
SHADOW_FILE = "SHADOW.json"
ENSEMBLE_FILE = "ENSEMBLE.json"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RegistryError(LookupError):
    """A family, version or production pointer is missing or malformed."""


@dataclass(frozen=True)
class ModelRecord:
    """One saved model version and its metadata.

    Attributes:
        family: Model family (``"lgbm"``, ``"gru"``).
        version: Content hash of the artifact files (12 hex digits).
        path: Directory holding the artifact files and ``metadata.json``.
        metrics: Validation metrics (accuracy, log loss, sample counts, ...).
        feature_spec_hash: Hash of the feature spec the model was trained on.
        feature_names: Names of the features, in input order.
        data_span_ns: ``(first, last)`` ``ts_event`` of the training market data.
        code_version: ``{"package": ..., "git_sha": ...}`` (``git_sha`` may be None).
        created_at: ISO-8601 UTC time the version was first saved.
        params: Training parameters.
        files: Artifact file names.
    """

    family: str
    version: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    feature_spec_hash: str = ""
    feature_names: tuple[str, ...] = ()
    data_span_ns: tuple[int, int] = (0, 0)
    code_version: dict[str, str | None] = field(default_factory=dict)
    created_at: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the metadata as JSON-ready data (``path`` as a string)."""
        return {
            "family": self.family,
            "version": self.version,
            "path": str(self.path),
            "metrics": self.metrics,
            "feature_spec_hash": self.feature_spec_hash,
            "feature_names": list(self.feature_names),
            "data_span_ns": list(self.data_span_ns),
            "data_span": [_iso_ns(self.data_span_ns[0]), _iso_ns(self.data_span_ns[1])],
            "code_version": self.code_version,
            "created_at": self.created_at,
            "params": self.params,
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> ModelRecord:
        """Build a record from ``metadata.json`` content found at ``path``."""
        span = data.get("data_span_ns") or (0, 0)
        return cls(
            family=str(data["family"]),
            version=str(data["version"]),
            path=path,
            metrics=dict(data.get("metrics") or {}),
            feature_spec_hash=str(data.get("feature_spec_hash", "")),
            feature_names=tuple(data.get("feature_names") or ()),
            data_span_ns=(int(span[0]), int(span[1])),
            code_version=dict(data.get("code_version") or {}),
            created_at=str(data.get("created_at", "")),
            params=dict(data.get("params") or {}),
            files=tuple(data.get("files") or ()),
        )

    def read_file(self, name: str) -> bytes:
        """Return the bytes of one artifact file."""
        return (self.path / name).read_bytes()

    def drift_reference(self) -> dict[str, Any] | None:
        """Return the drift reference stored with this version, None when it has none.

        Raises:
            RegistryError: the file exists but is not a JSON object.
        """
        path = self.path / DRIFT_REFERENCE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path} must be readable JSON, was {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path} must hold a JSON object, was {type(data).__name__}")
        return data


def _iso_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def content_version(files: Mapping[str, bytes]) -> str:
    """Return the version of a set of artifact files: sha256 of names and bytes, 12 hex.

    Example:
        >>> content_version({"a.bin": b"x"}) == content_version({"a.bin": b"x"})
        True
    """
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode())
        h.update(b"\0")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:12]


def code_version() -> dict[str, str | None]:
    """Return ``{"package": version, "git_sha": sha or None}`` without running any command.

    The package version comes from installed metadata (``0+unknown`` when not installed); the
    git sha is read from ``.git`` next to the package when there is one.
    """
    try:
        package = importlib_metadata.version("raydesk")
    except importlib_metadata.PackageNotFoundError:
        package = "0+unknown"
    return {"package": package, "git_sha": _git_sha(Path(__file__).resolve().parent.parent)}


def _git_sha(repo: Path) -> str | None:
    """Read HEAD's commit from ``repo/.git`` (loose or packed ref); None on any problem."""
    try:
        git = repo / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        common = git / "commondir"
        roots = [git] + ([git / common.read_text().strip()] if common.is_file() else [])
        for root in roots:
            if (root / ref).is_file():
                return (root / ref).read_text().strip() or None
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Versioned model artifacts under ``root`` with a production pointer per family.

    Args:
        root: Registry directory (created on the first save).

    Example:
        >>> reg = ModelRegistry("artifacts/models")
        >>> rec = reg.save("lgbm", {"model.txt": b"..."}, metrics={"accuracy": 0.41})
        >>> reg.promote("lgbm", rec.version).version == reg.production("lgbm").version
        True
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # writing --------------------------------------------------------------------------------
    def save(
        self,
        family: str,
        files: Mapping[str, bytes],
        *,
        metrics: Mapping[str, Any] | None = None,
        feature_spec_hash: str = "",
        feature_names: tuple[str, ...] | list[str] = (),
        data_span_ns: tuple[int, int] = (0, 0),
        params: Mapping[str, Any] | None = None,
        drift_reference: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Save artifact files as a new version (idempotent: same bytes, same version).

        Args:
            family: Model family name (lowercase, ``[a-z0-9_-]``).
            files: Artifact file name → bytes (the version is their content hash).
            metrics: Validation metrics to record.
            feature_spec_hash: Hash of the feature spec the model was trained on.
            feature_names: Feature names in input order.
            data_span_ns: ``(first, last)`` ``ts_event`` of the training data.
            params: Training parameters.
            drift_reference: Feature histograms of the training data
                (:func:`serve.drift.reference_histograms`), written to
                ``drift_reference.json`` beside the metadata; also added to an existing
                version that has none.

        Returns:
            The record of the saved (or already present) version.

        Raises:
            ValueError: a bad family or file name, or no files.
        """
        _check_name("family", family)
        if not files:
            raise ValueError("files must hold at least one artifact, was empty")
        for name in files:
            if not _FILE_RE.match(name) or name in (METADATA_FILE, DRIFT_REFERENCE_FILE):
                raise ValueError(
                    f"artifact file name must match {_FILE_RE.pattern} and not be "
                    f"{METADATA_FILE} or {DRIFT_REFERENCE_FILE}, was {name!r}"
                )
        version = content_version(files)
        final = self.root / family / version
        reference = (
            (json.dumps(dict(drift_reference), sort_keys=True) + "\n").encode()
            if drift_reference is not None
            else None
        )
        if (final / METADATA_FILE).is_file():
            if reference is not None and not (final / DRIFT_REFERENCE_FILE).is_file():
                _atomic_write(final / DRIFT_REFERENCE_FILE, reference)
            return self.get(family, version)
        record = ModelRecord(
            family=family,
            version=version,
            path=final,
            metrics=json.loads(json.dumps(dict(metrics or {}))),
            feature_spec_hash=feature_spec_hash,
            feature_names=tuple(feature_names),
            data_span_ns=(int(data_span_ns[0]), int(data_span_ns[1])),
            code_version=code_version(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            params=json.loads(json.dumps(dict(params or {}))),
            files=tuple(sorted(files)),
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
        try:
            tmp.chmod(0o755)
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            meta = {k: v for k, v in record.to_dict().items() if k != "path"}
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            if reference is not None:
                (tmp / DRIFT_REFERENCE_FILE).write_bytes(reference)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / METADATA_FILE).is_file():  # not a concurrent identical save
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(family, version)

    def promote(self, family: str, version: str) -> ModelRecord:
        """Make ``version`` the production model of ``family`` (the old one goes to history).

        Promoting the current production version is a no-op. Promoting the shadow version
        (the challenger won) clears the shadow pointer.

        Raises:
            RegistryError: the version does not exist.
        """
        record = self.get(family, version)
        pointer = self._read_pointer(family)
        current = pointer.get("version")
        if current != version:
            history = [v for v in pointer.get("history", []) if isinstance(v, str)]
            if current:
                history.append(current)
            self._write_pointer(family, version, history)
        if self._read_json(self._shadow_path(family)).get("version") == version:
            self.clear_shadow(family)
        return record

    def rollback(self, family: str) -> ModelRecord:
        """Restore the previous production version of ``family``.

        Raises:
            RegistryError: there is no previous production version.
        """
        pointer = self._read_pointer(family)
        history = [v for v in pointer.get("history", []) if isinstance(v, str)]
        if not history:
            raise RegistryError(
                f"rollback of {family!r} must have a previous production version, "
                f"was none (current {pointer.get('version')!r})"
            )
        previous = history.pop()
        record = self.get(family, previous)
        self._write_pointer(family, previous, history)
        return record

    def set_shadow(self, family: str, version: str) -> ModelRecord:
        """Run ``version`` of ``family`` in shadow: predicted and logged, never acted on.

        Raises:
            RegistryError: the version does not exist.
        """
        record = self.get(family, version)
        blob = {
            "family": family,
            "version": version,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _atomic_write(
            self._shadow_path(family), (json.dumps(blob, indent=2, sort_keys=True) + "\n").encode()
        )
        return record

    def clear_shadow(self, family: str) -> str | None:
        """Stop the shadow of ``family``; return the version that was shadowed (None: none)."""
        path = self._shadow_path(family)
        previous = self._read_json(path).get("version")
        path.unlink(missing_ok=True)
        return str(previous) if previous else None

    def set_ensemble(
        self,
        weights: Mapping[str, float],
        versions: Mapping[str, str],
        metrics: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record ensemble weights fitted for these family versions (``ENSEMBLE.json``).

        Args:
            weights: Family → weight (>= 0, positive sum).
            versions: Family → the version the weights were fitted with.
            metrics: Validation metrics of the fit (log loss, accuracy, ...).

        Returns:
            The record written.

        Raises:
            ValueError: a negative or non-finite weight, no positive weight, or a weight for a
                family without a version.
        """
        for fam, w in weights.items():
            _check_name("family", fam)
            if not (isinstance(w, int | float) and w >= 0 and w == w and w != float("inf")):
                raise ValueError(f"weights[{fam}] must be a finite number >= 0, was {w!r}")
            if fam not in versions:
                raise ValueError(f"versions must name a version for {fam}, was {dict(versions)}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"weights must have a positive sum, was {dict(weights)!r}")
        blob = {
            "weights": {k: float(v) for k, v in weights.items()},
            "versions": {k: str(v) for k, v in versions.items()},
            "metrics": dict(metrics or {}),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            self.root / ENSEMBLE_FILE, (json.dumps(blob, indent=2, sort_keys=True) + "\n").encode()
        )
        return blob

    def ensemble(self) -> dict[str, Any] | None:
        """Return the ``ENSEMBLE.json`` record (weights, versions, metrics), None when absent."""
        data = self._read_json(self.root / ENSEMBLE_FILE)
        return data or None

    # reading --------------------------------------------------------------------------------
    def get(self, family: str, version: str) -> ModelRecord:
        """Return the record of one version.

        Raises:
            RegistryError: no such family/version.
        """
        _check_name("family", family)
        _check_name("version", version)
        path = self.root / family / version
        meta = path / METADATA_FILE
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            known = [r.version for r in self.list(family)]
            raise RegistryError(
                f"model {family}/{version} must exist in {self.root}, was missing "
                f"(known versions: {known})"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{meta} must be readable JSON, was {exc}") from None
        return ModelRecord.from_dict(data, path)

    def list(self, family: str | None = None) -> list[ModelRecord]:
        """Return saved versions (of one family, or all), oldest first per family."""
        if family is not None:
            _check_name("family", family)
            families = [family]
        elif self.root.is_dir():
            families = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        else:
            families = []
        out: list[ModelRecord] = []
        for fam in families:
            base = self.root / fam
            if not base.is_dir():
                continue
            recs = []
            for d in base.iterdir():
                if d.is_dir() and not d.name.startswith(".") and (d / METADATA_FILE).is_file():
                    try:
                        recs.append(self.get(fam, d.name))
                    except (RegistryError, ValueError):
                        continue
            out.extend(sorted(recs, key=lambda r: (r.created_at, r.version)))
        return out

    def production(self, family: str) -> ModelRecord | None:
        """Return the production record of ``family``, or None when nothing is promoted."""
        version = self._read_pointer(family).get("version")
        if not version:
            return None
        return self.get(family, str(version))

    def production_history(self, family: str) -> list[str]:
        """Return earlier production versions of ``family``, oldest first."""
        return list(self._read_pointer(family).get("history", []))

    def shadow(self, family: str) -> ModelRecord | None:
        """Return the shadow (challenger) record of ``family``, or None when none is set."""
        version = self._read_json(self._shadow_path(family)).get("version")
        if not version:
            return None
        return self.get(family, str(version))

    def families(self) -> list[str]:
        """Return the families that have at least one saved version, sorted."""
        return sorted({r.family for r in self.list()})

    def pointer_stamp(self, family: str) -> tuple[tuple[int, int, int] | None, ...]:
        """Return a cheap change stamp of the production and shadow pointers of ``family``.

        Two ``stat`` calls, no reads: ``(inode, mtime_ns, size)`` of each pointer file, None
        where the file is missing. Pointers are replaced by rename, so every write changes it.
        """
        out: list[tuple[int, int, int] | None] = []
        for path in (self._pointer_path(family), self._shadow_path(family)):
            try:
                st = path.stat()
            except FileNotFoundError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    # pointer --------------------------------------------------------------------------------
    def _pointer_path(self, family: str) -> Path:
        _check_name("family", family)
        return self.root / family / PRODUCTION_FILE

    def _shadow_path(self, family: str) -> Path:
        _check_name("family", family)
        return self.root / family / SHADOW_FILE

    def _read_pointer(self, family: str) -> dict[str, Any]:
        return self._read_json(self._pointer_path(family))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path} must be readable JSON, was {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path} must hold a JSON object, was {type(data).__name__}")
        return data

    def _write_pointer(self, family: str, version: str, history: list[str]) -> None:
        path = self._pointer_path(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {
            "family": family,
            "version": version,
            "history": history,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _atomic_write(path, (json.dumps(blob, indent=2, sort_keys=True) + "\n").encode())


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{what} must match {_NAME_RE.pattern}, was {value!r}")
