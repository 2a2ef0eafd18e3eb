#!/usr/bin/env python3
"""A git server on the loopback for the gitops suite: `git http-backend` (git's own
smart-HTTP CGI program) behind a small threaded HTTP server, serving the bare
repositories under --root read-only (clone and fetch; the tests commit through the
file system). Writes the port it listens on to --port-file once it accepts.

usage: gitserver.py --root DIR --port-file FILE [--listen 127.0.0.1:0]
"""

import argparse
import http.server
import os
import subprocess
import sys
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    args = ap.parse_args()
    root = os.path.abspath(args.root)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.cgi()

        def do_POST(self):
            self.cgi()

        def cgi(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path.endswith("/git-receive-pack") or "service=git-receive-pack" in url.query:
                self.send_error(403, "read-only")
                return
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": urllib.parse.unquote(url.path),
                "QUERY_STRING": url.query,
                "REMOTE_ADDR": self.client_address[0],
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            }
            for h in ("Content-Encoding", "Git-Protocol"):
                if self.headers.get(h):
                    env["HTTP_" + h.upper().replace("-", "_")] = self.headers[h]
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self.read_chunked()
            else:
                body = self.rfile.read(length) if length else b""
            env["CONTENT_LENGTH"] = str(len(body))
            out = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True
            )
            head, _, payload = out.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = out.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def read_chunked(self):
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()

        def log_message(self, fmt, *a):
            sys.stderr.write("gitserver: " + (fmt % a) + "\n")

    host, port = args.listen.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
