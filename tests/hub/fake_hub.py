#!/usr/bin/env python3
"""fake_hub.py — a local stand-in for the Hugging Face hub, for tests (python3 standard library only).

Serves every directory under --root as the repo `kiln-test/<dir>` with the hub's URL scheme:
  GET /api/models/{repo}/revision/{rev}[?blobs=true]  {"id", "sha", "siblings": [{"rfilename", "size",
                                                       "blobId", "lfs": {"sha256", "size"}}]}
  GET|HEAD /{repo}/resolve/{rev}/{file}               small files: 200 + ETag (git blob id);
                                                       *.safetensors (LFS): 302 to /cdn/<sha256> with
                                                       X-Linked-Etag / X-Linked-Size, as the real hub does
  GET /cdn/<sha256>                                    the LFS content (Range supported)
Every response carries X-Repo-Commit; errors carry X-Error-Code (RepoNotFound, RevisionNotFound, ...).
{repo} may be sent as org/name or org%2Fname. Revisions: main, v1.0 and the commit sha.

Switches: --token T (401 without `Authorization: Bearer T`; with --gated DIR only for that repo),
--cut DIR/FILE (the first GET of that file's body stops half way and the connection closes),
--corrupt DIR/FILE (the first GET of that file's body has one byte flipped), --bare-listing (the API
lists file names only, as mirrors that ignore ?blobs=true do: etags must come from HEAD).
--misbehave MODE[=ARG] (repeatable) makes the hub lie, one way per test:
  range-from-zero=F  a Range request for F is answered 206 with the whole file (Content-Range bytes 0-)
  range-shifted=F    a Range request for F is answered 206 from 100 bytes before the asked offset
  huge-length=F      F is sent with Content-Length 10^12 and a body that repeats it without end
  long-body=F        F is sent with 4096 bytes more than the listing says (Content-Length to match)
  etag=VALUE         every file's ETag and X-Linked-Etag is VALUE (e.g. "..")
  any-revision       every revision exists (it names the commit), "../x" included
  evil-name=NAME     the listing also names a file NAME (e.g. "../evil")
  opaque             the listing gives names and sizes only, ETags are no content hash (W/"<size>-<n>"),
                     LFS files are served directly: nothing can be verified but the size
Writes its port to --port-file, logs one line per request to --log, and exits by itself after
--lifetime seconds (the test also kills it).
"""
import argparse, hashlib, json, os, sys, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORG = "kiln-test"


def real_path(p):
    """Fixture tokenizer files may be git text-symlinks (a file holding a relative path): follow them."""
    for _ in range(8):
        if os.path.isfile(p) and os.path.getsize(p) < 512:
            with open(p, "rb") as f:
                t = f.read().decode("utf-8", "replace").strip()
            cand = os.path.join(os.path.dirname(p), t)
            if t and not t.startswith(("{", "/")) and "\n" not in t and os.path.isfile(cand):
                p = cand
                continue
        break
    return p


class Repo:
    def __init__(self, d):
        self.name = os.path.basename(d)
        self.files = {}
        for name in sorted(os.listdir(d)):
            p = real_path(os.path.join(d, name))
            if not os.path.isfile(p):
                continue
            data = open(p, "rb").read()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            f = {"data": data, "blob": blob, "lfs": None}
            if name.endswith(".safetensors"):
                f["lfs"] = hashlib.sha256(data).hexdigest()
            self.files[name] = f
        h = hashlib.sha1()
        for n, f in self.files.items():
            h.update(n.encode() + b"\0" + f["blob"].encode())
        self.sha = h.hexdigest()


def misbehave(args, mode, name=None):
    """True (or the mode's argument) when --misbehave MODE[=ARG] is on (for file `name` if given)."""
    for m in args.misbehave:
        k, _, v = m.partition("=")
        if k == mode and (name is None or v == name):
            return v or True
    return False


class State:
    lock = threading.Lock()
    repos = {}
    cut_done = set()
    corrupt_done = set()


def get_repo(args, repo_id):
    if "/" not in repo_id:
        return None
    org, name = repo_id.split("/", 1)
    d = os.path.join(args.root, name)
    if org != ORG or "/" in name or name.startswith(".") or not os.path.isdir(d):
        return None
    with State.lock:
        if name not in State.repos:
            State.repos[name] = Repo(d)
        return State.repos[name]


def make_handler(args):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def log(self, status):
            if args.log:
                with State.lock, open(args.log, "a") as f:
                    f.write("%s %s %s %s\n" % (self.command, self.path, status, self.headers.get("Range", "-")))

        def send(self, status, body=b"", headers=None, ctype="application/json"):
            self.log(status)
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def error(self, status, code, msg):
            self.send(status, json.dumps({"error": msg}).encode(), {"X-Error-Code": code})

        def authorized(self, repo_id):
            if not args.token or (args.gated and repo_id.split("/")[-1] != args.gated):
                return True
            if self.headers.get("Authorization") == "Bearer " + args.token:
                return True
            self.error(401, "GatedRepo", "Access to this repo is restricted: a valid token is required.")
            return False

        def body(self, data, name, headers):
            """Serves data (or the Range of it asked for), cutting or corrupting it when told to."""
            with State.lock:
                if name == args.corrupt and name not in State.corrupt_done and self.command == "GET":
                    State.corrupt_done.add(name)
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
            if misbehave(args, "huge-length", name) and self.command == "GET":
                return self.endless(data, headers)
            if misbehave(args, "long-body", name):
                data = data + b"\0" * 4096
            start, status = 0, 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= len(data):
                    return self.send(416, b"", dict(headers, **{"Content-Range": "bytes */%d" % len(data)}))
                if misbehave(args, "range-from-zero", name):
                    start = 0
                elif misbehave(args, "range-shifted", name):
                    start = max(0, start - 100)
                status = 206
                headers = dict(headers, **{"Content-Range": "bytes %d-%d/%d" % (start, len(data) - 1, len(data))})
            part = data[start:]
            cut = False
            with State.lock:
                if name == args.cut and name not in State.cut_done and self.command == "GET":
                    State.cut_done.add(name)
                    cut = True
            if not cut:
                return self.send(status, part, headers, "application/octet-stream")
            self.log("%d-cut" % status)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                import socket
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def endless(self, data, headers):
            """Content-Length 10^12 and the data over and over until the client gives up (or 16 MB)."""
            self.log("200-endless")
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.close_connection = True
            sent = 0
            try:
                while sent < 16 << 20:
                    self.wfile.write(data)
                    sent += len(data)
            except OSError:
                pass

        def etags(self, h, f):
            """The ETag headers for a file: its hashes, or what --misbehave says."""
            blob, lfs = f["blob"], f["lfs"]
            forced = misbehave(args, "etag")
            if forced:
                h.update({"ETag": '"%s"' % forced, "X-Linked-Etag": '"%s"' % forced})
            elif misbehave(args, "opaque"):
                h["ETag"] = 'W/"%x-%d"' % (len(f["data"]), int(f["blob"][:4], 16))
            elif lfs:
                h.update({"X-Linked-Etag": '"%s"' % lfs, "ETag": '"%s"' % blob})
            else:
                h["ETag"] = '"%s"' % blob
            return h

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            raw = self.path.split("?", 1)[0]
            if raw.startswith("/cdn/"):
                sha = raw[5:]
                for rname, repo in list(State.repos.items()):
                    for name, f in repo.files.items():
                        if f["lfs"] == sha:
                            return self.body(f["data"], rname + "/" + name, {"ETag": '"%s"' % sha})
                return self.error(404, "EntryNotFound", "no such object")
            if raw.startswith("/api/models/"):
                rest = raw[len("/api/models/"):]
                if "/revision/" not in rest:
                    return self.error(404, "RepoNotFound", "bad API path")
                repo_q, rev_q = rest.split("/revision/", 1)
                repo_id, rev = urllib.parse.unquote(repo_q), urllib.parse.unquote(rev_q)
                if not self.authorized(repo_id):
                    return
                repo = get_repo(args, repo_id)
                if repo is None:
                    return self.error(404, "RepoNotFound", "Repository not found")
                if rev not in ("main", "v1.0", repo.sha) and not misbehave(args, "any-revision"):
                    return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
                sib = []
                evil = misbehave(args, "evil-name")
                if evil:
                    sib.append({"rfilename": evil, "size": 1, "blobId": "0" * 40})
                for n, f in repo.files.items():
                    if args.bare_listing:  # an older mirror: names only, etags from HEAD
                        sib.append({"rfilename": n})
                        continue
                    if misbehave(args, "opaque"):  # names and sizes, no hash at all
                        sib.append({"rfilename": n, "size": len(f["data"])})
                        continue
                    s = {"rfilename": n, "size": len(f["data"]), "blobId": f["blob"]}
                    if f["lfs"]:
                        s["lfs"] = {"sha256": f["lfs"], "size": len(f["data"]), "pointerSize": 134}
                    sib.append(s)
                doc = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "siblings": sib}
                return self.send(200, json.dumps(doc).encode(), {"X-Repo-Commit": repo.sha})
            if "/resolve/" in raw:
                repo_q, rest = raw[1:].split("/resolve/", 1)
                if not self.authorized(urllib.parse.unquote(repo_q)):
                    return
                repo = get_repo(args, urllib.parse.unquote(repo_q))
                if repo is None or "/" not in rest:
                    return self.error(404, "RepoNotFound", "Repository not found")
                rev_q, file_q = rest.split("/", 1)
                rev, name = urllib.parse.unquote(rev_q), urllib.parse.unquote(file_q)
                if rev not in ("main", "v1.0", repo.sha) and not misbehave(args, "any-revision"):
                    return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
                f = repo.files.get(name)
                if f is None:
                    return self.error(404, "EntryNotFound", "Entry not found")
                h = self.etags({"X-Repo-Commit": repo.sha}, f)
                if f["lfs"] and not misbehave(args, "opaque"):
                    h.update({"Location": "/cdn/%s" % f["lfs"], "X-Linked-Size": str(len(f["data"]))})
                    return self.send(302, b"", h)
                return self.body(f["data"], repo.name + "/" + name, h)
            return self.error(404, "RepoNotFound", "not found")

    return H


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hangs up on a lying answer is what the tests want: no traceback for that."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--token")
    ap.add_argument("--gated")
    ap.add_argument("--bare-listing", action="store_true")
    ap.add_argument("--cut")
    ap.add_argument("--corrupt")
    ap.add_argument("--misbehave", action="append", default=[])
    ap.add_argument("--lifetime", type=float, default=300)
    args = ap.parse_args()
    srv = QuietServer(("127.0.0.1", 0), make_handler(args))
    srv.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    threading.Timer(args.lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
