"""Atomic writes leave the old file or directory intact when writing fails."""

import os

import pytest

from warmrec.io import atomic_dir, atomic_write_text


def test_atomic_write_replaces(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    d = tmp_path / "model"
    with atomic_dir(d) as t:
        (t / "f").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(d) as t:
        (t / "f").write_text("half")
        raise RuntimeError("crash")
    assert (d / "f").read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["model"]
    with atomic_dir(d) as t:
        (t / "f").write_text("new")
    assert (d / "f").read_text() == "new"


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "x")
        with atomic_dir(tmp_path / "model") as d:
            (d / "w").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755  # not mkdtemp's 0700


def test_temporary_folders_of_killed_writers_are_removed(tmp_path):
    """Issue 9: killed runs left hidden ``.tmp`` folders that were never cleaned."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from warmrec.io import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as t:\n"
        "    (t / 'f').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], check=False)
    assert proc.returncode == -signal.SIGKILL
    (tmp_path / ".model.old").mkdir()  # as left by a kill between the two renames
    left = sorted(x.name for x in tmp_path.iterdir())
    assert len(left) == 2 and left[0].endswith(".tmp")
    with atomic_dir(tmp_path / "model") as t:
        (t / "f").write_text("new")
    assert [x.name for x in tmp_path.iterdir()] == ["model"]


def _script(body: str) -> str:
    return "import os, signal, sys, time\nfrom pathlib import Path\n" + body


def test_temporary_files_are_named_for_their_writer(tmp_path):
    import os

    from warmrec.io import TMP_MARK, temp_file

    t = temp_file(tmp_path / "pred.csv")
    assert t.parent == tmp_path and t.is_file()
    assert t.name.startswith(f".pred.csv.{TMP_MARK}-{os.getpid()}@")


def test_a_sigkilled_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """Issue 19: killed runs left hidden ``.tmp`` files that later runs never removed."""
    import signal
    import subprocess
    import sys

    from warmrec.io import atomic_write_text

    code = _script(
        "from warmrec.io import temp_file\n"
        "t = temp_file(Path(sys.argv[1]))\n"
        "t.write_text('half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = tmp_path / "pred.csv"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)])
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = [x.name for x in tmp_path.iterdir()]
    assert len(left) == 1 and f"-{proc.pid}@" in left[0]
    # a live writer's temporary (this process's) and another file's are left alone
    import os
    import socket

    mine = tmp_path / f".pred.csv.warmrec-tmp-{os.getpid()}@{socket.gethostname()}-abc"
    mine.write_text("busy")
    other = tmp_path / f".other.csv.warmrec-tmp-{proc.pid}@x-abc"
    other.write_text("x")
    atomic_write_text(out, "done")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([other.name, mine.name, "pred.csv"])


def test_sigterm_removes_the_temporary_file_and_folder(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = _script(
        "from warmrec.io import atomic_dir, temp_file, exit_on_signal\n"
        "with exit_on_signal():\n"
        "    t = temp_file(Path(sys.argv[1]) / 'p.csv')\n"
        "    try:\n"
        "        with atomic_dir(Path(sys.argv[1]) / 'model') as d:\n"
        "            (d / 'w').write_text('half')\n"
        "            print('ready', flush=True)\n"
        "            time.sleep(60)\n"
        "    finally:\n"
        "        t.unlink()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(list(tmp_path.iterdir())) == 2  # the file and the folder being written
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
    assert list(tmp_path.iterdir()) == []


def test_exit_on_signal_leaves_a_handler_someone_else_installed():
    import signal

    from warmrec.io import exit_on_signal

    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        with exit_on_signal():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
    with exit_on_signal():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, mine)
    assert signal.getsignal(signal.SIGTERM) == old


@pytest.mark.parametrize(
    ("make", "out", "kind", "message"),
    [
        (lambda p: (p / "x.csv").mkdir(), "x.csv", "file", "found a folder, expected a file"),
        (lambda p: (p / "m").write_text(""), "m", "dir", "found a file, expected a folder"),
        (lambda p: (p / "f").write_text(""), "f/sub/x.csv", "file", "'f' is a file"),
        (lambda p: (p / "f").write_text(""), "f/m", "dir", "'f' is a file"),
    ],
)
def test_check_output_refuses_what_cannot_be_written(
    tmp_path, monkeypatch, make, out, kind, message
):
    from warmrec.errors import ConfigError
    from warmrec.io import check_output

    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(ConfigError, match=message) as e:
        check_output(out, kind=kind)
    assert str(e.value).startswith(f"--out {out}: ")  # the path as typed
    assert sorted(x.name for x in tmp_path.iterdir()) in (["x.csv"], ["m"], ["f"])  # no probe


def test_check_output_accepts_new_and_existing_outputs(tmp_path):
    from warmrec.io import check_output

    assert check_output(tmp_path / "a" / "b" / "x.csv") == tmp_path / "a" / "b" / "x.csv"
    (tmp_path / "old.csv").write_text("x")
    check_output(tmp_path / "old.csv")
    (tmp_path / "model").mkdir()
    check_output(tmp_path / "model", kind="dir")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model", "old.csv"]  # nothing made


def test_check_output_refuses_a_read_only_folder(tmp_path):
    """As root, chmod does not stop a write: the test uses a folder no one (root included) can
    create files in when root runs it (sysfs's top level, or /proc), and a chmod'ed one otherwise."""
    import os

    from warmrec.errors import ConfigError
    from warmrec.io import check_output

    if os.geteuid() == 0:
        for root in ("/sys", "/proc"):
            with pytest.raises(ConfigError, match=f"cannot write in folder '{root}'"):
                check_output(f"{root}/warmrec-test/x.csv")
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="Permission denied"):
            check_output(ro / "x.csv")
        with pytest.raises(ConfigError, match="Permission denied"):
            check_output(ro / "m", kind="dir")
    finally:
        ro.chmod(0o755)


def test_check_output_refuses_a_read_only_file_system(tmp_path):
    """A real read-only mount (a tmpfs mounted ``ro`` in a private user and mount namespace, as
    ``unshare -rm`` makes without privileges); skipped where namespaces are not allowed."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    ro = tmp_path / "ro"
    ro.mkdir()
    code = (
        "import sys\nfrom warmrec.io import check_output\nfrom warmrec.errors import ConfigError\n"
        "try:\n    check_output(sys.argv[1])\nexcept ConfigError as e:\n    print(e)\n"
    )
    mount = f"mount -t tmpfs -o ro tmpfs {ro}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {probe.stderr.decode().strip()}")
    r = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'{mount} && exec "$0" -c "$1" "$2"',
            sys.executable,
            code,
            str(ro / "x.csv"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "Read-only file system" in r.stdout and str(ro) in r.stdout


def test_same_log_tells_a_touch_from_an_edit(tmp_path):
    from warmrec.io import fingerprint, same_log

    f = tmp_path / "log.csv"
    f.write_bytes(b"user_id,item_id\n" + b"u,i\n" * 600_000)  # past the sampled head and tail
    before = fingerprint(f)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(f) != before and same_log(before, fingerprint(f))  # touched
    data = bytearray(f.read_bytes())
    data[-2:-1] = b"j"  # the same size, the last line edited (u,i -> u,j)
    f.write_bytes(bytes(data))
    assert not same_log(before, fingerprint(f))
    assert not same_log(f"{st.st_size}:{st.st_mtime_ns - 1}", fingerprint(f))  # an older record
    assert same_log(before, None)  # not there to compare: nothing to say
