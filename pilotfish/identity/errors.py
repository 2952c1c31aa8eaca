"""Errors of the identity layer (CA, workload tokens, certificate requests, secret delivery).

::

    PilotfishError
    └── IdentityError                  anything about workload identity
        ├── InvalidSpiffeIdError       a SPIFFE ID or principal does not parse (also a ValueError)
        ├── TokenError                 a workload token was refused
        │   ├── MalformedTokenError    not three base64url segments of JSON, bad claims
        │   ├── TokenSignatureError    signed with another key or tampered with
        │   └── TokenExpiredError      past its ``exp``
        ├── CsrError                   a certificate signing request is unusable
        ├── IdentityMismatchError      the CSR asks for another identity than the token proves
        ├── CALoadError                CA files are missing, unreadable or do not fit together
        ├── RotationError              a root rotation is not possible (plug-in CA)
        └── CertificateRequestError    the CA refused a request (client side, carries the code)

Each message says what was refused (``workload token``, ``certificate request``, a file), where
(the claim, the extension, the file name) and why.
"""

from __future__ import annotations

from pilotfish.errors import PilotfishError


class IdentityError(PilotfishError):
    """Base of every identity error."""


class InvalidSpiffeIdError(IdentityError, ValueError):
    """A SPIFFE ID (``spiffe://td/ns/x/sa/y``) or principal (``td/ns/x/sa/y``) is invalid."""


class TokenError(IdentityError):
    """A workload token was refused. ``reason`` is the short cause shown to the caller."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        where = f"workload token: {field}: " if field else "workload token: "
        super().__init__(where + reason)


class MalformedTokenError(TokenError):
    pass


class TokenSignatureError(TokenError):
    pass


class TokenExpiredError(TokenError):
    pass


class CsrError(IdentityError):
    """A certificate signing request is malformed, badly signed or uses an unsupported key."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        where = f"certificate request: {field}: " if field else "certificate request: "
        super().__init__(where + reason)


class IdentityMismatchError(IdentityError):
    """The CSR asks for ``requested`` while the caller's token proves ``proven``."""

    def __init__(self, requested: str, proven: str) -> None:
        self.requested = requested
        self.proven = proven
        super().__init__(
            f"certificate request: subjectAltName URI: asks for {requested} "
            f"but the token proves {proven}; refusing to sign"
        )


class CALoadError(IdentityError):
    """CA material on disk cannot be used; names the file and the reason."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"CA file {file}: {reason}")


class RotationError(IdentityError):
    pass


class CertificateRequestError(IdentityError):
    """The CA answered a certificate request with an error (``code`` is the gRPC status name)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"certificate request refused ({code}): {message}")
