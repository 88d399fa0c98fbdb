"""Errors the person sees. Each says what happened and what to do next."""

from __future__ import annotations


class FerError(Exception):
    """Base error: ``message`` says what happened, ``hint`` what to do about it."""

    code = "error"

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # shown verbatim by CLI and UI
        return f"{self.message}\n→ {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class Cancelled(FerError):
    code = "cancelled"


class NoCredentials(FerError):
    code = "no_credentials"


class AuthError(FerError):
    code = "auth"


class NotFound(FerError):
    code = "not_found"


class NetworkError(FerError):
    code = "network"


class ConnectionDropped(FerError):
    code = "connection_dropped"


class DiskFull(FerError):
    code = "disk_full"


class IntegrityError(FerError):
    code = "integrity"


class UnsafeArchive(FerError):
    code = "unsafe_archive"


class InvalidInput(FerError):
    code = "invalid_input"


class DatasetError(FerError):
    code = "dataset"


class Busy(FerError):
    code = "busy"
