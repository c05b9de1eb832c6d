"""What a comparison records of each run (the runs themselves are tested through the command line)."""

from tppeft.experiment.comparison import run_seconds


def test_a_runs_seconds_are_its_wall_time_or_its_stages_after_a_resume():
    ft, tpp = {"seconds": 30.0}, {"seconds": 50.0, "head_warmup": {"seconds": 5.0}}
    assert run_seconds(100.0, ft, tpp) == 100.0  # one process: its wall time covers the stages
    assert run_seconds(40.0, ft, tpp) == 85.0  # resumed: the stages' seconds count across resumes
    assert run_seconds(10.0, ft, None) == 30.0 and run_seconds(10.0, ft, {"seconds": 5.0}) == 35.0
