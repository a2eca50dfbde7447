"""A real, throw-away, single-node SLURM cluster on localhost, for slow tests.

Built from Debian 12's own packages (Slurm 22.05, MUNGE 0.5, MariaDB 10.11)::

    apt-get install -y --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server mariadb-client

(prefix it with ``printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d``
and remove that file afterwards if the packages' own services must not start).

Usage::

    from slurm_cluster import available, cluster

    reason = available()
    if reason:
        pytest.skip(reason)
    with cluster(tmp_path / "slurm") as c:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=c.env, check=True)

Everything the cluster needs lives under ``workdir``: a private MUNGE key and
``munged``, a private MariaDB server (data dir under ``workdir``, unix socket
plus a free TCP port on 127.0.0.1), ``slurmdbd``, ``slurmctld`` and ``slurmd``,
all run in the foreground as children of this process (own session each,
``setpriv --pdeathsig`` so they die with it), on freshly chosen free ports.
On exit every daemon started here is stopped (SIGTERM, then SIGKILL), and so are
any job step processes (``slurmstepd`` and its children) it left behind; nothing
else is touched. Needs root (``SlurmUser=root``), which is what a CI container has.

Only the Python standard library is used (and tests/proctree.py); no project imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from proctree import ppid_map, with_descendants

APT_PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server", "mariadb-client")
APT_COMMAND = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)

CLUSTER_NAME = "ctc"
PARTITION = "debug"

_SBIN_PATH = os.pathsep.join(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])

# binary (or alternatives) -> Debian package
_REQUIRED: dict[tuple[str, ...], str] = {
    ("slurmctld",): "slurmctld",
    ("slurmd",): "slurmd",
    ("slurmdbd",): "slurmdbd",
    ("munged",): "munge",
    ("sbatch",): "slurm-client",
    ("sacct",): "slurm-client",
    ("squeue",): "slurm-client",
    ("sinfo",): "slurm-client",
    ("scontrol",): "slurm-client",
    ("sacctmgr",): "slurm-client",
    ("scancel",): "slurm-client",
    ("mariadbd", "mysqld"): "mariadb-server",
    ("mariadb-install-db", "mysql_install_db"): "mariadb-server",
    ("mariadb", "mysql"): "mariadb-client",
}

_LOG_TAIL_LINES = 40

# client commands that get a SLURM_CONF-setting wrapper in <workdir>/bin
_CLIENTS = ("sbatch", "srun", "salloc", "squeue", "sacct", "sacctmgr", "scontrol", "sinfo", "scancel",
            "sshare", "sstat", "sprio", "sattach", "sreport", "strigger", "sdiag")


class ClusterError(RuntimeError):
    """The cluster could not be brought up (message carries the relevant log tail)."""


def _which(*names: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + _SBIN_PATH
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def available() -> str | None:
    """None if a cluster can be started here, else a one-line reason (with the fix)."""
    missing = sorted({pkg for names, pkg in _REQUIRED.items() if _which(*names) is None})
    if missing:
        return (
            f"SLURM test cluster needs Debian packages {', '.join(missing)}: "
            f"run as root `{APT_COMMAND}`"
        )
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (SlurmUser=root, slurmd launches jobs)"
    return None


# --------------------------------------------------------------------------- helpers


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free on 127.0.0.1 and 0.0.0.0 right now."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("0.0.0.0", 0))  # slurm daemons bind the wildcard address
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<{path}: {e.strerror}>"
    return "\n".join(text[-lines:]) if text else f"<{path}: empty>"


def _meminfo_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise ClusterError("no MemTotal in /proc/meminfo")


def _hardware(slurmd: str) -> tuple[int, str]:
    """(CPUs, the topology part of a NodeName line) as `slurmd -C` sees this host."""
    cpus = os.cpu_count() or 1
    try:
        out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    m = re.search(r"CPUs=(\d+) Boards=(\d+) SocketsPerBoard=(\d+) CoresPerSocket=(\d+) ThreadsPerCore=(\d+)", out)
    if not m:
        return cpus, f"CPUs={cpus}"
    return int(m[1]), f"CPUs={m[1]} Boards={m[2]} SocketsPerBoard={m[3]} CoresPerSocket={m[4]} ThreadsPerCore={m[5]}"


def _dies_with_parent(argv: list[str]) -> list[str]:
    """argv under util-linux's setpriv, which sets the parent-death signal (SIGTERM) before it execs the daemon.
    Not a preexec_fn: that makes CPython fork (not vfork) and run Python in the child, and this runs in a thread
    of the test process beside tests using numpy, whose OpenBLAS shuts its threads down at fork (pthread_atfork)
    under a BLAS call in another thread: CI stopped for good inside the digits FID test (2026-12-07). Without
    setpriv the daemons are still stopped by `cluster`, or by `_kill_stale` after a crash."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _proc_environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _pids_marked(marker: bytes) -> set[int]:
    """Live processes whose environment holds the NUL-delimited entry `marker`."""
    me = os.getpid()
    found = set()
    for pid in ppid_map():
        if pid != me and marker in _proc_environ(pid).split(b"\0"):
            found.add(pid)
    return found


def _kill_all(pids: set[int], timeout: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {p for p in pids if os.path.exists(f"/proc/{p}") and not _is_zombie(p)}
            if not pids:
                return
            time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------- cluster


@dataclasses.dataclass
class _Daemon:
    name: str
    proc: subprocess.Popen
    log: Path  # the daemon's own log file
    out: Path  # its captured stdout/stderr

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        parts = [f"--- {self.log} (last {_LOG_TAIL_LINES} lines):\n{_tail(self.log)}"]
        if self.out != self.log and self.out.exists() and self.out.stat().st_size:
            parts.append(f"--- {self.out}:\n{_tail(self.out)}")
        return "\n".join(parts)


@dataclasses.dataclass
class SlurmCluster:
    """What a running cluster offers its user."""

    workdir: Path
    env: dict[str, str]  # use for every sbatch/squeue/sacct/snakemake call
    conf: Path  # slurm.conf (SLURM_CONF in env)
    bin_dir: Path  # srun/sbatch/sacct/... wrappers that set SLURM_CONF (first on env's PATH)
    cluster_name: str
    partition: str
    account: str  # the default account of the submitting user (created by sacctmgr)
    nodename: str
    cpus: int
    real_memory_mb: int
    ports: dict[str, int]
    logs: dict[str, Path]
    _daemons: list[_Daemon] = dataclasses.field(default_factory=list, repr=False)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        p = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise ClusterError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}\n{self.log_tails()}")
        return p

    def sbatch(self, *args: str) -> str:
        """Submit; returns the job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def sacct_state(self, jobid: str) -> str:
        """State of the job allocation as sacct has it ('' if unknown yet)."""
        out = self.run("sacct", "-X", "-n", "-P", "-j", jobid, "--format=State", check=False).stdout
        return out.strip().splitlines()[0].split()[0] if out.strip() else ""

    def wait_job(self, jobid: str, timeout: float = 120) -> str:
        """Wait until sacct reports a final state for jobid; returns it."""
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sacct_state(jobid)
            if state in final:
                return state
            time.sleep(0.5)
        raise ClusterError(f"job {jobid} still {state or 'unknown to sacct'} after {timeout:.0f}s\n{self.log_tails()}")

    def log_tails(self, names: tuple[str, ...] = ("slurmctld", "slurmd", "slurmdbd")) -> str:
        return "\n".join(d.tail() for d in self._daemons if d.name in names)


@contextlib.contextmanager
def cluster(workdir: Path, *, timeout: float = 60.0) -> Iterator[SlurmCluster]:
    """Bring up munged, MariaDB, slurmdbd, slurmctld, slurmd under workdir; tear down on exit."""
    reason = available()
    if reason:
        raise ClusterError(reason)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / "run"  # pid files
    run_dir.mkdir(exist_ok=True)
    _kill_stale(workdir, run_dir)
    for sub in ("etc", "log", "state", "spool", "mysql", "munge"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
        (workdir / sub).mkdir(mode=0o700)
    for pidfile in run_dir.glob("*.pid"):
        pidfile.unlink()

    # Unix sockets (munge, mysql, slurmstepd's in the spool) must stay under ~100 bytes.
    short_dir: Path | None = None
    if len(str(workdir)) > 60:
        short_dir = Path(tempfile.mkdtemp(prefix="ctc-slurm-", dir="/tmp"))
    sock_dir = short_dir or run_dir
    spool_dir = (short_dir / "spool") if short_dir else workdir / "spool"
    spool_dir.mkdir(exist_ok=True, mode=0o755)

    cluster_id = secrets.token_hex(8)
    marker = f"CTC_SLURM_CLUSTER_ID={cluster_id}"
    conf = workdir / "etc" / "slurm.conf"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    base_env["PATH"] = base_env.get("PATH", "") + os.pathsep + _SBIN_PATH
    base_env["SLURM_CONF"] = str(conf)
    daemon_env = dict(base_env, CTC_SLURM_CLUSTER_ID=cluster_id, CTC_SLURM_WORKDIR=str(workdir))

    daemons: list[_Daemon] = []
    log = workdir / "log"

    def start(name: str, argv: list[str], logfile: Path) -> _Daemon:
        out = log / f"{name}.out"
        with open(out, "ab") as fh:
            proc = subprocess.Popen(
                _dies_with_parent(argv), env=daemon_env, stdin=subprocess.DEVNULL, stdout=fh,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir,
            )
        d = _Daemon(name, proc, logfile, out)
        daemons.append(d)
        return d

    def wait(what: str, daemon: _Daemon, ok, limit: float = timeout) -> None:
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            try:
                if ok():
                    return
            except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
                last = e
            if not daemon.alive():
                raise ClusterError(f"{daemon.name} exited with status {daemon.proc.returncode} while waiting for {what}\n{daemon.tail()}")
            time.sleep(0.2)
        raise ClusterError(f"timed out after {limit:.0f}s waiting for {what}" + (f" (last: {last})" if last else "") + f"\n{daemon.tail()}")

    def client(*args: str, t: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=base_env, capture_output=True, text=True, timeout=t)

    def succeeds(*args: str, t: float = 15, expect: str = "") -> bool:
        """True if the command exits 0 (and prints `expect`); else raises with its output (kept by wait)."""
        p = client(*args, t=t)
        if p.returncode == 0 and expect in p.stdout:
            return True
        raise ClusterError(f"`{' '.join(args)}` -> {p.returncode}: {(p.stdout + p.stderr).strip()[-500:]}")

    c: SlurmCluster | None = None
    try:
        # ---------------------------------------------------------------- munge
        key = workdir / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        munge_sock = sock_dir / "munge.sock"
        munge = start("munged", [
            _which("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={munge_sock}",
            f"--pid-file={run_dir / 'munged.pid'}", f"--log-file={log / 'munged.log'}",
            f"--seed-file={workdir / 'munge' / 'munged.seed'}", "--num-threads=2",
        ], log / "munged.log")
        wait("munged socket", munge, munge_sock.exists)

        # ---------------------------------------------------------------- mariadb
        mysql_port, dbd_port, ctld_port, slurmd_port = _free_ports(4)
        datadir = workdir / "mysql"
        mysql_sock = sock_dir / "mysqld.sock"
        p = subprocess.run([
            _which("mariadb-install-db", "mysql_install_db"), "--no-defaults", f"--datadir={datadir}",
            "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve",
            "--innodb-log-file-size=16M",
        ], env=base_env, capture_output=True, text=True, timeout=timeout * 2)
        (log / "mariadb-install-db.log").write_text(p.stdout + p.stderr)
        if p.returncode != 0:
            raise ClusterError(f"mariadb-install-db exited {p.returncode}:\n{_tail(log / 'mariadb-install-db.log')}")
        mysqld = start("mariadb", [
            _which("mariadbd", "mysqld"), "--no-defaults", f"--datadir={datadir}", f"--socket={mysql_sock}",
            f"--port={mysql_port}", "--bind-address=127.0.0.1", f"--pid-file={run_dir / 'mariadb.pid'}",
            f"--log-error={log / 'mariadb.log'}", "--user=root", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=16M", "--innodb-use-native-aio=0", "--innodb-lock-wait-timeout=900",
            "--max-connections=100",
        ], log / "mariadb.log")
        mysql_cli = [_which("mariadb", "mysql"), "--no-defaults", f"--socket={mysql_sock}", "-uroot"]
        wait("MariaDB to accept connections", mysqld,
             lambda: succeeds(*mysql_cli, "-e", "SELECT 1", t=10))
        db_pass = secrets.token_hex(12)
        sql = "CREATE DATABASE slurm_acct_db;\n" + "".join(
            f"CREATE USER 'slurm'@'{h}' IDENTIFIED BY '{db_pass}';\n"
            f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{h}';\n"
            for h in ("localhost", "127.0.0.1")
        )
        p = subprocess.run([*mysql_cli, "-e", sql], env=base_env, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise ClusterError(f"creating slurm_acct_db failed: {p.stderr}\n{mysqld.tail()}")

        # ---------------------------------------------------------------- configs
        hostname = socket.gethostname().split(".")[0]
        cpus, topology = _hardware(_which("slurmd"))
        real_mem = max(256, int(_meminfo_mb() * 0.9))
        def_mem_per_cpu = max(100, min(1024, real_mem // max(cpus, 1)))
        auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_sock}\n"
        dbd_conf = workdir / "etc" / "slurmdbd.conf"
        dbd_conf.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"PidFile={run_dir / 'slurmdbd.pid'}\nLogFile={log / 'slurmdbd.log'}\nDebugLevel=info\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={mysql_port}\n"
            f"StorageUser=slurm\nStoragePass={db_pass}\nStorageLoc=slurm_acct_db\n"
        )
        dbd_conf.chmod(0o600)
        conf.write_text(
            f"# generated by tests/slurm_cluster.py\nClusterName={CLUSTER_NAME}\n"
            f"SlurmctldHost={hostname}(127.0.0.1)\nSlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n"
            f"SlurmUser=root\nSlurmdUser=root\n{auth}CredType=cred/munge\n"
            f"StateSaveLocation={workdir / 'state'}\nSlurmdSpoolDir={spool_dir}\n"
            f"SlurmctldPidFile={run_dir / 'slurmctld.pid'}\nSlurmdPidFile={run_dir / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={log / 'slurmctld.log'}\nSlurmdLogFile={log / 'slurmd.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\nSwitchType=switch/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU_Memory\n"
            f"DefMemPerCPU={def_mem_per_cpu}\nSchedulerType=sched/backfill\n"
            "SlurmdParameters=config_overrides\nReturnToService=2\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={dbd_port}\n"
            # clients' and slurmctld's connections to slurmdbd take the munge socket from here, not AuthInfo
            f"AccountingStoragePass={munge_sock}\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=30\nJobCompType=jobcomp/none\n"
            "MailProg=/bin/true\nInactiveLimit=0\nKillWait=5\nMinJobAge=300\nWaittime=0\n"
            "SlurmctldTimeout=60\nSlurmdTimeout=60\nMessageTimeout=20\n"
            f"NodeName={hostname} NodeAddr=127.0.0.1 {topology} RealMemory={real_mem} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )

        # ---------------------------------------------------------------- slurmdbd + accounts
        slurmdbd = start("slurmdbd", [_which("slurmdbd"), "-D"], log / "slurmdbd.log")
        sacctmgr = _which("sacctmgr")
        wait("slurmdbd to answer sacctmgr", slurmdbd,
             lambda: succeeds(sacctmgr, "-n", "-P", "show", "cluster"))
        for args in (["add", "cluster", CLUSTER_NAME],
                     ["add", "account", CLUSTER_NAME, f"Cluster={CLUSTER_NAME}", "Description=tests", "Organization=tests"]):
            p = client(sacctmgr, "-i", *args)
            if p.returncode != 0:
                raise ClusterError(f"sacctmgr -i {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}\n{slurmdbd.tail()}")
        user = _current_user()
        p = client(sacctmgr, "-i", "add", "user", user, f"Account={CLUSTER_NAME}", f"DefaultAccount={CLUSTER_NAME}",
                   f"Cluster={CLUSTER_NAME}")
        if p.returncode != 0 and "Nothing new added" not in p.stdout + p.stderr:
            raise ClusterError(f"sacctmgr add user {user} exited {p.returncode}: {p.stdout}{p.stderr}\n{slurmdbd.tail()}")
        # add cluster made root's default account 'root'; make it ours for every user we know
        client(sacctmgr, "-i", "modify", "user", "where", f"name={user}", "set", f"DefaultAccount={CLUSTER_NAME}")

        # ---------------------------------------------------------------- slurmctld + slurmd
        slurmctld = start("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(conf)], log / "slurmctld.log")
        wait("slurmctld to answer `scontrol ping`", slurmctld,
             lambda: succeeds(_which("scontrol"), "ping", expect="UP"))
        slurmd = start("slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", hostname], log / "slurmd.log")

        def node_idle() -> bool:
            if not slurmd.alive():
                raise ClusterError(f"slurmd exited with status {slurmd.proc.returncode}\n{slurmd.tail()}")
            out = client(_which("sinfo"), "-h", "-N", "-o", "%t", "-n", hostname, t=15).stdout.split()
            return out == ["idle"]

        try:
            wait(f"node {hostname} to be idle in sinfo", slurmctld, node_idle)
        except ClusterError as e:
            reason = client(_which("sinfo"), "-R", "-N", t=15).stdout
            raise ClusterError(f"{e}\nsinfo -R: {reason}\n{slurmd.tail()}") from None

        # Client wrappers with SLURM_CONF baked in: the slurm-jobstep executor plugin strips every
        # SLURM_* variable (SLURM_CONF included) before its nested `srun`, and there is no
        # /etc/slurm/slurm.conf to fall back on, so jobs must find srun & co. on PATH this way.
        bin_dir = workdir / "bin"
        shutil.rmtree(bin_dir, ignore_errors=True)
        bin_dir.mkdir()
        for tool in _CLIENTS:
            real = _which(tool)
            if real:
                w = bin_dir / tool
                w.write_text(f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))}; export SLURM_CONF\nexec {shlex.quote(real)} \"$@\"\n")
                w.chmod(0o755)
        user_env = dict(base_env, PATH=str(bin_dir) + os.pathsep + base_env["PATH"])

        c = SlurmCluster(
            workdir=workdir, env=user_env, conf=conf, bin_dir=bin_dir, cluster_name=CLUSTER_NAME, partition=PARTITION,
            account=CLUSTER_NAME, nodename=hostname, cpus=cpus, real_memory_mb=real_mem,
            ports={"mysql": mysql_port, "slurmdbd": dbd_port, "slurmctld": ctld_port, "slurmd": slurmd_port},
            logs={d.name: d.log for d in daemons}, _daemons=daemons,
        )
        yield c
    finally:
        _teardown(daemons, base_env, marker.encode())
        if short_dir is not None:
            shutil.rmtree(short_dir, ignore_errors=True)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _teardown(daemons: list[_Daemon], env: dict[str, str], marker: bytes) -> None:
    """Cancel jobs, stop daemons newest first, then reap stray job steps of this cluster."""
    names = {d.name: d for d in daemons}
    if "slurmctld" in names and names["slurmctld"].alive():
        with contextlib.suppress(Exception):
            ids = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=15).stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], env=env, capture_output=True, timeout=15)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    out = subprocess.run(["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"], env=env,
                                         capture_output=True, text=True, timeout=15).stdout
                    if not out.strip():
                        break
                    time.sleep(0.3)
    for d in reversed(daemons):
        _stop(d)
    # slurmstepd and job processes are not our children (slurmd double-forks them)
    _kill_all(with_descendants(_pids_marked(marker)))


def _stop(d: _Daemon, grace: float = 15.0) -> None:
    if d.proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(d.proc.pid, sig)
        try:
            d.proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_stale(workdir: Path, run_dir: Path) -> None:
    """Kill daemons a crashed earlier run in this workdir left behind (pid file + our marker)."""
    marker = f"CTC_SLURM_WORKDIR={workdir}".encode()
    stale = set()
    for pidfile in run_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().split()[0])
            if marker in _proc_environ(pid).split(b"\0"):
                stale.add(pid)
    stale |= _pids_marked(marker)
    if stale:
        _kill_all(with_descendants(stale))
