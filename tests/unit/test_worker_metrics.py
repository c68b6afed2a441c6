"""Worker metrics and the task signals that feed them and bind log context."""
from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from shared.logs import bind_context, clear_context, context_value
from shared.broker import TRANSPORT
from shared.tasks import REPLY_TASK, Dispatcher
from worker import metrics, observability


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_pipeline_calls_update_their_metrics():
    finished = value("parley_jobs_finished_total", status="succeeded")
    queued = value("parley_job_queue_seconds_count")
    metrics.job_finished("succeeded", queue_seconds=1.5)
    metrics.job_finished("succeeded")
    assert value("parley_jobs_finished_total", status="succeeded") == finished + 2
    assert value("parley_job_queue_seconds_count") == queued + 1

    calls, tokens = value("parley_model_call_seconds_count", outcome="ok"), value(
        "parley_model_tokens_total", direction="output")
    metrics.model_call(2.0, input_tokens=120, output_tokens=30)
    metrics.model_call(0.5, outcome="rate_limited")
    assert value("parley_model_call_seconds_count", outcome="ok") == calls + 1
    assert value("parley_model_call_seconds_count", outcome="rate_limited") >= 1
    assert value("parley_model_tokens_total", direction="output") == tokens + 30

    retries = value("parley_job_retries_total", kind="busy")
    metrics.retry("busy")
    assert value("parley_job_retries_total", kind="busy") == retries + 1


def test_port_zero_serves_nothing():
    assert metrics.serve(0) is False


class FakeTask:
    name = REPLY_TASK

    def __init__(self, request_id=None, headers=None):
        self.request = SimpleNamespace(headers=headers)
        if request_id:
            setattr(self.request, "request_id", request_id)


def test_task_signals_bind_ids_count_and_clear():
    bind_context(user_id="left over from another task")
    done = value("parley_worker_tasks_total", task=REPLY_TASK, state="success")
    observability._task_started(task=FakeTask(request_id="req-9"), args=["job-9"])
    assert (context_value("job_id"), context_value("request_id")) == ("job-9", "req-9")
    assert context_value("user_id") is None
    assert value("parley_worker_tasks_in_progress", task=REPLY_TASK) >= 1
    observability._task_ended(task=FakeTask(), state="SUCCESS")
    assert context_value("job_id") is None
    assert value("parley_worker_tasks_total", task=REPLY_TASK, state="success") == done + 1
    assert value("parley_worker_task_last_success_timestamp_seconds", task=REPLY_TASK) > 0
    clear_context()


def test_request_id_is_read_from_the_message_headers():
    assert observability.request_id_of(FakeTask(request_id="a")) == "a"
    assert observability.request_id_of(FakeTask(headers={"request_id": "b"})) == "b"
    assert observability.request_id_of(FakeTask()) is None


class FakeCelery:
    """Celery's send_task, recorded; configured as make_celery configures a Redis broker."""

    def __init__(self):
        self.sent = []
        self.conf = SimpleNamespace(broker_transport=TRANSPORT)

    def send_task(self, name, **options):
        self.sent.append((name, options))


def test_dispatcher_sends_the_job_id_only_and_the_request_id_as_a_header():
    celery = FakeCelery()
    Dispatcher(celery, request_id=lambda: "req-1").turn("job-1")
    Dispatcher(celery).turn("job-2")
    assert celery.sent == [
        (REPLY_TASK, {"args": ["job-1"], "argsrepr": "['job-1']", "kwargsrepr": "{}", "countdown": None,
                      "headers": {"request_id": "req-1"}, "declare": []}),
        (REPLY_TASK, {"args": ["job-2"], "argsrepr": "['job-2']", "kwargsrepr": "{}", "countdown": None,
                      "headers": None, "declare": []}),
    ]
