"""The name a user types for a server over SSH (``alice``, ``alice.gpu``). Pure.

The gateway maps it to the server; host and user certificates name it as their principal.
"""


def logical_target(username, server_name=""):
    return f"{username}.{server_name}" if server_name else username
