"""A throwaway PostgreSQL server on localhost for the several-workers test: Debian's postgresql package
(`make setup` installs it when run as root), a fresh cluster in a temporary folder, trust auth, stopped after."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> tuple[str, callable]:
    """Start a server in a new folder of /tmp (pytest's own folder is private to root, and the server cannot
    run as root); return (SQLAlchemy URL, stop function). RuntimeError says why it could not start."""
    folder = Path(tempfile.mkdtemp(prefix="mnas-pg-"))
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    run_as = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser to drop to the postgres user")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(folder / "server.log"),
                        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, text=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        log = (folder / "server.log").read_text()[-500:] if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {getattr(e, 'stderr', '') or e} {log}") from None

    def stop():
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)

    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", stop
