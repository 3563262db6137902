"""Runs INSIDE the sandbox: `python runner.py JOBDIR FD`. Only the standard library, torch and pytest.

JOBDIR (read-only to the sandbox) holds the files and plan.json, which lists the jobs: a resnet.py
file to import, whether to run the per-layer tests (tests/test_resnet.py) on it, and the probes of the
blanks whose modules to build and fingerprint (fingerprint.py) with the job's seed. The current folder
is the only one it may write. torch and pytest are imported once; each job then runs in a forked child,
so that what one file does to torch (a monkeypatched torch.nn) never reaches the next, and a student's
top-level code runs once. Each child gets what is left of the CPU budget as its RLIMIT_CPU, and hands
its result back through an unlinked file only it and the runner hold. Where the runner has a PID
namespace of its own (bubblewrap), every process but itself is killed after each job: nothing a job
started outlives it. The report goes to file descriptor FD, which the grader opened and which no job
holds (each child closes it before it runs anything of the student's), once the last job is done.
"""
import ctypes
import importlib.util
import json
import math
import os
import resource
import signal
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path.cwd()  # the job's files, read-only (main() sets it from the command line)
ANSWERS = -1  # the grader's channel, a file descriptor (main() sets it)
MAX_FILE = 2**28  # bytes: no file a job writes (its output included) grows past 256 MB
MAX_RESULT = 2**24  # bytes: a job's result larger than this is a problem
UNGRADED = "could not be graded: "  # the start of every problem with what came back (the grader's too)


def limit_memory(max_bytes: int) -> None:
    """Cap the address space of this process and of all it starts, and the size of any file they write."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE, MAX_FILE))


def not_dumpable() -> None:
    """Keep the children from reading or writing this process's memory through /proc."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def own_pid_namespace(isolated: bool) -> bool:
    """Whether this process runs in bubblewrap's PID namespace (checked twice before any kill(-1))."""
    try:
        return isolated and os.getpid() <= 3 and Path("/proc/1/comm").read_text().strip() == "bwrap"
    except OSError:
        return False


def end_the_rest(isolated: bool, group: int) -> None:
    """Kill what a job left running: every other process of the namespace, or the job's process group."""
    try:
        os.kill(-1, signal.SIGKILL) if isolated else os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def cpu_used() -> float:
    """CPU seconds of this process and of the children it waited for."""
    mine, theirs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + theirs.ru_utime + theirs.ru_stime


def describe(exc: BaseException, path: Path) -> str:
    """One line on why the import failed, with the line of the file where it happened."""
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
        limit = resource.getrlimit(resource.RLIMIT_AS)[0] / 2**30
        return f"exceeded the memory limit ({limit:g} GB) while importing"
    if isinstance(exc, SystemExit):
        return f"did not import: it called sys.exit({exc.code!r})"
    if isinstance(exc, SyntaxError):
        return f"did not import: {type(exc).__name__} line {exc.lineno}: {exc.msg}"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    where = f" line {lines[-1]}" if lines else ""
    return f"did not import: {type(exc).__name__}{where}: {exc}"[:300]


def import_file(path: Path):
    """Import a resnet.py as the module `resnet`."""
    spec = importlib.util.spec_from_file_location("resnet", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["resnet"] = module
    spec.loader.exec_module(module)
    return module


class TestOutcomes:
    """A pytest plugin that keeps each test's outcome in memory: no report file is written or read back."""

    def __init__(self):
        self.results: dict[str, list] = {}  # test name -> [passed, first line of the failure message]

    def pytest_runtest_logreport(self, report) -> None:
        name = report.nodeid.split("::")[-1]
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            lines = str(crash.message if crash else report.longrepr).strip().splitlines() or [report.when]
            self.results[name] = [False, lines[0][:200]]
        else:  # passed or skipped, in any phase: a later failure of the same test overrides it
            self.results.setdefault(name, [True, ""])


def run_pytest(args: list[str]) -> dict[str, list]:
    """Test name -> [passed, first line of the failure message], for a pytest run in this process."""
    import pytest

    outcomes = TestOutcomes()
    pytest.main([*args, "-q", "-p", "no:cacheprovider"], plugins=[outcomes])
    return outcomes.results


def run_tests(name: str) -> dict[str, list]:
    """The per-layer tests on the module imported as `resnet` (tests/conftest.py hands it to them)."""
    return run_pytest([str(HERE / "tests" / "test_resnet.py"), f"--rootdir={HERE}", "-c", str(HERE / "pytest.ini")])


def count_threads_started() -> list[int]:
    """From now on, count the threads Python code starts in this process (through threading or _thread)."""
    import _thread
    import threading

    started, start_new_thread = [0], _thread.start_new_thread

    def counted(*args, **kwargs):
        started[0] += 1
        return start_new_thread(*args, **kwargs)

    _thread.start_new_thread = threading._start_new_thread = counted
    return started


def work(job: dict, seed: int) -> dict:
    """One job, in the child: import the file, run its tests, fingerprint what its blanks build.

    A file that starts threads of its own is not graded: what they do (fill the memory, say) runs beside the
    tests and probes, so its grade would depend on their timing and change from run to run."""
    import fingerprint
    import torch

    torch.set_num_threads(1)
    threads = count_threads_started()
    path = HERE / job["file"]
    try:
        module = import_file(path)
    except BaseException as exc:  # noqa: BLE001 - whatever the file does is a result
        result = {"problem": describe(exc, path)}
    else:
        result = {}
        if job.get("tests"):
            result["tests"] = run_tests(job["name"])
        if job.get("probes"):
            result["probes"] = fingerprint.probe_all(module, job["probes"], seed)
    if threads[0]:
        return {"problem": f"{UNGRADED}it started {threads[0]} thread(s) of its own, which run beside the grading: "
                           "its grade would change from run to run"}
    return result


def run_child(job: dict, budget: float, seed: int, result_fd: int) -> None:
    """The forked child: its own process group and CPU limit; the result goes to result_fd."""
    code = 0
    try:
        if ANSWERS >= 0:
            os.close(ANSWERS)  # before anything of the student's runs: no job can write the report
        os.setpgid(0, 0)
        seconds = max(1, math.ceil(budget))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        result = work(job, seed)
        os.write(result_fd, json.dumps(result).encode())
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 70
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def crash(status: int, limit: float, memory_bytes: int) -> str:
    """Why a job's child ended without a result."""
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        return f"used more than {limit:g} s of CPU time"
    how = (f"was killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
           else f"exited with code {os.WEXITSTATUS(status)}")
    try:  # the output is the grader's file, held here as stdout: never a path a job could replace
        sys.stdout.flush()
        size = os.fstat(1).st_size
        last = os.pread(1, 2000, max(0, size - 2000)).decode(errors="replace").strip().splitlines()[-1:]
    except OSError:
        last = []
    if os.WIFSIGNALED(status) or "memory" in " ".join(last).lower():
        how += f" (perhaps the memory limit of {memory_bytes / 2**30:g} GB)"
    message = f"crashed: the test process {how} before the tests finished"
    return message + (f"; last output: {last[0][:150]}" if last else "")


def run_job(job: dict, plan: dict, isolated: bool) -> dict:
    """Fork a child for one job, wait for it, end what it left behind, read its result."""
    budget = plan["cpu_limit"] - cpu_used()
    if budget <= 0:
        return {"problem": f"used more than {plan['cpu_limit']:g} s of CPU time"}
    sys.stdout.flush()
    with tempfile.TemporaryFile() as result_file:  # unlinked: only this process and the child hold it
        pid = os.fork()
        if pid == 0:
            run_child(job, budget, plan["seed"], result_file.fileno())
        _, status = os.waitpid(pid, 0)
        end_the_rest(isolated, pid)
        size = os.fstat(result_file.fileno()).st_size
        if status != 0 or size == 0:
            return {"problem": crash(status, plan["cpu_limit"], plan["memory_bytes"])}
        if size >= MAX_RESULT:
            return {"problem": f"{UNGRADED}its answers are larger than {MAX_RESULT // 2**20} MB"}
        try:
            result = json.loads(os.pread(result_file.fileno(), size, 0))
        except (OSError, ValueError, RecursionError):
            result = None
    return result if isinstance(result, dict) else {"problem": f"{UNGRADED}its answers are not what the runner writes"}


def write_report(text: str) -> None:
    """Write the report to the grader's channel, whole, and close it."""
    data = text.encode()
    while data:
        data = data[os.write(ANSWERS, data):]
    os.close(ANSWERS)


def main() -> None:
    """Run every job of the plan and send the report to the grader."""
    global HERE, ANSWERS
    HERE, ANSWERS = Path(sys.argv[1]).resolve(), int(sys.argv[2])
    plan = json.loads((HERE / "plan.json").read_text())
    limit_memory(plan["memory_bytes"])
    not_dumpable()
    isolated = own_pid_namespace(plan.get("isolated", False))
    report = {"isolated": isolated, "jobs": {}}
    try:
        import fingerprint  # noqa: F401 - imported once, before the children fork
        import pytest  # noqa: F401
        import torch  # noqa: F401
    except BaseException as exc:  # noqa: BLE001
        report["problem"] = f"the sandbox cannot import torch and pytest: {type(exc).__name__}: {exc}"[:300]
    else:
        for job in plan["jobs"]:
            report["jobs"][job["name"]] = result = run_job(job, plan, isolated)
            if result.get("problem") and job.get("stop_on_problem"):
                break
    report["cpu"] = cpu_used()
    write_report(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # do not wait for threads a job may have started


if __name__ == "__main__":
    main()
