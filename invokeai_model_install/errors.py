"""The one error root of the installer, and its subclasses.

Every error a user can meet derives from :class:`InstallerError`.  Each carries
a *hint*: what the user should do next.  ``str(err)`` is the message alone;
:meth:`InstallerError.one_line` is what front ends print: one line that names
the input and what to do.

This module imports nothing of ours (layering rule: ``errors`` and ``events``
sit at the bottom of the import graph).
"""

from __future__ import annotations


class InstallerError(Exception):
    """Root of all errors the installer reports to a user.

    :param message: what went wrong, naming the input (file, URL, model name).
    :param hint: what to do about it; may be empty when there is nothing to do.
    """

    #: Default hint for a subclass; an instance may pass its own.
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def one_line(self) -> str:
        """The message and its hint on a single line (newlines folded)."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())

    def __reduce__(self):  # keep message and hint across process boundaries
        return (self.__class__, (self.message, self.hint))


# --- configuration and local state -------------------------------------------------


class ConfigError(InstallerError):
    """A configuration file (catalogue, models.yaml, invokeai.init, plan file) is malformed."""


class RootError(InstallerError):
    """The root directory is missing or unusable."""

    default_hint = "run `invokeai-configure --root DIR` to create it, or pass --root"


class RegistryError(InstallerError):
    """models.yaml could not be read or updated."""


class RegistryLockedError(RegistryError):
    """Another process held the models.yaml lock for too long."""

    default_hint = "another installer is running; wait for it to finish, or remove a stale lock file"


class UnknownModelError(InstallerError):
    """A model name given by the user is not in models.yaml or the catalogue."""

    default_hint = "run `invokeai-model-install list` to see the names"


class NameClashError(RegistryError):
    """A model name is already taken in models.yaml."""

    default_hint = "choose another name, or delete the existing model first"


class UsageError(InstallerError):
    """The command line or plan options contradict each other."""


class FileSystemError(InstallerError):
    """A file or folder could not be created, written or read: a read-only disk, missing
    permission, a full disk, a file where a folder should be.  Made by :func:`from_os_error`."""


#: errno -> (what happened, what to do).  Numbers from :mod:`errno` (imported lazily below).
_OS_ERROR_TEXT = {
    "EROFS": ("is on a read-only file system", "choose a writable root with --root, or remount the disk read-write"),
    "EACCES": ("cannot be written or read: permission denied",
               "fix the permissions with chown or chmod, or choose a root you own with --root"),
    "EPERM": ("cannot be changed: operation not permitted",
              "fix the permissions with chown or chmod, or choose a root you own with --root"),
    "ENOSPC": ("cannot be written: no space left on the disk", "free some disk space, then run the command again"),
    "EDQUOT": ("cannot be written: disk quota exceeded", "free some space within your quota, then run the command again"),
    "ENOTDIR": ("cannot be used: a file is where a folder should be",
                "move that file away, a folder of that name is needed; or choose another --root"),
    "EEXIST": ("cannot be created: a file of that name is already there",
               "move that file away, a folder of that name is needed; or choose another --root"),
    "EISDIR": ("is a folder where a file should be", "move that folder away, or choose another --root"),
    "ENOENT": ("does not exist", "check the path; run `invokeai-configure` to create a missing root"),
    "ENAMETOOLONG": ("has a name that is too long", "choose a shorter path"),
    "EMFILE": ("cannot be opened: too many open files", "close other programs or raise the limit with ulimit -n"),
    "EIO": ("cannot be read or written: input/output error", "check the disk: it may be failing or unplugged"),
}


def from_os_error(exc: OSError, path: object = None) -> FileSystemError:
    """One user-facing error for an :class:`OSError`: the path, what happened, what to do.

    ``path`` defaults to the error's own file name (``exc.filename``); a temporary
    file's name (``.NAME.xyz.tmp``) is replaced by its folder, which is what the user can act on.
    """
    import errno as _errno
    import os as _os

    where = path if path is not None else (exc.filename if exc.filename is not None else "")
    where = _os.fsdecode(where) if isinstance(where, (bytes, str, _os.PathLike)) else str(where)
    base = _os.path.basename(where)
    if base.startswith(".") and base.endswith(".tmp"):
        where = _os.path.dirname(where) or where
    name = _errno.errorcode.get(exc.errno or -1, "")
    what, hint = _OS_ERROR_TEXT.get(name, (f"cannot be used: {exc.strerror or exc}", "check the path and its disk"))
    if not where:
        return FileSystemError(f"a file {what}", hint)
    return FileSystemError(f"{where} {what}", hint)


# --- sources and downloads ---------------------------------------------------------


class SourceError(InstallerError):
    """A line of the import box (or an --add item) is not something we can install."""

    default_hint = (
        "give a URL of a .ckpt/.safetensors file, a HuggingFace repo id like owner/name, "
        "a model file, or a folder"
    )


class DownloadError(InstallerError):
    """A transfer failed (network, server error, too many retries)."""

    default_hint = "check the network and run the installer again; partial downloads resume"


class NotFoundError(DownloadError):
    """The server answered 404, or the repo/file/revision does not exist."""

    default_hint = "check the spelling of the URL or repo id"


class AuthError(DownloadError):
    """401/403, or a gated repository whose license was not accepted."""

    default_hint = (
        "log in with `huggingface-cli login` or set HF_TOKEN (civitai: CIVITAI_API_TOKEN), "
        "and accept the model's license on its web page"
    )


class NotAModelError(DownloadError):
    """The server sent an HTML/JSON/text page where a model file was expected."""

    default_hint = "the site probably wants you to log in: set a token (HF_TOKEN or CIVITAI_API_TOKEN)"


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the expected size or sha256."""

    default_hint = "the file was discarded; run the installer again, or report the bad mirror"


class DiskSpaceError(InstallerError):
    """Not enough free disk space for the bytes to fetch or write."""

    default_hint = "free some disk space or choose fewer models"


class OfflineError(DownloadError):
    """A download was needed while offline mode (HF_HUB_OFFLINE) is on."""

    default_hint = "unset HF_HUB_OFFLINE (or go online) to download, or import a local file"


class UnsafeNameError(DownloadError):
    """A file name from the network would escape the destination folder."""

    default_hint = "the server sent a dangerous file name; the file was not saved"


# --- probing, safety, conversion ---------------------------------------------------


class ProbeError(InstallerError):
    """A model file could not be identified or read."""


class UnsafeFileError(InstallerError):
    """A pickle-based checkpoint imports dangerous globals: refused, never loaded."""

    default_hint = "do not use this file; prefer a .safetensors version of the model"


class ConversionError(InstallerError):
    """Converting a checkpoint to diffusers failed; nothing was left half-written."""


# --- the plan and its worker ---------------------------------------------------------


class QuestionUnanswered(InstallerError):
    """An item needs an answer (e.g. SD2 prediction type) and none could be given."""


class Cancelled(InstallerError):
    """The user cancelled; partial downloads are kept for a later resume."""

    default_hint = "run the installer again to resume"
