"""Control-plane services that sit beside the push pipeline (wired in ``server.py``):
``jwks`` fetches the JSON Web Key Sets that RequestAuthentication rules name."""

from pilotfish.control.jwks import JwksFetcher, JwksSettings

__all__ = ["JwksFetcher", "JwksSettings"]
