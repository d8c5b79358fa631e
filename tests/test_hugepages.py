"""nasi_jax.hugepages: when a process reruns itself with glibc's huge-page tunable, and that the
rerun keeps its interpreter, arguments and output."""

import os
import subprocess
import sys

import pytest

from nasi_jax import hugepages

PROBE = ("import os, sys; from nasi_jax import hugepages; print('before', flush=True); "
         "hugepages.rerun_with_hugepages(); print('args', sys.argv[1:]); "
         "print('tunables', os.environ.get('GLIBC_TUNABLES')); print('enabled', hugepages.enabled())")


def _probe(env_extra: dict, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hugepages.OPT_OUT, hugepages.RERUN)}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_environment_appends_the_tunable_once():
    if hugepages.unavailable() is not None:
        assert hugepages.environment({}) is None
        return
    env = hugepages.environment({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F:" + hugepages.TUNABLE,
                   hugepages.RERUN: "1"}
    assert hugepages.enabled(env)
    assert hugepages.environment(env) is None  # no second rerun
    assert hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # the user's choice stands
    assert all(hugepages.environment({hugepages.OPT_OUT: v}) is None for v in ("0", "false", "No", "off"))
    assert hugepages.environment({hugepages.OPT_OUT: "1"})["GLIBC_TUNABLES"] == hugepages.TUNABLE


def test_rerun_keeps_arguments_and_sets_the_tunable():
    if hugepages.unavailable() is not None:
        pytest.skip(f"no huge pages here: {hugepages.unavailable()}")
    lines = _probe({}, "a b", "--c")
    # 'before' printed twice: once by the first process (flushed before the exec), once after
    assert lines == ["before", "before", "args ['a b', '--c']", f"tunables {hugepages.TUNABLE}", "enabled True"]


def test_opt_out_and_an_explicit_choice_are_left_alone():
    assert _probe({hugepages.OPT_OUT: "0"}) == ["before", "args []", "tunables None", "enabled False"]
    assert _probe({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == [
        "before", "args []", "tunables glibc.malloc.hugetlb=0", "enabled False"]


def test_a_failed_rerun_warns_and_goes_on(monkeypatch, capsys):
    def refuse(*a):
        raise OSError("exec refused")
    monkeypatch.setattr(hugepages, "environment", lambda environ=None: {"GLIBC_TUNABLES": hugepages.TUNABLE})
    monkeypatch.setattr(hugepages.os, "execve", refuse)
    hugepages.rerun_with_hugepages()
    assert "could not rerun with huge pages (exec refused)" in capsys.readouterr().err


def test_a_rerun_that_lost_the_tunable_warns_instead_of_looping():
    # glibc drops malloc tunables for set-user-ID / capability binaries: the rerun must not rerun again
    lines = _probe({hugepages.RERUN: "1"})
    assert lines == ["before", "args []", "tunables None", "enabled False"]
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hugepages.OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, hugepages.RERUN: "1"},
                         capture_output=True, text=True, check=True)
    assert "glibc did not keep it" in out.stderr
