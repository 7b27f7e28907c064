"""In-process executor: jobs run one after another in this process (debugging, tests).

One job at a time, so a job's latency phase never shares the machine with another job's work.
"""

from __future__ import annotations

from bench.config import ExecutorConfig
from bench.executors import OnResult, execute
from bench.plan import Job


class LocalExecutor:
    def __init__(self, config: ExecutorConfig | None = None):
        self.config = config or ExecutorConfig(kind="local")

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs:
            on_result(job, execute(job))
