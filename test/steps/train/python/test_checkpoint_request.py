"""A cluster job near its time limit asks the training loop for a checkpoint by a file
(ANNEAL_CHECKPOINT_REQUEST, written by anneal's cluster runner on Slurm's --signal): the progress
callback every training worker installs then makes the Trainer save once, and only once."""
from types import SimpleNamespace

from anneal_worker.training import checkpoint_requested_by_any_rank, progress_callback


class Recorder:
    def __init__(self):
        self.logs = []

    def progress(self, *args, **kwargs):
        pass

    def log(self, message, level="info"):
        self.logs.append(message)


def step_end(callback, step):
    control = SimpleNamespace(should_save=False)
    callback.on_step_end(None, SimpleNamespace(global_step=step), control)
    return control.should_save


def test_no_request_file_named_means_no_extra_save(monkeypatch):
    monkeypatch.delenv("ANNEAL_CHECKPOINT_REQUEST", raising=False)
    callback = progress_callback(Recorder())
    assert not checkpoint_requested_by_any_rank()
    assert [step_end(callback, s) for s in (1, 2, 3)] == [False, False, False]


def test_a_request_saves_once_when_the_file_appears(monkeypatch, tmp_path):
    request = tmp_path / "checkpoint-request"
    monkeypatch.setenv("ANNEAL_CHECKPOINT_REQUEST", str(request))
    worker = Recorder()
    callback = progress_callback(worker)
    assert step_end(callback, 1) is False  # named but not written yet: the limit is not near
    request.write_text("")
    assert [step_end(callback, s) for s in (2, 3, 4)] == [True, False, False]
    assert worker.logs == ["checkpoint saved before the time limit (step 2)"]
