"""A TLS terminator for the tests: accepts TLS on 127.0.0.1 and forwards the plain bytes to a
plain-HTTP `leadflow serve`, both ways, one thread per direction.

    python tls_proxy.py CERT.pem KEY.pem TARGET_PORT

Prints `listening on 127.0.0.1:PORT` (a free port) on stdout once it accepts connections,
then serves until killed. b24pysdk only speaks https, so its test talks to leadflow through
this. Standard library only.
"""

import socket
import ssl
import sys
import threading


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies src to dst until src ends, then ends dst's write side."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve_one(tls_conn: socket.socket, target_port: int) -> None:
    """Forwards one accepted connection (its handshake done in this thread)."""
    try:
        tls_conn.do_handshake()
        plain = socket.create_connection(("127.0.0.1", target_port))
    except OSError as e:
        print(f"tls_proxy: {e}", file=sys.stderr, flush=True)
        tls_conn.close()
        return
    back = threading.Thread(target=pump, args=(plain, tls_conn), daemon=True)
    back.start()
    pump(tls_conn, plain)
    back.join()
    plain.close()
    tls_conn.close()


def main() -> None:
    cert, key, target_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        tls_conn = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=serve_one, args=(tls_conn, target_port), daemon=True).start()


if __name__ == "__main__":
    main()
