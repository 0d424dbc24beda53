"""asyncssh, imported for the whole package without the screen of DSA warnings it causes.

asyncssh names cryptography's DSA classes in its type annotations, and
cryptography deprecates them, so ``import asyncssh`` alone prints five
``CryptographyDeprecationWarning: DSA is deprecated`` warnings: the first
thing in the hub's log, about keys this package refuses anyway
(:mod:`.validation`). Exactly that warning is ignored, only while asyncssh
is imported; every other warning, and that one raised later, still shows.
Import asyncssh from here: ``from ..keys.sshlib import asyncssh``.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
