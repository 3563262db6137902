"""Run the jobs of one submission in a sandbox: bubblewrap where it works, process limits only where not.

Under bubblewrap (Debian/Ubuntu package `bubblewrap`) the runner sees a read-only file system made
of the system folders and Python's own (never the project folder: no reference answer), a writable
job folder of its own and a private /tmp; no network (a network namespace with nothing in it); a
PID namespace of its own (nothing it starts outlives it); no capabilities. Without bubblewrap (or
where it cannot start, as in some containers) the runner is an ordinary process with the same time,
CPU and memory limits: it can read and write what the grading user can, and a child started with
setsid can outlive it. `check_sandbox` says which, once, loudly.

Limits: CPU seconds for the whole submission (a loaded machine slows a submission down but does not
fail it), a wall-clock limit for code that sleeps or blocks, and an address-space limit.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from course.assignment import label
from grading import LAYER_TESTS, PACKAGE, ROOT
from grading.builds import valid
from grading.runner import UNGRADED

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
                "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
INSIDE = "/sandbox"  # the job's work folder, as the runner sees it under bubblewrap: the one it may write
JOB = "/job"  # the job's files (plan, submission, builds, tests), read-only
GRADER = "/grader"  # the grading package, read-only
MAX_ANSWERS = 2**24  # bytes: a larger report is refused


@dataclass
class Limits:
    """The limits of one submission."""
    timeout: float = 120.0  # wall-clock seconds: twice the CPU limit (docs/grading.md: the default timeout)
    cpu: float = 60.0  # CPU seconds, all its processes together
    memory_gb: float = 4.0  # address space of each process


@dataclass
class Outcome:
    """What came back from the sandbox: the runner's report, or the problem that stopped it."""
    report: dict = field(default_factory=dict)
    problem: str | None = None
    cpu: float = 0.0
    isolated: bool = False


def python_folders() -> list[Path]:
    """The folders Python needs (its prefixes and sys.path), never the project folder or one around it."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    found = set(prefixes) | {Path(sys.executable).resolve().parent}
    found |= {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()}
    keep = []
    for folder in sorted(found):
        inside_project = folder == ROOT or ROOT in folder.parents or folder in ROOT.parents
        if inside_project and not any(folder == p or p in folder.parents for p in prefixes if p != ROOT):
            continue
        if str(folder).startswith(SYSTEM_DIRS) or any(parent in keep for parent in folder.parents):
            continue
        keep.append(folder)
    return keep


def bwrap_command(inputs: Path, work: Path, program: list[str]) -> list[str]:
    """The bubblewrap command line that runs `program` on the job's files (read-only) in its work folder."""
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # first: the binds below may lie under /tmp
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        command += ["--ro-bind-try", path, path]
    for folder in python_folders():
        command += ["--ro-bind", str(folder), str(folder)]
    command += ["--ro-bind", str(PACKAGE), GRADER, "--ro-bind", str(inputs), JOB, "--bind", str(work), INSIDE,
                "--chdir", INSIDE, "--"]
    return command + program


def environment(home: str, site: str) -> dict[str, str]:
    """The runner's environment: nothing of the grader's but what Python needs."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if home == INSIDE else home,
            "LANG": "C.UTF-8", "PYTHONPATH": site, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@cache
def bwrap_problem() -> str | None:
    """None if bubblewrap can run Python here, else why not (checked once)."""
    if not shutil.which("bwrap"):
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="grade-check-") as tmp:
        command = bwrap_command(Path(tmp), Path(tmp), [sys.executable, "-s", "-c", "import sys"])
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60,
                                  env=environment(INSIDE, f"{GRADER}/sandbox_site"))
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bwrap could not start: {error}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"bwrap could not start: {last}"
    return None


def check_sandbox(requested: str) -> tuple[bool, str | None]:
    """(use bubblewrap, a loud warning to print once) for --sandbox auto, bwrap or process."""
    if requested == "process":
        return False, ("WARNING: --sandbox process: submissions run under process limits only: they can read the "
                       "reference answers and write any file this user can, and a child started with setsid can "
                       "outlive the grading.")
    problem = bwrap_problem()
    if problem is None:
        return True, None
    if requested == "bwrap":
        from course.cli import UserError

        raise UserError(f"--sandbox bwrap: {problem}")
    return False, (f"WARNING: no sandbox: {problem}. Submissions run under process limits only: they can read the "
                   "reference answers and write any file this user can, and a child started with setsid can outlive "
                   "the grading. Install bubblewrap to grade untrusted code (see docs/grading.md).")


def prepare(inputs: Path, files: dict[str, str], jobs: list[dict], limits: Limits, isolated: bool,
            seed: int) -> None:
    """Write the job's files: the files to import, the per-layer tests, and plan.json; then make them read-only."""
    (inputs / "tests").mkdir(parents=True)
    shutil.copy(LAYER_TESTS, inputs / "tests" / "test_resnet.py")
    shutil.copy(PACKAGE / "sandbox_conftest.py", inputs / "tests" / "conftest.py")
    (inputs / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (inputs / name).write_text(text, encoding="utf-8")
    plan = {"jobs": jobs, "cpu_limit": limits.cpu, "memory_bytes": int(limits.memory_gb * 2**30),
            "isolated": isolated, "seed": seed}
    (inputs / "plan.json").write_text(json.dumps(plan))
    for path in [*inputs.rglob("*"), inputs]:  # under bubblewrap they are bound read-only as well
        path.chmod(0o555 if path.is_dir() else 0o444)


def run(files: dict[str, str], jobs: list[dict], limits: Limits, use_bwrap: bool, seed: int) -> Outcome:
    """Run the jobs (see runner.py) on the files (name -> text) with the job's seed; return what came back."""
    with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as tmp:
        inputs, work = Path(tmp) / "in", Path(tmp) / "work"
        work.mkdir()
        prepare(inputs, files, jobs, limits, use_bwrap, seed)
        with tempfile.TemporaryFile() as answers, tempfile.TemporaryFile() as output:
            fd = str(answers.fileno())
            if use_bwrap:
                command = bwrap_command(inputs, work, [sys.executable, "-s", f"{GRADER}/runner.py", JOB, fd])
                env = environment(INSIDE, f"{GRADER}/sandbox_site")
            else:
                command = [sys.executable, "-s", str(PACKAGE / "runner.py"), str(inputs), fd]
                env = environment(str(work), str(PACKAGE / "sandbox_site"))
            status, cpu, timed_out = supervise(command, env, work, output, answers.fileno(), limits.timeout)
            if timed_out:
                return Outcome(problem=f"{UNGRADED}timed out after {limits.timeout:g} s", cpu=cpu)
            outcome = read_answers(answers.fileno(), output.fileno(), jobs, status, cpu, limits)
    hidden = host_names(Path(tmp))
    outcome.report, outcome.problem = without_host(outcome.report, hidden), without_host(outcome.problem, hidden)
    return outcome


def host_names(job_folder: Path) -> list[tuple[re.Pattern, str]]:
    """What a submission could learn of the host and echo into its results (the folders bound into the sandbox,
    which it sees in tracebacks and /proc; the home folder; the user's name), each with the word that replaces it.
    Longest first, so that a folder inside another is replaced whole."""
    paths = {str(job_folder): "<job>", str(job_folder.resolve()): "<job>"} | host_paths()
    patterns = [(re.compile(re.escape(text) + r"(?![\w.-])"), word)
                for text, word in sorted(paths.items(), key=lambda item: -len(item[0]))]
    return patterns + user_name()


@cache
def host_paths() -> dict[str, str]:
    """The host's folders a submission can learn, every job alike (found once): path -> the word that replaces it."""
    paths = [(ROOT, "<project>"), (PACKAGE, "<grader>"), (Path.home(), "~")]
    paths += [(Path(p), "<python>") for p in (*python_folders(), sys.prefix, sys.base_prefix, sys.exec_prefix)]
    return {text: word for path, word in paths for text in {str(path), str(path.resolve())} if len(text) > 1}


@cache
def user_name() -> list[tuple[re.Pattern, str]]:
    """The user's name as a whole word, to replace by <user> (none when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's user without a name: nothing to hide
        return []
    return [(re.compile(rf"\b{re.escape(user)}\b"), "<user>")] if len(user) > 2 else []


def without_host(value, hidden: list[tuple[re.Pattern, str]]):
    """`value` (a report, or a message) with every host name of `hidden` replaced, in every string in it."""
    if isinstance(value, str):
        for pattern, word in hidden:
            value = pattern.sub(word, value)
        return value
    if isinstance(value, dict):
        return {without_host(k, hidden): without_host(v, hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [without_host(v, hidden) for v in value]
    return value


def read_answers(answers: int, output: int, jobs: list[dict], status: int, cpu: float, limits: Limits) -> Outcome:
    """The runner's report, read from the grader's own channel with a size limit, and checked for its form."""
    size = os.fstat(answers).st_size
    if size == 0:
        tail = os.pread(output, 300, max(0, os.fstat(output).st_size - 300))
        last = tail.decode(errors="replace").strip().splitlines()[-1:]
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return Outcome(problem=f"{UNGRADED}no answers: the sandbox {how}"
                       + (f"; last output: {last[0][:150]}" if last else ""), cpu=cpu)
    if size > MAX_ANSWERS:
        return Outcome(problem=f"{UNGRADED}the sandbox's answers are larger than {MAX_ANSWERS // 2**20} MB", cpu=cpu)
    try:
        report = json.loads(os.pread(answers, size, 0))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Outcome(problem=f"{UNGRADED}the sandbox's answers are not valid JSON", cpu=cpu)
    if wrong := malformed(report, jobs):
        return Outcome(problem=f"{UNGRADED}the sandbox's answers are malformed ({wrong})", cpu=cpu)
    outcome = Outcome(report=report, cpu=max(cpu, float(report["cpu"])))  # bwrap's own usage leaves out the sandbox
    outcome.problem = report["problem"][:300] if report.get("problem") else None
    if outcome.problem is None and report["cpu"] > limits.cpu + 5:
        outcome.problem = f"used more than {limits.cpu:g} s of CPU time"
    outcome.isolated = report["isolated"]
    return outcome


def malformed(report: object, jobs: list[dict]) -> str | None:
    """What is wrong with the form of a report (None if nothing): only the fields and types the runner writes."""
    if not isinstance(report, dict) or not {"jobs", "cpu", "isolated"} <= report.keys() <= {
            "jobs", "cpu", "isolated", "problem"}:
        return "not the report's fields"
    if not (isinstance(report["jobs"], dict) and isinstance(report["cpu"], (int, float))
            and isinstance(report["isolated"], bool) and isinstance(report.get("problem", ""), str)):
        return "a field of the wrong type"
    planned = {job["name"]: job for job in jobs}
    for name, result in report["jobs"].items():
        if name not in planned or not isinstance(result, dict) or not result.keys() <= {"problem", "tests", "probes"}:
            return f"job {str(name)[:40]}"
        if not isinstance(result.get("problem", ""), str) or not isinstance(result.get("tests", {}), dict):
            return f"job {name}: problem or tests"
        if not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], bool) and isinstance(r[1], str)
                   for r in result.get("tests", {}).values()):
            return f"job {name}: tests"
        probes, wanted = result.get("probes", {}), planned[name].get("probes", {})
        if not isinstance(probes, dict) or not probes.keys() <= wanted.keys():
            return f"job {name}: probes"
        for blank_id, answer in probes.items():
            if valid(answer, [label(p) for p in wanted[blank_id]]) is None:
                return f"job {name}: the probes of {blank_id}"
    return None


def supervise(command: list[str], env: dict[str, str], work: Path, output, answers: int,
              timeout: float) -> tuple[int, float, bool]:
    """Run the command in its own session with the answers channel open; kill its whole group after `timeout` s.
    (status, CPU s, timed out)."""
    child = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=output,
                             stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(answers,))
    expired = threading.Event()

    def kill() -> None:
        """End the child's process group (under bubblewrap, the whole sandbox goes with it)."""
        expired.set()
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
    child.returncode = status  # reaped here: keep Popen from waiting again
    try:
        os.killpg(child.pid, signal.SIGKILL)  # what the runner left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    return status, usage.ru_utime + usage.ru_stime, expired.is_set()
