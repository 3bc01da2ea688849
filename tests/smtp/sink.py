"""A real SMTP server for the notification tests: aiosmtpd with STARTTLS required and
AUTH required after it. Each message is written to OUT_DIR as NNNN.eml, the first line a JSON
envelope (sender, recipients, whether TLS and AUTH were used), then the message as received.

usage: sink.py CERT_PEM KEY_PEM OUT_DIR PORT USER PASSWORD   (prints "ready" once listening)
"""
import json
import logging
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = os.path.join(self.out, f"{self.count:04d}.eml")
        envelope_line = json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        })
        with open(name + ".part", "wb") as f:
            f.write(envelope_line.encode() + b"\n")
            f.write(envelope.original_content)
        os.rename(name + ".part", name)
        return "250 OK"


def main():
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    cert, key, out, port, user, password = sys.argv[1:7]

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Sink(out), hostname="127.0.0.1", port=int(port), server_hostname="localhost",
        tls_context=context, require_starttls=True,
        authenticator=authenticate, auth_required=True,
    )
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
