"""Driving a classroom through its servers' REST APIs, as JupyterLab's assignment list and formgrader do.

    hub = HubClient(room.url, room.driver_token)
    alice = hub.start_server("dl4cv-alice")              # -> ServerClient for /user/dl4cv-alice/
    alice.assignment_action("fetch", "dl4cv", "a0_warmup")   # POST /assignments/fetch (the assignment list)
    teacher.formgrader("a0_warmup", "release")               # POST /formgrader/api/assignment/a0_warmup/release
    errors = alice.run_notebook("lectures/01_convolution_arithmetic.ipynb")   # in a kernel of her server
    memory_of_user(uid)                                  # what her server and its kernels use (PSS, RSS)

The client authenticates with a JupyterHub token (``Authorization: token ...``); a service token with the
``access:servers`` scope reaches every user's server, whose nbgrader handlers act as that server's Linux user.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HubClient", "ServerClient", "RestError", "login", "memory_of_user"]


class RestError(RuntimeError):
    """A REST call answered with an error status (the message has the method, URL, status and body)."""


def _request(method: str, url: str, token: str, body: Any = None, timeout: float = 300) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"token {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data if data is not None else (b"" if method != "GET" else None),
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as err:
        raise RestError(f"{method} {url} -> {err.code}: {err.read().decode(errors='replace')[:2000]}") from None
    return json.loads(text) if text.strip() else None


@dataclass
class HubClient:
    """JupyterHub's REST API (``/hub/api``) with a token."""

    url: str
    token: str

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return _request(method, f"{self.url}/hub/api{path}", self.token, body)

    def start_server(self, user: str, timeout: float = 120) -> ServerClient:
        """Start ``user``'s server (if it is not running) and wait until the hub reports it ready."""
        model = self.api("GET", f"/users/{user}")
        if not model["servers"].get("", {}).get("ready"):
            if not model["servers"].get(""):
                self.api("POST", f"/users/{user}/server")
            deadline = time.monotonic() + timeout
            while True:
                model = self.api("GET", f"/users/{user}")
                server = model["servers"].get("", {})
                if server.get("ready"):
                    break
                if time.monotonic() > deadline:
                    raise RestError(f"{user}'s server was not ready within {timeout:.0f} s: {server}")
                time.sleep(0.3)
        return ServerClient(f"{self.url}{model['servers']['']['url'].rstrip('/')}", self.token, user)

    def server_pid(self, user: str) -> int:
        """The PID of ``user``'s single-user server, as the local process spawner recorded it."""
        return int(self.api("GET", f"/users/{user}")["servers"][""]["state"]["pid"])


@dataclass
class ServerClient:
    """One user's single-user server (``/user/<name>``): contents, nbgrader's handlers, kernels."""

    url: str
    token: str
    user: str

    def api(self, method: str, path: str, body: Any = None, timeout: float = 300) -> Any:
        return _request(method, f"{self.url}{path}", self.token, body, timeout)

    # -- files ----------------------------------------------------------------------------------------------
    def read_notebook(self, path: str) -> dict:
        return self.api("GET", f"/api/contents/{urllib.parse.quote(path)}?content=1")["content"]

    def write_notebook(self, path: str, notebook: dict) -> None:
        self.api("PUT", f"/api/contents/{urllib.parse.quote(path)}",
                 {"type": "notebook", "format": "json", "content": notebook})

    def read_text(self, path: str) -> str:
        return self.api("GET", f"/api/contents/{urllib.parse.quote(path)}?content=1&type=file&format=text")["content"]

    def listing(self, path: str = "") -> list[str]:
        return [item["name"] for item in self.api("GET", f"/api/contents/{urllib.parse.quote(path)}")["content"]]

    # -- nbgrader: the assignment list (students) and formgrader (instructor) -------------------------------
    def assignments(self, course_id: str) -> list[dict]:
        """GET /assignments?course_id=...: what the assignment list shows (released, fetched, submitted)."""
        answer = self.api("GET", f"/assignments?course_id={urllib.parse.quote(course_id)}")
        if not answer.get("success"):
            raise RestError(f"{self.user}: the assignment list failed: {answer.get('value')}")
        return answer["value"]

    def assignment_action(self, action: str, course_id: str, assignment_id: str) -> Any:
        """POST /assignments/<fetch|submit|fetch_feedback>, as the assignment list's buttons do."""
        query = urllib.parse.urlencode({"course_id": course_id, "assignment_id": assignment_id})
        answer = self.api("POST", f"/assignments/{action}?{query}")
        if isinstance(answer, dict) and not answer.get("success", True):
            raise RestError(f"{self.user}: {action} {assignment_id} failed: {answer.get('value')}")
        return answer

    def formgrader(self, assignment_id: str, action: str, student_id: str | None = None) -> dict:
        """POST /formgrader/api/assignment/<id>[/<student>]/<action> (release, collect, generate_feedback ...)."""
        path = f"/formgrader/api/assignment/{assignment_id}" + (f"/{student_id}" if student_id else "") + f"/{action}"
        answer = self.api("POST", path)
        if not answer.get("success"):
            raise RestError(f"formgrader {action} {assignment_id} failed:\n{answer.get('log', '')[-3000:]}\n"
                            f"{answer.get('error') or answer}")
        return answer

    # -- kernels --------------------------------------------------------------------------------------------
    def run_notebook(self, path: str, timeout: float = 600) -> list[str]:
        """Run every code cell of ``path`` in a new kernel of this server (its session); the errors, if any.

        Cells run in order and stop at the first error, as "Run All" does. The kernel stays running (what a
        student's server uses after the notebook is what a deployment sizes by): :meth:`shutdown_kernels`.
        """
        return asyncio.run(self._run_notebook(path, timeout))

    async def _run_notebook(self, path: str, timeout: float) -> list[str]:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        notebook = self.read_notebook(path)
        session = self.api("POST", "/api/sessions", {"path": path, "type": "notebook", "name": Path(path).name,
                                                     "kernel": {"name": "python3"}})
        kernel_id = session["kernel"]["id"]
        ws_url = self.url.replace("http://", "ws://", 1) + f"/api/kernels/{kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"}))
        errors: list[str] = []
        session_id = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        try:
            for cell in notebook["cells"]:
                if cell["cell_type"] != "code":
                    continue
                source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                msg_id = uuid.uuid4().hex
                await connection.write_message(json.dumps({
                    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.user,
                               "session": session_id, "date": "", "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": source, "silent": False, "store_history": True, "user_expressions": {},
                                "allow_stdin": False, "stop_on_error": True}}))
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RestError(f"{path} did not finish within {timeout:.0f} s in {self.user}'s kernel")
                    raw = await asyncio.wait_for(connection.read_message(), remaining)
                    if raw is None:
                        raise RestError(f"{self.user}'s kernel channel closed while running {path}")
                    if isinstance(raw, bytes):
                        continue  # binary frames (widget buffers): not needed here
                    message = json.loads(raw)
                    if message.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = message["header"]["msg_type"]
                    if kind == "error":
                        errors.append(f"{message['content']['ename']}: {message['content']['evalue']}")
                    if kind == "execute_reply":
                        break
                if errors:
                    break
        finally:
            connection.close()
        self.kernel_id = kernel_id
        return errors

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


def memory_of_user(uid: int) -> dict[str, Any]:
    """Memory of every process running as ``uid`` (a user's server and its kernels), from /proc.

    PSS (proportional set size: shared pages divided among the processes sharing them) is what the processes
    cost together; RSS counts shared libraries once per process. Both in MiB, with one line per process.
    """
    from .users import user_pids

    total_pss = total_rss = 0.0
    processes = []
    for pid in user_pids(uid):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:] if line.split()}
        pss, rss = fields.get("Pss", 0) / 1024, fields.get("Rss", 0) / 1024
        total_pss += pss
        total_rss += rss
        processes.append({"pid": pid, "pss_mib": round(pss, 1), "rss_mib": round(rss, 1), "command": command[:120]})
    return {"pss_mib": round(total_pss, 1), "rss_mib": round(total_rss, 1), "processes": processes}


def login(hub_url: str, user: str, password: str) -> bool:
    """Log in on the hub's login form as a person does (its ``_xsrf`` cookie and field); True if it let them in."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(f"{hub_url}/hub/login", timeout=30).read().decode()
    found = re.search(r'name="_xsrf" value="([^"]+)"', page)
    xsrf = found.group(1) if found else next((c.value for c in jar if c.name == "_xsrf"), "")
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf}).encode()
    try:
        response = opener.open(urllib.request.Request(f"{hub_url}/hub/login", data=form), timeout=30)
    except urllib.error.HTTPError as err:
        if err.code in (301, 302, 303):
            return "/hub/login" not in (err.headers.get("Location") or "")
        return False
    return "/hub/login" not in response.geturl() and response.status in (301, 302, 303)
