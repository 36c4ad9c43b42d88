"""study.process.Launched: the one launcher (process group, readiness, TERM then KILL, CPU time)."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from study.process import Launched, NotReady, free_port, http_get, tree_cpu_seconds


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_ready_on_a_line_in_the_log(tmp_path):
    log = tmp_path / "p.log"
    with Launched(_py("import time; print('booting', flush=True); time.sleep(0.3); "
                      "print('ready on port 1', flush=True); time.sleep(30)"), name="probe", log=log) as p:
        p.wait_ready(line=r"ready on port \d+", timeout_s=20)
        assert p.alive()
    assert not p.alive() and p.returncode is not None


def test_ready_on_a_health_url(tmp_path):
    port = free_port()
    server = ("import http.server as h\n"
              "class H(h.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
              "    def log_message(self, *a): pass\n"
              f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    with Launched(_py(server), name="http", log=tmp_path / "h.log") as p:
        p.wait_ready(url=f"http://127.0.0.1:{port}/health", timeout_s=20)
        assert http_get(f"http://127.0.0.1:{port}/")[0] == 200
    assert http_get(f"http://127.0.0.1:{port}/", timeout_s=0.5)[0] == 0  # stopped


def test_ready_on_a_file(tmp_path):
    marker = tmp_path / "port"
    with Launched(_py(f"import time; time.sleep(0.2); open({str(marker)!r}, 'w').write('1'); time.sleep(30)"),
                  name="file") as p:
        p.wait_ready(path=marker, timeout_s=20)


def test_a_child_that_exits_first_is_not_ready_with_its_log_tail(tmp_path):
    log = tmp_path / "bad.log"
    p = Launched(_py("import sys; print('cannot load the model: no such file', flush=True); sys.exit(3)"),
                 name="server", log=log).start()
    with pytest.raises(NotReady, match=r"server exited with code 3 .*cannot load the model"):
        p.wait_ready(url="http://127.0.0.1:9/never", timeout_s=30)
    p.stop()


def test_timeout_names_what_it_waited_for(tmp_path):
    with Launched(_py("import time; time.sleep(30)"), name="slow", log=tmp_path / "s.log") as p:
        with pytest.raises(NotReady, match=r"slow not ready after 1 s .*ready!"):
            p.wait_ready(line="ready!", timeout_s=1)


def test_stop_takes_the_whole_group_even_a_child_that_ignores_term(tmp_path):
    """A grandchild that ignores SIGTERM (like a stuck tritonserver) is SIGKILLed with its group."""
    pidfile = tmp_path / "grandchild.pid"
    code = ("import os, signal, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(60)\n")
    p = Launched(_py(code), name="leader", log=tmp_path / "l.log").start()
    p.wait_ready(path=pidfile, timeout_s=20)
    time.sleep(0.2)
    grandchild = int(pidfile.read_text())
    assert psutil.pid_exists(grandchild)
    t0 = time.monotonic()
    rc = p.stop(timeout_s=5)
    assert rc == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived its group")
    assert time.monotonic() - t0 < 10


def test_a_leader_that_ignores_term_is_killed_after_the_timeout(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    p = Launched(_py(code), name="stubborn", log=tmp_path / "x.log").start()
    p.wait_ready(line="up", timeout_s=20)
    assert p.stop(timeout_s=0.5) == -signal.SIGKILL


def test_cpu_seconds_counts_the_process_tree(tmp_path):
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time\\nt=time.process_time()\\n"
            "while time.process_time() - t < 0.6: pass\\ntime.sleep(60)'])\n"
            "print('started', flush=True); time.sleep(60)\n")
    with Launched(_py(code), name="busy", log=tmp_path / "b.log") as p:
        p.wait_ready(line="started", timeout_s=20)
        deadline = time.monotonic() + 30
        while p.cpu_seconds() < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert p.cpu_seconds() >= 0.5  # the busy child's time, not only the idle leader's
        assert tree_cpu_seconds(os.getpid()) > 0
    assert p.cpu_seconds() == 0.0
