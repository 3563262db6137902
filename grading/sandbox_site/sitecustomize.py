"""Loaded at start-up of every Python process of the sandbox: no network, even through `_socket`.

Under bubblewrap the sandbox has a network namespace of its own, with nothing in it; this block is
what stands in the way where bubblewrap is missing (and gives a clear message either way).
"""
import _socket
import socket


def _blocked(*args, **kwargs):
    raise OSError("network use is blocked while grading")


class _NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        _blocked()


socket.socket = socket.SocketType = _NoSocket
socket.socketpair = socket.fromfd = socket.create_connection = socket.create_server = _blocked
_socket.socket = _socket.SocketType = _NoSocket
_socket.socketpair = _socket.dup = _blocked
