"""Safe outputs: checked before any work, written atomically, multi-file outputs built aside.

- :func:`check_output_file` / :func:`check_output_dir` are the preflight every
  command runs on its output paths before it loads a model or reads data: the path
  must not be a directory (a file) or a file (a folder), no component of it may be
  a file, and the nearest existing folder must be writable. Errors are one
  :class:`~jaxsafe.errors.UserError` line naming the option and the user's path.
- :func:`atomic_write_bytes` and friends: a reader sees the old file or the new
  one, never half of one.
- :class:`StagedDir`: a multi-file output (a toy world, a run directory) is built
  in a hidden sibling ``.NAME.partial`` and renamed into place when complete, so a
  failing or killed command leaves the previous output exactly as it was;
  ``--resume`` continues the sibling and ``--overwrite`` replaces a finished output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from jaxsafe.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    An error of the file system (no permission, no space, a file where a folder
    should be) is a :class:`UserError` naming ``path``, not the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Render a matplotlib figure to PNG, write it atomically and close the figure."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    """Make numpy/JAX scalars and arrays JSON-serializable."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


# -- preflight ------------------------------------------------------------------------
def _check_ancestors(path: Path, flag: str) -> None:
    """No component of ``path`` above it is a file; the nearest existing folder is writable."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"{flag} {path}: folder {parent} is not writable")
            return
        if parent.is_symlink():
            raise UserError(f"{flag} {path}: {parent} is a broken link")


def check_output_file(path: str | os.PathLike | None, flag: str = "--out") -> Path | None:
    """Preflight of a one-file output (``None`` passes): not a folder, under a writable folder.

    An existing file is fine (it is replaced atomically at the end); missing parent
    folders are created when the file is written.
    """
    if path is None:
        return None
    path = Path(path)
    if str(path).endswith(os.sep) or path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path}: is not a regular file")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: file is not writable")
    _check_ancestors(path, flag)
    return path


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Preflight of an output folder: not a file, under a writable folder (it may exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file; give a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: folder is not writable")
    _check_ancestors(path, flag)
    return path


def check_input_file(path: str | os.PathLike, flag: str) -> Path:
    """An input file that must exist and be a readable regular file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: file not found")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{flag} {path}: file is not readable")
    return path


# -- multi-file outputs built aside -----------------------------------------------------
CONFIG_FILE = "config.yaml"


class StagedDir:
    """A multi-file output folder built in a hidden sibling and renamed into place.

    Args:
      out: the output folder the user named.
      config: the resolved config of the job: a config dataclass (or its YAML
        text). It is written to ``config.yaml`` of the work folder, and a finished
        output or an interrupted one with a different config is refused, naming
        the first differing key. Given a dataclass, a stored config is first read
        through its class, so a key added to the code since that run was made
        counts as its default rather than as a difference.
      resume: continue an interrupted job (the sibling ``.NAME.partial``); on a
        finished output with the same config, :attr:`done` is true and there is
        nothing to do.
      overwrite: replace a finished output (it stays in place until the new one is
        complete) or start an interrupted one afresh.
      what: how the output is called in messages ("toy world", "run").

    Use: ``stage = StagedDir(...)`` (the preflight: every refusal happens here,
    before any work); unless ``stage.done``, write into ``stage.work`` (pass
    ``stage.resuming`` on to resumable loops) and call ``stage.commit()``.
    """

    def __init__(self, out: str | os.PathLike, config: Any, *, resume: bool = False,
                 overwrite: bool = False, what: str = "result", flag: str = "--out"):
        check_output_dir(out, flag)
        self.out = Path(os.path.abspath(out))  # "." and "a/.." have no name of their own to put aside
        self.work = self.out.parent / f".{self.out.name}.partial"
        self.old = self.out.parent / f".{self.out.name}.old"
        if isinstance(config, str):
            self.config_text, self.config_class = config, None
        else:
            from jaxsafe.config import dump_config

            self.config_text, self.config_class = dump_config(config), type(config)
        self.done = False
        self.resuming = False
        shown = Path(out)
        self._recover()
        finished = self.out.is_dir() and any(self.out.iterdir())
        if finished and not (self.out / CONFIG_FILE).exists():
            # not an output of ours: never moved away or deleted, whatever the flags
            raise UserError(f"{flag} {shown}: is a folder holding other files (no {CONFIG_FILE}); "
                            f"choose a new or empty folder")
        if self.work.exists():
            if resume:
                self._same_config(self.work, f"the interrupted {what} in {self.work}")
                self.resuming = True
            elif overwrite:
                shutil.rmtree(self.work)
            else:
                raise UserError(f"{flag} {shown}: an interrupted {what} is in {self.work}; pass resume=True (--resume) "
                                f"to finish it or overwrite=True (--overwrite) to start afresh")
        elif finished:
            if resume:
                self._same_config(self.out, f"{shown}")
                self.done = True
            elif not overwrite:
                raise UserError(f"{flag} {shown}: already holds a {what} (finished); pass resume=True (--resume) to reuse "
                                f"it (same config), overwrite=True (--overwrite) to replace it once the new one is complete, "
                                f"or choose another {flag}")

    def start(self) -> Path:
        """Create the work folder (with ``config.yaml``) and return it.

        In a multi-process job every process has run the checks of ``__init__`` before
        any of them creates the folder (a barrier), so no process mistakes the fresh
        folder of another for an interrupted run."""
        import sys

        if "jax" in sys.modules:
            from jaxsafe.parallel import barrier

            barrier(f"jaxsafe StagedDir {self.out}")
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.work / CONFIG_FILE, self.config_text)
        return self.work

    def commit(self) -> Path:
        """Move the finished work folder into place (the previous output is removed after).

        In a multi-process job every process has finished its work in it first (a
        barrier); then the primary process moves it."""
        import sys

        if "jax" in sys.modules:  # a JAX job: in a multi-process one, the primary process commits
            from jaxsafe.parallel import barrier, is_primary

            barrier(f"jaxsafe StagedDir commit {self.out}")
            if not is_primary():
                return self.out
        if self.out.is_dir() and any(self.out.iterdir()):
            os.replace(self.out, self.old)
        os.replace(self.work, self.out)
        shutil.rmtree(self.old, ignore_errors=True)
        return self.out

    def _recover(self) -> None:
        """Finish a swap that a kill interrupted between its two renames."""
        if self.old.exists():
            if self.out.exists():
                shutil.rmtree(self.old, ignore_errors=True)
            else:
                os.replace(self.old, self.out)

    def _same_config(self, folder: Path, name: str) -> None:
        path = folder / CONFIG_FILE
        if not path.exists():
            return
        diff = _first_difference(self._stored_config(path), yaml.safe_load(self.config_text))
        if diff is not None:
            key, a, b = diff
            raise UserError(f"{name} has a different config ({key}: {a!r} there, {b!r} now); "
                            f"pass overwrite=True (--overwrite) to replace it, or choose another output folder")

    def _stored_config(self, path: Path) -> Any:
        """A stored config as this code reads it: keys added since it was written take their defaults."""
        if self.config_class is not None:
            from jaxsafe.config import dump_config, load_config

            try:
                return yaml.safe_load(dump_config(load_config(self.config_class, path)))
            except UserError:
                pass  # a key this code no longer knows: compared as written, so it shows as a difference
        return yaml.safe_load(path.read_text())


def _first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else (prefix.rstrip(".") or "config", a, b)
