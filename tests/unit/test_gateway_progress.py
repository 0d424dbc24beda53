"""GatewayServer.progress: a client whose version line waits unread in its socket has spoken.

The flaky failure this fixes: thirty idle sockets from one address churn the
address's ten pending places; a real client that arrived among them was closed
as "silent" (the oldest that had sent nothing) before the gateway's busy loop
had read its version line.
"""

import socket

from hardened_spawner.ssh.connection import KEY_EXCHANGE, SILENT, GatewayServer


class Conn:
    def __init__(self, sock):
        self.sock = sock

    def get_extra_info(self, name, default=None):
        return self.sock if name == "socket" else default


def server_for(sock):
    server = GatewayServer(gateway=None)
    server.conn = Conn(sock)
    return server


def test_a_client_whose_version_line_is_unread_is_not_silent():
    gateway_side, client_side = socket.socketpair()
    with gateway_side, client_side:
        server = server_for(gateway_side)
        assert server.progress() == SILENT
        client_side.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        assert server.progress() == KEY_EXCHANGE
        gateway_side.recv(100)
        assert server.progress() == SILENT  # read, and not parsed: asyncssh's client_version decides then


def test_a_closed_socket_counts_as_silent():
    gateway_side, client_side = socket.socketpair()
    client_side.close()
    server = server_for(gateway_side)
    gateway_side.close()
    assert server.progress() == SILENT
